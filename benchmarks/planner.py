"""Benchmark of the night planner: 1,000 seeded random targets, one night, 1-minute grid.

Prints the planning time, targets scheduled, open-shutter hours and the independent
``check_plan`` violations (must be 0), then runs astroplan's ``PriorityScheduler`` on the same
targets with the same constraints (astroplan is a benchmark-only dependency:
``.venv/bin/pip install astroplan``).

Two settings are planned:

* ``site``: the site's defaults (altitude 30 deg with a horizon mask, airmass 2, moon 20 deg,
  hour angle +-90 deg, slew 2 deg/s, dome 3 deg/s, settle 10 s, filter change 10 s);
* ``astroplan-equivalent``: only what astroplan can express (no mask, no hour-angle limit,
  transitions = slew time at 2 deg/s, no dome, settle or filter time), for the comparison.

Run: ``.venv/bin/python benchmarks/planner.py [--n 1000] [--astroplan-n 100 1000]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from datetime import date

import numpy as np

from tenmon.core import offline

offline.configure()

import astropy.units as u  # noqa: E402
from astropy.coordinates import EarthLocation  # noqa: E402

from tenmon.scheduler.night import night_for_date  # noqa: E402
from tenmon.scheduler.planner import (  # noqa: E402
    Plan,
    ScheduledBlock,
    check_plan,
    plan_night,
)
from tenmon.config.services import SchedulerSettings  # noqa: E402
from tenmon.scheduler.targets import Target  # noqa: E402

SITE = EarthLocation.from_geodetic(134.3356 * u.deg, 35.0253 * u.deg, 449 * u.m)
NIGHT = date(2026, 11, 21)
MASK = [(0.0, 25.0), (60.0, 35.0), (120.0, 20.0), (200.0, 15.0), (300.0, 40.0)]


def random_targets(n: int, seed: int) -> list[Target]:
    """``n`` targets uniform on the sky north of dec -40, mixed priorities, filters, lengths."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-40.0)), 1.0, n)))
    return [
        Target(
            name=f"T{i:04d}",
            ra_deg=float(ra[i]),
            dec_deg=float(dec[i]),
            priority=int(rng.integers(1, 6)),
            exposure_s=float(rng.choice([30.0, 60.0, 120.0, 300.0])),
            count=int(rng.integers(1, 6)),
            filter=str(rng.choice(["B", "V", "R"])),
        )
        for i in range(n)
    ]


def run_tenmon(targets: list[Target], settings: SchedulerSettings, label: str, repeats: int
               ) -> Plan:
    t_night = time.perf_counter()
    night = night_for_date(NIGHT, SITE, settings.observe_twilight)
    t_night = time.perf_counter() - t_night
    times = []
    plan = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = plan_night(targets, night, SITE, settings)
        times.append(time.perf_counter() - t0)
    assert plan is not None
    t0 = time.perf_counter()
    violations = check_plan(plan, targets, SITE, settings)
    t_check = time.perf_counter() - t0
    print(f"tenmon [{label}] {len(targets)} targets, night {night.start:%H:%M}-{night.end:%H:%M} "
          f"UTC ({night.duration_s / 60:.0f} min, {settings.time_step_s:g} s grid)")
    print(f"  night boundaries: {t_night:.2f} s; plan time: first {times[0]:.2f} s, median of "
          f"{len(times)} {statistics.median(times):.2f} s, max {max(times):.2f} s")
    print(f"  scheduled blocks: {len(plan.scheduled)}; targets unscheduled: "
          f"{len(plan.unscheduled)}; open-shutter time {plan.exposure_time_s / 3600:.2f} h")
    print(f"  check_plan: {len(violations)} violations ({t_check:.2f} s)")
    for v in violations[:5]:
        print("   ", v)
    return plan


