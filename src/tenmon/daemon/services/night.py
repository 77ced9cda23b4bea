"""Night operations in the daemon: the night's jobs, planning, the sequencer and the frame service.

``install_night_operations(obs, config)`` wires everything into an :class:`Observatory` through
its extension points (a tick hook, a stop hook, a ``night`` status section) and returns the
:class:`NightOps`.

When things happen is decided by the night's jobs of ``tenmon.scheduler.jobs`` (open if safe at
dusk, run the plan at the observing twilight, close at dawn, health and weather checks), with
their twilight triggers, misfire grace, coalescing and ``max_instances=1``, on the one job engine
(``tenmon.scheduler.engine.JobEngine``) pumped by the tick with the observatory's clock: the wall
clock at a site, the simulated clock in simulated mode; the same engine and rules in both. A job
runs on the loop thread, so it never touches a device from another thread. Next and last run
times are stored in the database (``night_jobs``) after every decision, so a restart after dawn
finds the evening's open (and plan) beyond their grace and does not replay them, while the dawn
close (no grace limit) still runs once.

Planning (``plan_night``/``replan``: a second or two of astropy) and the triggers' sun
computations run on a worker thread; the tick only picks up their results, so the control loop
never waits for them. A restart in the middle of the night resumes it: the night's state is
stored, the rest of the night is planned again from the target queue (observed targets are
marked there), the start-up reconcile closes what was open, and the sequencer reopens when safe.
"""

from __future__ import annotations

import collections
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from tenmon.config.sections import section
from tenmon.daemon import device_factory
from tenmon.daemon.dome_geometry import dome_azimuth_radec, slit_transmission
from tenmon.config.services import (CameraSettings, DomeGeometry, FrameWorkerSettings,
                                    NightSettings, SchedulerSettings)
from tenmon.daemon.services.frames import FrameJob, FrameService, default_worker_settings
from tenmon.daemon.schema import NIGHT_LOG_SCHEMA
from tenmon.daemon.services.sequencer import Phase, Sequencer
from tenmon.core.timefmt import parse_utc, utc_iso
from tenmon.core.errors import ConfigError, DeviceError, StorageError, TenmonError
from tenmon.scheduler.engine import JobEngine, StoredJob
from tenmon.scheduler.jobs import night_jobs
from tenmon.scheduler.night import local_night_date, twilight_altitude
from tenmon.scheduler import queue as target_queue
from tenmon.scheduler.queue import TargetQueue
from tenmon.config.vision import CatalogSettings, PipelineSettings, SolverSettings

log = logging.getLogger(__name__)


class NightError(TenmonError):
    """Night operations cannot be set up (names the setting and the problem)."""


# ---------------------------------------------------------------------------- job state

class StoreJobState:
    """The job engine's state in the daemon's database (table ``night_jobs``): read at start,
    written through the store's writer (never blocks the loop)."""

    def __init__(self, store):
        self.store = store

    def load(self, job_id: str) -> StoredJob | None:
        try:
            rows = self.store.query("SELECT definition, next_run_utc, last_run_utc FROM "
                                    "night_jobs WHERE id = ?", (job_id,))
        except StorageError as exc:
            log.warning("job %s: stored run times unreadable (%s): scheduled afresh", job_id,
                        exc)
            return None
        if not rows:
            return None
        row = rows[0]
        return StoredJob(row["definition"], _parse(row["next_run_utc"]),
                         _parse(row["last_run_utc"]))

    def save(self, job_id: str, state: StoredJob) -> None:
        self.store.execute(
            "INSERT INTO night_jobs (id, definition, next_run_utc, last_run_utc) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET definition = excluded.definition, "
            "next_run_utc = excluded.next_run_utc, last_run_utc = excluded.last_run_utc",
            (job_id, state.definition, utc_iso(state.next_run) if state.next_run else None,
             utc_iso(state.last_run) if state.last_run else None), what=f"night job {job_id}")


def _parse(text: str | None) -> datetime | None:
    return parse_utc(text) if text else None


class _NoJobs:
    """``[night] enabled = false``: no night jobs at all."""

    running = False

    def next_run(self, job_id: str) -> datetime | None:  # noqa: ARG002
        return None

    def tick(self, now: datetime) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {}


# ---------------------------------------------------------------------------- NightOps

