"""Following Nayuta in the daemon: slit-viewer frame -> target on the sky -> centre the 60 cm -> brightness in both.

A sync (``POST /api/v1/nayuta/sync``) runs as a small state machine on the observatory's tick:

1. ``frame``: the newest slit-viewer frame. At a site the watched directory
   (``drivers.nayuta_feed.NayutaDirectoryFeed``: the newest complete frame, refused when stale);
   in simulated mode the simulated feed renders Nayuta's current target (a star of the simulated
   sky near the zenith unless one was chosen with ``POST /sim/nayuta``) with Nayuta's reported
   position, pointing error included, in its header.
2. ``locating``: ``vision.nayuta.locate_target`` on a worker thread: the slit, the target on it,
   its sky position by plate-solving the slit viewer with the configured solver and catalogue
   (``route = solve``), or by registering it inside the last 60 cm frame when that frame has a
   WCS and covers Nayuta's position (``route = register``).
3. ``centring``: a centring job (``daemon.centring``) on the target's position.
4. ``photometry``: ``locate_target`` again with the 60 cm's final (solved) frame: aperture
   photometry of the target there, and the registration route as a cross-check of the position.

``follow``: after each sync the feed is watched every ``poll_s``; when Nayuta's reported
position moves by more than ``follow_threshold_arcsec`` the 60 cm syncs again.
``POST /nayuta/stop`` ends following (and a sync in progress).

Magnitudes are instrumental (``-2.5 log10(ADU/s)``); with known zero points (simulated mode:
the simulated cameras'; at a site: ``zero_point_*`` settings) calibrated ones are added.
The slit viewer's magnitude comes from the light on the jaws beside the slit: the star is at
least that bright (``mag_slit_viewer_is_limit``); the slit-loss-corrected model value is given too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from concurrent.futures import Future
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tenmon.core.astro import separation_arcsec
from tenmon.daemon.services.centring import CentringError, CentringService
from tenmon.daemon.services.phases import PhaseMachine
from tenmon.drivers.nayuta_feed import SlitViewerFrame
from tenmon.config.services import NayutaDaemonSettings, SimulatedNayutaTarget
from tenmon.core.errors import CommandRefused, DeviceError, TenmonError
from tenmon.core.timefmt import utc_iso

log = logging.getLogger(__name__)


#: The sync's declared transitions (the module docstring's steps), ``idle`` between syncs. Only
#: ``centring`` moves the telescope: it alone is entered through the safety guard (the centring
#: service's); reading and locating frames and measuring them are safe whatever the weather.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "idle": ("frame",),
    "frame": ("locating", "idle"),
    "locating": ("centring", "idle"),
    "centring": ("photometry", "idle"),
    "photometry": ("idle",),
}
SAFE = ("idle", "frame", "locating", "photometry")


def feed_problem(settings: NayutaDaemonSettings, *, simulated: bool) -> str | None:
    """Why following Nayuta cannot be offered with these settings, or ``None`` when it can."""
    if not settings.enabled:
        return "following Nayuta is off ([nayuta] enabled = false)"
    if settings.feed.type == "simulated" and not simulated:
        # a site never falls back to a simulator
        return ("no slit-viewer feed configured: set [nayuta.feed] type = "
                "\"directory\" and directory = the slit viewer's folder")
    return None


class SyncRun:
    """One sync: from a slit-viewer frame to the 60 cm centred on the target."""

    def __init__(self, run_id: str, mode: str, started_m: float, started_utc: str,
                 started_wall: float):
        self.id = run_id
        self.mode = mode
        self.started_m = started_m
        self.started_utc = started_utc
        self.started_wall = started_wall
        self.state = "running"
        self.phase = "frame"
        self.reason: str | None = None
        self.frame: SlitViewerFrame | None = None
        self.reported: tuple[float, float] | None = None
        self.location = None        # NayutaLocation of the slit viewer
        self.final_location = None  # NayutaLocation with the 60 cm's final frame
        self.future: Future | None = None
        self.future_started = 0.0
        self.centring: dict[str, Any] | None = None
        self.centring_id: str | None = None
        self.final_frame: str | None = None
        self.ended_utc: str | None = None
        self.elapsed_s: float | None = None
        self.warnings: list[str] = []
        self.sim_truth: dict[str, Any] | None = None
        self.centring_state: str | None = None

    @property
    def finished(self) -> bool:
        return self.state != "running"


class NayutaService:
    """Nayuta sync and following on the observatory's tick. Built and wired by
    ``daemon.compose.install_centring``.

    Args:
        obs: the observatory (clock, config, events, store; ``world`` in simulated mode).
        centring: the :class:`~tenmon.daemon.services.centring.CentringService`.
        solver: the frame service's ``SolverSettings`` (the slit viewer's solver chain and
            catalogue).
        camera_settings: the 60 cm camera's settings (simulated zero point).
        settings: :class:`NayutaDaemonSettings`.
        feed: the slit-viewer feed (``drivers.nayuta_feed.make_feed``), ``None`` when
            :func:`feed_problem` names one.
        executor: where frames are located (a thread, not the control loop's).
        world: the simulated world (``None`` at a site): Nayuta's simulated target.
    """

    def __init__(self, obs, centring: CentringService, *, solver, camera_settings=None,
                 settings: NayutaDaemonSettings | None = None, feed=None, executor,
                 world=None):
        self.obs = obs
        self.centring = centring
        self.solver_settings = solver
        self.camera_settings = camera_settings
        self.s = settings or NayutaDaemonSettings()
        self.world = world
        self.simulated = world is not None
        self.unavailable: str | None = feed_problem(self.s, simulated=self.simulated)
        if self.unavailable is None and feed is None:
            raise ValueError("a usable [nayuta.feed] needs its feed")
        self.feed = feed if self.unavailable is None else None
        self.executor = executor
        self._seq = itertools.count(1)
        self.machine: PhaseMachine[str] = PhaseMachine(
            "nayuta", "idle", TRANSITIONS, safe=SAFE, guard=centring.safety_problem)
        self.run: SyncRun | None = None
        self.last: SyncRun | None = None
        self.following = False
        self._next_poll = -1e9
        self._synced_reported: tuple[float, float] | None = None
        self.sim_target: tuple[float, float, float] | None = None  # ra, dec, mag
        self._chains: dict[str, Any] = {}
        self._last60: Any = None  # the newest solved 60 cm FrameRecord with a WCS
        self._next_feed_poll = -1e9
        centring.listeners.append(self._centring_ended)

    # ------------------------------------------------------------------ commands

    @property
    def computing(self) -> bool:
        """A frame is being located on the worker thread."""
        return self.run is not None and self.run.future is not None and not self.run.future.done()

    def sync(self, *, once: bool = True) -> SyncRun:
        """Start a sync (``once``) or start following Nayuta. Non-blocking.

        Raises:
            CentringError: ``not_configured`` when there is no usable feed, ``busy`` when a sync
                runs, or a centring refusal (unsafe, slit or cover not open, ...), checked first
                so that a sync that cannot centre does not start.
        """
        if self.unavailable is not None:
            raise CentringError("not_configured", self.unavailable)
        if self.run is not None and not self.run.finished:
            raise CentringError("busy", f"a Nayuta sync ({self.run.id}) is running "
                                "(`POST /nayuta/stop` ends it)")
        self.centring.check_can_start()
        self.following = not once
        return self._start_run("once" if once else "follow")

    def stop(self) -> dict[str, Any]:
        """Stop following (and a sync in progress, with its centring job)."""
        was = self.following
        self.following = False
        run = self.run
        if run is not None and not run.finished:
            if self.centring.busy and self.centring.job.id == run.centring_id:
                self.centring.abort("Nayuta sync stopped")
            self._end(run, "aborted", "stopped by the operator")
        self.obs.emit("info", "nayuta", "following Nayuta stopped" if was else "Nayuta sync stopped")
        return {"ok": True, "following": False, "was_following": was}

    def set_sim_target(self, ra_deg: float, dec_deg: float) -> dict[str, Any]:
        """Simulated mode: Nayuta points at the simulated star nearest (ra, dec).

        Raises:
            CentringError: ``not_simulated`` with a directory feed or at a site; ``bad_request``
                for a position out of range; ``no_star`` (409) with no simulated star near it.
        """
        if not self.simulated or self.feed is None or self.s.feed.type != "simulated":
            raise CentringError("not_simulated", "`/sim/nayuta` needs the simulated observatory "
                                "with the simulated slit-viewer feed")
        if not (0 <= ra_deg < 360 and -90 <= dec_deg <= 90):
            raise CentringError("bad_request", f"RA {ra_deg} / Dec {dec_deg} out of range")
        t = self.s.simulated_target
        try:
            star = self.feed.nearest_star(ra_deg, dec_deg, mag_bright=t.mag_bright,
                                          mag_faint=t.mag_faint, radius_deg=t.search_radius_deg)
        except DeviceError as exc:  # no simulated star there: the sky's state, not the request
            raise CentringError("no_star", str(exc)) from None
        self.sim_target = star
        moved = separation_arcsec(ra_deg, dec_deg, star[0], star[1])
        self.obs.emit("info", "sim", f"simulated Nayuta now on the star at RA {star[0]:.5f} "
                      f"Dec {star[1]:+.5f} (mag {star[2]:.2f}, {moved:.0f}\" from the position "
                      "asked)")
        return {"ok": True, "ra_deg": star[0], "dec_deg": star[1], "mag": round(star[2], 3),
                "offset_arcsec": round(moved, 2)}

    # ------------------------------------------------------------------ the tick

    def tick(self) -> None:
        """The tick hook: keep the directory feed's newest frame current (a few ``stat`` calls
        a second), advance the sync; when following, watch Nayuta's position."""
        if self.feed is not None and self.s.feed.type == "directory":
            now_m = self.obs.clock.monotonic()
            if now_m >= self._next_feed_poll:
                self._next_feed_poll = now_m + 1.0
                try:
                    self.feed.poll()
                except DeviceError as exc:
                    self._next_feed_poll = now_m + 60.0
                    self.obs.emit("warning", "nayuta", f"slit-viewer feed: {exc}")
        run = self.run
        if run is not None and not run.finished:
            try:
                self.machine.handler(self)(run)
            except TenmonError as exc:
                self._end(run, "failed", str(exc))
            return
        if self.following:
            now_m = self.obs.clock.monotonic()
            if now_m >= self._next_poll:
                self._next_poll = now_m + self.s.poll_s
                self._follow_check()

    def _follow_check(self) -> None:
        try:
            pos = self._current_reported()
        except DeviceError as exc:
            self.obs.emit("warning", "nayuta", f"following: {exc}")
            return
        if pos is None:
            return
        if self._synced_reported is not None and separation_arcsec(
                *pos, *self._synced_reported) <= self.s.follow_threshold_arcsec:
            return
        try:
            self.centring.check_can_start()
        except CommandRefused as exc:
            self.obs.emit("warning", "nayuta", f"following: Nayuta moved but the 60 cm cannot "
                          f"follow now: {exc}")
            return
        self.obs.emit("info", "nayuta", f"following: Nayuta moved to RA {pos[0]:.5f} Dec "
                      f"{pos[1]:+.5f}: syncing again")
        self._start_run("follow")

    def _current_reported(self) -> tuple[float, float] | None:
        """Nayuta's reported position now, cheaply (no rendering, no locating)."""
        if self.s.feed.type == "simulated":
            ra, dec, _ = self._sim_target()
            return self.feed.reported_position(ra, dec)
        frame = self.feed.latest
        if frame is None or self.feed.is_stale(frame):
            return None
        if frame.hint.ra_deg is None:
            return None
        return frame.hint.ra_deg, frame.hint.dec_deg

    def _start_run(self, mode: str) -> SyncRun:
        obs = self.obs
        now = obs.clock.now()
        run = SyncRun(f"nayuta-{now.strftime('%Y%m%dT%H%M%S')}-{next(self._seq)}", mode,
                      obs.clock.monotonic(), utc_iso(now), time.monotonic())
        self.machine.to("frame", run.id)
        self.run = run
        obs.emit("info", "nayuta", f"{run.id}: syncing the 60 cm to Nayuta's target ({mode})")
        return run

    def _tick_frame(self, run: SyncRun) -> None:
        obs = self.obs
        now = obs.clock.now()
        if self.s.feed.type == "simulated":
            ra, dec, mag = self._sim_target()
            run.sim_truth = {"ra_deg": ra, "dec_deg": dec, "mag": round(mag, 3)}
            run.reported = self.feed.reported_position(ra, dec)
            feed = self.feed
            run.future = self.executor.submit(self._render_and_locate, feed, ra, dec, now)
        else:
            self.feed.poll()
            frame = self.feed.latest
            if frame is None:
                self._end(run, "failed", f"no slit-viewer frame in {self.s.feed.directory}")
                return
            if self.feed.is_stale(frame):
                age = frame.age_s(now)
                self._end(run, "failed", f"the newest slit-viewer frame "
                          f"{frame.path.name if frame.path else ''} is {age:.0f} s old (stale "
                          f"after {self.s.feed.max_age_s:g} s)")
                return
            run.frame = frame
            if frame.hint.ra_deg is not None:
                run.reported = (frame.hint.ra_deg, frame.hint.dec_deg)
            run.future = self.executor.submit(self._locate, frame, self._frame60_for(run))
        run.future_started = time.monotonic()
        self._phase(run, "locating")

    def _tick_locating(self, run: SyncRun) -> None:
        fut = run.future
        if not fut.done():
            if time.monotonic() - run.future_started > self.s.locate_timeout_s:
                self._end(run, "failed", f"locating the target took over "
                          f"{self.s.locate_timeout_s:g} s")
            return
        run.future = None
        try:
            result = fut.result()
        except TenmonError as exc:
            self._end(run, "failed", f"slit-viewer frame not usable: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - a bug in locating: the sync fails, saying why
            log.exception("locating Nayuta's target failed")
            self._end(run, "failed", f"locating failed: {exc}")
            return
        if isinstance(result, tuple):
            run.frame, loc = result
        else:
            loc = result
        run.location = loc
        run.warnings.extend(loc.warnings)
        if not loc.located:
            self._end(run, "failed", f"target not located: {loc.reason}")
            return
        self.obs.emit("info", "nayuta", f"{run.id}: target at RA {loc.target_ra_deg:.6f} Dec "
                      f"{loc.target_dec_deg:+.6f} (by {loc.method}); centring the 60 cm")
        try:
            job = self.centring.start(loc.target_ra_deg % 360.0, loc.target_dec_deg,
                                      tolerance_arcsec=self.s.tolerance_arcsec,
                                      max_tries=self.s.max_tries, exposure_s=self.s.exposure_s,
                                      source=f"nayuta:{run.id}")
        except CommandRefused as exc:
            self._end(run, "failed", f"cannot centre: {exc}")
            return
        run.centring_id = job.id
        self._phase(run, "centring")

    def _tick_centring(self, run: SyncRun) -> None:
        pass  # _centring_ended moves on

    def _centring_ended(self, job) -> None:
        run = self.run
        if run is None or run.finished or run.centring_id != job.id:
            return
        run.centring = job.to_json()
        run.centring_state = job.state
        if job.state == "aborted":
            self._end(run, "aborted", f"centring aborted: {job.reason}")
            return
        rec = job.final_record
        if rec is None or not rec.solved:
            self._end(run, "failed", f"centring {job.state}: {job.reason}")
            return
        run.final_frame = rec.path
        frame60 = self._frame60(rec)
        if frame60 is None:
            self._end(run, "done" if job.state == "done" else "failed",
                      f"centring {job.state}: {job.reason}; no 60 cm photometry (frame unreadable)")
            return
        run.future = self.executor.submit(self._locate, run.frame, frame60)
        run.future_started = time.monotonic()
        self._phase(run, "photometry")

    def _phase(self, run: SyncRun, phase: str) -> None:
        """Move the sync to ``phase`` along a declared transition (``centring`` guarded by
        safety).

        Raises:
            IllegalTransition: not declared (a bug).
            UnsafeTransition: into ``centring`` while unsafe (the phase stays).
        """
        self.machine.to(phase, run.id)
        run.phase = phase

    def _tick_photometry(self, run: SyncRun) -> None:
        fut = run.future
        if not fut.done():
            if time.monotonic() - run.future_started > self.s.locate_timeout_s:
                self._end(run, "failed", "photometry in the 60 cm frame took too long")
            return
        run.future = None
        try:
            run.final_location = fut.result()
        except Exception as exc:  # noqa: BLE001 - the sync is still reported, without mag_60cm
            log.exception("60 cm photometry failed")
            run.warnings.append(f"60 cm photometry failed: {exc}")
        if run.final_location is not None:
            run.warnings.extend(w for w in run.final_location.warnings if w not in run.warnings)
        state = run.centring_state
        job = run.centring or {}
        if state == "done":
            self._end(run, "done", f"the 60 cm is on Nayuta's target "
                      f"({job.get('final_separation_arcsec')}\" by its last solve)")
        else:
            self._end(run, "failed", f"centring {state}: {job.get('reason')}")

    # ------------------------------------------------------------------ worker-thread work

    def _render_and_locate(self, feed, ra: float, dec: float, when):
        frame = feed(ra, dec, when)
        return frame, self._locate(frame, None)

    def _locate(self, frame: SlitViewerFrame, frame60):
        """Runs on the worker thread: ``locate_target`` with the solver chain of the slit viewer."""
        from tenmon.vision.nayuta import locate_target

        st = self.s.locate
        hint = frame.hint
        scale = hint.scale_arcsec or self.s.feed.scale_arcsec or st.sv_scale_arcsec
        if hint.scale_arcsec is None and scale is not None:
            from dataclasses import replace

            hint = replace(hint, scale_arcsec=scale)
        st = st.model_copy(update={"sv_scale_arcsec": scale})
        solver = self._sv_chain(scale)
        sat = frame.header.get("SATURATE")
        return locate_target(frame.image, sv_hint=hint if hint.has_position else None,
                             sv_exposure_s=frame.exposure_s, sv_gain=frame.gain,
                             sv_saturation_adu=float(sat) if isinstance(sat, (int, float)) else None,
                             solver=solver, frame60=frame60, frame_solver=None, settings=st)

    def _sv_chain(self, scale: float):
        key = f"{scale:.6f}"
        chain = self._chains.get(key)
        if chain is None:
            from tenmon.vision.nayuta import slit_viewer_chain
            from tenmon.vision.solve.chain import make_catalog

            solver_settings = self.solver_settings
            catalog = self.feed.sky if self.s.feed.type == "simulated" else make_catalog(
                solver_settings.catalog)
            if catalog is None:
                return None  # register only
            chain = slit_viewer_chain(solver_settings, catalog=catalog, sv_scale_arcsec=scale,
                                      max_rms_arcsec=self.s.locate.sv_max_rms_arcsec)
            self._chains = {key: chain}
        return chain

    # ------------------------------------------------------------------ 60 cm frames

    def on_frame(self, record) -> None:
        """Frame service listener: remember the newest solved 60 cm frame with a WCS."""
        if record.solved and record.solve.get("wcs"):
            self._last60 = record

    def _frame60_for(self, run: SyncRun):
        """The last 60 cm frame, for registration, when it covers Nayuta's reported position."""
        rec = self._last60
        if rec is None or run.reported is None:
            return None
        sol = rec.solve
        off = separation_arcsec(run.reported[0], run.reported[1], sol["ra_deg"], sol["dec_deg"])
        if off > self.s.register_max_offset_arcmin * 60.0:
            return None
        return self._frame60(rec)

    def _frame60(self, record):
        """A ``Frame60`` of a solved frame record (image read here: call off the loop when
        possible; a 512-1024 px frame reads in milliseconds). ``None`` when unreadable."""
        from astropy.io import fits
        from astropy.wcs import WCS

        from tenmon.vision.nayuta import Frame60
        from tenmon.vision.solve.frames import read_frame

        sol = record.solve
        try:
            image, header = read_frame(record.path)
            wcs = WCS(fits.Header(sol["wcs"]), naxis=2).celestial
        except (TenmonError, ValueError, KeyError, TypeError) as exc:
            log.warning("60 cm frame %s unusable: %s", record.path, exc)
            return None
        scale = sol.get("scale_arcsec") or header.get("PIXSCALE")

        def num(*keys):
            for k in keys:
                v = header.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                    return float(v)
            return None

        return Frame60(image=image, scale_arcsec=float(scale), wcs=wcs, hint=None,
                       exposure_s=num("EXPTIME", "EXPOSURE"), gain=num("GAIN", "EGAIN"),
                       saturation_adu=num("SATURATE"))

    # ------------------------------------------------------------------ simulated target

    def _sim_target(self) -> tuple[float, float, float]:
        if self.sim_target is None:
            t = self.s.simulated_target
            if t.ra_deg is not None and t.dec_deg is not None:
                ra, dec = t.ra_deg, t.dec_deg
            else:  # near the zenith now
                ra, dec = self.world.lst(), self.obs.config.site.latitude_deg
            self.sim_target = self.feed.nearest_star(ra, dec, mag_bright=t.mag_bright,
                                                     mag_faint=t.mag_faint,
                                                     radius_deg=t.search_radius_deg)
        return self.sim_target

    # ------------------------------------------------------------------ results

    def _end(self, run: SyncRun, state: str, reason: str) -> None:
        obs = self.obs
        if run.future is not None:
            run.future.cancel()
            run.future = None
        self.machine.reset("idle")
        run.state = state
        run.reason = reason
        run.ended_utc = utc_iso(obs.clock.now())
        run.elapsed_s = round(obs.clock.monotonic() - run.started_m, 1)
        if state == "done" and run.reported is not None:
            self._synced_reported = run.reported
        elif self.following and run.reported is not None and state == "failed":
            self._synced_reported = run.reported  # do not retry the same position every poll
        self._next_poll = obs.clock.monotonic() + self.s.poll_s
        self.last = run
        res = self.result(run)
        obs.emit("info" if state == "done" else "warning", "nayuta", f"{run.id}: {state}: "
                 f"{reason}", **{k: res[k] for k in ("target_ra_deg", "target_dec_deg", "route",
                                                     "final_separation_arcsec", "mag_slit_viewer",
                                                     "mag_60cm")})
        try:
            obs.store.set_state("nayuta_last", res)
        except Exception as exc:  # noqa: BLE001 - kept in memory; say why it is not stored
            log.warning("cannot store the last Nayuta sync: %s", exc)

    def result(self, run: SyncRun | None = None) -> dict[str, Any]:
        """The answer of ``POST /nayuta/sync`` and ``GET /nayuta`` for ``run`` (default: the
        current or last one)."""
        run = run or self.run or self.last
        if run is None:
            stored = self.obs.store.get_state("nayuta_last", None)
            return {"ok": None, "state": "idle", "following": self.following,
                    "last": stored if isinstance(stored, dict) else None,
                    "available": self.unavailable is None, "reason": self.unavailable}
        loc, fin = run.location, run.final_location
        cj = run.centring or (self.centring.get(run.centring_id) if run.centring_id else None)
        tries = [{"try": t["try"], "separation_arcsec": t.get("separation_arcsec"),
                  "action": t.get("action"), "solver": t.get("solver"), "frame": t.get("frame"),
                  "reason": t.get("reason")} for t in (cj or {}).get("tries", [])]
        zp60, zpsv = self._zero_points()
        mag_sv = loc.mag_slit_viewer if loc is not None else None
        mag_sv_model = loc.mag_slit_viewer_model if loc is not None else None
        mag60 = fin.mag_60cm if fin is not None else None
        routes = {}
        for where in (loc, fin):
            if where is not None:
                routes.update({k: {"ra_deg": round(v[0], 7), "dec_deg": round(v[1], 7)}
                               for k, v in where.ra_by_route.items()})
        elapsed = run.elapsed_s if run.finished else round(
            self.obs.clock.monotonic() - run.started_m, 1)
        out: dict[str, Any] = {
            "ok": None if not run.finished else run.state == "done",
            "id": run.id, "state": run.state, "phase": None if run.finished else run.phase,
            "mode": run.mode, "following": self.following,
            "target_ra_deg": None if loc is None or loc.target_ra_deg is None
            else round(loc.target_ra_deg, 7),
            "target_dec_deg": None if loc is None or loc.target_dec_deg is None
            else round(loc.target_dec_deg, 7),
            "route": loc.method if loc is not None else None,
            "routes": routes,
            "route_disagreement_arcsec": None if fin is None or fin.route_disagreement_arcsec
            is None else round(fin.route_disagreement_arcsec, 3),
            "tries": tries,
            "final_separation_arcsec": (cj or {}).get("final_separation_arcsec"),
            "mag_slit_viewer": _r(mag_sv), "mag_slit_viewer_is_limit": True,
            "mag_slit_viewer_model": _r(mag_sv_model),
            "mag_60cm": _r(mag60),
            "zero_point_slit_viewer_mag": _r(zpsv), "zero_point_60cm_mag": _r(zp60),
            "mag_slit_viewer_calibrated": _r(mag_sv + zpsv) if mag_sv is not None and zpsv
            is not None else None,
            "mag_slit_viewer_model_calibrated": _r(mag_sv_model + zpsv)
            if mag_sv_model is not None and zpsv is not None else None,
            "mag_60cm_calibrated": _r(mag60 + zp60) if mag60 is not None and zp60 is not None
            else None,
            "nayuta_reported": None if run.reported is None else {
                "ra_deg": round(run.reported[0], 7), "dec_deg": round(run.reported[1], 7)},
            "slit_viewer_frame": str(run.frame.path) if run.frame is not None and run.frame.path
            else None,
            "frame_60cm": run.final_frame, "centring_job": run.centring_id,
            "centring_state": (cj or {}).get("state"),
            "reason": run.reason, "warnings": list(dict.fromkeys(run.warnings)),
            "started_utc": run.started_utc, "ended_utc": run.ended_utc, "elapsed_s": elapsed,
        }
        if run.sim_truth is not None:
            out["simulated_target"] = run.sim_truth
        return out

    def _zero_points(self) -> tuple[float | None, float | None]:
        """(60 cm, slit viewer) magnitudes of 1 ADU/s: configured, else the simulated cameras'."""
        zp60, zpsv = self.s.zero_point_60cm_mag, self.s.zero_point_slit_viewer_mag
        if self.simulated:
            if zp60 is None and self.camera_settings is not None:
                cam = self.camera_settings
                zp60 = cam.zero_point_mag - 2.5 * math.log10(cam.gain_e_per_adu)
            if zpsv is None and self.s.feed.type == "simulated":
                sv = self.s.feed.simulated
                zpsv = sv.zero_point_mag - 2.5 * math.log10(sv.gain_e_per_adu)
        return zp60, zpsv

    def status(self) -> dict[str, Any]:
        """The ``nayuta`` status section (short)."""
        run = self.run or self.last
        return {"available": self.unavailable is None, "following": self.following,
                "sync": None if run is None else {
                    "id": run.id, "state": run.state,
                    "phase": None if run.finished else run.phase, "reason": run.reason}}

    def stop_now(self) -> None:
        """Stop hook."""
        self.following = False
        if self.run is not None and not self.run.finished:
            self._end(self.run, "aborted", "the daemon stopped")


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), nd)


