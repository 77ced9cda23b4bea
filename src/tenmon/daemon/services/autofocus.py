"""Autofocus: a V-curve of the half-flux radius the frame pipeline measures, fitted and verified.

One run (:class:`AutofocusRun`, driven by the sequencer's tick, never blocking):

1. **coarse sweep**: ``points`` focuser positions ``step`` apart, centred on where the focuser
   is, approached in increasing order; at each, one exposure (``exposure_s``) goes through the
   frame pipeline like every frame, and its star size is read from the result: ``hfr_px``, the
   median half-flux radius of the frame's well-measured stars (:mod:`tenmon.vision.frames.hfr`: sep's
   flux radius at 0.5 in one circle for all the frame's stars, no PSF model, so wide defocused
   discs and donuts are measured as well as sharp stars). Not the pipeline's ``fwhm_px``: a
   Moffat fit's width, bounded and made for focused stars, it stops following the focus on
   defocused frames. A frame without measurable stars gives no point.
2. **fit**: a hyperbola ``hfr(x) = a * sqrt(1 + ((x - c) / b)**2)`` (the shape of a defocused
   star's size, V-shaped with a rounded bottom) by robust least squares on relative residuals,
   to the V's arms only (a plateau far from focus is left out) (:func:`fit_v_curve`).
   A minimum at the edge of the sweep re-centres the sweep there (up to ``max_sweeps``).
3. **move** to the fitted minimum ``c``;
4. **verify**: one more exposure there; the run succeeds when its HFR is within
   ``verify_tolerance`` of the fitted minimum ``a``. A failed run puts the focuser back where it
   started and says why; the night goes on.

:class:`AutofocusService` decides when a run is due: no good focus yet tonight, the focuser's
temperature moved by ``refocus_temp_delta_c`` since the last one, or ``refocus_interval_min``
passed.

The fit (:func:`fit_v_curve`) and the sweep (:func:`sweep_positions`) are pure functions.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tenmon.core.errors import DeviceError
from tenmon.config.services import AutofocusSettings

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- pure part


def sweep_positions(centre: int, step: int, points: int, max_position: int) -> list[int]:
    """``points`` positions ``step`` apart centred on ``centre``, shifted to fit in
    ``0..max_position``, increasing."""
    span = step * (points - 1)
    lo = int(round(centre - span / 2))
    lo = max(0, min(lo, max_position - span))
    return [max(0, min(max_position, lo + i * step)) for i in range(points)]


@dataclass(frozen=True)
class VCurveFit:
    """A fitted V-curve: ``best_position`` (c), ``best_hfr`` (a, px), ``width`` (b, steps),
    ``rms`` of the residuals (px), ``ok`` and, when not, ``reason``; ``edge`` is ``-1``/``+1``
    when the minimum lies at the low/high end of the points (re-centre there), else 0."""

    best_position: float
    best_hfr: float
    width: float
    rms: float
    ok: bool
    reason: str = ""
    edge: int = 0


def _hyperbola(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * np.sqrt(1.0 + ((x - c) / b) ** 2)


def _v_arms(x: np.ndarray, y: np.ndarray, rise: float = 1.05) -> tuple[np.ndarray, np.ndarray]:
    """The points of the V itself: from the smallest outwards while each is ``rise`` times the
    last. Far from focus a real star stops growing (it fills the measuring aperture, or the
    simulator caps it); such a plateau would drag the fit's minimum towards itself."""
    i = int(np.argmin(y))
    keep = [i]
    for d in (-1, 1):
        j = i
        # near the bottom every point counts (noise there is no plateau)
        while 0 <= j + d < len(x) and (y[j + d] > y[j] * rise or y[j + d] < 2.0 * y[i]):
            j += d
            keep.append(j)
    keep.sort()
    return x[keep], y[keep]


#: How many times the fit's relative scatter a V's depth must exceed to count as a V.
V_SIGNIFICANCE = 4.0