class NightOps:
    """Everything of the night, driven by the observatory's tick. Built by
    :func:`install_night_operations`."""

    def __init__(self, obs, *, settings: NightSettings, scheduler: SchedulerSettings,
                 geometry: DomeGeometry, camera_settings: CameraSettings, job: FrameJob,
                 worker_settings: FrameWorkerSettings, executor=None, autofocus=None):
        from tenmon.core import offline

        offline.configure()
        import astropy.units as u
        from astropy.coordinates import EarthLocation

        self.obs = obs
        self.settings = settings
        self.scheduler_settings = scheduler
        self.geometry = geometry
        self.camera_settings = camera_settings
        site = obs.config.site
        self.location = EarthLocation.from_geodetic(site.longitude_deg * u.deg,
                                                    site.latitude_deg * u.deg,
                                                    site.elevation_m * u.m)
        obs.store.add_schema(NIGHT_LOG_SCHEMA)
        obs.store.add_schema(target_queue.SCHEMA)
        self._queue: TargetQueue | None = None
        if settings.targets_file is not None:
            from tenmon.scheduler.targets import load_targets

            targets = load_targets(settings.targets_file)  # a bad file fails the start, as before
            now = obs.clock.now()
            fut = obs.store.submit(lambda c: target_queue.add_rows_in(c, targets, replace=True,
                                                                      now=now),
                                   what=f"targets from {settings.targets_file}")
            fut.add_done_callback(_log_failure(f"queueing {settings.targets_file}"))
            obs.emit("info", "night", f"queued {len(targets)} target(s) from "
                     f"{settings.targets_file}")
        data_dir = Path(obs.config.paths.data_dir)
        frames_dir = Path(obs.config.paths.frames_dir or data_dir / "frames")
        self.calc = ThreadPoolExecutor(max_workers=1, thread_name_prefix="night-calc")
        self.frames = FrameService(obs, frames_dir=frames_dir,
                                   products_dir=obs.config.paths.products, job=job,
                                   settings=settings.intake,
                                   worker_settings=worker_settings, executor=executor)
        self.focuser = self._make_device("focuser", obs.config.focuser)
        self.filter_wheel = self._make_device("filter_wheel", obs.config.filter_wheel)
        self.camera = self._make_camera(frames_dir)
        self.sequencer = Sequencer(
            obs, camera=self.camera, geometry=geometry, settings=settings.sequencer,
            centering=job.solver.centering,
            log_event=self.log_event, on_block_done=self._block_done,
            on_block_failed=self._block_failed, on_weather_close=self._weather_close,
            storage=obs.storage)
        self.sequencer.open_twilight_alt_deg = twilight_altitude(scheduler.open_twilight)
        self.sequencer.focuser = self.focuser
        self.sequencer.filter_wheel = self.filter_wheel
        self.autofocus = None
        if self.focuser is not None and self.camera is not None:
            from tenmon.daemon.services.autofocus import AutofocusService
            from tenmon.config.services import AutofocusSettings

            af = section(obs.config, "autofocus", AutofocusSettings, autofocus)
            if af.enabled:
                self.autofocus = AutofocusService(af, self.focuser, self.camera, obs.clock)
                self.sequencer.autofocus = self.autofocus
        self.sequencer.frame_service = self.frames
        self.frames.context_for = self.sequencer.context_for
        self.frames.pier_side_for = self.sequencer.pier_side
        self.frames.listeners.append(self.sequencer.on_frame)
        self.archive_sink = None  # [archive] enabled: the hook that archives the frames
        self._actions: collections.deque[str] = collections.deque()
        self._last_action: dict[str, datetime] = {}
        self._night_state: dict[str, Any] = dict(obs.store.get_state("night", {}) or {})
        self._pending_count: tuple[float, int] | None = None  # (clock, pending targets)
        self._plan_future: Future | None = None
        self._plan_kind = ""
        self._health_key: tuple = ()
        self._last_verdict: bool | None = None
        specs = night_jobs(self.location, scheduler)
        self._action_of_job = {spec.id: spec.action for spec in specs}
        if not settings.enabled:
            self.jobs: JobEngine | _NoJobs = _NoJobs()
        else:
            # the one job engine, on the observatory's clock (wall or simulated)
            self.jobs = JobEngine(specs, StoreJobState(obs.store), self._run_job, obs.emit,
                                  self.calc, obs.clock.now())
        if settings.enabled:
            self._resume_if_mid_night()

    @property
    def queue(self) -> TargetQueue:
        """The target queue on a connection of its own, for tools and tests (``add``, ``get``,
        ``list``). The daemon itself never uses it: on the loop it queues its marks on the
        store's writer and reads the queue on the planning thread."""
        if self._queue is None:
            self._queue = TargetQueue(self.obs.config.paths.database)
        return self._queue

    # ------------------------------------------------------------------ construction helpers

    def _make_camera(self, frames_dir: Path):
        cfg = self.obs.config
        ccd_type = cfg.ccd.type if cfg.ccd is not None else None
        if ccd_type == "simulated" or (ccd_type is None and self.obs.world is not None):
            if self.obs.world is None:
                raise NightError("ccd.type = 'simulated' needs the simulated observatory")
            from tenmon.drivers.sim.ccd import SimulatedCcd
            from tenmon.vision.solve.catalogs import SimulatedSky

            cat = self.frames.job.solver.catalog
            sky = SimulatedSky(seed=cat.sim_seed, density_per_deg2=cat.sim_density_per_deg2,
                               mag_faint=cat.sim_mag_faint)
            cam = SimulatedCcd(self.camera_settings, self.obs.world, self.obs.clock, frames_dir,
                               sky, light_path=self._light_path,
                               seed=cfg.sim.seed if cfg.sim else 0)
            cam.connect()
            return cam
        if ccd_type in device_factory.BACKENDS:  # alpaca, indi: tenmon reads the pixels
            context = device_factory.header_context_for(
                cfg, self.obs.mount, self.focuser, self.filter_wheel,
                pixel_scale_arcsec=self.camera_settings.binned_scale_arcsec)
            cam = device_factory.build_camera(cfg.ccd, self.camera_settings, frames_dir,
                                              self.obs.clock, context)
            self._connect("camera", cam)
            return cam
        return None  # a site's CCD program writes frames; the sequencer awaits them

    def _make_device(self, kind: str, section):
        """The ``[focuser]`` / ``[filter_wheel]`` device (``None`` when not configured)."""
        if section is None:
            return None
        dev = (device_factory.build_focuser if kind == "focuser"
               else device_factory.build_filter_wheel)(section, self.obs.clock)
        self._connect(kind, dev)
        return dev

    def _connect(self, kind: str, dev) -> None:
        """Connect a network device; a server that is not there is an error event naming it
        (the device stays in its error state and keeps trying), never a simulator."""
        try:
            dev.connect()
        except DeviceError as exc:
            self.obs.emit("error", "device", f"{kind}: cannot connect: {exc.detail}")
        else:
            self.obs.emit("info", "device", f"{kind}: connected ({getattr(dev, 'name', kind)})")

    def _light_path(self) -> float:
        """Simulated: the fraction of light reaching the CCD now: cover and slit open, and the
        point where the optical axis leaves the dome inside the slit (a band ``slit_width_m``
        wide from the horizon over the zenith, centred on the dome's azimuth)."""
        w = self.obs.world
        st = w.state
        if st.cover_fraction < 0.99 or st.slit_fraction < 0.95:
            return 0.0
        ra, dec = w.true_pointing()
        tgt = dome_azimuth_radec(ra, dec, w.lst(), self.obs.config.site.latitude_deg,
                                 self.geometry)
        return slit_transmission(tgt.azimuth_deg, tgt.elevation_deg, st.dome_az_deg,
                                 self.geometry)

    # ------------------------------------------------------------------ the tick

    def request(self, action: str) -> None:
        """Queue an action for the loop thread (thread-safe)."""
        self._actions.append(action)

    def _run_job(self, job_id: str) -> None:
        self._do(self._action_of_job[job_id])

    def tick(self) -> None:
        """The tick hook: camera, jobs, actions, planning results, frames, sequencer."""
        now = self.obs.clock.now()
        for dev in (self.focuser, self.filter_wheel, self.camera):
            if dev is not None:
                dev.update()
        self.jobs.tick(now)
        while self._actions:
            self._do(self._actions.popleft())
        self._collect_plan()
        self.sequencer.dark_until = self.jobs.next_run("night.close")
        self.frames.tick()
        self.sequencer.tick()

    def _do(self, action: str) -> None:
        # The dusk/dawn triggers find a crossing to about a second; just after firing, the
        # "next" crossing can come out as the same one a few seconds later, so the job engine
        # (as apscheduler, whose rules it follows) may fire a twilight job twice. The twilight actions
        # are therefore idempotent within an hour.
        if action in ("open_if_safe", "run_plan", "close"):
            now = self.obs.clock.now()
            last = self._last_action.get(action)
            if last is not None and (now - last).total_seconds() < 3600.0:
                log.info("%s repeated %.0f s after the last one: ignored", action,
                         (now - last).total_seconds())
                return
            self._last_action[action] = now
        getattr(self, f"action_{action}")()

    def in_flight(self) -> bool:
        """Work started by a tick and still running off the loop, whose result a later tick
        takes: a job's trigger computation, planning, the camera's render, frames in the pool.
        ``tenmon simulate --fast`` holds simulated time while this is true, so each result is
        taken at the same simulated time however busy the machine is (one seed, one night)."""
        fut = self._plan_future
        return bool(self.jobs.running
                    or (fut is not None and not fut.done())
                    or (self.camera is not None and getattr(self.camera, "rendering", False))
                    or self.frames.settling)

    # ------------------------------------------------------------------ actions

    def action_open_if_safe(self) -> None:
        """Dusk: the night begins; the sequencer opens as soon as it is safe (and dark)."""
        self._arm("dusk")

    def _arm(self, why: str) -> None:
        night = self._night_date()
        self._set_night({"date": night.isoformat(), "active": True,
                         "armed_utc": utc_iso(self.obs.clock.now())})
        v = self.obs.verdict
        self.obs.emit("info", "night", f"night of {night}: {why}; "
                      + ("opening" if v.safe else "will open when safe (now unsafe: "
                         + "; ".join(v.reasons) + ")"))
        self.log_event("dusk", why=why, safe=v.safe, reasons=list(v.reasons))
        self.sequencer.arm(why)

    def action_run_plan(self) -> None:
        """Observing twilight: plan the rest of the night from the queue and run it (arming the
        night if its open was missed, e.g. a restart between the two twilights)."""
        if self.sequencer.phase == Phase.IDLE:
            self._arm("observing twilight")
        self._start_planning("plan")

    def action_close(self) -> None:
        """Dawn: stop observing, close and park."""
        self.obs.emit("info", "night", "dawn: closing and parking")
        self.log_event("dawn")
        state = dict(self._night_state)
        state["active"] = False
        self._set_night(state)
        self.sequencer.end_night("dawn")

    def action_check_health(self) -> None:
        """Devices, camera and frame backlog; an event when the set of problems changes."""
        obs = self.obs
        problems = []
        if obs.mount.state.value == "error":
            problems.append(f"mount: {obs.mount.error}")
        if obs.dome.state.value == "error":
            problems.append(f"dome: {obs.dome.error}")
        if obs.slit.state.value == "error":
            problems.append(f"slit: {obs.slit.error}")
        if self.camera is not None and self.camera.state.value == "error":
            problems.append(f"camera: {self.camera.error}")
        for kind, dev in (("focuser", self.focuser), ("filter_wheel", self.filter_wheel)):
            if dev is not None and dev.error:
                problems.append(f"{kind}: {dev.error}")
        st = self.frames.worker.stats
        if st.queued > self.frames.worker.settings.queue_size // 2:
            problems.append(f"frames: {st.queued} waiting (queue of "
                            f"{self.frames.worker.settings.queue_size})")
        key = tuple(problems)
        if key != self._health_key:
            self._health_key = key
            if problems:
                obs.emit("warning", "health", "health check: " + "; ".join(problems))
            else:
                obs.emit("info", "health", "health check: all well")

    def action_check_weather(self) -> None:
        """Belt and braces: an open slit under an unsafe verdict that the supervisor is not
        already closing is closed now."""
        obs = self.obs
        v = obs.verdict
        if not v.safe and not obs.supervisor.closing and not obs.supervisor.in_safe_state() \
                and obs.slit.state.value not in ("closed",):
            obs.emit("alarm", "weather", "weather check: unsafe with the slit not closed: "
                     + "; ".join(v.reasons))
            obs.supervisor.force("weather check: " + "; ".join(v.reasons))
        if v.safe != self._last_verdict:
            self._last_verdict = v.safe
            self.log_event("weather", safe=v.safe, reasons=list(v.reasons))

    # ------------------------------------------------------------------ planning

    def _start_planning(self, kind: str, event=None, t_event: datetime | None = None) -> bool:
        if self._plan_future is not None and not self._plan_future.done():
            self.obs.emit("warning", "night", f"{kind}: planning already running (max_instances "
                          "= 1): not started again")
            return False
        now = self.obs.clock.now()
        plan = self.sequencer.plan
        if event is not None and plan is not None:
            self._plan_future = self.calc.submit(_replan_job, plan, t_event or now, event)
        else:
            # the queue is read on the planning thread (after the writer has written the marks
            # queued so far), never on the loop
            self._plan_future = self.calc.submit(_plan_from_queue, self.obs.store,
                                                 self._night_date(), self.location,
                                                 self.scheduler_settings, now)
        self._plan_kind = kind
        return True

    def _collect_plan(self) -> None:
        fut = self._plan_future
        if fut is None or not fut.done():
            return
        self._plan_future = None
        try:
            plan = fut.result()
        except Exception as exc:  # noqa: BLE001 - no night (polar), bad targets: recorded
            self.obs.emit("error", "night", f"planning failed ({self._plan_kind}): {exc}")
            self.log_event("plan_failed", why=self._plan_kind, error=str(exc))
            if self.sequencer.plan is None:
                self.sequencer.no_plan(f"planning failed: {exc}")
            return
        self.log_event("planned", why=self._plan_kind, blocks=len(plan.scheduled),
                       unscheduled=len(plan.unscheduled),
                       events=list(plan.events[-1:]))
        self.sequencer.set_plan(plan)

    def _block_done(self, block, frames: list[str], outcome: str) -> None:
        if outcome == "interrupted":
            return  # frames kept; the target stays pending and is planned again
        now = self.obs.clock.now()
        detail = f"{outcome}: {len(frames)}/{block.count} frames"
        fut = self.obs.store.submit(
            lambda c: target_queue.mark_observed_in(c, block.name, now, detail),
            what=f"target {block.name} observed")
        fut.add_done_callback(_log_failure(f"{block.name}: cannot mark observed"))

    def _block_failed(self, block, reason: str) -> None:
        from tenmon.scheduler.planner import TargetFailed

        now = self.obs.clock.now()
        fut = self.obs.store.submit(
            lambda c: target_queue.mark_failed_in(c, block.name, now, reason),
            what=f"target {block.name} failed")
        fut.add_done_callback(_log_failure(f"cannot mark {block.name} failed"))
        if self.sequencer.plan is not None and any(t.name == block.name
                                                   for t in self.sequencer.plan.targets):
            self._start_planning("target failed", TargetFailed(block.name, reason), now)

    def _weather_close(self, t_close: datetime, t_reopen: datetime, reason: str) -> None:
        from tenmon.scheduler.planner import WeatherClose

        if self.sequencer.plan is None:
            self._start_planning("reopen")
            return
        self._start_planning("weather close", WeatherClose(until=t_reopen, reason=reason[:80]),
                             t_close)

    # ------------------------------------------------------------------ state

    def _night_date(self) -> date:
        return local_night_date(self.obs.clock.now(), self.location)

    def _set_night(self, state: dict[str, Any]) -> None:
        self._night_state = dict(state)
        self.obs.store.set_state("night", state)

    def _resume_if_mid_night(self) -> None:
        state = dict(self._night_state)
        if not state.get("active"):
            return
        if state.get("date") != self._night_date().isoformat():
            state["active"] = False
            self._set_night(state)
            return
        self.obs.emit("info", "night", f"resuming the night of {state['date']} after a restart: "
                      "planning the rest of it from the queue")
        try:
            opened = bool(self.obs.store.query(
                "SELECT 1 FROM night_log WHERE night = ? AND kind = 'opened' LIMIT 1",
                (state["date"],)))
        except StorageError as exc:
            log.warning("night log unreadable (%s): taking the night as opened before", exc)
            opened = True
        self.sequencer.opened_once = opened
        self.log_event("resume")
        self.sequencer.arm("resuming the night after a restart")
        self._start_planning("resume")

    def log_event(self, kind: str, target: str | None = None, **detail: Any) -> None:
        """One row of ``night_log`` (queued for the store's writer: never blocks)."""
        self.obs.store.execute(
            "INSERT INTO night_log (time_utc, night, kind, target, detail) VALUES (?, ?, ?, ?, ?)",
            (utc_iso(self.obs.clock.now()), self._night_date().isoformat(), kind, target,
             json.dumps(detail, default=str)), what=f"night log {kind}")

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Start the frame pool inside the running event loop (the tick does it lazily too)."""
        await self.frames.start()

    async def aclose(self, *, drain: bool = False) -> None:
        """Stop the frame pool (``drain``: process every delivered frame first)."""
        await self.frames.stop(drain=drain)

    def stop_now(self) -> None:
        """The stop hook: stop the jobs, the camera and the pool (synchronously)."""
        for dev in (self.camera, self.focuser, self.filter_wheel):
            if dev is not None:
                try:
                    dev.disconnect()
                except Exception as exc:  # noqa: BLE001 - teardown must finish; logged
                    log.error("disconnect failed: %s", exc)
        self.frames.stop_now()
        self.calc.shutdown(wait=False, cancel_futures=True)
        if self._queue is not None:
            self._queue.close()
            self._queue = None

    def status(self) -> dict[str, Any]:
        """The ``night`` section of the daemon's status (cheap: the observatory records its
        status every tick)."""
        state = self._night_state
        t = self.obs.clock.monotonic()
        if self._pending_count is None or t - self._pending_count[0] > 60.0:
            try:
                n = int(self.obs.store.query("SELECT COUNT(*) FROM scheduler_targets WHERE "
                                             "status = 'pending'")[0][0])
            except StorageError:
                n = self._pending_count[1] if self._pending_count else None
            self._pending_count = (t, n)
        return {"night": state.get("date"), "active": bool(state.get("active")),
                **self.sequencer.status(), "jobs": self.jobs.status(),
                "frames": self.frames.status(),
                "camera": None if self.camera is None else {
                    "state": self.camera.state.value, "error": self.camera.error},
                "focuser": None if self.focuser is None else {
                    "position": self.focuser.position, "moving": self.focuser.moving,
                    "temperature_c": _finite_or_none(self.focuser.temperature_c),
                    "error": self.focuser.error},
                "filter_wheel": None if self.filter_wheel is None else {
                    "names": list(self.filter_wheel.names),
                    "position": self.filter_wheel.position,
                    "moving": self.filter_wheel.moving, "error": self.filter_wheel.error},
                "queue_pending": self._pending_count[1]}


def _finite_or_none(v):
    import math

    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def _log_failure(what: str):
    """A done-callback (it runs on the store's writer thread: it only logs)."""
    def done(fut) -> None:
        exc = fut.exception() if not fut.cancelled() else None
        if exc is not None:
            log.warning("%s: %s", what, exc)
    return done


def _plan_from_queue(store, night_date: date, location, settings: SchedulerSettings,
                     now: datetime):
    """On the planning thread: the pending targets (after the queued marks are written, up to a
    few seconds), then the plan."""
    store.flush(timeout_s=5.0)
    targets = TargetQueue(store.db, create=False).pending(now)
    return _plan_job(targets, night_date, location, settings, now)


def _plan_job(targets, night_date: date, location, settings: SchedulerSettings, now: datetime):
    from tenmon.scheduler.night import night_for_date
    from tenmon.scheduler.planner import plan_night

    night = night_for_date(night_date, location, settings.observe_twilight)
    return plan_night(targets, night, location, settings, start=now)


def _replan_job(plan, t_event: datetime, event):
    from tenmon.scheduler.planner import replan

    return replan(plan, t_event, event)


# ---------------------------------------------------------------------------- install

def _section(config, name: str, model, sections: dict[str, Any] | None = None):
    return section(config, name, model, (sections or {}).get(name))


def frame_job_for(config, camera: CameraSettings, sections: dict[str, Any] | None = None
                  ) -> FrameJob:
    """The worker's settings: ``[pipeline]`` and ``[solver]`` from the config (defaults until
    they are mounted); the pixel scale is the camera's when not configured; in simulated mode
    the solver's catalogue is the simulated sky of the simulation's seed and, with no
    ``[solver]`` at all, the hinted solver takes 300 catalogue stars (see below)."""
    pipeline = _section(config, "pipeline", PipelineSettings, sections)
    solver = _section(config, "solver", SolverSettings, sections)
    configured = (sections or {}).get("solver") is not None or getattr(config, "solver",
                                                                        None) is not None
    updates: dict[str, Any] = {}
    if solver.pixel_scale_arcsec is None:
        updates["pixel_scale_arcsec"] = camera.binned_scale_arcsec
    if config.mode == "simulated":
        if solver.catalog.provider == "none":
            seed = config.sim.seed if config.sim else 0
            updates["catalog"] = CatalogSettings(provider="simulated", sim_seed=seed)
        if not configured:
            # Measured on the simulated night (docs/bench/night.md): with 300 s exposures the
            # stars a 160-star catalogue cone offers first are saturated on the frame, and 2 of
            # 86 frames went unsolved; 300 catalogue stars solved both (0.1-0.3 s more).
            updates["hinted"] = solver.hinted.model_copy(update={"max_catalog_stars": 300})
    if updates:
        solver = solver.model_copy(update=updates)
    return FrameJob(pipeline=pipeline, solver=solver, longitude_deg=config.site.longitude_deg)


def install_night_operations(obs, config, *, sections: dict[str, Any] | None = None,
                             executor=None) -> NightOps | None:
    """Wire night operations into ``obs`` (tick hook, stop hook, ``night`` status section).

    Settings come from the config's ``[night]``, ``[scheduler]``, ``[dome_geometry]``,
    ``[camera]``, ``[frames]``, ``[pipeline]`` and ``[solver]`` sections when it has them, else
    from the models' defaults. Idempotent: a second call returns the installed ``NightOps``.

    Args:
        obs: the observatory (built, started or not).
        config: its ``TenmonConfig``.
        sections: settings models (or dicts) by section name, used instead of the config's
            (``tenmon simulate`` and tests: e.g. ``{"camera": CameraSettings(...)}``).
        executor: for tests: run frames in this executor instead of a process pool.

    Returns:
        The ``NightOps`` (with ``[night] enabled = false`` its jobs and sequencer stay idle).

    Raises:
        NightError: the CCD cannot be set up in this mode.
        ConfigError: a section does not validate.
    """
    existing = getattr(obs, "night_ops", None)
    if existing is not None:
        return existing
    try:
        settings = _section(config, "night", NightSettings, sections)
        if not settings.enabled:
            obs.emit("info", "night", "automatic nights off ([night] enabled = false): no dusk "
                     "or dawn jobs, no sequencer; frames are still taken on request and processed")
        scheduler = _section(config, "scheduler", SchedulerSettings, sections)
        geometry = _section(config, "dome_geometry", DomeGeometry, sections)
        camera = _section(config, "camera", CameraSettings, sections)
        ccd = config.ccd
        if ccd is not None and ccd.type == "directory" and "night" not in (sections or {}) \
                and getattr(config, "night", None) is None:
            # the site's [ccd] says how its CCD program names and writes frames
            settings = settings.model_copy(update={"intake": settings.intake.model_copy(
                update={"pattern": ccd.pattern, "stable_s": ccd.stable_s})})
        if (sections or {}).get("frames") is None and getattr(config, "frames", None) is None:
            worker = default_worker_settings()  # a night's pool, not the model's plain defaults
        else:
            worker = _section(config, "frames", FrameWorkerSettings, sections)
        job = frame_job_for(config, camera, sections)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"night operations: {exc}") from None
    ops = NightOps(obs, settings=settings, scheduler=scheduler, geometry=geometry,
                   camera_settings=camera, job=job, worker_settings=worker, executor=executor,
                   autofocus=(sections or {}).get("autofocus"))
    obs.night_ops = ops
    obs.tick_hooks.append(ops.tick)
    obs.stop_hooks.append(ops.stop_now)
    obs.status_hooks["night"] = ops.status
    _install_archive_hook(obs, ops, config, sections)
    return ops


