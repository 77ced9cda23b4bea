"""The one job engine of the daemon, on an injected clock, at a site and in simulated time.

The night's jobs (``jobs.night_jobs``: open at dusk, plan at the observing twilight, close
at dawn, health and weather checks) run here, pumped by the control loop's tick with the time of
the daemon's :class:`~tenmon.core.clock.Clock`: the wall clock at a site, the simulated clock in
``tenmon simulate`` and in tests. Same engine, same rules, same stored state in both.

Why not apscheduler's own scheduler: apscheduler 3.x reads the wall clock itself where it judges
jobs (``BaseScheduler._process_jobs`` and ``_real_add_job`` call ``datetime.now``, and the
executors' ``run_job`` judges the misfire grace against ``datetime.now``), with no hook to give
it another clock (apscheduler issues #33 and #293: not supported in 3.x). A simulated night
cannot follow it, and a scheduler subclass would have to copy those methods anyway. What does
serve is used as is: the triggers (``TwilightTrigger`` is an apscheduler ``BaseTrigger``, the
checks use apscheduler's ``IntervalTrigger``), which take "now" as an argument. The rules are
apscheduler's, followed to the letter (``tests/scheduler/test_sched_jobs.py`` pins them on
apscheduler itself; ``tests/night/test_night_jobs.py`` on this engine):

* the run times due since the stored next run time are coalesced into the last one
  (``coalesce=True``);
* a run later than its ``misfire_grace_time`` is dropped as missed (``None``: never too late);
* the next run time comes from the trigger; at most one run of a job at a time
  (``max_instances=1``: the job runs on the loop thread, to its end);
* the next and last run times are stored after every decision (before the job runs, so a crash
  inside it never replays it), so a restart after dawn finds the evening's open beyond its
  grace and does not replay it, while the dawn close (no grace limit) still runs once.

Jobs run on the caller's (the control loop's) thread, so a job never touches a device from
another thread. Twilight triggers compute the sun with astropy (tenths of a second): on the
given executor (a thread); the tick picks up their results. :attr:`JobEngine.running` says one
is still computing (``tenmon simulate --fast`` holds simulated time while it is, so one seed
gives one night however busy the machine).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from apscheduler.triggers.interval import IntervalTrigger

from tenmon.core.timefmt import utc_iso

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredJob:
    """A job's stored state: its definition (to notice a changed job) and run times."""

    definition: str
    next_run: datetime | None
    last_run: datetime | None


class JobStateStore(Protocol):
    """Where the engine keeps each job's state (the daemon: its database's ``night_jobs``)."""

    def load(self, job_id: str) -> StoredJob | None:
        """The stored state, or ``None`` (also when it cannot be read: the job is then
        scheduled afresh from now, which never replays a missed open)."""
        ...

    def save(self, job_id: str, state: StoredJob) -> None:
        """Store the state (must not block the loop: queue it)."""
        ...


@dataclass
class _Job:
    id: str
    trigger: Any
    grace_s: float | None
    definition: str
    next_run: datetime | None = None
    last_run: datetime | None = None
    scheduled: bool = False          # has a next run time been computed (or stored)?
    pending: Future | None = None    # a trigger computation on the executor
    pending_now: datetime | None = None


