"""The planner: constraints at every minute (checked independently), priorities, overheads,
reasons, cadence, re-planning on events, and a checker that does catch broken plans."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time

from tenmon.scheduler.errors import SchedulerError
from tenmon.scheduler.night import night_for_date
from tenmon.scheduler.planner import (
    TargetFailed,
    UrgentTarget,
    WeatherClose,
    check_plan,
    plan_night,
    replan,
)
from tenmon.config.services import SchedulerSettings
from tenmon.scheduler.targets import Target

SITE = EarthLocation.from_geodetic(134.3356 * u.deg, 35.0253 * u.deg, 449 * u.m)
MASK = [(0.0, 25.0), (60.0, 40.0), (120.0, 20.0), (200.0, 15.0), (300.0, 35.0)]


@pytest.fixture(scope="module")
def night():
    return night_for_date(date(2026, 11, 21), SITE)


def random_targets(n, seed, night=None, windows=False):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kw = {}
        if windows and night is not None and i % 7 == 0:
            start = night.start + timedelta(minutes=float(rng.uniform(0, 400)))
            kw = {"window_start": start, "window_end": start + timedelta(minutes=90)}
        out.append(Target(
            name=f"T{i:03d}", ra_deg=float(rng.uniform(0, 360)),
            dec_deg=float(np.degrees(np.arcsin(rng.uniform(-0.5, 1.0)))),
            priority=int(rng.integers(1, 5)), exposure_s=float(rng.choice([30, 60, 120, 300])),
            count=int(rng.integers(1, 5)), filter=str(rng.choice(["B", "V", "R"])), **kw))
    return out


def _altaz(ra, dec, when):
    t = Time(when)
    aa = SkyCoord(ra * u.deg, dec * u.deg).transform_to(AltAz(obstime=t, location=SITE))
    return float(aa.alt.deg), float(aa.az.deg)


@pytest.fixture(scope="module")
def settings():
    return SchedulerSettings(horizon_mask=MASK, min_hour_angle_deg=-75, max_hour_angle_deg=80,
                             min_moon_separation_deg=30)


@pytest.fixture(scope="module")
def base(night, settings):
    targets = random_targets(120, seed=3, night=night, windows=True)
    return targets, plan_night(targets, night, SITE, settings)


def test_plan_is_sound_by_the_independent_check(base, night, settings):
    targets, plan = base
    assert 20 < len(plan.scheduled) < len(targets)
    assert len(plan.scheduled) + len(plan.unscheduled) == len(targets)
    assert check_plan(plan, targets, SITE, settings) == []
    blocks = plan.scheduled
    assert all(a.end <= b.start for a, b in zip(blocks, blocks[1:]))
    by_name = {t.name: t for t in targets}
    for b in blocks:
        t = by_name[b.name]
        assert (b.end - b.start).total_seconds() == pytest.approx(
            t.count * (t.exposure_s + settings.readout_s))
        assert night.start <= b.start and b.end <= night.end
    # Windowed targets that were scheduled are inside their windows.
    for b in blocks:
        t = by_name[b.name]
        if t.window_start:
            assert t.window_start <= b.start and b.end <= t.window_end


def test_every_minute_of_every_block_meets_altitude_and_mask(base, settings):
    # A second, plainer look: astropy alt/az at each minute against the interpolated mask.
    _, plan = base
    for b in plan.scheduled[:: max(1, len(plan.scheduled) // 15)]:
        n = int((b.end - b.start).total_seconds() // 60)
        for k in range(n + 1):
            when = min(b.start + timedelta(minutes=k), b.end)
            alt, az = _altaz(b.ra_deg, b.dec_deg, when)
            limit = max(30.0, np.interp(az, [p[0] for p in MASK], [p[1] for p in MASK],
                                        period=360))
            assert alt >= limit - 1e-3, (b.name, when, alt, limit)


def test_transitions_cover_slew_and_dome_time(night):
    # Slow mount and dome: the transition time dominates and must appear between blocks.
    settings = SchedulerSettings(slew_rate_deg_s=0.2, dome_rate_deg_s=0.5, settle_s=5,
                                 min_moon_separation_deg=None)
    targets = [
        Target(name="east", ra_deg=60.0, dec_deg=30.0, priority=1, exposure_s=60, count=2),
        Target(name="west", ra_deg=330.0, dec_deg=10.0, priority=1, exposure_s=60, count=2),
        Target(name="north", ra_deg=20.0, dec_deg=70.0, priority=2, exposure_s=60, count=2),
    ]
    start = night.start
    short = replace(night, end=start + timedelta(hours=3))
    plan = plan_night(targets, short, SITE, settings)
    assert len(plan.scheduled) == 3
    assert check_plan(plan, targets, SITE, settings) == []
    for a, b in zip(plan.scheduled, plan.scheduled[1:]):
        alt0, az0 = _altaz(a.ra_deg, a.dec_deg, a.end)
        alt1, az1 = _altaz(b.ra_deg, b.dec_deg, b.start)
        sep = SkyCoord(az0 * u.deg, alt0 * u.deg).separation(SkyCoord(az1 * u.deg, alt1 * u.deg))
        daz = abs((az1 - az0 + 180) % 360 - 180)
        need = max(sep.deg / 0.2, daz / 0.5) + 5
        gap = (b.start - a.end).total_seconds()
        assert gap >= need - 0.5
        assert b.overhead_s == pytest.approx(need, abs=1.0)
    # The same plan with a fast telescope packs the blocks more tightly.
    fast = plan_night(targets, short, SITE, settings.model_copy(
        update={"slew_rate_deg_s": 5.0, "dome_rate_deg_s": 5.0}))
    assert sum(b.overhead_s for b in fast.scheduled) < sum(b.overhead_s for b in plan.scheduled)


def test_priority_wins_a_contested_slot(night):
    settings = SchedulerSettings(min_moon_separation_deg=None)
    window_start = night.start + timedelta(hours=3)
    kw = dict(ra_deg=40.0, dec_deg=35.0, exposure_s=600, count=2,
              window_start=window_start, window_end=window_start + timedelta(minutes=25))
    low = Target(name="a-low", priority=5, **kw)   # listed first and alphabetically first
    high = Target(name="z-high", priority=1, **kw)
    plan = plan_night([low, high], night, SITE, settings)
    assert [b.name for b in plan.scheduled] == ["z-high"]
    assert [u_.name for u_ in plan.unscheduled] == ["a-low"]
    assert "no free slot" in plan.unscheduled[0].reason


def test_reasons_for_unscheduled_targets(night):
    settings = SchedulerSettings()
    day = night.start - timedelta(hours=6)
    targets = [
        Target(name="south", ra_deg=90.0, dec_deg=-75.0, priority=1, exposure_s=60, count=1),
        Target(name="daytime", ra_deg=40.0, dec_deg=35.0, priority=1, exposure_s=60, count=1,
               window_start=day, window_end=day + timedelta(hours=1)),
        Target(name="marathon", ra_deg=40.0, dec_deg=35.0, priority=1, exposure_s=3000,
               count=20),
    ]
    plan = plan_night(targets, night, SITE, settings)
    reasons = {x.name: x.reason for x in plan.unscheduled}
    assert not plan.scheduled
    assert "altitude >= 30" in reasons["south"]
    assert "time window" in reasons["daytime"]
    assert "longest observable stretch" in reasons["marathon"]


def test_cadence_target_repeats(night):
    settings = SchedulerSettings(min_moon_separation_deg=None)
    t = Target(name="var", ra_deg=30.0, dec_deg=40.0, priority=1, exposure_s=60, count=3,
               cadence_s=3600)
    plan = plan_night([t], night, SITE, settings)
    starts = [b.start for b in plan.scheduled]
    assert len(starts) >= 4
    assert [b.visit for b in plan.scheduled] == list(range(1, len(starts) + 1))
    assert all((b - a).total_seconds() >= 3600 for a, b in zip(starts, starts[1:]))
    assert check_plan(plan, [t], SITE, settings) == []


def test_replan_weather_close_until(base, settings):
    targets, plan = base
    current = plan.scheduled[len(plan.scheduled) // 3]
    now = current.start + (current.end - current.start) / 2
    until = now + timedelta(hours=1)
    new = replan(plan, now, WeatherClose(until=until, reason="rain"))
    assert any(x.name == current.name and "interrupted by weather" in x.reason
               for x in new.unscheduled)
    assert all(b.end <= now or b.start >= until for b in new.scheduled)
    kept = [b for b in plan.scheduled if b.end <= now]
    assert new.scheduled[: len(kept)] == tuple(kept) or \
        [b.name for b in new.scheduled[: len(kept)]] == [b.name for b in kept]
    assert any(b.start >= until for b in new.scheduled)
    done = {b.name for b in kept}
    assert not any(b.name in done for b in new.scheduled if b.start >= until)
    assert check_plan(new, targets, SITE, settings) == []
    assert new.events and "weather close" in new.events[-1]
    closed = replan(plan, now, WeatherClose())
    assert all(b.end <= now for b in closed.scheduled)
    assert any("rest of the night" in x.reason for x in closed.unscheduled)


def test_replan_failed_target(base, settings):
    targets, plan = base
    current = plan.scheduled[len(plan.scheduled) // 2]
    now = current.start + timedelta(seconds=30)
    new = replan(plan, now, TargetFailed(current.name, "guide star lost"))
    assert all(b.name != current.name or b.end <= now for b in new.scheduled)
    assert any(x.name == current.name and "guide star lost" in x.reason for x in new.unscheduled)
    assert any(b.start >= now for b in new.scheduled)
    assert check_plan(new, targets, SITE, settings) == []
    with pytest.raises(SchedulerError):
        replan(plan, now, TargetFailed("nobody"))


def test_replan_urgent_target_goes_next(base, settings):
    targets, plan = base
    current = plan.scheduled[len(plan.scheduled) // 2]
    now = current.start + timedelta(seconds=30)
    # Something well placed at that hour: near the meridian.
    lst = Time(now).sidereal_time("apparent", longitude=SITE.lon).deg
    urgent = Target(name="GRB", ra_deg=float(lst % 360), dec_deg=40.0, priority=9,
                    exposure_s=60, count=5)
    new = replan(plan, now, UrgentTarget(urgent))
    after = [b for b in new.scheduled if b.start >= current.end]
    assert after[0].name == "GRB"
    assert (after[0].start - current.end).total_seconds() < after[0].overhead_s + 61
    assert current in new.scheduled  # the block in progress finishes
    assert check_plan(new, list(targets) + [urgent], SITE, settings) == []


def test_checker_catches_broken_plans(base, night, settings):
    targets, plan = base
    b = plan.scheduled
    i = len(b) // 2
    # 1. A block moved into evening twilight.
    early = replace(b[0], start=night.start - timedelta(minutes=40),
                    end=night.start - timedelta(minutes=40) + (b[0].end - b[0].start))
    bad = replace(plan, scheduled=(early,) + b[1:])
    rules = {v.rule for v in check_plan(bad, targets, SITE, settings)}
    assert {"sun_altitude", "night"} <= rules
    # 2. Two blocks overlapping, and a gap too short for the slew.
    squeezed = replace(b[i + 1], start=b[i].end - timedelta(seconds=10),
                       end=b[i].end - timedelta(seconds=10) + (b[i + 1].end - b[i + 1].start))
    rules = {v.rule for v in check_plan(replace(plan, scheduled=b[:i + 1] + (squeezed,)
                                                + b[i + 2:]), targets, SITE, settings)}
    assert "overlap" in rules
    tight = replace(b[i + 1], start=b[i].end + timedelta(seconds=2),
                    end=b[i].end + timedelta(seconds=2) + (b[i + 1].end - b[i + 1].start))
    v = check_plan(replace(plan, scheduled=b[:i + 1] + (tight,) + b[i + 2:]), targets, SITE,
                   settings)
    assert "transition" in {x.rule for x in v}
    # 3. Stricter limits than the plan was made for; a shortened block; an unknown target.
    strict = settings.model_copy(update={"min_altitude_deg": 75.0})
    assert "altitude" in {x.rule for x in check_plan(plan, targets, SITE, strict)}
    short = replace(b[i], end=b[i].end - timedelta(seconds=30))
    rules = {x.rule for x in check_plan(replace(plan, scheduled=b[:i] + (short,) + b[i + 1:]),
                                        targets, SITE, settings)}
    assert "duration" in rules
    missing = b[0].name
    others = [t for t in targets if t.name != missing]
    assert ("target", missing) in {(x.rule, x.name) for x in check_plan(plan, others, SITE,
                                                                          settings)}


def test_plan_the_rest_of_a_night(night, settings):
    targets = random_targets(60, seed=8)
    start = night.start + timedelta(hours=5, seconds=17)
    plan = plan_night(targets, night, SITE, settings, start=start)
    assert plan.scheduled and plan.start == start
    assert plan.scheduled[0].start >= start + timedelta(seconds=plan.scheduled[0].overhead_s)
    assert check_plan(plan, targets, SITE, settings) == []
    late = plan_night(targets, night, SITE, settings, start=night.end + timedelta(minutes=1))
    assert not late.scheduled and all("no time left" in x.reason for x in late.unscheduled)


def test_json_shape_and_errors(base, night):
    targets, plan = base
    d = plan.to_dict()
    assert d["night"] == "2026-11-21"
    assert set(d["scheduled"][0]) >= {"name", "start_utc", "end_utc", "ra_deg", "dec_deg"}
    assert d["scheduled"][0]["start_utc"].endswith("Z")
    assert set(d["unscheduled"][0]) == {"name", "reason"}
    with pytest.raises(SchedulerError, match="twice"):
        plan_night([targets[0], targets[0]], night, SITE)
    empty = plan_night([], night, SITE)
    assert empty.scheduled == () and empty.unscheduled == ()
    assert check_plan(empty, [], SITE) == []


def test_a_thousand_targets_plan_soundly(night):
    # Scale check of correctness (the timing is the benchmark's job: benchmarks/planner.py).
    targets = random_targets(1000, seed=6)
    settings = SchedulerSettings(horizon_mask=MASK)
    plan = plan_night(targets, night, SITE, settings)
    assert len(plan.scheduled) > 80
    assert check_plan(plan, targets, SITE, settings) == []
    used = sum((b.end - b.start).total_seconds() + b.overhead_s for b in plan.scheduled)
    assert used > 0.9 * night.duration_s  # the night is (nearly) full