def fit_v_curve(positions, hfrs, *, min_points: int = 5, min_v_depth: float = 1.2) -> VCurveFit:
    """Fit ``hfr(x) = a * sqrt(1 + ((x - c)/b)**2)`` to the points of the V (the plateau far
    from focus left out, :func:`_v_arms`), in relative residuals, robustly (soft-L1).

    Never raises: a sweep that shows no V (too few points, flat, minimum at an edge, a fit
    that does not converge) is ``ok = False`` with the reason.
    """
    from scipy.optimize import least_squares

    x = np.asarray(positions, dtype=float)
    y = np.asarray(hfrs, dtype=float)
    good = np.isfinite(x) & np.isfinite(y) & (y > 0)
    x, y = x[good], y[good]
    if len(x) < min_points:
        return VCurveFit(math.nan, math.nan, math.nan, math.nan, False,
                         f"{len(x)} measured point(s), {min_points} needed")
    order = np.argsort(x)
    x, y = x[order], y[order]
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1:
        return VCurveFit(float(x[i]), float(y[i]), math.nan, math.nan, False,
                         "the smallest star size lies at the edge of the sweep",
                         edge=-1 if i == 0 else 1)
    x_all, y_all = x, y
    x, y = _v_arms(x, y)
    if len(x) < 3:
        return VCurveFit(float(x_all[i]), float(y_all[i]), math.nan, math.nan, False,
                         "fewer than 3 points on the V's arms")
    i = int(np.argmin(y))
    span = float(x[-1] - x[0])
    scale = span / 2.0
    xs = (x - x[i]) / scale  # well-conditioned unknowns

    def resid(p):
        a, b, c = p
        return (_hyperbola(xs, a, b, c) - y) / y   # relative: the bottom of the V counts most

    p0 = [float(y[i]), 0.3, 0.0]
    try:
        sol = least_squares(resid, p0, loss="soft_l1", f_scale=0.1,
                            bounds=([1e-3, 1e-3, -1.0], [np.inf, 100.0, 1.0]))
    except (ValueError, np.linalg.LinAlgError) as exc:
        return VCurveFit(math.nan, math.nan, math.nan, math.nan, False, f"fit failed: {exc}")
    a, b, c = (float(v) for v in sol.x)
    best = float(x[i]) + c * scale
    rms = float(np.sqrt(np.mean((_hyperbola(xs, a, b, c) - y) ** 2)))
    fit = dict(best_position=best, best_hfr=a, width=b * scale, rms=rms)
    if not sol.success:
        return VCurveFit(**fit, ok=False, reason=f"fit did not converge ({sol.message})")
    if not x[0] <= best <= x[-1]:
        return VCurveFit(**fit, ok=False, reason="fitted minimum outside the sweep",
                         edge=-1 if best < x[0] else 1)
    if min(y_all[0], y_all[-1]) < min_v_depth * a:
        return VCurveFit(**fit, ok=False, reason=f"no V: the sweep's edges are within "
                         f"{min_v_depth:g}x of the minimum (step too small, or no stars)")
    # A V must stand out of the scatter of its own points: far beyond focus the star size is
    # flat and noisy (the HFR scatters by ~10 %), and a noisy plateau can dip by 1.2x by chance
    # (seen: 4.8-6.5 px across a whole sweep 10,000 steps from focus, "focused" at 5.0 px).
    # (scatter: the robust spread of the relative residuals, so a point of the plateau left on an
    # arm does not count as noise)
    depth = min(y_all[0], y_all[-1]) / a - 1.0
    scatter = 1.4826 * float(np.median(np.abs(resid(sol.x))))
    if depth < V_SIGNIFICANCE * scatter:
        return VCurveFit(**fit, ok=False, reason=f"no V: the dip ({depth:.0%} of the minimum) "
                         f"is within {V_SIGNIFICANCE:g}x the points' scatter ({scatter:.0%}): "
                         "a flat, noisy sweep (far from focus?)",
                         edge=-1 if y_all[0] < y_all[-1] else 1)  # look again on the lower side
    return VCurveFit(**fit, ok=True)


# --------------------------------------------------------------------------- one run


class AfPhase(str, enum.Enum):
    MOVING = "moving"
    EXPOSING = "exposing"
    MEASURING = "measuring"
    FINAL_MOVE = "final_move"
    VERIFY_EXPOSING = "verify_exposing"
    VERIFY_MEASURING = "verify_measuring"
    DONE = "done"
    FAILED = "failed"