# ---------------------------------------------------------------------------- HTTP


class SyncBody(BaseModel):
    """``POST /nayuta/sync``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    once: bool = Field(default=True, description="true: one sync; false: keep following Nayuta")
    wait_s: float | None = Field(default=None, ge=0, le=600, description="once: hold the "
                                 "answer at most this long (wall s) for the result; at most, and "
                                 "by default, [nayuta] answer_wait_s")


class SimNayutaBody(BaseModel):
    """``POST /sim/nayuta``: point the simulated Nayuta at the star nearest this position."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    ra_deg: float = Field(ge=0, lt=360, description="ICRS right ascension, degrees")
    dec_deg: float = Field(ge=-90, le=90, description="ICRS declination, degrees")


def nayuta_routes(service: NayutaService) -> list:
    """The :class:`~tenmon.daemon.api.kit.Route` s of ``POST /nayuta/sync``, ``GET /nayuta``,
    ``POST /nayuta/stop`` and ``POST /sim/nayuta``."""
    from tenmon.daemon.api.kit import COMMAND_ERRORS, Route, json_response

    async def post_sync(request, b: SyncBody):
        # the site's answer_wait_s bounds how long a request may hold a connection
        wait = service.s.answer_wait_s if b.wait_s is None else min(b.wait_s,
                                                                    service.s.answer_wait_s)
        run = service.sync(once=b.once)
        if b.once:
            deadline = time.monotonic() + min(float(wait), 600.0)
            while not run.finished and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        res = service.result(run)
        return json_response(res, status=200 if run.finished else 202)

    async def get_nayuta(request, _q):
        return json_response(service.result())

    async def post_stop(request, _b):
        return json_response(service.stop())

    async def post_sim(request, b: SimNayutaBody):
        return json_response(service.set_sim_target(b.ra_deg, b.dec_deg))

    obj = {"type": "object"}
    return [
        Route("POST", "/nayuta/sync", post_sync, "centre the 60 cm on Nayuta's target (once, "
              "or keep following)", body=SyncBody,
              answers={200: "the sync's result", 202: "the sync goes on (GET /nayuta)"},
              answer_schema=obj, tag="nayuta"),
        Route("GET", "/nayuta", get_nayuta, "the current or last Nayuta sync",
              answers={200: "the sync's state"}, answer_schema=obj, tag="nayuta"),
        Route("POST", "/nayuta/stop", post_stop, "stop following Nayuta (and a sync in "
              "progress)", answers={200: "stopped"},
              answer_schema={"type": "object", "required": ["ok", "following"]}, tag="nayuta"),
        Route("POST", "/sim/nayuta", post_sim, "simulated observatory: where Nayuta points",
              body=SimNayutaBody, answers={200: "the simulated star chosen"},
              answer_schema={"type": "object", "required": ["ok", "ra_deg", "dec_deg"]},
              errors={**COMMAND_ERRORS, 404: "not the simulated observatory"}, tag="nayuta"),
    ]


__all__ = ["NayutaService", "NayutaDaemonSettings", "SimulatedNayutaTarget", "SyncRun",
           "nayuta_routes", "feed_problem", "SyncBody", "SimNayutaBody"]