def _install_archive_hook(obs, ops: NightOps, config, sections: dict[str, Any] | None) -> None:
    """``[archive] enabled``: the frame service's records also go into the archive (a listener
    that queues them for the archive's own writer thread; ``tenmon.archive.hook``). An archive
    that cannot be opened is an error event; the observatory runs on without it."""
    from tenmon.archive.hook import DaemonArchiveSink
    from tenmon.config.services import ArchiveHookSettings

    settings = _section(config, "archive", ArchiveHookSettings, sections)
    if not settings.enabled:
        return
    try:
        sink = DaemonArchiveSink(settings, job=ops.frames.job, clock=obs.clock)
    except TenmonError as exc:
        obs.emit("error", "archive", f"[archive] is enabled but unusable: {exc}; frames are not archived")
        return
    sink.start()
    ops.frames.listeners.append(sink.on_frame)
    obs.stop_hooks.append(sink.close)  # after ops.stop_now: the last records are written first
    obs.status_hooks["archive"] = sink.status
    ops.archive_sink = sink


def uninstall_night_operations(obs) -> None:
    """Undo :func:`install_night_operations` (stop the pools and jobs, remove the hooks), so a
    caller can install again with other settings (``tenmon simulate`` does)."""
    ops = getattr(obs, "night_ops", None)
    if ops is None:
        return
    ops.stop_now()
    for hooks in (obs.tick_hooks, obs.stop_hooks):
        for fn in (ops.tick, ops.stop_now):
            if fn in hooks:
                hooks.remove(fn)
    obs.status_hooks.pop("night", None)
    obs.night_ops = None


