"""The night's jobs: a twilight trigger, the job table, and their apscheduler 3.x wiring.

This module owns *when* the night's jobs run; the daemon owns what they *do*. The daemon runs
them on its one job engine (``tenmon.scheduler.engine.JobEngine``, on the daemon's injected
clock, at a site as in simulated time) from :func:`night_jobs`, with apscheduler's trigger
objects and apscheduler's misfire and coalescing rules. :func:`build_scheduler` and
:func:`register_night_jobs` put the same jobs in apscheduler's own (wall-clock) scheduler with a
persistent SQLite job store, job functions given as import paths (``"package.module:function"``,
called with no arguments) in a :class:`NightActions`; ``tests/scheduler/test_sched_jobs.py``
pins apscheduler's rules there, which the engine follows. Job ids (stable, for the daemon's API
and logs):

============== ======================================= ===================================
id             when                                    calls
============== ======================================= ===================================
night.open     dusk at ``open_twilight``               ``actions.open_if_safe``
night.plan     dusk at ``observe_twilight``            ``actions.run_plan``
night.close    dawn at ``close_twilight``              ``actions.close``
check.health   every ``jobs.health_interval_s``        ``actions.check_health``
check.weather  every ``jobs.weather_interval_s``       ``actions.check_weather``
============== ======================================= ===================================

Every job has ``coalesce=True`` (a backlog of missed runs collapses into one) and
``max_instances=1``. Misfire grace (``SchedulerSettings.jobs``): a run later than its grace is
dropped, so a daemon restarted after dawn does *not* replay the evening's open (nor the plan);
closing has no grace limit by default, because closing late is always safe. ``open_if_safe`` must
itself check safety (weather, health) before opening: the job only says "it is dark enough now".

Use::

    scheduler = build_scheduler("/var/lib/tenmon/jobs.sqlite", settings)
    scheduler.start(paused=True)            # job store open, nothing runs yet
    register_night_jobs(scheduler, actions, site, settings)
    scheduler.resume()                      # missed runs are judged now: grace, coalescing
    ...
    shutdown_scheduler(scheduler)           # not scheduler.shutdown(): see its docstring
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import obj_to_ref, ref_to_obj

from tenmon.core import offline
from tenmon.core.errors import ConfigError
from tenmon.scheduler.errors import SchedulerError
from tenmon.scheduler.night import next_sun_crossing, twilight_altitude
from tenmon.config.services import SchedulerSettings

offline.configure()

import astropy.units as u  # noqa: E402
from astropy.coordinates import EarthLocation  # noqa: E402

log = logging.getLogger(__name__)

JOB_OPEN = "night.open"
JOB_PLAN = "night.plan"
JOB_CLOSE = "night.close"
JOB_HEALTH = "check.health"
JOB_WEATHER = "check.weather"
#: Every job id this module registers.
JOB_IDS: tuple[str, ...] = (JOB_OPEN, JOB_PLAN, JOB_CLOSE, JOB_HEALTH, JOB_WEATHER)

# Consecutive dusks are ~24 h apart; searching from one hour after the previous fire time can
# never find that same crossing again (the crossing finder is accurate to ~1 s, not exactly).
_AFTER_PREVIOUS = timedelta(hours=1)


class TwilightTrigger(BaseTrigger):
    """Fires at every dusk (sun setting through ``twilight``) or dawn (rising) at a site.

    Args:
        event: ``"dusk"`` or ``"dawn"``.
        twilight: ``"sunset"``, ``"civil"``, ``"nautical"``, ``"astronomical"`` or degrees.
        lat_deg, lon_deg, elev_m: the site (plain numbers, so the trigger pickles small).
        offset_s: seconds added to each crossing (negative: before it).

    Raises:
        ValueError: unknown event or twilight.
    """

    def __init__(self, event: Literal["dusk", "dawn"], twilight: str | float, *, lat_deg: float,
                 lon_deg: float, elev_m: float = 0.0, offset_s: float = 0.0):
        if event not in ("dusk", "dawn"):
            raise ValueError(f"twilight trigger event must be 'dusk' or 'dawn', got {event!r}")
        twilight_altitude(twilight)  # validates the name
        self.event = event
        self.twilight = twilight
        self.lat_deg = float(lat_deg)
        self.lon_deg = float(lon_deg)
        self.elev_m = float(elev_m)
        self.offset_s = float(offset_s)

    @classmethod
    def at_site(cls, event: Literal["dusk", "dawn"], twilight: str | float, site: EarthLocation,
                offset_s: float = 0.0) -> TwilightTrigger:
        """The trigger for an astropy ``EarthLocation``."""
        return cls(event, twilight, lat_deg=float(site.lat.deg), lon_deg=float(site.lon.deg),
                   elev_m=float(site.height.to_value(u.m)), offset_s=offset_s)

    @property
    def site(self) -> EarthLocation:
        return EarthLocation.from_geodetic(self.lon_deg * u.deg, self.lat_deg * u.deg,
                                           self.elev_m * u.m)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime
                           ) -> datetime | None:
        """The first dusk/dawn (plus offset) after ``now``, or after the previous fire time when
        catching up on missed runs (as apscheduler's cron trigger does); None in polar day or
        night (apscheduler then drops the job)."""
        if previous_fire_time is not None:
            start = min(now, previous_fire_time + _AFTER_PREVIOUS)
        else:
            start = now
        start = start.astimezone(timezone.utc)
        crossing = next_sun_crossing(
            start - timedelta(seconds=self.offset_s), self.site, twilight_altitude(self.twilight),
            rising=self.event == "dawn",
        )
        if crossing is None:
            log.warning("no %s at %s twilight within 36 h of %s at latitude %.3f", self.event,
                        self.twilight, start.isoformat(), self.lat_deg)
            return None
        return crossing + timedelta(seconds=self.offset_s)

    def __getstate__(self) -> dict[str, Any]:
        return {"version": 1, "event": self.event, "twilight": self.twilight,
                "lat_deg": self.lat_deg, "lon_deg": self.lon_deg, "elev_m": self.elev_m,
                "offset_s": self.offset_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("version", 1) > 1:
            raise ValueError(f"TwilightTrigger state version {state['version']} is newer than 1")
        self.event = state["event"]
        self.twilight = state["twilight"]
        self.lat_deg = state["lat_deg"]
        self.lon_deg = state["lon_deg"]
        self.elev_m = state["elev_m"]
        self.offset_s = state["offset_s"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TwilightTrigger) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.__getstate__().items())))

    def __str__(self) -> str:
        offset = f" {self.offset_s:+g} s" if self.offset_s else ""
        return f"{self.event} at {self.twilight} twilight{offset}"

    def __repr__(self) -> str:
        return (f"<TwilightTrigger ({self}) at lat {self.lat_deg:.4f} lon {self.lon_deg:.4f} "
                f"elev {self.elev_m:g} m>")


@dataclass(frozen=True)
class NightActions:
    """The daemon's job functions as import paths ``"package.module:function"`` (or module-level
    callables, converted to such paths); each is called with no arguments from a worker thread
    (``BackgroundScheduler``) or the event loop (``AsyncIOScheduler``, coroutines allowed).

    * ``open_if_safe``: it is dark enough: open the slit and cover if weather and health allow.
    * ``run_plan``: plan the night (or the rest of it) and start executing it.
    * ``close``: dawn: stop observing, reach the safe state.
    * ``check_health``: device and daemon health check.
    * ``check_weather``: read the weather sensors; close if unsafe.
    """

    open_if_safe: Any
    run_plan: Any
    close: Any
    check_health: Any
    check_weather: Any

    def refs(self) -> dict[str, str]:
        """Field name -> import path; every path is checked to resolve.

        Raises:
            ConfigError: a path does not name an importable callable.
        """
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            ref = value if isinstance(value, str) else _to_ref(f.name, value)
            try:
                obj = ref_to_obj(ref)
            except (ImportError, LookupError, ValueError, TypeError) as exc:
                raise ConfigError(f"job function {f.name} = {ref!r} cannot be imported: {exc}",
                                  [(f.name, None, str(exc))]) from None
            if not callable(obj):
                raise ConfigError(f"job function {f.name} = {ref!r} is not callable",
                                  [(f.name, None, "not callable")])
            out[f.name] = ref
        return out


def _to_ref(name: str, obj: Any) -> str:
    try:
        return obj_to_ref(obj)
    except ValueError as exc:
        raise ConfigError(f"job function {name} must be a module-level function so the job "
                          f"store can name it: {exc}", [(name, None, str(exc))]) from None


def build_scheduler(
    jobstore_path: str | Path,
    settings: SchedulerSettings | None = None,
    *,
    kind: Literal["background", "asyncio"] = "background",
) -> BaseScheduler:
    """A scheduler (not started) with a persistent SQLite job store and tenmon's job defaults
    (``coalesce=True``, ``max_instances=1``, ``misfire_grace_time`` from the settings, UTC).

    Args:
        jobstore_path: the SQLite file of the job store (created if missing).
        settings: grace times; defaults if None.
        kind: ``"background"`` (a thread) or ``"asyncio"`` (start it inside the event loop).

    Raises:
        ValueError: unknown kind.
    """
    settings = settings or SchedulerSettings()
    path = Path(jobstore_path)
    store = SQLAlchemyJobStore(url=f"sqlite:///{path}", engine_options={
        "connect_args": {"timeout": 10}})
    options: dict[str, Any] = {
        "jobstores": {"default": store},
        "job_defaults": {
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.jobs.check_misfire_grace_s,
        },
        "timezone": timezone.utc,
    }
    if kind == "background":
        return BackgroundScheduler(**options)
    if kind == "asyncio":
        return AsyncIOScheduler(**options)
    raise ValueError(f"unknown scheduler kind {kind!r}; use 'background' or 'asyncio'")


def shutdown_scheduler(scheduler: BaseScheduler, *, wait: bool = True) -> None:
    """Stop a scheduler from :func:`build_scheduler` without touching its stored jobs.

    apscheduler 3.x's ``shutdown()`` wakes the scheduler thread, which then runs one more round
    of due jobs *after* the executors are shut down: those runs fail to submit but their next
    run times still advance in the job store, so a daemon stopped while paused (or at the very
    moment a job falls due) would silently lose, say, the dawn close. Detaching the job store
    first leaves the stored state for the next start to judge.

    Args:
        wait: wait for running jobs to finish.
    """
    if scheduler.state == STATE_STOPPED:
        return
    try:
        scheduler.remove_jobstore("default", shutdown=True)
    except KeyError:
        pass
    scheduler.shutdown(wait=wait)


@dataclass(frozen=True)
class JobSpec:
    """One night job as the job engine (``scheduler.engine``) runs it: ``action`` names the
    ``NightActions`` field the daemon does when it fires."""

    id: str
    action: str
    trigger: BaseTrigger
    misfire_grace_time: float | None
    name: str


@dataclass(frozen=True)
class _Spec:
    id: str
    func: str
    trigger: BaseTrigger
    misfire_grace_time: float | None
    name: str


def night_jobs(site: EarthLocation, settings: SchedulerSettings | None = None) -> list[JobSpec]:
    """The night's jobs (the table in the module docstring): what the daemon's job engine runs
    and what :func:`register_night_jobs` registers in an apscheduler scheduler."""
    settings = settings or SchedulerSettings()
    j = settings.jobs
    return [
        JobSpec(JOB_OPEN, "open_if_safe",
                TwilightTrigger.at_site("dusk", settings.open_twilight, site),
                j.open_misfire_grace_s, f"open if safe at {settings.open_twilight} dusk"),
        JobSpec(JOB_PLAN, "run_plan",
                TwilightTrigger.at_site("dusk", settings.observe_twilight, site),
                j.plan_misfire_grace_s, f"run the plan at {settings.observe_twilight} dusk"),
        JobSpec(JOB_CLOSE, "close",
                TwilightTrigger.at_site("dawn", settings.close_twilight, site),
                j.close_misfire_grace_s, f"close at {settings.close_twilight} dawn"),
        JobSpec(JOB_HEALTH, "check_health",
                IntervalTrigger(seconds=j.health_interval_s, timezone=timezone.utc),
                j.check_misfire_grace_s, "health check"),
        JobSpec(JOB_WEATHER, "check_weather",
                IntervalTrigger(seconds=j.weather_interval_s, timezone=timezone.utc),
                j.check_misfire_grace_s, "weather check"),
    ]


def night_job_specs(actions: NightActions, site: EarthLocation,
                    settings: SchedulerSettings | None = None) -> list[_Spec]:
    """The jobs :func:`register_night_jobs` would register (for inspection and tests): those of
    :func:`night_jobs` with the action's import path as the function."""
    refs = actions.refs()
    return [_Spec(s.id, refs[s.action], s.trigger, s.misfire_grace_time, s.name)
            for s in night_jobs(site, settings)]