def run_astroplan(targets: list[Target], settings: SchedulerSettings, timeout_note: str) -> None:
    try:
        import astroplan
        from astroplan import FixedTarget, Observer
        from astroplan.constraints import (
            AirmassConstraint,
            AltitudeConstraint,
            AtNightConstraint,
            MoonSeparationConstraint,
        )
        from astroplan.scheduling import (
            ObservingBlock,
            PriorityScheduler,
            Schedule,
            Transitioner,
        )
    except ImportError:
        print("astroplan is not installed: .venv/bin/pip install astroplan")
        return
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    night = night_for_date(NIGHT, SITE, settings.observe_twilight)
    # astroplan's internals warn on every separation between frames of different origins.
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    observer = Observer(location=SITE)
    constraints = [
        AtNightConstraint.twilight_astronomical(),
        AltitudeConstraint(min=settings.min_altitude_deg * u.deg),
        AirmassConstraint(max=settings.max_airmass),
        MoonSeparationConstraint(min=settings.min_moon_separation_deg * u.deg),
    ]
    blocks = [
        ObservingBlock.from_exposures(
            FixedTarget(SkyCoord(t.ra_deg * u.deg, t.dec_deg * u.deg), name=t.name),
            t.priority, t.exposure_s * u.s, t.count, settings.readout_s * u.s)
        for t in targets
    ]
    transitioner = Transitioner(slew_rate=settings.slew_rate_deg_s * u.deg / u.s)
    scheduler = PriorityScheduler(constraints=constraints, observer=observer,
                                  transitioner=transitioner,
                                  time_resolution=settings.time_step_s * u.s)
    schedule = Schedule(Time(night.start), Time(night.end))
    scheduler(blocks, schedule)
    elapsed = time.perf_counter() - t0
    obs = [b for b in schedule.observing_blocks]
    names = {b.target.name for b in obs}
    exposure = sum(b.time_per_exposure.to_value(u.s) * b.number_exposures for b in obs)
    granted = sum((b.end_time - b.start_time).to_value(u.s) for b in obs)
    asked = sum(b.number_exposures * (b.time_per_exposure + b.readout_time).to_value(u.s)
                for b in obs)
    print(f"astroplan {astroplan.__version__} PriorityScheduler, {len(targets)} targets "
          f"{timeout_note}")
    print(f"  time: {elapsed:.1f} s; scheduled blocks: {len(obs)}; targets: {len(names)}; "
          f"open-shutter time asked {exposure / 3600:.2f} h; block time granted "
          f"{granted / 3600:.2f} h of {asked / 3600:.2f} h asked")
    # Hold astroplan's schedule to the same independent check.
    by_name = {t.name: t for t in targets}
    converted = tuple(sorted((
        ScheduledBlock(
            name=b.target.name, start=b.start_time.to_datetime(timezone=_UTC),
            end=b.end_time.to_datetime(timezone=_UTC), ra_deg=by_name[b.target.name].ra_deg,
            dec_deg=by_name[b.target.name].dec_deg, priority=by_name[b.target.name].priority,
            exposure_s=by_name[b.target.name].exposure_s, count=by_name[b.target.name].count,
            filter=None, binning=1, overhead_s=0.0)
        for b in obs), key=lambda x: x.start))
    plan = Plan(night=night, site=SITE, settings=settings, targets=tuple(targets),
                scheduled=converted, unscheduled=(), start=night.start,
                start_alt_deg=settings.park_alt_deg, start_az_deg=settings.park_az_deg)
    viol = check_plan(plan, targets, SITE, settings)
    rules: dict[str, int] = {}
    for v in viol:
        rules[v.rule] = rules.get(v.rule, 0) + 1
    print(f"  check_plan on astroplan's schedule: {len(viol)} violations {rules or ''}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="targets (default 1000)")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--astroplan-n", type=int, nargs="*", default=[100, 1000],
                    help="target counts to give astroplan (subsets of the same targets)")
    args = ap.parse_args(argv)
    targets = random_targets(args.n, args.seed)
    site_settings = SchedulerSettings(horizon_mask=MASK)
    equiv = SchedulerSettings(
        min_hour_angle_deg=-180.0, max_hour_angle_deg=180.0, settle_s=0.0, dome_rate_deg_s=1e6,
        filter_change_s=0.0,
    )
    run_tenmon(targets, site_settings, "site", args.repeats)
    for n in args.astroplan_n:
        sub = targets[:n]
        print()
        run_tenmon(sub, equiv, "astroplan-equivalent", args.repeats)
        run_astroplan(sub, equiv, "(same targets, same constraints, slew-only transitions)")
        sys.stdout.flush()
    return 0


from datetime import timezone as _tz  # noqa: E402

_UTC = _tz.utc

if __name__ == "__main__":
    raise SystemExit(main())