@dataclass
class AutofocusResult:
    """What a run found (``ok``: verified). Times in seconds of the daemon's clock."""

    ok: bool
    reason: str
    start_position: int | None
    best_position: int | None = None
    fitted_hfr_px: float | None = None
    verify_hfr_px: float | None = None
    sweeps: int = 0
    points: list[tuple[int, float | None]] = field(default_factory=list)
    elapsed_s: float = 0.0
    temperature_c: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "start_position": self.start_position,
                "best_position": self.best_position,
                "fitted_hfr_px": _r(self.fitted_hfr_px), "verify_hfr_px": _r(self.verify_hfr_px),
                "sweeps": self.sweeps, "points": [[p, _r(h)] for p, h in self.points],
                "elapsed_s": round(self.elapsed_s, 1), "temperature_c": _r(self.temperature_c)}


def _r(v, nd: int = 3):
    return None if v is None or not math.isfinite(v) else round(float(v), nd)


class AutofocusRun:
    """One autofocus run, advanced by :meth:`tick`; frames' results come in by
    :meth:`on_frame` (the frame service's records). See the module docstring.

    Args:
        settings: the ``[autofocus]`` section.
        focuser, camera: the devices (``Focuser``, ``Camera``).
        clock: the daemon's clock.
        expect: ``expect(path, context)``: tells the frame service whose frame this is.
        name: frame name prefix.
    """

    def __init__(self, settings: AutofocusSettings, focuser, camera, clock,
                 expect: Callable[[str, dict], None] | None = None, *, name: str = "autofocus",
                 meta: dict[str, Any] | None = None):
        self.s = settings
        self.focuser = focuser
        self.camera = camera
        self.clock = clock
        self.expect = expect or (lambda path, ctx: None)
        self.name = name
        self.meta = dict(meta or {})
        self.started_m = clock.monotonic()
        start = focuser.position
        self.result = AutofocusResult(ok=False, reason="running", start_position=start,
                                      temperature_c=focuser.temperature_c)
        self.sweep = 0
        self.queue: list[int] = []
        self.points: dict[int, float | None] = {}
        self.target: int | None = None
        self.phase = AfPhase.MOVING
        self.since = self.started_m
        self.frame: str | None = None
        self.measured: dict[str, float | None] = {}
        self._after_backlash: int | None = None
        if start is None:
            self._finish(False, "the focuser's position is unknown")
            return
        self._start_sweep(int(start))

    @property
    def finished(self) -> bool:
        return self.phase in (AfPhase.DONE, AfPhase.FAILED)

    # ------------------------------------------------------------------ steps

    def _start_sweep(self, centre: int) -> None:
        self.sweep += 1
        self.result.sweeps = self.sweep
        self.queue = [p for p in sweep_positions(centre, self.s.step, self.s.points,
                                                 self.focuser.max_position)
                      if p not in self.points]
        if not self.queue:
            self._fit()
            return
        self._move(self.queue.pop(0), AfPhase.MOVING)

    def _move(self, position: int, phase: AfPhase) -> None:
        self.target = position
        current = self.focuser.position
        first = position
        if self.s.backlash_steps and current is not None and position < current:
            first = max(0, position - self.s.backlash_steps)
            self._after_backlash = position if first != position else None
        else:
            self._after_backlash = None
        try:
            self.focuser.move_to(first)
        except DeviceError as exc:
            self._finish(False, f"focuser refused a move to {first}: {exc.detail}")
            return
        self._to(phase)

    def _to(self, phase: AfPhase) -> None:
        self.phase = phase
        self.since = self.clock.monotonic()

    def _expose(self, phase: AfPhase) -> None:
        meta = {"IMAGETYP": "light", "OBJECT": self.meta.get("OBJECT", self.name),
                "TMFOCUS": int(self.target if self.target is not None else -1), **{
                    k: v for k, v in self.meta.items() if k != "OBJECT"}}
        try:
            self.camera.start_exposure(self.s.exposure_s, name=self.name, meta=meta)
        except DeviceError as exc:
            self._finish(False, f"camera refused the exposure: {exc.detail}")
            return
        self.frame = None
        self._to(phase)

    def on_frame(self, record) -> None:
        """A processed frame: keep its HFR if it is one of ours."""
        path = str(getattr(record, "path", ""))
        if path in self.measured or path != self.frame:
            return
        res = getattr(record, "result", None) or {}
        value = res.get("hfr_px") if getattr(record, "ok", False) else None
        try:
            hfr = float(value) if value is not None else None
        except (TypeError, ValueError):
            hfr = None
        self.measured[path] = hfr if hfr is not None and math.isfinite(hfr) and hfr > 0 \
            else None

    def abort(self, why: str) -> None:
        """Stop now (the camera's exposure is abandoned; the focuser stays where it is)."""
        if self.finished:
            return
        if self.phase in (AfPhase.EXPOSING, AfPhase.VERIFY_EXPOSING):
            self.camera.abort()
        self.result.ok = False
        self.result.reason = f"aborted: {why}"
        self.result.elapsed_s = self.clock.monotonic() - self.started_m
        self.phase = AfPhase.FAILED

    def tick(self) -> None:
        """Advance the run (non-blocking)."""
        if self.finished:
            return
        now_m = self.clock.monotonic()
        waited = now_m - self.since
        ph = self.phase
        if ph in (AfPhase.MOVING, AfPhase.FINAL_MOVE):
            if self.focuser.error:
                self._finish(False, f"focuser: {self.focuser.error}")
            elif not self.focuser.moving and self.focuser.position is not None:
                if self._after_backlash is not None:
                    target, self._after_backlash = self._after_backlash, None
                    try:
                        self.focuser.move_to(target)
                    except DeviceError as exc:
                        self._finish(False, f"focuser refused a move: {exc.detail}")
                    return
                self._expose(AfPhase.EXPOSING if ph == AfPhase.MOVING
                             else AfPhase.VERIFY_EXPOSING)
            elif waited > self.s.move_wait_s:
                self._finish(False, f"the focuser did not reach {self.target} in "
                             f"{self.s.move_wait_s:g} s")
        elif ph in (AfPhase.EXPOSING, AfPhase.VERIFY_EXPOSING):
            if self.camera.state.value == "error":
                err = self.camera.error
                if hasattr(self.camera, "clear_error"):
                    self.camera.clear_error()
                self._finish(False, f"camera: {err}")
                return
            path = self.camera.take_frame()
            if path is not None:
                self.frame = str(path)
                self.expect(self.frame, {"purpose": "autofocus", "focus_position": self.target})
                self._to(AfPhase.MEASURING if ph == AfPhase.EXPOSING
                         else AfPhase.VERIFY_MEASURING)
            elif waited > self.s.frame_wait_s:
                self.camera.abort()
                self._finish(False, f"no frame {self.s.frame_wait_s:g} s after the exposure began")
        elif ph in (AfPhase.MEASURING, AfPhase.VERIFY_MEASURING):
            if self.frame in self.measured:
                hfr = self.measured[self.frame]
                if ph == AfPhase.MEASURING:
                    self.points[int(self.target)] = hfr
                    self.result.points = sorted(self.points.items())
                    if self.queue:
                        self._move(self.queue.pop(0), AfPhase.MOVING)
                    else:
                        self._fit()
                else:
                    self._verify(hfr)
            elif waited > self.s.frame_wait_s:
                if ph == AfPhase.MEASURING:  # this point is lost; the others may do
                    self.measured[self.frame] = None
                else:
                    self._finish(False, "the verify frame was not measured in time")

    def _fit(self) -> None:
        pos = [p for p, h in self.points.items() if h is not None]
        hfr = [h for h in self.points.values() if h is not None]
        fit = fit_v_curve(pos, hfr, min_points=self.s.min_points, min_v_depth=self.s.min_v_depth)
        self.fit = fit
        if not fit.ok:
            if fit.edge and self.sweep < self.s.max_sweeps:
                edge_pos = min(pos) if fit.edge < 0 else max(pos)
                log.info("autofocus: %s; sweeping again around %d", fit.reason, edge_pos)
                self._start_sweep(int(edge_pos))
                return
            self._finish(False, f"no focus found: {fit.reason}")
            return
        best = int(round(fit.best_position))
        self.result.best_position = best
        self.result.fitted_hfr_px = fit.best_hfr
        self._move(best, AfPhase.FINAL_MOVE)

    def _verify(self, hfr: float | None) -> None:
        self.result.verify_hfr_px = hfr
        fitted = self.result.fitted_hfr_px
        if hfr is None:
            self._finish(False, "the verify frame had no measurable stars")
        elif hfr > self.s.verify_tolerance * fitted:
            self._finish(False, f"verify HFR {hfr:.2f} px is more than "
                         f"{self.s.verify_tolerance:g}x the fitted {fitted:.2f} px")
        else:
            self._finish(True, "focused")

    def _finish(self, ok: bool, reason: str) -> None:
        self.result.ok = ok
        self.result.reason = reason
        self.result.elapsed_s = self.clock.monotonic() - self.started_m
        self.result.temperature_c = self.focuser.temperature_c
        self.phase = AfPhase.DONE if ok else AfPhase.FAILED
        if not ok:
            log.warning("autofocus failed: %s", reason)
            start = self.result.start_position
            if start is not None and self.focuser.position != start:
                try:  # back where the night was
                    self.focuser.move_to(int(start))
                except DeviceError as exc:
                    log.error("autofocus: cannot move back to %s: %s", start, exc.detail)


