"""Helpers for the daemon's centring and Nayuta tests: a simulated observatory with small frames,
night operations off (camera and frame service only), centring installed, slit and cover open."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tenmon.config.services import CameraSettings, CentringServiceSettings, NightSettings
from tenmon.daemon.compose import install_centring
from tenmon.daemon.control_loop import tick_once
from tenmon.daemon.services.night import install_night_operations
from tenmon.drivers.base import ShutterState
from tenmon.config.vision import (CatalogSettings, CosmicSettings, PipelineSettings,
                                  ProductSettings, SolverSettings)

#: 512 x 512 px of 1.28" (4 x 4 binning): the 60 cm's 11' field, small and fast.
CAMERA = CameraSettings(width_px=512, height_px=512, binning=4, overscan_px=8)


def sections(**extra):
    """Night operations off; small frames; no LA Cosmic or products (tested elsewhere)."""
    out = {
        "night": NightSettings(enabled=False),
        "camera": CAMERA,
        "pipeline": PipelineSettings(cosmics=CosmicSettings(enabled=False),
                                     products=ProductSettings(clean_fits=False, mask_fits=False,
                                                              preview=False, regions=False)),
        "solver": SolverSettings(order=["hinted"], pointing_error_deg=0.15,
                                 catalog=CatalogSettings(provider="simulated")),
    }
    out.update(extra)
    return out


class Rig:
    """A simulated observatory with centring (and Nayuta) installed, driven in-process."""

    def __init__(self, sim_rig, *, centring=None, nayuta=True, open_dome=True, solver=None,
                 **env):
        self.base = sim_rig(**env)
        self.obs = self.base.obs
        self.clock = self.obs.clock
        self.world = self.obs.world
        self.tick_s = self.base.tick_s
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frames")
        self.locate_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="locate")
        extra = {"solver": solver} if solver is not None else {}
        self.ops = install_night_operations(self.obs, self.obs.config, sections=sections(**extra),
                                            executor=self.pool)
        cam = self.ops.camera
        cam.render_in = "thread"
        cam.disconnect()
        cam.connect()
        self.service = install_centring(
            self.obs, self.ops, settings=centring or CentringServiceSettings(exposure_s=10.0,
                                                                             settle_s=2.0),
            nayuta=nayuta, locate_executor=self.locate_pool)
        if open_dome:
            self.open()

    def open(self):
        self.obs.slit_open()
        self.obs.cover_open()
        self.base.run(120, until=lambda: self.obs.slit.state == ShutterState.OPEN
                      and self.obs.cover.state == ShutterState.OPEN)
        assert self.obs.slit.state == ShutterState.OPEN, self.obs.slit.state
        assert self.obs.cover.state == ShutterState.OPEN, self.obs.cover.state

    def busy(self) -> bool:
        """Work in wall time (rendering, frame processing, locating) the clock waits for."""
        fr = self.ops.frames
        nay = getattr(self.service, "nayuta", None)
        return bool((fr.started and fr.processing) or self.ops.camera.rendering
                    or (nay is not None and nay.computing))

    async def run(self, done, sim_s: float = 1800.0, wall_s: float = 240.0) -> None:
        """Tick until ``done()``; simulated time stands still while wall-time work runs (like
        ``tenmon simulate --fast``)."""
        t_end = self.clock.monotonic() + sim_s
        w_end = time.monotonic() + wall_s
        while not done():
            if self.clock.monotonic() > t_end or time.monotonic() > w_end:
                raise AssertionError(f"timed out; centring {self.service.status()}; last events "
                                     f"{[e['message'] for e in self.obs.store.events(limit=10000)][-8:]}")
            if self.busy():
                await asyncio.sleep(0.01)
            else:
                self.clock.advance(self.tick_s)
            tick_once(self.obs)
            await asyncio.sleep(0)

    def true_separation_arcsec(self, ra: float, dec: float) -> float:
        from tenmon.core.astro import separation_arcsec

        t_ra, t_dec = self.world.true_pointing()
        return separation_arcsec(ra, dec, t_ra, t_dec)

    def lst_deg(self) -> float:
        return self.world.lst()

    def set_pointing_error(self, ra: float, dec: float, arcmin: float, seed: int) -> float:
        """Draw new pointing-error terms (the simulated world's distribution, seeded) scaled so
        that the mount is ``arcmin`` off at (ra, dec) now; returns the error (arcsec)."""
        import math
        import random

        rng = random.Random(seed)
        terms = {"IH": rng.uniform(-0.6, 0.6), "ID": rng.uniform(-0.6, 0.6),
                 "CH": rng.uniform(-0.3, 0.3), "NP": rng.uniform(-0.2, 0.2),
                 "MA": rng.uniform(-0.2, 0.2), "ME": rng.uniform(-0.2, 0.2)}
        st = self.world.state
        st.pointing_terms_arcmin = dict(terms)
        ha = (self.world.lst() - ra + 180.0) % 360.0 - 180.0
        dh, dd = self.world.pointing_model().offsets_arcsec(ha, dec, "east")
        err = math.hypot(float(dh[0]) * math.cos(math.radians(dec)), float(dd[0]))
        k = arcmin * 60.0 / err
        st.pointing_terms_arcmin = {n: v * k for n, v in terms.items()}
        return err * k

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.locate_pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def rig(sim_rig):
    """Factory: ``rig(**kw)`` -> a :class:`Rig` (closed at teardown)."""
    made = []

    def make(**kw):
        r = Rig(sim_rig, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