def register_night_jobs(
    scheduler: BaseScheduler,
    actions: NightActions,
    site: EarthLocation,
    settings: SchedulerSettings | None = None,
) -> dict[str, Job]:
    """Make the scheduler's job store hold exactly the night's jobs.

    A stored job whose function, trigger and options are unchanged is kept *with its stored next
    run time*, so apscheduler's own misfire logic decides what a restart runs: within grace it
    runs once (coalesced), beyond grace it is dropped and the next dusk/dawn is scheduled. A job
    whose definition changed is replaced and scheduled afresh from now.

    Args:
        scheduler: started, preferably paused (``scheduler.start(paused=True)``) so nothing runs
            before the jobs are in place.
        actions: the daemon's job functions.
        site: the observatory.
        settings: twilights, intervals and grace times; defaults if None.

    Returns:
        Job id -> the job as stored.

    Raises:
        SchedulerError: the scheduler has not been started (its job store is not open yet).
        ConfigError: an action does not resolve to a callable.
    """
    if scheduler.state == STATE_STOPPED:
        raise SchedulerError("start the scheduler (paused) before registering the night's jobs: "
                             "its job store is not open yet")
    out: dict[str, Job] = {}
    for spec in night_job_specs(actions, site, settings):
        existing = scheduler.get_job(spec.id)
        if existing is not None and _same(existing, spec):
            log.info("keeping job %s (next run %s)", spec.id, existing.next_run_time)
            out[spec.id] = existing
            continue
        job = scheduler.add_job(
            spec.func, trigger=spec.trigger, id=spec.id, name=spec.name, replace_existing=True,
            misfire_grace_time=spec.misfire_grace_time, coalesce=True, max_instances=1,
        )
        log.info("%s job %s: %s", "replaced" if existing else "added", spec.id, spec.trigger)
        out[spec.id] = scheduler.get_job(spec.id) or job
    return out


def _same(job: Job, spec: _Spec) -> bool:
    if job.func_ref != spec.func or job.misfire_grace_time != spec.misfire_grace_time:
        return False
    if not job.coalesce or job.max_instances != 1:
        return False
    if isinstance(spec.trigger, TwilightTrigger):
        return job.trigger == spec.trigger
    if isinstance(spec.trigger, IntervalTrigger) and isinstance(job.trigger, IntervalTrigger):
        return job.trigger.interval == spec.trigger.interval
    return False