# --------------------------------------------------------------------------- when to focus


class AutofocusService:
    """Remembers the last focus and says when the next is due (see the module docstring)."""

    def __init__(self, settings: AutofocusSettings, focuser, camera, clock):
        self.s = settings
        self.focuser = focuser
        self.camera = camera
        self.clock = clock
        self.last_ok: AutofocusResult | None = None
        self.last_ok_m: float | None = None
        self.last_try_m: float | None = None
        self.last: AutofocusResult | None = None
        self.history: list[AutofocusResult] = []

    def new_night(self) -> None:
        """A new night needs a new focus."""
        self.last_ok = None
        self.last_ok_m = None
        self.last_try_m = None

    def due(self) -> str | None:
        """Why a run is due now, or ``None``."""
        if not self.s.enabled or self.focuser is None or self.camera is None:
            return None
        now_m = self.clock.monotonic()
        if self.last_try_m is not None and (self.last is None or not self.last.ok) and \
                now_m - self.last_try_m < self.s.retry_after_failure_min * 60.0:
            return None
        if self.last_ok is None:
            return "no focus yet tonight"
        t, t0 = self.focuser.temperature_c, self.last_ok.temperature_c
        if self.s.refocus_temp_delta_c is not None and t is not None and t0 is not None \
                and abs(t - t0) >= self.s.refocus_temp_delta_c:
            return f"focuser temperature {t:.1f} C, {t - t0:+.1f} C since the last focus"
        if self.s.refocus_interval_min is not None and self.last_ok_m is not None and \
                now_m - self.last_ok_m >= self.s.refocus_interval_min * 60.0:
            return f"{self.s.refocus_interval_min:g} min since the last focus"
        return None

    def start(self, expect=None, meta: dict[str, Any] | None = None) -> AutofocusRun:
        self.last_try_m = self.clock.monotonic()
        return AutofocusRun(self.s, self.focuser, self.camera, self.clock, expect, meta=meta)

    def finished(self, run: AutofocusRun) -> None:
        self.last = run.result
        self.history.append(run.result)
        del self.history[:-50]
        if run.result.ok:
            self.last_ok = run.result
            self.last_ok_m = self.clock.monotonic()

    def status(self) -> dict[str, Any]:
        return {"last": None if self.last is None else self.last.to_json(),
                "runs": len(self.history), "due": self.due()}


__all__ = ["AfPhase", "AutofocusResult", "AutofocusRun", "AutofocusService",
           "AutofocusSettings", "VCurveFit", "fit_v_curve", "sweep_positions"]
