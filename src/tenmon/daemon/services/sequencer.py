"""The night's sequencer: a state machine advanced once per control tick, after safety.

For each planned block: slew the mount (unparking it), slave the dome to it (``dome_geometry``),
open slit and cover when safe, settle, expose ``count`` frames (or, with no camera driver, await
the frames a site's CCD program writes), centre on the first frame's plate solve (sync the mount
and slew again, or slew by the offset), move on. On a safety close it aborts the block, records
it, waits out the observatory's reopen hold-off (safe for ``safety.reopen_after_s``, the one
shared by every open path, kept across restarts) while it is still dark, re-plans with
``replan(..., WeatherClose)`` and reopens. At the end of the night (or of the plan) it closes
and parks.

Safety first: the supervisor acts in the same tick before this runs, every command goes through
the observatory (which refuses what is unsafe), and whenever the verdict is unsafe, the
supervisor is closing or an emergency stop is latched, the sequencer stops the block and only
waits. It never fights the supervisor.

Phases (``Phase``)::

    idle -> armed -> opening -> ready -> slewing -> settling -> exposing <-> wait_solve
                                  ^                                 |  \\-> centering -> settling
                                  \\---------- (block done) ---------/
    any observing phase --(unsafe)--> hold --(hold-off over, still dark)--> opening
    ready (plan done) / dawn --> closing -> done

The transitions are declared in :data:`TRANSITIONS` and kept by a ``daemon.phases.PhaseMachine``:
an undeclared move raises, and every move into an observing phase asks safety first (the same
test as the top of the tick); a refused one takes the safety close at once.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from tenmon.core.astro import (
    lst_deg,
    radec_to_altaz,
    separation_arcsec,
    separation_deg,
    sun_altitude_deg,
)
from tenmon.daemon.dome_geometry import pier_side_for
from tenmon.config.services import DomeGeometry, SequencerSettings
from tenmon.daemon.services.phases import PhaseMachine, UnsafeTransition
from tenmon.daemon.services.ports import ExposureGate, ServiceObservatory, TelescopeClaim
from tenmon.daemon.slaving import DomeSlaver
from tenmon.drivers.base import MountState, ShutterState
from tenmon.drivers.camera import CameraState
from tenmon.core.errors import CommandRefused, DeviceError
from tenmon.scheduler.planner import Plan, ScheduledBlock
from tenmon.core.timefmt import utc_iso
from tenmon.vision.solve.centering import centering_step
from tenmon.config.vision import CenteringSettings

log = logging.getLogger(__name__)

#: while the storage watch refuses exposures (disk nearly full), ask again this often (s)
STORAGE_RETRY_S = 10.0


class Phase(str, enum.Enum):
    IDLE = "idle"
    ARMED = "armed"
    OPENING = "opening"
    READY = "ready"
    SLEWING = "slewing"
    SETTLING = "settling"
    EXPOSING = "exposing"
    WAIT_SOLVE = "wait_solve"
    CENTERING = "centering"
    FOCUSING = "focusing"
    HOLD = "hold"
    CLOSING = "closing"
    DONE = "done"


#: Phases in which the slit is (or is being) open for observing.
OBSERVING = {Phase.OPENING, Phase.READY, Phase.SLEWING, Phase.SETTLING, Phase.EXPOSING,
             Phase.WAIT_SOLVE, Phase.CENTERING, Phase.FOCUSING}

#: Phases entered whatever safety says (nothing opens or moves toward observing in them).
SAFE = {Phase.IDLE, Phase.ARMED, Phase.HOLD, Phase.CLOSING, Phase.DONE}

_BLOCK_OUT = (Phase.READY, Phase.HOLD, Phase.CLOSING)  # a block ends, safety closes, dawn
#: The sequencer's declared transitions (the module docstring's picture). Every observing phase
#: may go to ``hold`` (a safety close) and ``closing`` (dawn, no plan); staying is always allowed.
TRANSITIONS: dict[Phase, tuple[Phase, ...]] = {
    Phase.IDLE: (Phase.ARMED, Phase.DONE),
    Phase.ARMED: (Phase.OPENING, Phase.CLOSING, Phase.DONE),
    Phase.OPENING: (Phase.READY, Phase.ARMED, Phase.HOLD, Phase.CLOSING),
    Phase.READY: (Phase.SLEWING,) + _BLOCK_OUT,
    Phase.SLEWING: (Phase.SETTLING,) + _BLOCK_OUT,
    Phase.SETTLING: (Phase.EXPOSING,) + _BLOCK_OUT,
    Phase.EXPOSING: (Phase.WAIT_SOLVE, Phase.CENTERING, Phase.FOCUSING) + _BLOCK_OUT,
    Phase.WAIT_SOLVE: (Phase.EXPOSING, Phase.CENTERING) + _BLOCK_OUT,
    Phase.CENTERING: (Phase.SETTLING,) + _BLOCK_OUT,
    Phase.FOCUSING: (Phase.EXPOSING,) + _BLOCK_OUT,
    Phase.HOLD: (Phase.OPENING, Phase.CLOSING, Phase.DONE),
    Phase.CLOSING: (Phase.DONE,),
    Phase.DONE: (Phase.ARMED,),
}


def block_key(b: ScheduledBlock) -> str:
    """A stable id of one planned visit (name, visit, planned start)."""
    return f"{b.name}#{b.visit}@{b.start.strftime('%Y%m%dT%H%M%S')}"


class _Keyed:
    """A plan's blocks in time order with their keys, computed once per plan."""

    def __init__(self, plan: Plan):
        self.blocks = [(block_key(b), b) for b in sorted(plan.scheduled, key=lambda b: b.start)]


