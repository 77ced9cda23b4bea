"""Centring arithmetic: a simulated mount with an offset converges within tolerance; each try is reported."""

from __future__ import annotations

import pytest

from tenmon.vision.solve.centering import centering_step, separation_arcsec
from tenmon.config.vision import CenteringSettings


class OffsetMount:
    """A mount whose true pointing is its reported position plus a fixed error (deg) and a scatter."""

    def __init__(self, err_ra: float, err_dec: float, jitter_arcsec: float = 2.0):
        self.err_ra, self.err_dec = err_ra, err_dec
        self.jitter = jitter_arcsec / 3600.0
        self.ra = self.dec = 0.0
        self.n = 0

    def goto(self, ra: float, dec: float) -> None:
        self.ra, self.dec = ra, dec

    def sync(self, ra: float, dec: float) -> None:
        # The mount now reports (ra, dec) where it truly is: its error is absorbed.
        true_ra, true_dec = self.true()
        self.err_ra, self.err_dec = true_ra - ra, true_dec - dec
        self.ra, self.dec = ra, dec

    def true(self) -> tuple[float, float]:
        self.n += 1
        j = self.jitter * (1 if self.n % 2 else -1)
        return self.ra + self.err_ra + j, self.dec + self.err_dec - j


@pytest.mark.parametrize("method", ["sync", "offset"])
def test_converges_within_tolerance(method):
    settings = CenteringSettings(tolerance_arcsec=10.0, max_tries=5, method=method)
    mount = OffsetMount(err_ra=0.08, err_dec=-0.05)
    target = (150.0, 40.0)
    mount.goto(*target)
    steps = []
    for n in range(1, 6):
        solved = mount.true()  # what the plate solver says
        step = centering_step(target_ra_deg=target[0], target_dec_deg=target[1], solved_ra_deg=solved[0],
                              solved_dec_deg=solved[1], mount_ra_deg=mount.ra, mount_dec_deg=mount.dec,
                              try_number=n, settings=settings)
        steps.append(step)
        if step.action == "done":
            break
        if step.action == "sync_and_goto":
            mount.sync(step.sync_ra_deg, step.sync_dec_deg)
        mount.goto(step.goto_ra_deg, step.goto_dec_deg)
    assert steps[0].separation_arcsec > 200 and steps[-1].action == "done"
    assert steps[-1].separation_arcsec <= 10.0 and len(steps) <= 3
    assert all("separation_arcsec" in s.to_json() for s in steps)


def test_gives_up_after_max_tries_and_checks_input():
    s = CenteringSettings(max_tries=2)
    step = centering_step(target_ra_deg=10, target_dec_deg=10, solved_ra_deg=10.1, solved_dec_deg=10,
                          mount_ra_deg=10, mount_dec_deg=10, try_number=2, settings=s)
    assert step.action == "give_up"
    assert step.east_arcsec == pytest.approx(-0.1 * 3600 * 0.98481, rel=1e-3)
    with pytest.raises(ValueError):
        centering_step(target_ra_deg=10, target_dec_deg=100, solved_ra_deg=10, solved_dec_deg=10,
                       mount_ra_deg=10, mount_dec_deg=10, try_number=1)
    assert separation_arcsec(359.999, 0, 0.001, 0) == pytest.approx(7.2, rel=1e-6)
