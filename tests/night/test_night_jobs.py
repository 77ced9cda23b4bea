"""The night's jobs on the daemon's one job engine (``scheduler.engine.JobEngine``, the same at a
site and in simulated time): apscheduler's misfire grace, coalescing and stored next run times,
driven here by a simulated clock."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import astropy.units as u
import pytest
from astropy.coordinates import EarthLocation

from tenmon.core.clock import FakeClock
from tenmon.daemon.services.night import NIGHT_LOG_SCHEMA, StoreJobState
from tenmon.daemon.store import Store
from tenmon.scheduler.engine import JobEngine
from tenmon.scheduler.jobs import JOB_CLOSE, JOB_HEALTH, JOB_IDS, JOB_OPEN, JOB_PLAN, night_jobs
from tenmon.scheduler.night import night_for_date
from tenmon.config.services import JobSettings, SchedulerSettings

SITE = EarthLocation.from_geodetic(134.3356 * u.deg, 35.0253 * u.deg, 449 * u.m)
SETTINGS = SchedulerSettings(jobs=JobSettings(health_interval_s=3600, weather_interval_s=3600))
NAUTICAL = night_for_date(datetime(2026, 11, 21).date(), SITE, "nautical")
ASTRO = night_for_date(datetime(2026, 11, 21).date(), SITE, "astronomical")


class Recorder:
    def __init__(self):
        self.ran: list[tuple[str, datetime]] = []
        self.events: list[tuple[str, str]] = []
        self.clock: FakeClock | None = None

    def run(self, job_id: str) -> None:
        self.ran.append((job_id, self.clock.now()))

    def emit(self, level, kind, message, **data) -> None:
        self.events.append((level, message))


@pytest.fixture
def calc():
    ex = ThreadPoolExecutor(max_workers=1)
    yield ex
    ex.shutdown(wait=True)


def _jobs(tmp_path, clock, rec, calc, settings=SETTINGS):
    store = Store(tmp_path / "state.sqlite")
    store.add_schema(NIGHT_LOG_SCHEMA)
    rec.clock = clock
    return JobEngine(night_jobs(SITE, settings), StoreJobState(store), rec.run, rec.emit,
                     calc, clock.now()), store


def _settle(jobs, clock):
    """Tick until no trigger computation is running (they run on the worker thread)."""
    for _ in range(2000):
        jobs.tick(clock.now())
        if not jobs.computing:
            jobs.tick(clock.now())
            if not jobs.computing:
                return
        time.sleep(0.005)
    raise AssertionError("trigger computations did not finish")


def _run(jobs, clock, until, step_s=30.0):
    while clock.now() < until:
        clock.advance(step_s)
        _settle(jobs, clock)


def test_a_night_fires_each_twilight_job_once(tmp_path, calc):
    clock = FakeClock(datetime(2026, 11, 21, 6, 0, tzinfo=timezone.utc))
    rec = Recorder()
    jobs, _ = _jobs(tmp_path, clock, rec, calc)
    _settle(jobs, clock)
    assert abs((jobs.next_run(JOB_OPEN) - NAUTICAL.start).total_seconds()) < 2
    assert abs((jobs.next_run(JOB_PLAN) - ASTRO.start).total_seconds()) < 2
    assert abs((jobs.next_run(JOB_CLOSE) - NAUTICAL.end).total_seconds()) < 2
    _run(jobs, clock, NAUTICAL.end + timedelta(minutes=10), step_s=60.0)
    ids = [j for j, _ in rec.ran if j in (JOB_OPEN, JOB_PLAN, JOB_CLOSE)]
    # the crossing finder is good to ~1 s, so a twilight job may find "the same" crossing a few
    # seconds later right after firing (NightOps' actions are idempotent within an hour); it
    # never fires a third time and never runs before its twilight
    for jid, when in ((JOB_OPEN, NAUTICAL.start), (JOB_PLAN, ASTRO.start),
                      (JOB_CLOSE, NAUTICAL.end)):
        times = [t for j, t in rec.ran if j == jid]
        assert 1 <= len(times) <= 2, (jid, times)
        assert all(t >= when and (t - when).total_seconds() < 180 for t in times)
    assert ids.index(JOB_OPEN) < ids.index(JOB_PLAN) < ids.index(JOB_CLOSE)
    assert jobs.next_run(JOB_OPEN) > NAUTICAL.start + timedelta(hours=23)


def test_restart_after_dawn_does_not_replay_the_open(tmp_path, calc):
    clock = FakeClock(datetime(2026, 11, 21, 6, 0, tzinfo=timezone.utc))
    rec = Recorder()
    jobs, store = _jobs(tmp_path, clock, rec, calc)
    _settle(jobs, clock)
    assert rec.ran == []
    store.close()
    # the daemon is down from before dusk until after dawn
    clock.set(NAUTICAL.end + timedelta(minutes=40))
    rec2 = Recorder()
    jobs2, store2 = _jobs(tmp_path, clock, rec2, calc)
    _settle(jobs2, clock)
    ran = [j for j, _ in rec2.ran]
    assert JOB_OPEN not in ran and JOB_PLAN not in ran
    assert ran.count(JOB_CLOSE) == 1  # closing late is always safe: run once
    missed = [m for lvl, m in rec2.events if "missed" in m]
    assert any(JOB_OPEN in m for m in missed) and any(JOB_PLAN in m for m in missed)
    assert jobs2.next_run(JOB_OPEN) > clock.now()  # tomorrow's dusk
    # the decision is stored: a second restart does not run the close again
    store2.close()
    rec3 = Recorder()
    jobs3, _ = _jobs(tmp_path, clock, rec3, calc)
    _settle(jobs3, clock)
    assert [j for j, _ in rec3.ran if j != JOB_HEALTH and j != "check.weather"] == []


def test_restart_within_grace_runs_the_open_once_and_coalesces(tmp_path, calc):
    clock = FakeClock(datetime(2026, 11, 21, 6, 0, tzinfo=timezone.utc))
    rec = Recorder()
    settings = SchedulerSettings(jobs=JobSettings(health_interval_s=60, weather_interval_s=3600,
                                                  check_misfire_grace_s=120))
    jobs, store = _jobs(tmp_path, clock, rec, calc, settings)
    _settle(jobs, clock)
    store.close()
    clock.set(NAUTICAL.start + timedelta(minutes=20))  # 20 min late: within the 30 min grace
    rec2 = Recorder()
    jobs2, _ = _jobs(tmp_path, clock, rec2, calc, settings)
    _settle(jobs2, clock)
    ran = [j for j, _ in rec2.ran]
    assert ran.count(JOB_OPEN) == 1 and JOB_PLAN not in ran
    # ~170 missed health checks while down collapse into one run
    assert ran.count(JOB_HEALTH) == 1
    assert jobs2.next_run(JOB_HEALTH) > clock.now()


def test_a_changed_job_is_scheduled_afresh(tmp_path, calc):
    clock = FakeClock(datetime(2026, 11, 21, 6, 0, tzinfo=timezone.utc))
    rec = Recorder()
    jobs, store = _jobs(tmp_path, clock, rec, calc)
    _settle(jobs, clock)
    store.close()
    clock.set(NAUTICAL.end + timedelta(minutes=40))
    later = SchedulerSettings(open_twilight="civil", jobs=SETTINGS.jobs)
    rec2 = Recorder()
    jobs2, _ = _jobs(tmp_path, clock, rec2, calc, later)
    _settle(jobs2, clock)
    # night.open changed (civil): it is a new job, scheduled from now, nothing replayed
    assert JOB_OPEN not in [j for j, _ in rec2.ran]
    assert not any(JOB_OPEN in m for _, m in rec2.events)
    assert jobs2.next_run(JOB_OPEN) > clock.now()


def test_the_jobs_and_their_stored_state(tmp_path, calc):
    """What a site's job store held under apscheduler (every job, its grace, its next run time
    kept across a restart) is the engine's state in the daemon's database."""
    clock = FakeClock(datetime(2026, 11, 21, 6, 0, tzinfo=timezone.utc))
    rec = Recorder()
    jobs, store = _jobs(tmp_path, clock, rec, calc)
    _settle(jobs, clock)
    assert set(jobs.jobs) == set(JOB_IDS) and set(jobs.status()) == set(JOB_IDS)
    assert jobs.jobs[JOB_OPEN].grace_s == SETTINGS.jobs.open_misfire_grace_s
    assert jobs.jobs[JOB_CLOSE].grace_s is None
    first = jobs.next_run(JOB_OPEN)
    assert first is not None
    store.close()
    clock.advance(60.0)
    again, _ = _jobs(tmp_path, clock, Recorder(), calc)  # kept with its stored next run time
    # (stored to the millisecond, as every time in the database)
    assert abs((again.next_run(JOB_OPEN) - first).total_seconds()) < 1e-3