class JobEngine:
    """The jobs of ``specs`` on the clock whose time :meth:`tick` is given; see the module
    docstring.

    Args:
        specs: ``tenmon.scheduler.jobs.night_jobs(...)`` (id, action, trigger, grace).
        store: where job state is kept.
        run: ``run(job_id)`` executes a due job (on the ticking thread).
        emit: ``emit(level, kind, message, **data)``: the daemon's event recorder.
        executor: where twilight triggers are computed (a thread).
        now: the clock's time now (interval triggers are anchored on it).
    """

    def __init__(self, specs, store: JobStateStore, run: Callable[[str], None],
                 emit: Callable[..., None], executor: Executor, now: datetime):
        self.store = store
        self.run = run
        self.emit = emit
        self.executor = executor
        self._status: dict[str, Any] | None = None
        self.jobs: dict[str, _Job] = {}
        for spec in specs:
            definition = json.dumps({"action": spec.action, "trigger": _trigger_state(spec.trigger),
                                     "grace": spec.misfire_grace_time}, sort_keys=True)
            trigger = spec.trigger
            if isinstance(trigger, IntervalTrigger):
                # apscheduler anchors an interval trigger at its creation (first run one
                # interval later) on the wall clock; here it is anchored on the engine's clock
                trigger = IntervalTrigger(seconds=trigger.interval.total_seconds(),
                                          start_date=now + trigger.interval, timezone=timezone.utc)
            job = _Job(spec.id, trigger, spec.misfire_grace_time, definition)
            row = store.load(spec.id)
            if row is not None and row.definition == definition:
                # kept with its stored next run time: the misfire rules judge what it missed
                job.next_run = row.next_run
                job.last_run = row.last_run
                job.scheduled = True
            else:
                if row is not None:
                    log.info("job %s changed: scheduled afresh from now", spec.id)
                self._save(job)
            self.jobs[spec.id] = job

    def next_run(self, job_id: str) -> datetime | None:
        """The next run time of a job (``None`` before it is known)."""
        return self.jobs[job_id].next_run

    @property
    def computing(self) -> bool:
        """A trigger computation has been started and its result not yet applied."""
        return any(j.pending is not None for j in self.jobs.values())

    @property
    def running(self) -> bool:
        """A trigger computation is still running on the executor (one that finished is
        applied by the next tick)."""
        return any(j.pending is not None and not j.pending.done() for j in self.jobs.values())

    def tick(self, now: datetime) -> None:
        """Start the trigger computations that are due; apply those that finished (running
        the jobs they make due)."""
        for job in self.jobs.values():
            if job.pending is not None:
                if not job.pending.done():
                    continue
                fut, job.pending = job.pending, None
                try:
                    run_times, nxt = fut.result()
                except Exception as exc:  # noqa: BLE001 - a trigger bug is recorded, then retried
                    self.emit("error", "jobs", f"job {job.id}: cannot compute its run times: {exc}")
                    continue
                job.scheduled = True
                self._decide(job, run_times, nxt, job.pending_now or now)
            elif not job.scheduled:
                job.pending_now = now
                job.pending = self._submit(_first_run, job.trigger, now)
            elif job.next_run is not None and job.next_run <= now:
                job.pending_now = now
                job.pending = self._submit(_run_times, job.trigger, job.next_run, now)

    def _submit(self, fn, trigger, *args) -> Future:
        """Twilight triggers on the executor; interval triggers are arithmetic: at once, as a
        finished future."""
        if isinstance(trigger, IntervalTrigger):
            fut: Future = Future()
            try:
                fut.set_result(fn(trigger, *args))
            except Exception as exc:  # noqa: BLE001 - reported through the future
                fut.set_exception(exc)
            return fut
        return self.executor.submit(fn, trigger, *args)

    def _decide(self, job: _Job, run_times: list[datetime], nxt: datetime | None,
                now: datetime) -> None:
        if run_times:
            # apscheduler (BaseScheduler._process_jobs, executors' run_job): coalesce to the
            # last run time, then judge it against the misfire grace
            run_time = run_times[-1]
            late = (now - run_time).total_seconds()
            if job.grace_s is not None and late > job.grace_s:
                self.emit("warning", "jobs", f"job {job.id} missed its run at "
                          f"{utc_iso(run_time)} by {late:.0f} s (grace {job.grace_s} s): "
                          "not run", job=job.id)
            else:
                if len(run_times) > 1:
                    log.info("job %s: %d missed runs coalesced into one", job.id, len(run_times))
                job.last_run = run_time
                job.next_run = nxt
                self._save(job)  # before running: a crash inside never replays it
                try:
                    self.run(job.id)
                except Exception as exc:  # noqa: BLE001 - like apscheduler: log, keep scheduling
                    log.exception("job %s failed", job.id)
                    self.emit("error", "jobs", f"job {job.id} failed: {exc}")
        job.next_run = nxt
        self._save(job)

    def _save(self, job: _Job) -> None:
        self._status = None
        self.store.save(job.id, StoredJob(job.definition, job.next_run, job.last_run))

    def status(self) -> dict[str, Any]:
        """Job id -> ``next_run_utc``, ``last_run_utc``."""
        if self._status is None:
            self._status = {j.id: {"next_run_utc": utc_iso(j.next_run) if j.next_run else None,
                                   "last_run_utc": utc_iso(j.last_run) if j.last_run else None}
                            for j in self.jobs.values()}
        return self._status


def _first_run(trigger, now: datetime) -> tuple[list[datetime], datetime | None]:
    return [], trigger.get_next_fire_time(None, now)


def _run_times(trigger, next_run: datetime, now: datetime
               ) -> tuple[list[datetime], datetime | None]:
    """apscheduler's ``Job._get_run_times`` and the next run time after them."""
    run_times: list[datetime] = []
    t: datetime | None = next_run
    while t is not None and t <= now and len(run_times) < 10000:
        run_times.append(t)
        t = trigger.get_next_fire_time(t, now)
    return run_times, t


def _trigger_state(trigger) -> Any:
    if isinstance(trigger, IntervalTrigger):
        return {"interval_s": trigger.interval.total_seconds()}
    return trigger.__getstate__()


__all__ = ["JobEngine", "JobStateStore", "StoredJob"]
