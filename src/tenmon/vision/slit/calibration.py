"""Calibrating the IR camera from frames: zenith pixel, horizon radius, north angle, azimuth sense.

- Zenith pixel: the dome turns about the vertical through its centre, so between two frames taken
  at different dome azimuths everything attached to the dome (ribs, seams, rails, slit) turns
  about the zenith's pixel by the azimuth difference. The centre (and the sense of turning) that
  best maps one frame's edge map onto the other's is the zenith. Needs two frames whose known
  azimuths differ by 20 degrees or more.
- Horizon radius: the dome turns, the wall below it does not. The radius where the frame-to-frame
  change falls away is the dome's base; the strongest ring edge next to it (the base ring) fixes
  it to a pixel.
- North angle and sense: with centre and radius known, the slit's apparent image angle in each
  frame (edge-pair fit, as in :mod:`slit_classical`) against the frame's known azimuth gives
  ``north_angle = angle - sense * azimuth``; the sense is the one that makes the frames agree.

Pure: frames and known azimuths in, a :class:`Calibration` and its residuals out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import minimize

from tenmon.core.errors import VisionError
from tenmon.vision.slit.polar import StripMapper, to_gray
from tenmon.vision.slit.classical import CLASSICAL_GEOMETRY, fit_azimuth
from tenmon.vision.slit.reading import Calibration, angle_diff

log = logging.getLogger(__name__)


class CalibrationError(VisionError):
    """The frames do not determine a calibration (too few, azimuths too close, no slit seen)."""


@dataclass
class CalibrationResult:
    """A solved calibration with its diagnostics."""

    calibration: Calibration
    north_residuals_deg: list[float] = field(default_factory=list)
    rotation_score: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def north_rms_deg(self) -> float:
        """RMS of the per-frame north-angle residuals (degrees)."""
        r = np.asarray(self.north_residuals_deg, dtype=float)
        return float(np.sqrt(np.mean(r ** 2))) if r.size else float("nan")


def _edge_map(gray: np.ndarray, scale: float) -> np.ndarray:
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.GaussianBlur(np.hypot(gx, gy), (0, 0), 1.2)
    return mag / (np.percentile(mag, 99) + 1e-6)


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x = a[mask]
    y = b[mask]
    x = x - x.mean()
    y = y - y.mean()
    return float((x * y).sum() / (math.sqrt((x * x).sum() * (y * y).sum()) + 1e-9))


def find_rotation_center(frames: list[np.ndarray], azimuths_deg: list[float], *,
                         work_size: int = 320) -> tuple[float, float, int, float]:
    """Zenith pixel (x, y) and azimuth sense from frames at known dome azimuths.

    Returns ``(center_x, center_y, sense, score)`` with ``score`` the mean normalised
    correlation of the rotated edge maps (0..1, higher is better).

    Raises:
        CalibrationError: fewer than two frames, or no pair of azimuths 20 degrees apart.
    """
    if len(frames) != len(azimuths_deg) or len(frames) < 2:
        raise CalibrationError("the zenith pixel needs two or more frames with their dome azimuths")
    grays = [to_gray(f) for f in frames]
    h, w = grays[0].shape
    if any(g.shape != (h, w) for g in grays):
        raise CalibrationError("calibration frames differ in size")
    pairs = []
    for i in range(len(grays)):
        for j in range(i + 1, len(grays)):
            d = angle_diff(azimuths_deg[j], azimuths_deg[i])
            if 20.0 <= abs(d) <= 160.0:
                pairs.append((i, j, d))
    if not pairs:
        raise CalibrationError("no two calibration frames have dome azimuths 20..160 degrees apart")
    pairs.sort(key=lambda p: -abs(abs(p[2]) - 90.0))
    pairs = pairs[-4:]  # the pairs closest to 90 degrees apart
    scale = work_size / max(h, w)
    used = list(range(len(grays)))
    smalls = [cv2.GaussianBlur(cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                               .astype(np.float32), (0, 0), 1.0) for g in grays]
    sh, sw = smalls[0].shape
    yy, xx = np.mgrid[0:sh, 0:sw]
    # What turns with the dome is what differs from the frames' median (the static wall, tube and
    # hot spot cancel); with two frames the mean stands in for the median. The foreground's
    # edges and levels together are matched.
    background = np.median(np.stack(smalls), axis=0) if len(smalls) >= 3 else np.mean(np.stack(smalls), axis=0)
    fg = {}
    for k in used:
        d = smalls[k] - background
        e = _edge_map(smalls[k], 1.0)
        fg[k] = d / (np.percentile(np.abs(d), 99) + 1e-3) + 0.5 * e * (np.abs(d) > np.percentile(np.abs(d), 80))
    edges = fg

    def score(cx: float, cy: float, sense: int) -> float:
        rr = np.hypot(xx - cx, yy - cy)
        mask = (rr > 0.06 * min(sh, sw)) & (rr < 0.9 * max(sh, sw))
        total = 0.0
        for i, j, d in pairs:
            # content turns clockwise (as displayed) by sense * d; OpenCV's angle is counterclockwise
            M = cv2.getRotationMatrix2D((float(cx), float(cy)), -sense * d, 1.0)
            rot = cv2.warpAffine(edges[i], M, (sw, sh), flags=cv2.INTER_LINEAR, borderValue=0)
            valid = mask & (cv2.warpAffine(np.ones_like(edges[i]), M, (sw, sh), borderValue=0) > 0.5)
            total += _ncc(rot, edges[j], valid) if valid.sum() > 100 else -1.0
        return total / len(pairs)

    best = (-2.0, sw / 2, sh / 2, 1)
    for sense in (1, -1):
        for fx in np.linspace(0.3, 0.7, 9):
            for fy in np.linspace(0.3, 0.7, 9):
                sc = score(fx * sw, fy * sh, sense)
                if sc > best[0]:
                    best = (sc, fx * sw, fy * sh, sense)
    _, cx0, cy0, sense = best
    res = minimize(lambda p: -score(p[0], p[1], sense), x0=[cx0, cy0], method="Nelder-Mead",
                   options={"xatol": 0.05, "fatol": 1e-5, "initial_simplex":
                            [[cx0, cy0], [cx0 + 3, cy0], [cx0, cy0 + 3]]})
    cx, cy = res.x
    return float((cx + 0.5) / scale - 0.5), float((cy + 0.5) / scale - 0.5), sense, float(-res.fun)


def find_horizon_radius(frames: list[np.ndarray], center: tuple[float, float]) -> float:
    """Pixels from the zenith to the dome's base from frames taken at different dome azimuths.

    The dome turns between the frames and the wall below it does not, so frame-to-frame change
    (the slit, ribs and seams moving) reaches out to the dome's base and stops there. Per ring
    around the zenith, the 95th percentile of the change over the ring is taken; the outermost
    radius where it stands clearly above the static rings' level is the dome's base (its
    elevation 0 as seen by the camera).

    Raises:
        CalibrationError: fewer than two frames, or no change between them.
    """
    if len(frames) < 2:
        raise CalibrationError("the horizon radius needs two or more frames at different azimuths")
    grays = [cv2.GaussianBlur(to_gray(f).astype(np.float32), (0, 0), 2.0) for f in frames]
    h, w = grays[0].shape
    cx, cy = center
    rmax = int(math.hypot(max(cx, w - cx), max(cy, h - cy)))
    n_r = max(64, rmax)
    r = np.linspace(0, rmax, n_r, dtype=np.float32)
    a = np.radians(np.arange(720, dtype=np.float32) * 0.5)
    mx = (cx + r[:, None] * np.sin(a)[None, :]).astype(np.float32)
    my = (cy - r[:, None] * np.cos(a)[None, :]).astype(np.float32)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    polars = [cv2.remap(g, mx, my, cv2.INTER_LINEAR) for g in grays]
    change = np.zeros_like(polars[0])
    for i in range(len(polars)):
        for j in range(i + 1, len(polars)):
            change = np.maximum(change, np.abs(polars[i] - polars[j]))
    q = np.full(n_r, np.nan)
    for i in range(n_r):
        if inside[i].sum() >= 36:
            q[i] = np.percentile(change[i][inside[i]], 95)
    ok = np.isfinite(q)
    if not ok.any():
        raise CalibrationError("no usable rings around the zenith")
    qs = np.where(ok, q, 0.0)
    peak = np.nanpercentile(q[: int(0.6 * n_r)], 90) if ok[: int(0.6 * n_r)].any() else np.nanmax(q)
    floor = np.nanpercentile(q, 10)
    if peak <= floor * 2 + 1.0:
        raise CalibrationError("the frames do not differ: the dome did not turn between them")
    level = floor + 0.25 * (peak - floor)
    moving = np.flatnonzero(ok & (qs > level))
    moving = moving[moving > int(0.05 * n_r)]
    if moving.size == 0:
        raise CalibrationError("no turning dome found in the frames")
    # the main run of moving rings, allowing short gaps (uniform bands such as the base ring)
    gap = max(3, n_r // 40)
    runs = np.split(moving, np.flatnonzero(np.diff(moving) > gap) + 1)
    main = max(runs, key=lambda run: run.size)
    return float(r[main.max()])


def solve_north(frames: list[np.ndarray], azimuths_deg: list[float], center: tuple[float, float],
                horizon_radius: float, *, sense: int | None = None,
                projection: str = "equidistant") -> tuple[float, int, list[float]]:
    """North angle and sense from the slit's image angle in frames at known dome azimuths.

    Returns ``(north_angle_deg, sense, residuals_deg)``.

    Raises:
        CalibrationError: the slit is not found in enough frames, or the sense is ambiguous.
    """
    if len(frames) < 2:
        raise CalibrationError("north angle and sense need frames at two or more known azimuths")
    probe = Calibration(center_x=center[0], center_y=center[1], horizon_radius=horizon_radius,
                        north_angle_deg=0.0, azimuth_sense=1, projection=projection)
    angles, known = [], []
    for frame, az in zip(frames, azimuths_deg):
        gray = to_gray(frame)
        m = StripMapper(probe, gray.shape, CLASSICAL_GEOMETRY)
        fit = fit_azimuth(m.unwrap(gray), m.valid, CLASSICAL_GEOMETRY)
        if fit is None or fit.ratio < 1.1:
            log.info("calibration frame at %.1f deg: slit not found clearly", az)
            continue
        angles.append(fit.azimuth_deg)  # = image angle of the slit with this probe
        known.append(float(az))
    if len(angles) < 2:
        raise CalibrationError(f"the slit was found clearly in {len(angles)} frame(s); two or more are needed")
    angles_a = np.asarray(angles)
    known_a = np.asarray(known)
    candidates = []
    for s in ((sense,) if sense else (1, -1)):
        n = np.radians(angles_a - s * known_a)
        mean = math.degrees(math.atan2(np.sin(n).mean(), np.cos(n).mean())) % 360.0
        res = [angle_diff(float(x), mean) for x in np.degrees(n)]
        candidates.append((float(np.sqrt(np.mean(np.square(res)))), mean, s, res))
    candidates.sort(key=lambda c: c[0])
    rms, north, s, res = candidates[0]
    if len(candidates) > 1 and np.ptp(known_a) < 1.0:
        raise CalibrationError("all calibration frames are at the same azimuth: the sense is undetermined")
    return north, s, res


def calibrate(frames: list[np.ndarray], azimuths_deg: list[float], *,
              projection: str = "equidistant",
              center: tuple[float, float] | None = None,
              horizon_radius: float | None = None) -> CalibrationResult:
    """Solve the five calibration keys from frames taken at known dome azimuths.

    Args:
        frames: two or more frames (same camera, same size), best 30..150 degrees apart.
        azimuths_deg: the dome azimuth (slit centre) at each frame.
        projection: the lens's fisheye projection if known.
        center, horizon_radius: known values to keep instead of solving for them.

    Raises:
        CalibrationError: the frames do not determine the calibration; the message says why.
    """
    if len(frames) != len(azimuths_deg):
        raise CalibrationError(f"{len(frames)} frames but {len(azimuths_deg)} azimuths")
    notes = []
    score = float("nan")
    sense_rot = None
    if center is None:
        cx, cy, sense_rot, score = find_rotation_center(frames, azimuths_deg)
        notes.append(f"zenith from the dome's rotation: ({cx:.1f}, {cy:.1f}), match {score:.3f}")
        center = (cx, cy)
    if horizon_radius is None:
        horizon_radius = find_horizon_radius(frames, center)
        notes.append(f"horizon radius from the turning dome's edge: {horizon_radius:.1f} px")
    north, sense, res = solve_north(frames, azimuths_deg, center, horizon_radius,
                                    projection=projection)
    if sense_rot is not None and sense_rot != sense:
        notes.append(f"warning: the rotation suggests sense {sense_rot:+d}, the slit {sense:+d}; "
                     "the slit's answer is kept")
    cal = Calibration(center_x=round(center[0], 2), center_y=round(center[1], 2),
                      horizon_radius=round(float(horizon_radius), 2),
                      north_angle_deg=round(north, 3), azimuth_sense=sense, projection=projection)
    return CalibrationResult(calibration=cal, north_residuals_deg=res, rotation_score=score, notes=notes)