@dataclass
class BlockRun:
    """A block being observed: what was taken, solved and corrected."""

    block: ScheduledBlock
    key: str
    started_utc: datetime
    frames: list[str] = field(default_factory=list)
    exposures_started: int = 0
    camera_errors: int = 0
    centre_try: int = 0
    centre_frame: str | None = None
    centre_frame_mount: tuple[float, float] | None = None
    centre_wait_until: float | None = None
    centred: bool = False
    separations_arcsec: list[float] = field(default_factory=list)
    pending: Any = None           # a CenteringStep to apply between exposures
    settle_until: float = 0.0
    slew_started: float = 0.0
    awaited: int = 0              # frames delivered while awaiting (no camera driver)
    storage_wait: float | None = None  # exposures refused for want of space: retry at

    def context(self) -> dict[str, Any]:
        return {"target": self.block.name, "block": self.key}


class Sequencer:
    """See the module docstring. Built and driven by ``daemon.night.NightOps``.

    Args:
        obs: the observatory's commands, states, safety, events, clock and config.
        camera: a :class:`~tenmon.drivers.camera.Camera`, or ``None`` to await frames written
            by a site's CCD program.
        geometry: the dome geometry.
        settings: :class:`SequencerSettings`.
        centering: the solver's centring settings (tolerance, tries, sync or offset).
        log_event: ``log_event(kind, target=None, **detail)`` writes the night log.
        on_block_done: ``(block, frames, outcome)`` with outcome ``observed``/``partial``.
        on_block_failed: ``(block, reason)`` (the target is dropped and the rest re-planned).
        on_weather_close: ``(t_close, t_reopen, reason)``: re-plan after a safety close.
        storage: the storage watch: exposures wait while it refuses them (``None``: never).

    ``telescope_claims``: others that may have the telescope for a while (a centring job, a
    Nayuta sync): no block starts while one of them is ``busy``. The composition root adds them.
    """

    def __init__(self, obs: ServiceObservatory, *, camera, geometry: DomeGeometry,
                 settings: SequencerSettings, centering: CenteringSettings,
                 log_event: Callable[..., None], on_block_done: Callable[..., None],
                 on_block_failed: Callable[..., None], on_weather_close: Callable[..., None],
                 storage: ExposureGate | None = None):
        self.obs = obs
        self.storage = storage
        self.telescope_claims: list[TelescopeClaim] = []
        self.camera = camera
        self.geometry = geometry
        self.s = settings
        self.centering = centering
        self.log_event = log_event
        self.on_block_done = on_block_done
        self.on_block_failed = on_block_failed
        self.on_weather_close = on_weather_close
        self.machine: PhaseMachine[Phase] = PhaseMachine(
            "sequencer", Phase.IDLE, TRANSITIONS, safe=SAFE, guard=self._unsafe_reason,
            on_change=self._changed)
        self.plan: Plan | None = None
        self._keyed: _Keyed | None = None
        self.handled: set[str] = set()
        self.run: BlockRun | None = None
        self.expected: dict[str, dict[str, Any]] = {}
        self.targets: dict[str, tuple[float, float]] = {}  # block key -> (ra, dec), tonight
        self._offset_logged: set[str] = set()
        self.recent: dict[str, Any] = {}   # path -> FrameRecord that arrived before take_frame
        self.dark_until: datetime | None = None   # when the night ends (the close job)
        self.open_twilight_alt_deg = -12.0
        self.opened_once = False
        self.closing_reason = ""
        self.hold_reason = ""
        self.hold_since: datetime | None = None
        self._retry_at = -1e9
        self._phase_since = 0.0
        self._open_started = 0.0
        self.slaver = DomeSlaver(obs, clock=obs.clock, site=obs.config.site, geometry=geometry,
                                 period_s=settings.dome_check_s, name="dome slaving")
        self._sun_cache: tuple[float, float] | None = None
        self._not_open_since: float | None = None
        self._started_m = obs.clock.monotonic()
        self.frame_service = None
        self.site = obs.config.site
        # issue 14: set by NightOps when configured
        self.focuser = None        # a Focuser
        self.filter_wheel = None   # a FilterWheel: each block's filter is selected
        self.autofocus = None      # an AutofocusService: focus when due
        self.af_run = None         # the AutofocusRun in progress
        self._af_paths: dict[str, None] = {}   # autofocus frames (insertion-ordered set)

    @property
    def phase(self) -> Phase:
        """The current phase (:attr:`machine`'s). The sequencer itself moves only through
        ``_to`` (declared, guarded); assigning sets the phase outright, for tests that stage
        one (``PhaseMachine.force``)."""
        return self.machine.state

    @phase.setter
    def phase(self, value: Phase) -> None:
        self.machine.force(Phase(value))

    # ------------------------------------------------------------------ control from NightOps

    def arm(self, why: str) -> None:
        """The night has begun: open when safe and dark enough."""
        if self.phase in (Phase.IDLE, Phase.DONE):
            self.handled.clear()  # a new night: nothing of the last one's plan is carried over
            self.targets.clear()
            self._offset_logged.clear()
            if self.autofocus is not None:
                self.autofocus.new_night()
            self.plan, self._keyed = None, None
            self._final_close = True
            self._to(Phase.ARMED, why)

    def set_plan(self, plan: Plan) -> None:
        """Use ``plan`` from now on (blocks already run are skipped by key). After a close for
        want of blocks (not dawn), a plan with new blocks re-arms the night."""
        self.plan = plan
        self._keyed = _Keyed(plan)
        n = sum(1 for k, _ in self._keyed.blocks if k not in self.handled)
        self.obs.emit("info", "sequencer", f"plan for {plan.night.date}: {n} block(s) to run, "
                      f"{len(plan.unscheduled)} target(s) left out")
        if n and self.phase == Phase.DONE and not self._final_close:
            self._to(Phase.ARMED, "new blocks to observe")

    def no_plan(self, reason: str) -> None:
        """Planning failed and there is no plan to run: do not sit open; close until a plan
        comes (``set_plan`` re-arms)."""
        if self.phase in OBSERVING:
            self._abort_block(reason)
            self._start_closing(reason, final=False)
        elif self.phase in (Phase.ARMED, Phase.HOLD):
            self._final_close = False
            self._to(Phase.DONE, reason)

    def end_night(self, reason: str) -> None:
        """Dawn (or an operator): stop, close and park; then idle until the next night."""
        if self.phase in (Phase.IDLE, Phase.DONE):
            self.machine.reset(Phase.DONE)
            return
        self._abort_block(f"night ended ({reason})")
        self._start_closing(reason, final=True)

    # ------------------------------------------------------------------ frames

    def context_for(self, path: Path) -> dict[str, Any]:
        """The target and block of a frame the intake just delivered."""
        ctx = self.expected.get(str(path))
        if ctx is not None:
            return ctx
        if self.run is not None and self.phase in (Phase.EXPOSING, Phase.WAIT_SOLVE):
            if self.camera is None:
                self.run.awaited += 1
                self.run.frames.append(str(path))
                if self.run.centre_frame is None and self.s.centre:
                    self._mark_centre_frame(str(path))
            return self.run.context()
        return {}

    def on_frame(self, record) -> None:
        """A frame's result (from the frame service): centre on it if it is the one awaited;
        every solved frame's offset from its target goes into the night log."""
        if str(record.path) in self._af_paths or \
                (record.context or {}).get("purpose") == "autofocus":
            if self.af_run is not None:
                self.af_run.on_frame(record)
            return
        self._log_offset(record)
        run = self.run
        if run is None or record.context.get("block") != run.key or record.path not in run.frames:
            # not (yet) a frame of the block in progress: keep it for take_frame()
            self.recent[record.path] = record
            if len(self.recent) > 50:
                self.recent.pop(next(iter(self.recent)))
            return
        if record.path != run.centre_frame:
            if record.solved:
                self._note_separation(run, record)
            return
        try:
            self._centre_on(run, record)
        except UnsafeTransition as exc:
            self._refused(exc)

    # ------------------------------------------------------------------ the tick

    def tick(self) -> None:
        obs = self.obs
        now_m = obs.clock.monotonic()
        unsafe = self._unsafe_reason()
        if self.phase in OBSERVING and unsafe is not None:
            self._safety_close(unsafe)
            return
        if self.phase in OBSERVING and self.phase != Phase.OPENING and not self._open_ok():
            # a slit or cover that closes by itself (a fault, a lost reading) ends the block like
            # a safety close; a reading that flickers for a moment does not
            if self._not_open_since is None:
                self._not_open_since = now_m
            elif now_m - self._not_open_since > 5.0:
                self._safety_close(f"slit or cover no longer open ({obs.supervisor.describe()})")
                return
        else:
            self._not_open_since = None
        if self.run is not None and self.phase in (Phase.SLEWING, Phase.SETTLING, Phase.EXPOSING,
                                                   Phase.WAIT_SOLVE, Phase.CENTERING,
                                                   Phase.FOCUSING):
            self.slaver.slave(self.run.block.ra_deg, self.run.block.dec_deg, now_m)
        try:
            self.machine.handler(self)(now_m)
        except UnsafeTransition as exc:
            self._refused(exc)

    def _unsafe_reason(self) -> str | None:
        """The guard of every move into an observing phase: ``None`` when safe, else why not
        (the verdict's reasons, the supervisor closing, an emergency stop)."""
        obs = self.obs
        if obs.verdict.safe and not obs.supervisor.closing and not obs.emergency:
            return None
        return "; ".join(obs.verdict.reasons) or (
            "emergency stop" if obs.emergency else "safety supervisor closing")

    def _refused(self, exc: UnsafeTransition) -> None:
        """A move into an observing phase was refused (safety changed within the tick): take
        the safety path now instead of on the next tick."""
        log.info("sequencer: %s", exc)
        if self.phase in OBSERVING:
            self._safety_close(exc.reason)

    # ------------------------------------------------------------------ phases

    def _tick_idle(self, now_m: float) -> None:
        pass

    def _tick_done(self, now_m: float) -> None:
        pass

    def _tick_armed(self, now_m: float) -> None:
        if self._can_open(now_m):
            self._start_opening()

    def _tick_hold(self, now_m: float) -> None:
        obs = self.obs
        safe = obs.verdict.safe and not obs.supervisor.closing and not obs.emergency
        if not safe or obs.hold_off_remaining_s() > 0:
            return  # the shared reopen hold-off (Observatory.check_open) decides when
        if not self._dark_enough():
            return
        if self._can_open(now_m):
            now = obs.clock.now()
            ready = now + timedelta(seconds=obs.config.slit.travel_time_s)
            self.log_event("reopen", reason=self.hold_reason,
                           closed_for_s=round((now - self.hold_since).total_seconds(), 1)
                           if self.hold_since else None)
            self.on_weather_close(self.hold_since or now, ready, self.hold_reason)
            self._start_opening()

    def _tick_opening(self, now_m: float) -> None:
        obs = self.obs
        slit, cover = obs.slit.state, obs.cover.state
        if slit == ShutterState.OPEN and cover == ShutterState.OPEN:
            first = not self.opened_once
            self.opened_once = True
            self.log_event("opened", first=first)
            self._to(Phase.READY, "slit and cover open")
            return
        try:
            if slit not in (ShutterState.OPEN, ShutterState.OPENING):
                obs.slit_open()
            if cover not in (ShutterState.OPEN, ShutterState.OPENING):
                obs.cover_open()
        except CommandRefused as exc:
            obs.emit("warning", "sequencer", f"cannot open: {exc}")
            self._retry_at = now_m + self.s.open_retry_s
            self._to(Phase.HOLD if self.hold_since else Phase.ARMED, f"open refused: {exc}")
            return
        limit = max(obs.config.slit.travel_time_s + obs.config.slit.margin_s,
                    obs.config.cover.travel_time_s + obs.config.cover.margin_s) + 10.0
        if now_m - self._open_started > limit:
            obs.emit("error", "sequencer", f"slit and cover not open after {limit:.0f} s "
                     f"({obs.supervisor.describe()}): closing")
            self._retry_at = now_m + self.s.open_retry_s
            self.hold_reason = "opening failed"
            self.hold_since = obs.clock.now()
            self._close_devices()
            self._to(Phase.HOLD, "opening failed")

    def _tick_ready(self, now_m: float) -> None:
        if self.plan is None:
            return
        now = self.obs.clock.now()
        block = self._next_block(now)
        if block is None:
            if self.s.close_when_plan_done and self._plan_exhausted(now):
                self._start_closing("no block left in tonight's plan", final=False)
            return
        lead = block.overhead_s + 30.0
        if now < block.start - timedelta(seconds=lead):
            return  # early: stay where we are until it is time to slew
        if any(claim.busy for claim in self.telescope_claims):
            return  # an operator's centring job (or a Nayuta sync) has the telescope for now
        self._start_block(block, now_m)

    def _tick_slewing(self, now_m: float) -> None:
        run, obs = self.run, self.obs
        if run is None:
            self._to(Phase.READY, "no block")
            return
        mstate = obs.mount.state
        if mstate == MountState.ERROR:
            self._fail_block(f"mount error: {obs.mount.error}")
            return
        dome_ok = self.slaver.on_target(run.block.ra_deg, run.block.dec_deg)
        if mstate == MountState.TRACKING and dome_ok:
            run.settle_until = now_m + self.s.settle_s
            self._to(Phase.SETTLING, "mount and dome on target")
            return
        if now_m - run.slew_started > self.s.slew_timeout_s:
            self._fail_block(f"not on target after {self.s.slew_timeout_s:g} s (mount "
                             f"{mstate.value}, dome {obs.dome.state.value})")

    def _tick_settling(self, now_m: float) -> None:
        run = self.run
        if run is None:
            self._to(Phase.READY, "no block")
            return
        if self.obs.mount.state != MountState.TRACKING:
            return
        wheel = self.filter_wheel
        if wheel is not None and run.block.filter:
            if wheel.error:
                self._fail_block(f"filter wheel: {wheel.error}")
                return
            if wheel.moving:
                return
        if now_m >= run.settle_until:
            self._to(Phase.EXPOSING, "settled")
            self._next_exposure(now_m)

    def _tick_focusing(self, now_m: float) -> None:
        run, af = self.run, self.af_run
        if run is None or af is None:
            self.af_run = None
            self._to(Phase.READY if run is None else Phase.EXPOSING, "no autofocus")
            if run is not None:
                self._next_exposure(now_m)
            return
        af.tick()
        if not af.finished:
            return
        self.af_run = None
        res = af.result
        if self.autofocus is not None:
            self.autofocus.finished(af)
        self.log_event("autofocus", target=run.block.name, block=run.key, **res.to_json())
        if res.ok:
            self.obs.emit("info", "autofocus", f"focused at {res.best_position} (HFR "
                          f"{res.verify_hfr_px:.2f} px, {res.sweeps} sweep(s), "
                          f"{res.elapsed_s:.0f} s)")
        else:
            self.obs.emit("warning", "autofocus", f"autofocus failed: {res.reason}; the "
                          "night goes on at the old focus")
        self._to(Phase.EXPOSING, "focused" if res.ok else "autofocus failed")
        self._next_exposure(now_m)

    def _maybe_focus(self) -> bool:
        """Start an autofocus run if one is due (then the phase is FOCUSING)."""
        af, run = self.autofocus, self.run
        if af is None or self.camera is None or run is None or self.af_run is not None:
            return False
        why = af.due()
        if why is None:
            return False
        meta = {"OBJECT": f"autofocus {run.block.name}"}
        if run.block.filter:
            meta["FILTER"] = run.block.filter
        self.af_run = af.start(expect=self._expect_autofocus, meta=meta)
        self.obs.emit("info", "autofocus", f"autofocus ({why}) from position "
                      f"{self.af_run.result.start_position}")
        self.log_event("autofocus_start", target=run.block.name, block=run.key, reason=why,
                       position=self.af_run.result.start_position)
        self._to(Phase.FOCUSING, f"autofocus: {why}")
        return True

    def _expect_autofocus(self, path: str, context: dict[str, Any]) -> None:
        # the frame service keeps only target and block of a frame's context: autofocus
        # frames are told by their paths
        self.expected[str(path)] = dict(context)
        self._af_paths[str(path)] = None
        while len(self._af_paths) > 200:
            self._af_paths.pop(next(iter(self._af_paths)))

    def _tick_exposing(self, now_m: float) -> None:
        run = self.run
        if run is None:
            self._to(Phase.READY, "no block")
            return
        cam = self.camera
        if cam is None:
            self._await_frames(run)
            return
        if cam.state == CameraState.ERROR:
            run.camera_errors += 1
            err = cam.error
            self.obs.emit("error", "camera", f"camera: {err}")
            if hasattr(cam, "clear_error"):
                cam.clear_error()
            if run.camera_errors > self.s.camera_retries:
                self._fail_block(f"camera failed {run.camera_errors} times: {err}")
                return
            self._next_exposure(now_m, retry=True)
            return
        if run.storage_wait is not None:
            if now_m >= run.storage_wait:
                self._next_exposure(now_m)
            return
        path = cam.take_frame()
        if path is None:
            return
        self._frame_taken(run, str(path))
        self._after_frame(run, now_m)

    def _tick_wait_solve(self, now_m: float) -> None:
        run = self.run
        if run is None:
            self._to(Phase.READY, "no block")
            return
        if run.pending is not None:
            self._apply_pending(run, now_m)
            return
        if run.centred or run.centre_frame is None or (
                run.centre_wait_until is not None and now_m >= run.centre_wait_until):
            self._to(Phase.EXPOSING, "continue without waiting for the solve")
            self._next_exposure(now_m)

    def _tick_centering(self, now_m: float) -> None:
        run, obs = self.run, self.obs
        if run is None:
            self._to(Phase.READY, "no block")
            return
        if obs.mount.state == MountState.ERROR:
            self._fail_block(f"mount error while centring: {obs.mount.error}")
            return
        if obs.mount.state == MountState.TRACKING and self.slaver.on_target(
                run.block.ra_deg, run.block.dec_deg):
            run.settle_until = now_m + self.s.settle_s
            self._to(Phase.SETTLING, "centring slew done")
        elif now_m - run.slew_started > self.s.slew_timeout_s:
            self._fail_block("centring slew did not finish")

    def _tick_closing(self, now_m: float) -> None:
        obs = self.obs
        if obs.supervisor.in_safe_state() and not obs.dome.slewing:
            self.log_event("closed", reason=self.closing_reason, final=self._final_close)
            self._to(Phase.DONE, "closed and parked")
            return
        if now_m - self._phase_since > 60.0 and now_m - self._retry_at > 60.0:
            self._retry_at = now_m
            self._close_devices()  # re-issue what is still missing

    # ------------------------------------------------------------------ blocks

    def _next_block(self, now: datetime) -> ScheduledBlock | None:
        if self._keyed is None:
            return None
        for key, b in self._keyed.blocks:
            if key in self.handled:
                continue
            late = timedelta(seconds=self.s.late_grace_s)
            if now + timedelta(seconds=b.exposure_s) > b.end + late:
                self.handled.add(key)
                self.log_event("block_skipped", target=b.name, block=key,
                               reason="its time passed before it could start")
                continue
            return b
        return None

    def _plan_exhausted(self, now: datetime) -> bool:  # noqa: ARG002
        return self._keyed is not None and all(k in self.handled for k, _ in self._keyed.blocks)

    def _start_block(self, block: ScheduledBlock, now_m: float) -> None:
        key = block_key(block)  # noqa: the same as the plan's cached key
        self.handled.add(key)
        now = self.obs.clock.now()
        self.run = BlockRun(block=block, key=key, started_utc=now, slew_started=now_m)
        self.targets[key] = (block.ra_deg, block.dec_deg)
        self.log_event("block_start", target=block.name, block=key, ra_deg=block.ra_deg,
                       dec_deg=block.dec_deg, count=block.count, exposure_s=block.exposure_s,
                       planned_start=utc_iso(block.start), planned_end=utc_iso(block.end))
        try:
            self.obs.mount_goto(block.ra_deg, block.dec_deg)
        except CommandRefused as exc:
            if exc.code in ("unsafe", "emergency", "shutting_down"):
                return  # the safety path takes over on this tick or the next
            self._fail_block(f"goto refused: {exc}")
            return
        if self.filter_wheel is not None and block.filter:
            try:  # the wheel turns while the mount slews
                self.filter_wheel.select(block.filter)
            except DeviceError as exc:
                self._fail_block(f"filter {block.filter!r}: {exc.detail}")
                return
        # a new block: aim the dome now, even when it stands within half the tolerance
        self.slaver.slave(block.ra_deg, block.dec_deg, now_m, now=True, resend=True)
        self._to(Phase.SLEWING, f"slewing to {block.name}")

    def _next_exposure(self, now_m: float, retry: bool = False) -> None:  # noqa: ARG002
        run = self.run
        if run is None:
            return
        b = run.block
        now = self.obs.clock.now()
        over = now + timedelta(seconds=b.exposure_s) > b.end + timedelta(
            seconds=self.s.late_grace_s)
        if len(run.frames) >= b.count or over:
            self._finish_block(now)
            return
        if self.camera is None:
            return  # await mode: frames arrive through the intake
        if self._maybe_focus():
            return
        storage = self.storage
        refusal = storage.exposure_refusal() if storage is not None else None
        if refusal is not None:
            if run.storage_wait is None:
                self.obs.emit("warning", "sequencer", f"{b.name}: exposure refused: {refusal}; "
                              "waiting for space (the block ends at its planned end)",
                              reason=refusal)
                self.log_event("exposure_refused", target=b.name, block=run.key, reason=refusal)
            run.storage_wait = now_m + STORAGE_RETRY_S
            return
        if run.storage_wait is not None:
            run.storage_wait = None
            self.obs.emit("info", "sequencer", f"{b.name}: exposures resume (space again)")
        meta = {"OBJECT": b.name, "TMBLOCK": run.key[:68], "IMAGETYP": "Light Frame"}
        if b.filter:
            meta["FILTER"] = b.filter
        try:
            self.camera.start_exposure(b.exposure_s, name=b.name, meta=meta)
        except DeviceError as exc:
            run.camera_errors += 1
            self.obs.emit("error", "camera", f"cannot start exposure: {exc.detail}")
            if run.camera_errors > self.s.camera_retries:
                self._fail_block(f"camera refused the exposure: {exc.detail}")
            return
        run.exposures_started += 1

    def _frame_taken(self, run: BlockRun, path: str) -> None:
        run.frames.append(path)
        self.expected[path] = run.context()
        if len(self.expected) > 200:
            self.expected.pop(next(iter(self.expected)))
        if self.frame_service is not None:
            self.frame_service.set_context(path, run.context())
        if self.s.centre and not run.centred and run.centre_frame is None \
                and run.pending is None:
            self._mark_centre_frame(path)
        early = self.recent.pop(path, None)
        if early is not None:
            self.on_frame(early)

    def _mark_centre_frame(self, path: str) -> None:
        run = self.run
        if run is None:
            return
        run.centre_frame = path
        run.centre_try += 1
        run.centre_wait_until = self.obs.clock.monotonic() + self.s.centre_wait_s
        m = self.obs.mount
        run.centre_frame_mount = (m.ra_deg, m.dec_deg) if m.ra_deg is not None else None

    def _after_frame(self, run: BlockRun, now_m: float) -> None:
        if run.pending is not None:
            self._apply_pending(run, now_m)
            return
        # only the block's first frame is waited for: after a correction the next frame's solve
        # is a check, applied between exposures if it is still needed
        waiting = (self.s.centre and not run.centred and run.centre_frame is not None
                   and run.centre_try == 1 and len(run.frames) < run.block.count)
        if waiting and run.centre_wait_until is not None and now_m < run.centre_wait_until:
            self._to(Phase.WAIT_SOLVE, "waiting for the first frame's solve")
            return
        self._next_exposure(now_m)

    def _await_frames(self, run: BlockRun) -> None:
        now = self.obs.clock.now()
        b = run.block
        if run.awaited >= b.count or now > b.end + timedelta(seconds=self.s.late_grace_s):
            self._finish_block(now)

    def _finish_block(self, now: datetime) -> None:
        run = self.run
        if run is None:
            return
        b = run.block
        n = len(run.frames)
        outcome = "observed" if n >= b.count else ("partial" if n else "empty")
        self.log_event("block_done", target=b.name, block=run.key, outcome=outcome, frames=n,
                       count=b.count, centred=run.centred,
                       separations_arcsec=[round(x, 2) for x in run.separations_arcsec])
        if n:
            self.on_block_done(b, list(run.frames), outcome)
        self.run = None
        self._to(Phase.READY, f"{b.name}: {outcome} ({n}/{b.count} frames)")

    def _fail_block(self, reason: str) -> None:
        run = self.run
        if run is None:
            return
        b = run.block
        self._stop_autofocus(reason)
        if self.camera is not None:
            self.camera.abort()
        self.log_event("block_failed", target=b.name, block=run.key, reason=reason,
                       frames=len(run.frames))
        self.obs.emit("error", "sequencer", f"{b.name}: block failed: {reason}")
        self.run = None
        self.on_block_failed(b, reason)
        self._to(Phase.READY, f"{b.name} failed")

    def _stop_autofocus(self, reason: str) -> None:
        af = self.af_run
        if af is not None:
            self.af_run = None
            af.abort(reason)
            if self.autofocus is not None:
                self.autofocus.finished(af)

    def _abort_block(self, reason: str) -> None:
        run = self.run
        if run is None:
            return
        self._stop_autofocus(reason)
        if self.camera is not None:
            self.camera.abort()
        self.log_event("block_interrupted", target=run.block.name, block=run.key,
                       reason=reason, frames=len(run.frames))
        if run.frames:
            self.on_block_done(run.block, list(run.frames), "interrupted")
        self.run = None

    # ------------------------------------------------------------------ centring

    def _centre_on(self, run: BlockRun, record) -> None:
        if not record.solved:
            run.centre_frame = None
            if run.centre_try >= self.centering.max_tries:
                run.centred = True  # nothing to centre on: carry on as pointed
            self.obs.emit("warning", "sequencer", f"{run.block.name}: centring frame not solved "
                          f"({record.solve.get('reason') or record.error})"
                          + ("; not centred" if run.centred else "; the next frame is tried"))
            self.log_event("centre", target=run.block.name, block=run.key, action="unsolved",
                           try_number=run.centre_try)
            return
        sol = record.solve
        mount = (sol.get("mount_ra_deg"), sol.get("mount_dec_deg"))
        if mount[0] is None:
            mount = run.centre_frame_mount or (run.block.ra_deg, run.block.dec_deg)
        step = centering_step(target_ra_deg=run.block.ra_deg, target_dec_deg=run.block.dec_deg,
                              solved_ra_deg=sol["ra_deg"], solved_dec_deg=sol["dec_deg"],
                              mount_ra_deg=mount[0], mount_dec_deg=mount[1],
                              try_number=run.centre_try, settings=self.centering)
        run.separations_arcsec.append(step.separation_arcsec)
        self.log_event("centre", target=run.block.name, block=run.key, action=step.action,
                       separation_arcsec=round(step.separation_arcsec, 2),
                       try_number=step.try_number)
        run.centre_frame = None
        if step.action == "done":
            run.centred = True
        elif step.action == "give_up":
            run.centred = True
            self.obs.emit("warning", "sequencer", f"{run.block.name}: still "
                          f"{step.separation_arcsec:.0f}\" off after {step.try_number} tries")
        else:
            run.pending = (step, mount)
            if self.phase == Phase.WAIT_SOLVE:
                self._apply_pending(run, self.obs.clock.monotonic())

    def _log_offset(self, record) -> None:
        key = record.context.get("block")
        target = self.targets.get(key) if key else None
        if target is None or not record.solved or record.path in self._offset_logged:
            return
        self._offset_logged.add(record.path)
        sol = record.solve
        sep = separation_arcsec(target[0], target[1], sol["ra_deg"], sol["dec_deg"])
        self.log_event("offset", target=record.context.get("target"), block=key,
                       frame=Path(record.path).name, separation_arcsec=round(sep, 2))

    def _note_separation(self, run: BlockRun, record) -> None:
        sol = record.solve
        if sol.get("ra_deg") is None:
            return
        run.separations_arcsec.append(separation_arcsec(
            run.block.ra_deg, run.block.dec_deg, sol["ra_deg"], sol["dec_deg"]))

    def _apply_pending(self, run: BlockRun, now_m: float) -> None:
        (step, frame_mount), run.pending = run.pending, None
        obs = self.obs
        m_ra, m_dec = obs.mount.ra_deg, obs.mount.dec_deg
        try:
            if step.action == "sync_and_goto":
                moved = (m_ra is None or frame_mount[0] is None or separation_deg(
                    m_ra, m_dec, frame_mount[0], frame_mount[1]) * 3600 > 30.0)
                if moved:
                    obs.emit("warning", "sequencer", f"{run.block.name}: the mount moved since "
                             "the centring frame: not synced")
                    self._next_or_wait(run, now_m)
                    return
                obs.mount.sync(step.sync_ra_deg, step.sync_dec_deg)
                obs.emit("info", "sequencer", f"{run.block.name}: synced the mount on the solve "
                         f"({step.separation_arcsec:.0f}\" off), slewing to the target again")
            obs.mount_goto(step.goto_ra_deg, step.goto_dec_deg)
        except (CommandRefused, DeviceError) as exc:
            obs.emit("warning", "sequencer", f"{run.block.name}: centring move refused: {exc}")
            run.centred = True
            self._next_or_wait(run, now_m)
            return
        run.slew_started = now_m
        if self.s.centre and run.centre_try < self.centering.max_tries:
            run.centre_frame = None  # the next frame checks the correction
        else:
            run.centred = True
        self._to(Phase.CENTERING, f"centring {run.block.name}")

    def _next_or_wait(self, run: BlockRun, now_m: float) -> None:
        self._to(Phase.EXPOSING, "continue")
        self._next_exposure(now_m)

    # ------------------------------------------------------------------ dome

    def pier_side(self, ra: float | None, dec: float | None, lst: float | None) -> str | None:
        """Pier side of the mount at a position (German mounts; ``None`` for a fork)."""
        if ra is None or lst is None:
            return None
        return pier_side_for(lst - ra, self.geometry)

    # ------------------------------------------------------------------ opening and closing

    def _open_ok(self) -> bool:
        obs = self.obs
        return (obs.slit.state in (ShutterState.OPEN, ShutterState.OPENING)
                and obs.cover.state in (ShutterState.OPEN, ShutterState.OPENING))

    def _dark_enough(self) -> bool:
        now = self.obs.clock.now()
        if self.dark_until is not None and now + timedelta(seconds=self.s.reopen_min_dark_s) \
                >= self.dark_until:
            return False
        # the loop's low-precision sun is within ~0.05 deg of the jobs' astropy twilight
        return self._sun_alt() <= self.open_twilight_alt_deg + 0.5

    def _sun_alt(self) -> float:
        t = self.obs.clock.monotonic()
        if self._sun_cache is None or t - self._sun_cache[0] > 30.0:
            self._sun_cache = (t, sun_altitude_deg(self.obs.clock.now(), self.site.latitude_deg,
                                                   self.site.longitude_deg))
        return self._sun_cache[1]

    def _can_open(self, now_m: float) -> bool:
        obs = self.obs
        if now_m < self._retry_at or now_m - self._started_m < self.s.startup_grace_s:
            return False
        if obs.emergency or obs.shutting_down or obs.supervisor.closing or not obs.verdict.safe:
            return False
        if obs.hold_off_remaining_s() > 0:
            return False
        return self._dark_enough()

    def _start_opening(self) -> None:
        self._open_started = self.obs.clock.monotonic()
        self._to(Phase.OPENING, "opening slit and cover")
        self._tick_opening(self._open_started)

    def _safety_close(self, reasons: str) -> None:
        obs = self.obs
        self._abort_block(f"safety: {reasons}")
        self.hold_reason = reasons
        self.hold_since = obs.clock.now()
        self.log_event("safety_close", reason=reasons, state=obs.supervisor.describe())
        self._to(Phase.HOLD, f"safety close: {reasons}")

    def _start_closing(self, reason: str, *, final: bool) -> None:
        self.closing_reason = reason
        self._final_close = final
        self._close_devices()
        self._retry_at = self.obs.clock.monotonic()
        self._to(Phase.CLOSING, reason)

    _final_close = True

    def _close_devices(self) -> None:
        obs = self.obs
        if self.camera is not None:
            self.camera.abort()
        for fn in (obs.slit_close, obs.cover_close, obs.mount_park, obs.dome_park):
            try:
                fn()
            except CommandRefused as exc:
                log.warning("closing: %s", exc)

    def _to(self, phase: Phase, why: str) -> None:
        """Move to ``phase`` along a declared transition, guarded by safety.

        Raises:
            IllegalTransition: not declared (a bug).
            UnsafeTransition: into an observing phase while unsafe (the phase stays).
        """
        self.machine.to(phase, why)
        self._phase_since = self.obs.clock.monotonic()

    def _changed(self, old: Phase, new: Phase, why: str) -> None:
        log.info("sequencer: %s -> %s (%s)", old.value, new.value, why)
        self.obs.emit("info", "sequencer", f"{new.value}: {why}")

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        run = self.run
        out: dict[str, Any] = {"phase": self.phase.value, "hold_reason": self.hold_reason or None,
                               "hold_off_s": round(self.obs.hold_off_remaining_s(), 1)}
        if run is not None:
            out["block"] = {"target": run.block.name, "key": run.key,
                            "frames": len(run.frames), "count": run.block.count,
                            "centred": run.centred,
                            "separations_arcsec": [round(x, 1) for x in run.separations_arcsec]}
        if self.autofocus is not None:
            out["autofocus"] = self.autofocus.status()
            if self.af_run is not None:
                out["autofocus"]["running"] = {"phase": self.af_run.phase.value,
                                               "points": len(self.af_run.points),
                                               "sweep": self.af_run.sweep}
        if self.plan is not None and self._keyed is not None:
            left = [b for k, b in self._keyed.blocks if k not in self.handled]
            out["plan"] = {"night": self.plan.night.date.isoformat(),
                           "blocks": len(self._keyed.blocks), "left": len(left),
                           "next": left[0].name if left else None}
        return out


def altitude_now(obs, ra: float, dec: float) -> float:
    """Altitude (deg) of (ra, dec) now at the site (low precision, for the loop)."""
    site = obs.config.site
    return radec_to_altaz(ra, dec, lst_deg(obs.clock.now(), site.longitude_deg),
                          site.latitude_deg)[0]
