"""`tenmon center` in the daemon: goto -> slave the dome -> settle -> expose -> solve -> correct, until centred.

A :class:`CentringService` runs at most one centring job at a time, as a small state machine
advanced by the observatory's tick (after safety and after the night operations' tick, so the
frame service has already delivered this tick's results)::

    slewing -> settling -> exposing -> solving --(done)----------------> done
       ^                                  |  \\--(tries used up)-------> failed
       \\---- sync and goto / offset goto --/ \\--(not solved: next try)-> settling

Each try is one frame from the night operations' camera, processed and plate-solved by their
frame service (the job listens to it); ``vision.solve.centering.centering_step`` decides what to
do with the solve (the same decision the sequencer uses). A frame that does not solve counts as a
try, with its reason. Every try is kept in the job (``GET /api/v1/center``, the ``centring``
status section) and recorded as an event.

Safety first: a job is refused (``CommandRefused`` with a code, HTTP 409) when the observatory is
unsafe, an emergency stop is latched or it is shutting down, when the slit or the cover is not
open (the job never opens them itself), when the night's sequencer is observing a block, when
there is no camera, or when another job runs. A job that is running fails at once when any of
these stops holding (unsafe, emergency, slit or cover closing, the sequencer starting a block);
the supervisor's own actions are never fought.

``daemon.compose.install_centring(obs, night_ops)`` builds the service and wires it in (tick
hook, stop hook, ``centring`` status section, frame listener, API routes) and, unless told not
to, the Nayuta follower of ``daemon.nayuta_service`` with it.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from tenmon.core.astro import lst_deg, radec_to_altaz, separation_arcsec
from tenmon.daemon.api.kit import (
    COMMAND_ERRORS,
    READ_ERRORS,
    INTEGRAL,
    Route,
    error_response,
    json_response,
)
from tenmon.config.services import CentringServiceSettings, DomeGeometry
from tenmon.daemon.services.phases import PhaseMachine, UnsafeTransition
from tenmon.daemon.services.ports import ExposureGate, FrameResults, ServiceObservatory
from tenmon.daemon.slaving import DomeSlaver
from tenmon.drivers.base import MountState, ShutterState
from tenmon.drivers.camera import CameraState
from tenmon.core.errors import CommandRefused, DeviceError
from tenmon.core.timefmt import utc_iso
from tenmon.vision.solve.centering import centering_step
from tenmon.config.vision import CenteringSettings

log = logging.getLogger(__name__)

#: Phases of a running job; a finished job's state is ``done``, ``failed`` or ``aborted``.
PHASES = ("slewing", "settling", "exposing", "solving")

#: The service's declared transitions (the module docstring's picture): ``idle`` between jobs,
#: the only phase entered without the safety guard (a job ends from any phase).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "idle": ("slewing",),
    "slewing": ("settling", "idle"),
    "settling": ("exposing", "idle"),
    "exposing": ("solving", "settling", "idle"),
    "solving": ("slewing", "settling", "idle"),
}


class CentringError(CommandRefused):
    """A centring request refused; ``code`` is one of ``daemon.api_kit.STATUS_OF``'s keys
    (``busy``, ``sequencer_busy``, ``no_camera``, ``not_running``, ``not_configured``,
    ``no_star``, and the observatory's own)."""


@dataclass
class CentringTry:
    """One frame of a centring job and what was done with it."""

    number: int
    frame: str | None = None
    mount_ra_deg: float | None = None
    mount_dec_deg: float | None = None
    goto_ra_deg: float | None = None
    goto_dec_deg: float | None = None
    solved: bool | None = None
    solver: str | None = None
    solved_ra_deg: float | None = None
    solved_dec_deg: float | None = None
    separation_arcsec: float | None = None
    east_arcsec: float | None = None
    north_arcsec: float | None = None
    action: str | None = None
    reason: str | None = None
    time_utc: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {}
        for k, v in self.__dict__.items():
            if isinstance(v, float):
                v = round(v, 7 if k.endswith("_deg") else 2)
            out[k] = v
        out["try"] = out.pop("number")
        if self.frame:
            out["frame"] = Path(self.frame).name
            out["frame_path"] = self.frame
        return out


@dataclass
class CentringJob:
    """A centring job (see the module docstring). ``state``: running, done, failed, aborted."""

    id: str
    ra_deg: float
    dec_deg: float
    tolerance_arcsec: float
    max_tries: int
    exposure_s: float
    method: str
    source: str
    started_m: float
    started_utc: str
    state: str = "running"
    phase: str = "slewing"
    tries: list[CentringTry] = field(default_factory=list)
    reason: str | None = None
    ended_utc: str | None = None
    elapsed_s: float | None = None
    goto: tuple[float, float] = (0.0, 0.0)   # coordinates the mount was last sent to
    phase_since: float = 0.0
    settle_until: float = 0.0
    exposure_ends: float = 0.0
    solve_deadline: float = 0.0
    camera_errors: int = 0
    final_record: Any = None                   # the FrameRecord of the last solved try

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @property
    def final_separation_arcsec(self) -> float | None:
        seps = [t.separation_arcsec for t in self.tries if t.separation_arcsec is not None]
        return seps[-1] if seps else None

    def to_json(self) -> dict[str, Any]:
        final = self.final_separation_arcsec
        return {
            "id": self.id, "state": self.state, "phase": None if self.finished else self.phase,
            "source": self.source,
            "target": {"ra_deg": round(self.ra_deg, 7), "dec_deg": round(self.dec_deg, 7)},
            "tolerance_arcsec": self.tolerance_arcsec, "max_tries": self.max_tries,
            "exposure_s": self.exposure_s, "method": self.method,
            "tries": [t.to_json() for t in self.tries],
            "final_separation_arcsec": None if final is None else round(final, 2),
            "within_tolerance": self.state == "done",
            "reason": self.reason, "started_utc": self.started_utc, "ended_utc": self.ended_utc,
            "elapsed_s": self.elapsed_s,
        }


class CentringService:
    """Runs centring jobs on the observatory's tick. Built and wired by
    ``daemon.compose.install_centring``.

    Args:
        obs: the observatory's commands, states, safety, events, clock, config and store.
        camera: the night operations' camera (``None``: a site whose CCD program writes the
            frames; every job is then refused).
        frames: their frame service (each try's frame is processed and solved there).
        geometry: the dome geometry (slaving).
        centering: ``[solver.centering]`` (defaults for tolerance, tries, method).
        sequencer: the night's sequencer (a job is refused, or ends, while it observes).
        storage: the storage watch (an exposure it refuses fails the job).
        settings: :class:`CentringServiceSettings`.
    """

    def __init__(self, obs: ServiceObservatory, *, camera, frames: FrameResults,
                 geometry: DomeGeometry, centering: CenteringSettings, sequencer=None,
                 storage: ExposureGate | None = None,
                 settings: CentringServiceSettings | None = None):
        self.obs = obs
        self.camera = camera
        self.frames = frames
        self.sequencer = sequencer
        self.storage = storage
        self.s = settings or CentringServiceSettings()
        self.centering = centering
        self.geometry = geometry
        self.machine: PhaseMachine[str] = PhaseMachine(
            "centring", "idle", TRANSITIONS, safe=("idle",), guard=self.safety_problem)
        self.slaver = DomeSlaver(obs, clock=obs.clock, site=obs.config.site,
                                 geometry=self.geometry, period_s=self.s.dome_check_s,
                                 name="centring: dome slaving")
        self.job: CentringJob | None = None
        self.history: list[CentringJob] = []
        self._recent: dict[str, Any] = {}   # path -> FrameRecord that came before take_frame
        self._seq = itertools.count(1)
        self._not_open_since: float | None = None
        self.listeners: list[Callable[[CentringJob], None]] = []  # called when a job ends
        last = obs.store.get_state("centring_last", None)
        self._last_json: dict[str, Any] | None = last if isinstance(last, dict) else None

    # ------------------------------------------------------------------ commands

    @property
    def busy(self) -> bool:
        """A job is running."""
        return self.job is not None and not self.job.finished

    def check_can_start(self) -> None:
        """Raise :class:`CentringError` (with its code) when a job may not start now."""
        obs = self.obs
        if obs.shutting_down:
            raise CentringError("shutting_down", "centring refused: the daemon is shutting down")
        if obs.emergency:
            raise CentringError("emergency", f"centring refused: emergency stop latched "
                                f"({obs.emergency}); clear it with `tenmon resume`")
        if not obs.verdict.safe:
            raise CentringError("unsafe", "centring refused: unsafe ("
                                + "; ".join(obs.verdict.reasons) + ")")
        if obs.supervisor.closing:
            raise CentringError("unsafe", "centring refused: the safety supervisor is closing")
        if self.busy:
            raise CentringError("busy", f"centring refused: job {self.job.id} is running "
                                "(`POST /center/abort` ends it)")
        if self._sequencer_observing():
            seq = self.sequencer
            what = seq.run.block.name if seq.run is not None else seq.phase.value
            raise CentringError("sequencer_busy", "centring refused: the night's sequencer is "
                                f"observing ({what})")
        slit, cover = obs.slit.state, obs.cover.state
        if slit != ShutterState.OPEN or cover != ShutterState.OPEN:
            raise CentringError("not_open", f"centring refused: open the slit and cover first "
                                f"(slit {slit.value}, cover {cover.value})")
        cam = self.camera
        if cam is None:
            raise CentringError("no_camera", "centring refused: no camera driver (a site whose "
                                "CCD program writes the frames cannot expose on request)")
        if cam.state in (CameraState.EXPOSING, CameraState.READING):
            raise CentringError("busy", f"centring refused: the camera is {cam.state.value}")

    def start(self, ra_deg: float, dec_deg: float, *, tolerance_arcsec: float | None = None,
              max_tries: int | None = None, exposure_s: float | None = None,
              source: str = "api") -> CentringJob:
        """Start a centring job on (``ra_deg``, ``dec_deg``), ICRS degrees. Non-blocking.

        Raises:
            CentringError: ``bad_request`` (out of range), ``below_horizon``, or any refusal of
                :meth:`check_can_start`.
        """
        for name, v in (("ra_deg", ra_deg), ("dec_deg", dec_deg)):
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CentringError("bad_request", f"{name} must be a finite number, got {v!r}")
        if not (0.0 <= ra_deg < 360.0 and -90.0 <= dec_deg <= 90.0):
            raise CentringError("bad_request", f"RA {ra_deg} / Dec {dec_deg} out of range "
                                "(RA 0..360 deg, Dec -90..90 deg)")
        tol = tolerance_arcsec if tolerance_arcsec is not None else (
            self.s.tolerance_arcsec or self.centering.tolerance_arcsec)
        tries = max_tries if max_tries is not None else (
            self.s.max_tries or self.centering.max_tries)
        exp = exposure_s if exposure_s is not None else self.s.exposure_s
        if not (isinstance(tol, (int, float)) and 0 < tol <= 3600):
            raise CentringError("bad_request", f"tolerance_arcsec {tol!r} must be in (0, 3600]")
        if not (isinstance(tries, int) and not isinstance(tries, bool) and 1 <= tries <= 50):
            raise CentringError("bad_request", f"max_tries {tries!r} must be an integer 1..50")
        if not (isinstance(exp, (int, float)) and 0 < exp <= 600):
            raise CentringError("bad_request", f"exposure_s {exp!r} must be in (0, 600] s")
        self.check_can_start()
        obs = self.obs
        site = obs.config.site
        alt, _ = radec_to_altaz(ra_deg, dec_deg, lst_deg(obs.clock.now(), site.longitude_deg),
                                site.latitude_deg)
        if alt < 0:
            raise CentringError("below_horizon", f"RA {ra_deg:.4f} Dec {dec_deg:.4f} is below "
                                f"the horizon now (altitude {alt:.1f} deg)")
        now_m = obs.clock.monotonic()
        now = obs.clock.now()
        job = CentringJob(
            id=f"centre-{now.strftime('%Y%m%dT%H%M%S')}-{next(self._seq)}", ra_deg=float(ra_deg),
            dec_deg=float(dec_deg), tolerance_arcsec=float(tol), max_tries=int(tries),
            exposure_s=float(exp), method=self.s.method or self.centering.method, source=source,
            started_m=now_m, started_utc=utc_iso(now))
        self._goto(job, ra_deg, dec_deg, now_m)  # raises CommandRefused: nothing is kept
        self.job = job
        self.history.append(job)
        del self.history[:-self.s.keep_jobs]
        obs.emit("info", "centring", f"{job.id}: centring on RA {ra_deg:.5f} Dec {dec_deg:+.5f} "
                 f"(within {job.tolerance_arcsec:g}\", at most {job.max_tries} tries, "
                 f"{job.exposure_s:g} s exposures, {job.method})", job=job.id, source=source)
        return job

    def abort(self, reason: str = "aborted by the operator") -> CentringJob:
        """End the running job (the camera's exposure is abandoned; the mount stays where it is).

        Raises:
            CentringError: ``not_running`` when no job runs.
        """
        if not self.busy:
            raise CentringError("not_running", "no centring job is running")
        job = self.job
        self._end(job, "aborted", reason)
        return job

    def get(self, job_id: str | None = None) -> dict[str, Any] | None:
        """The current (or last) job as JSON, or the job ``job_id``; ``None`` when there is none."""
        if job_id is not None:
            for j in reversed(self.history):
                if j.id == job_id:
                    return j.to_json()
            return None
        if self.history:
            return self.history[-1].to_json()
        return self._last_json

    # ------------------------------------------------------------------ frames

    def on_frame(self, record) -> None:
        """Frame service listener: the awaited frame's result completes the try."""
        job = self.job
        if job is None or job.finished or job.phase != "solving" or not job.tries \
                or job.tries[-1].frame != record.path:
            self._recent[record.path] = record
            while len(self._recent) > 20:
                self._recent.pop(next(iter(self._recent)))
            return
        try:
            self._solved(job, record)
        except UnsafeTransition as exc:
            self._end(job, "failed", exc.reason)

    # ------------------------------------------------------------------ the tick

    def tick(self) -> None:
        """The tick hook: advance the running job (cheap when none runs)."""
        job = self.job
        if job is None or job.finished:
            return
        now_m = self.obs.clock.monotonic()
        problem = self._interruption(now_m)
        if problem is not None:
            self._end(job, "failed", problem)
            return
        if now_m - job.started_m > self.s.job_timeout_s:
            self._end(job, "failed", f"not centred within the job's {self.s.job_timeout_s:g} s")
            return
        self.slaver.slave(job.goto[0], job.goto[1], now_m)
        try:
            self.machine.handler(self)(job, now_m)
        except UnsafeTransition as exc:
            self._end(job, "failed", exc.reason)

    def safety_problem(self) -> str | None:
        """The guard of every move of a job: ``None`` when safe, else why not."""
        obs = self.obs
        if obs.emergency:
            return f"emergency stop ({obs.emergency})"
        if obs.shutting_down:
            return "the daemon is shutting down"
        if not obs.verdict.safe or obs.supervisor.closing:
            return "unsafe: " + ("; ".join(obs.verdict.reasons) or "the supervisor is closing")
        return None

    def _interruption(self, now_m: float) -> str | None:
        obs = self.obs
        problem = self.safety_problem()
        if problem is not None:
            return problem
        if self._sequencer_observing():
            return "the night's sequencer started observing"
        if obs.slit.state != ShutterState.OPEN or obs.cover.state != ShutterState.OPEN:
            if self._not_open_since is None:
                self._not_open_since = now_m
            elif now_m - self._not_open_since > self.s.open_grace_s:
                return (f"the slit or cover is no longer open (slit {obs.slit.state.value}, "
                        f"cover {obs.cover.state.value})")
        else:
            self._not_open_since = None
        return None

    def _tick_slewing(self, job: CentringJob, now_m: float) -> None:
        obs = self.obs
        state = obs.mount.state
        if state == MountState.ERROR:
            self._end(job, "failed", f"mount error: {obs.mount.error}")
            return
        if state == MountState.TRACKING and self.slaver.on_target(*job.goto):
            job.settle_until = now_m + self.s.settle_s
            self._phase(job, "settling", now_m)
            return
        if now_m - job.phase_since > self.s.slew_timeout_s:
            self._end(job, "failed", f"not on target after {self.s.slew_timeout_s:g} s (mount "
                      f"{state.value}, dome {obs.dome.state.value})")

    def _tick_settling(self, job: CentringJob, now_m: float) -> None:
        if self.obs.mount.state != MountState.TRACKING or now_m < job.settle_until:
            return
        cam = self.camera
        storage = self.storage
        refusal = storage.exposure_refusal() if storage is not None else None
        if refusal is not None:
            self._end(job, "failed", f"exposure refused: {refusal}")
            return
        n = len(job.tries) + 1
        meta = {"OBJECT": "centring", "IMAGETYP": "Light Frame", "TMCENTRE": job.id[:68],
                "TMTRY": n}
        try:
            cam.start_exposure(job.exposure_s, name=f"centre-{n}", meta=meta)
        except DeviceError as exc:
            job.camera_errors += 1
            if job.camera_errors > 2:
                self._end(job, "failed", f"the camera refused the exposure: {exc.detail}")
            return
        m = self.obs.mount
        job.tries.append(CentringTry(number=n, mount_ra_deg=m.ra_deg, mount_dec_deg=m.dec_deg,
                                     goto_ra_deg=job.goto[0], goto_dec_deg=job.goto[1]))
        job.exposure_ends = now_m + job.exposure_s
        self._phase(job, "exposing", now_m)

    def _tick_exposing(self, job: CentringJob, now_m: float) -> None:
        cam = self.camera
        t = job.tries[-1]
        if cam.state == CameraState.ERROR:
            err = cam.error
            if hasattr(cam, "clear_error"):
                cam.clear_error()
            job.camera_errors += 1
            job.tries.pop()
            self.obs.emit("error", "centring", f"{job.id}: camera error: {err}", job=job.id)
            if job.camera_errors > 2:
                self._end(job, "failed", f"camera failed {job.camera_errors} times: {err}")
            else:
                job.settle_until = now_m
                self._phase(job, "settling", now_m)
            return
        path = cam.take_frame()
        if path is None:
            if now_m > job.exposure_ends + self.s.camera_timeout_s:
                cam.abort()
                self._end(job, "failed", f"no frame from the camera {self.s.camera_timeout_s:g} "
                          "s after the exposure ended")
            return
        t.frame = str(path)
        frames = self.frames
        frames.set_context(path, {"target": "centring", "block": job.id})
        job.solve_deadline = now_m + self.s.solve_timeout_s
        self._phase(job, "solving", now_m)
        early = self._recent.pop(str(path), None)
        if early is not None:
            self._solved(job, early)

    def _tick_solving(self, job: CentringJob, now_m: float) -> None:
        if now_m > job.solve_deadline:
            self._unsolved(job, f"no solve {self.s.solve_timeout_s:g} s after the frame was "
                           "written", now_m)

    # ------------------------------------------------------------------ decisions

    def _solved(self, job: CentringJob, record) -> None:
        now_m = self.obs.clock.monotonic()
        t = job.tries[-1]
        sol = record.solve
        t.solver = sol.get("solver")
        if not record.solved:
            why = sol.get("reason") or record.error or "not solved"
            self._unsolved(job, f"not solved: {why}", now_m)
            return
        t.solved = True
        t.solved_ra_deg, t.solved_dec_deg = float(sol["ra_deg"]), float(sol["dec_deg"])
        mount = (sol.get("mount_ra_deg"), sol.get("mount_dec_deg"))
        if mount[0] is None or mount[1] is None:
            mount = (t.mount_ra_deg, t.mount_dec_deg)
        if mount[0] is None:
            mount = job.goto
        settings = CenteringSettings(tolerance_arcsec=job.tolerance_arcsec,
                                     max_tries=job.max_tries, method=job.method)
        step = centering_step(target_ra_deg=job.ra_deg, target_dec_deg=job.dec_deg,
                              solved_ra_deg=t.solved_ra_deg, solved_dec_deg=t.solved_dec_deg,
                              mount_ra_deg=mount[0], mount_dec_deg=mount[1], try_number=t.number,
                              settings=settings)
        t.separation_arcsec = step.separation_arcsec
        t.east_arcsec, t.north_arcsec = step.east_arcsec, step.north_arcsec
        t.action = step.action
        t.time_utc = utc_iso(self.obs.clock.now())
        job.final_record = record
        self._record_try(job, t)
        if step.action == "done":
            self._end(job, "done", f"within {job.tolerance_arcsec:g}\" "
                      f"({step.separation_arcsec:.1f}\") after {t.number} tr"
                      + ("y" if t.number == 1 else "ies"))
            return
        if step.action == "give_up":
            self._end(job, "failed", f"still {step.separation_arcsec:.1f}\" off after "
                      f"{t.number} tries (tolerance {job.tolerance_arcsec:g}\")")
            return
        obs = self.obs
        try:
            if step.action == "sync_and_goto":
                m_ra, m_dec = obs.mount.ra_deg, obs.mount.dec_deg
                moved = (m_ra is None or mount[0] is None or separation_arcsec(
                    m_ra, m_dec, mount[0], mount[1]) > self.s.sync_max_move_arcsec)
                if moved:
                    t.action = "goto"
                    t.reason = "the mount moved since the frame: not synced, offset slew instead"
                    dra = (job.ra_deg - t.solved_ra_deg + 180.0) % 360.0 - 180.0
                    self._goto(job, (mount[0] + dra) % 360.0,
                               max(-90.0, min(90.0, mount[1] + job.dec_deg - t.solved_dec_deg)),
                               now_m)
                    return
                obs.mount.sync(step.sync_ra_deg, step.sync_dec_deg)
            self._goto(job, step.goto_ra_deg, step.goto_dec_deg, now_m)
        except (CommandRefused, DeviceError) as exc:
            self._end(job, "failed", f"the correcting move was refused: {exc}")

    def _unsolved(self, job: CentringJob, reason: str, now_m: float) -> None:
        t = job.tries[-1]
        t.solved = False
        t.action = "retry" if t.number < job.max_tries else "give_up"
        t.reason = reason
        t.time_utc = utc_iso(self.obs.clock.now())
        self._record_try(job, t)
        if t.number >= job.max_tries:
            self._end(job, "failed", f"try {t.number} of {job.max_tries}: {reason}")
            return
        job.settle_until = now_m
        self._phase(job, "settling", now_m)

    def _record_try(self, job: CentringJob, t: CentringTry) -> None:
        if t.solved:
            msg = (f"{job.id}: try {t.number}: {t.separation_arcsec:.1f}\" off (solved by "
                   f"{t.solver}); {t.action}")
        else:
            msg = f"{job.id}: try {t.number}: {t.reason}; {t.action}"
        self.obs.emit("info" if t.solved else "warning", "centring", msg, job=job.id,
                      **{k: v for k, v in t.to_json().items() if k not in ("frame_path",)})

    # ------------------------------------------------------------------ moves

    def _goto(self, job: CentringJob, ra: float, dec: float, now_m: float) -> None:
        self.obs.mount_goto(ra % 360.0, dec)
        job.goto = (ra % 360.0, dec)
        self.slaver.slave(job.goto[0], job.goto[1], now_m, now=True)
        self._phase(job, "slewing", now_m)

    def _phase(self, job: CentringJob, phase: str, now_m: float) -> None:
        """Move the job to ``phase`` along a declared transition, guarded by safety.

        Raises:
            IllegalTransition: not declared (a bug).
            UnsafeTransition: unsafe now (the phase stays).
        """
        self.machine.to(phase)
        job.phase = phase
        job.phase_since = now_m

    # ------------------------------------------------------------------ ending

    def _end(self, job: CentringJob, state: str, reason: str) -> None:
        obs = self.obs
        if job.phase == "exposing" and self.camera is not None:
            self.camera.abort()
        self.machine.reset("idle")
        job.state = state
        job.reason = reason
        job.ended_utc = utc_iso(obs.clock.now())
        job.elapsed_s = round(obs.clock.monotonic() - job.started_m, 1)
        level = {"done": "info", "aborted": "info"}.get(state, "warning")
        obs.emit(level, "centring", f"{job.id}: {state}: {reason}", job=job.id, state=state,
                 tries=len(job.tries), final_separation_arcsec=job.final_separation_arcsec)
        self._last_json = job.to_json()
        try:
            obs.store.set_state("centring_last", self._last_json)
        except Exception as exc:  # noqa: BLE001 - the record is kept in memory; say why not stored
            log.warning("cannot store the last centring job: %s", exc)
        for fn in list(self.listeners):
            try:
                fn(job)
            except Exception:  # noqa: BLE001 - a listener bug must not stop the service
                log.exception("centring listener %r failed", fn)

    def _sequencer_observing(self) -> bool:
        from tenmon.daemon.services.sequencer import Phase

        seq = self.sequencer
        if seq is None:
            return False
        return seq.run is not None or seq.phase in (Phase.SLEWING, Phase.SETTLING,
                                                    Phase.EXPOSING, Phase.WAIT_SOLVE,
                                                    Phase.CENTERING)

    def stop_now(self) -> None:
        """Stop hook: a running job ends as aborted (the daemon is stopping)."""
        if self.busy:
            self._end(self.job, "aborted", "the daemon stopped")

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """The ``centring`` status section: the running (or last) job, short."""
        job = self.job if self.job is not None else None
        if job is None:
            last = self._last_json
            return {"running": False, "last": None if last is None else {
                k: last.get(k) for k in ("id", "state", "reason", "final_separation_arcsec")}}
        return {"running": not job.finished, "id": job.id, "state": job.state,
                "phase": None if job.finished else job.phase,
                "target": {"ra_deg": round(job.ra_deg, 6), "dec_deg": round(job.dec_deg, 6)},
                "tries": [{"try": t.number, "separation_arcsec": None if t.separation_arcsec
                           is None else round(t.separation_arcsec, 1), "action": t.action,
                           "solver": t.solver, "frame": Path(t.frame).name if t.frame else None,
                           "reason": t.reason} for t in job.tries],
                "final_separation_arcsec": None if job.final_separation_arcsec is None
                else round(job.final_separation_arcsec, 2), "reason": job.reason}


# ---------------------------------------------------------------------------- HTTP

class CenterBody(BaseModel):
    """``POST /center``: the target (ICRS degrees) and optional overrides of the settings."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    ra_deg: float = Field(ge=0, lt=360, description="ICRS right ascension, degrees")
    dec_deg: float = Field(ge=-90, le=90, description="ICRS declination, degrees")
    tolerance_arcsec: float | None = Field(default=None, gt=0, le=3600,
                                           description="centred when this close (arcsec)")
    max_tries: Annotated[int, Field(ge=1, le=50), INTEGRAL] | None = Field(
        default=None, description="frames at most")
    exposure_s: float | None = Field(default=None, gt=0, le=600, description="per frame, s")


class CenterAbortBody(BaseModel):
    """``POST /center/abort``: why (recorded)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    reason: str = Field(default="aborted by the operator", min_length=1, max_length=200)


class CenterQuery(BaseModel):
    """``GET /center``: which job (default the running or last one)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=100, description="a job id")


#: JSON Schema of a centring job as the API answers it (``CentringJob.to_json``).
JOB_SCHEMA = {"type": "object", "required": ["id", "state"],
              "properties": {"id": {"type": "string"}, "state": {"type": "string"}}}


def centring_routes(service: CentringService) -> list:
    """The :class:`~tenmon.daemon.api.kit.Route` s of ``POST /center``, ``GET /center`` and
    ``POST /center/abort``."""
    async def post_center(request, b: CenterBody):
        job = service.start(b.ra_deg, b.dec_deg, tolerance_arcsec=b.tolerance_arcsec,
                            max_tries=b.max_tries, exposure_s=b.exposure_s)
        return json_response({"ok": True, "job": job.to_json()}, status=202)

    async def get_center(request, q: CenterQuery):
        job = service.get(q.id)
        if job is None:
            if q.id is not None:
                return error_response("not_found", f"no centring job {q.id!r}", 404)
            return json_response({"job": None, "running": False})
        return json_response({"job": job, "running": service.busy
                              and job["id"] == service.job.id})

    async def post_abort(request, b: CenterAbortBody):
        job = service.abort(b.reason)
        return json_response({"ok": True, "job": job.to_json()})

    return [
        Route("POST", "/center", post_center, "centre the 60 cm on RA/Dec by plate solving",
              body=CenterBody, answers={202: "the job started (follow it with GET /center)"},
              answer_schema={"type": "object", "required": ["ok", "job"],
                             "properties": {"ok": {"const": True}, "job": JOB_SCHEMA}},
              tag="centring"),
        Route("GET", "/center", get_center, "a centring job (the running or last one)",
              query=CenterQuery, answers={200: "the job, or null"},
              answer_schema={"type": "object", "required": ["job", "running"],
                             "properties": {"job": {"anyOf": [JOB_SCHEMA, {"type": "null"}]},
                                            "running": {"type": "boolean"}}},
              errors={**READ_ERRORS, 404: "no such job"}, tag="centring"),
        Route("POST", "/center/abort", post_abort, "abort the running centring job",
              body=CenterAbortBody, answers={200: "the job, aborted"},
              answer_schema={"type": "object", "required": ["ok", "job"],
                             "properties": {"ok": {"const": True}, "job": JOB_SCHEMA}},
              errors={**COMMAND_ERRORS}, tag="centring"),
    ]


__all__ = ["CentringService", "CentringServiceSettings", "CentringJob", "CentringTry",
           "CentringError", "centring_routes", "CenterBody", "CenterAbortBody", "CenterQuery"]