# ---------------------------------------------------------------------------- the report

def night_report(store, *, start: datetime, end: datetime) -> dict[str, Any]:
    """What happened between ``start`` and ``end`` (UTC), from the database alone (so it is the
    same after a restart): ``opened_utc``, ``closed_utc``, ``targets_observed``, ``frames``,
    ``frames_solved``, ``safety_closes``, ``weather_lost_s``, ``errors`` and per-target detail
    (``centre_arcsec``: the offsets the centring acted on; ``offsets_arcsec``: every solved
    frame's distance from its target, in the order the solves arrived).
    """
    if hasattr(store, "flush"):
        store.flush(timeout_s=10.0)  # the rows queued so far, in the database first
    db = store.db
    s, e = utc_iso(start), utc_iso(end)
    rows = db.execute("SELECT time_utc, kind, target, detail FROM night_log WHERE time_utc >= ? "
                      "AND time_utc <= ? ORDER BY id", (s, e)).fetchall()
    log_rows = [(r["time_utc"], r["kind"], r["target"], json.loads(r["detail"])) for r in rows]
    opened = [t for t, k, _, _ in log_rows if k == "opened"]
    closed = [(t, d) for t, k, _, d in log_rows if k == "closed"]
    final = [t for t, d in closed if d.get("final")]
    safety = [(t, d) for t, k, _, d in log_rows if k == "safety_close"]
    reopen = [t for t, k, _, _ in log_rows if k == "reopen"]
    end_dark = final[-1] if final else (closed[-1][0] if closed else e)
    lost = 0.0
    for t, _ in safety:
        nxt = [r for r in reopen if r > t]
        until = min(nxt[0], end_dark) if nxt else end_dark
        lost += max(0.0, (_dt(until) - _dt(t)).total_seconds())
    per: dict[str, dict[str, Any]] = {}
    for t, k, target, d in log_rows:
        if target is None:
            continue
        p = per.setdefault(target, {"target": target, "blocks": 0, "observed": False,
                                    "frames_taken": 0, "outcomes": [], "centre_arcsec": [],
                                    "offsets_arcsec": []})
        if k == "block_start":
            p["blocks"] += 1
        elif k == "block_done":
            p["outcomes"].append(d.get("outcome"))
            p["frames_taken"] += int(d.get("frames") or 0)
            p["observed"] = p["observed"] or d.get("outcome") == "observed"
        elif k in ("block_failed", "block_interrupted", "block_skipped"):
            p["outcomes"].append(k.removeprefix("block_"))
            p["frames_taken"] += int(d.get("frames") or 0)
        elif k == "centre" and d.get("separation_arcsec") is not None:
            p["centre_arcsec"].append(d["separation_arcsec"])
        elif k == "offset":
            p["offsets_arcsec"].append(d["separation_arcsec"])
    frames = db.execute("SELECT target, status, solved, rms_arcsec FROM frames WHERE "
                        "received_utc >= ? AND received_utc <= ?", (s, e)).fetchall()
    for f in frames:
        if f["target"] in per:
            p = per[f["target"]]
            p["frames"] = p.get("frames", 0) + 1
            p["frames_solved"] = p.get("frames_solved", 0) + int(f["solved"] == 1)
    errors = [{"time_utc": r["time_utc"], "level": r["level"], "kind": r["kind"],
               "message": r["message"]} for r in db.execute(
        "SELECT time_utc, level, kind, message FROM events WHERE level IN ('error', 'alarm') AND "
        "time_utc >= ? AND time_utc <= ? ORDER BY id", (s, e)).fetchall()]
    close_s = []
    for t, _ in safety:
        ev = db.execute("SELECT time_utc, data FROM events WHERE time_utc >= ? AND kind = "
                        "'slit' AND message LIKE 'slit closed%' ORDER BY id LIMIT 1",
                        (t,)).fetchone()
        if ev is not None:
            # the slit was seen closed before the event: the relay ran on to the end stop
            d = json.loads(ev["data"] or "{}")
            early = float(d.get("relay_off_s", 0.0)) - float(d.get("seen_closed_s",
                                                                 d.get("relay_off_s", 0.0)))
            close_s.append(round((_dt(ev["time_utc"]) - _dt(t)).total_seconds() - early, 1))
    return {
        "opened_utc": opened[0] if opened else None,
        "closed_utc": end_dark if (final or closed) else None,
        "targets_observed": sum(1 for p in per.values() if p["observed"]),
        "frames": len(frames),
        "frames_processed": sum(1 for f in frames if f["status"] == "done"),
        "frames_solved": sum(1 for f in frames if f["solved"] == 1),
        "frames_unprocessed": sum(1 for f in frames if f["status"] in ("queued", "dropped")),
        "safety_closes": len(safety),
        "safety_close_reasons": [d.get("reason") for _, d in safety],
        "slit_closed_after_s": close_s,
        "reopens": len(reopen),
        "weather_lost_s": round(lost, 1),
        "errors": errors,
        "targets": sorted(per.values(), key=lambda p: p["target"]),
    }


def _dt(text: str) -> datetime:
    return parse_utc(text)


__all__ = ["NightOps", "NightSettings", "NightError", "StoreJobState",
           "install_night_operations", "uninstall_night_operations", "night_report",
           "frame_job_for", "NIGHT_LOG_SCHEMA"]
