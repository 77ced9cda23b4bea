"""Model-free slit estimator: edge-pair profile of the unwrapped strip, and the along-slit profile.

The slit's two edges (and its rails) are planes parallel to the slit's centre plane, so in the
azimuth x arc strip they are two curves ``az = A -+ asin(h / cos t)`` for a half-width ``h``. For
every candidate azimuth ``A`` and half-width ``h`` the estimator adds up, row by row, how strongly
the horizontal gradient at the two curves has opposite signs (a band, dark or bright, shutter or
sky). The dome's ribs are meridians (vertical lines in the strip) and do not follow the curves;
the tube and the illuminator's hot spot break few rows. The best ``(A, h)`` gives the azimuth.
The opening is read along the band: the open part (sky) and the covered part (shutter panel) are
two segments of the interior-minus-dome profile; a segment that follows the dome's illumination
is shutter, one that does not is sky.

This is the fallback when the model is absent or unsure, and the baseline it has to beat.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone

import cv2
import numpy as np

from tenmon.vision.slit.polar import StripGeometry, StripMapper, slit_half_width_deg, to_gray
from tenmon.vision.slit.reading import Calibration, SlitReading, state_for_fraction

log = logging.getLogger(__name__)

#: The classical estimator's strip: 0.25 degree columns, 1 degree rows.
CLASSICAL_GEOMETRY = StripGeometry(width=1600, height=110, pad_deg=20.0, t_max_deg=110.0)

#: Candidate edge half-widths in dome radii: slit edges (~0.08-0.13) and rails' outer edges.
HALF_WIDTHS = tuple(np.round(np.arange(0.075, 0.171, 0.0075), 4))

#: Arc rows used to find the azimuth (the band is narrow and well sampled here), degrees.
T_FIT = (3.0, 58.0)

#: The opening is read along the band up to this arc (degrees); above, the band fans out over
#: the zenith. A slit open further than this reads as open.
T_OPENING_MAX = 80.0

#: Sky score above which a stretch of the band is sky rather than shutter panel.
SKY_THRESHOLD = 0.6


@dataclass(frozen=True)
class FrameQuality:
    """Whole-frame statistics that say whether the slit can be read at all."""

    dark_fraction: float       # pixels within the lens circle below 6/255
    saturated_fraction: float  # pixels at or above 250/255
    contrast: float            # robust spread (p95 - p5) of the grey levels, 0..255
    edge_energy: float         # median absolute horizontal gradient of the strip

    @property
    def readable(self) -> bool:
        """False for a covered lens, lights off, or a camera blinded by a bright light."""
        # Saturation alone does not hide the slit: over-exposed frames with half the strip
        # clipped still show it (14 of 441 visible tuning frames were refused at 0.5).
        return (self.dark_fraction < 0.85 and self.saturated_fraction < 0.95
                and self.contrast >= 12.0)


def frame_quality(gray: np.ndarray, mask: np.ndarray | None = None) -> FrameQuality:
    """Statistics of a grey frame (optionally within ``mask``) for :class:`FrameQuality`."""
    g = gray[mask] if mask is not None and mask.any() else gray.ravel()
    if g.size > 50000:
        g = g[:: g.size // 50000]
    g = g.astype(np.float32)
    if g.max() <= 1.0 and gray.dtype != np.uint8:
        g = g * 255.0
    p5, p95 = np.percentile(g, [5, 95])
    return FrameQuality(dark_fraction=float(np.mean(g < 6)), saturated_fraction=float(np.mean(g >= 250)),
                        contrast=float(p95 - p5), edge_energy=0.0)


@dataclass(frozen=True)
class AzimuthFit:
    """Result of the edge-pair search: azimuth, half-width, score and its significance."""

    azimuth_deg: float
    half_width: float
    score: float
    z: float        # peak height above the profile's median, in robust sigmas
    ratio: float    # peak over the best rival peak elsewhere on the circle
    support: float  # fraction of the fitted rows where both edges are seen at the peak
    profile: np.ndarray


def _gradient(strip: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row-normalised horizontal gradient of a strip (invalid pixels give 0)."""
    s = cv2.GaussianBlur(strip.astype(np.float32), (0, 0), sigmaX=0.8, sigmaY=1.0)
    g = np.zeros_like(s)
    g[:, 1:-1] = s[:, 2:] - s[:, :-2]
    v = valid.copy()
    v[:, 1:-1] &= valid[:, 2:] & valid[:, :-2]
    g[~v] = 0.0
    scale = np.median(np.abs(g), axis=1, keepdims=True) * 1.4826 + 1e-3
    # clip single huge edges (tube silhouette, hot pixels) so they cannot win alone
    return np.clip(g / scale, -25.0, 25.0)


def _pair_score(grad: np.ndarray, rows: np.ndarray, t_rows: np.ndarray, geometry: StripGeometry,
                half_width: float, cols: np.ndarray, *, per_row: bool = False) -> np.ndarray:
    """Sum over rows of sqrt(max(0, -G(c - w) G(c + w))) for band centres ``cols``.

    Column indices wrap around the circle (the strip's padding repeats azimuths), so a band at
    0/360 degrees is scored like any other. With ``per_row`` the rows x cols terms are returned.
    """
    hw_cols = slit_half_width_deg(t_rows, half_width) / geometry.az_step_deg  # per row
    c0 = int(math.ceil(geometry.az_to_col(0.0)))
    n360 = int(round(360.0 / geometry.az_step_deg))
    g = grad[rows]
    xl = cols[None, :] - hw_cols[:, None]
    xr = cols[None, :] + hw_cols[:, None]
    il = np.floor(xl).astype(np.int64)
    ir = np.floor(xr).astype(np.int64)
    fl = (xl - il).astype(np.float32)
    fr = (xr - ir).astype(np.float32)

    def at(i: np.ndarray) -> np.ndarray:
        return np.take_along_axis(g, c0 + np.mod(i - c0, n360), axis=1)

    gl = at(il) * (1 - fl) + at(il + 1) * fl
    gr = at(ir) * (1 - fr) + at(ir + 1) * fr
    terms = np.sqrt(np.maximum(-gl * gr, 0.0))
    return terms if per_row else terms.sum(axis=0)


def fit_azimuth(strip: np.ndarray, valid: np.ndarray, geometry: StripGeometry = CLASSICAL_GEOMETRY,
                *, around_deg: float | None = None, window_deg: float = 8.0,
                half_widths: tuple[float, ...] = HALF_WIDTHS) -> AzimuthFit | None:
    """Find the slit's azimuth in a grey strip by the edge-pair profile.

    Args:
        strip: grey strip in ``geometry``.
        valid: mask of strip pixels that come from the sensor.
        around_deg: search only within ``window_deg`` of this azimuth (refinement of a model's
            answer); the whole circle when None.
        half_widths: candidate edge half-widths (dome radii).

    Returns:
        The best fit, or None when no row of the strip is usable.
    """
    t_all = geometry.row_to_t(np.arange(geometry.height))
    rows = np.flatnonzero((t_all >= T_FIT[0]) & (t_all <= T_FIT[1]))
    if rows.size == 0:
        return None
    grad = _gradient(strip, valid)
    if around_deg is None:
        c0 = int(math.ceil(geometry.az_to_col(0.0)))
        cols = np.arange(c0, c0 + int(round(360.0 / geometry.az_step_deg)), dtype=np.float64)
    else:
        a = around_deg % 360.0
        lo = geometry.az_to_col(a - window_deg)
        hi = geometry.az_to_col(a + window_deg)
        cols = np.arange(math.floor(lo), math.ceil(hi) + 1, dtype=np.float64)
    t_rows = t_all[rows]
    # Whole circle: a coarse pass (every 4th column, all widths), then full resolution around
    # the winner with its neighbouring widths. Four times fewer samples, the same peak.
    stride = 4 if around_deg is None else 1
    coarse = cols[::stride]
    best = None
    for k, h in enumerate(half_widths):
        prof = _pair_score(grad, rows, t_rows, geometry, h, coarse)
        i = int(np.argmax(prof))
        if best is None or prof[i] > best[3][best[2]]:
            best = (k, h, i, prof)
    k, h, i, prof = best
    if stride > 1:
        fine = coarse[i] + np.arange(-2 * stride, 2 * stride + 1, dtype=np.float64)
        fbest = None
        for h2 in half_widths[max(k - 1, 0):k + 2]:
            fp = _pair_score(grad, rows, t_rows, geometry, h2, fine)
            j = int(np.argmax(fp))
            if fbest is None or fp[j] > fbest[2][fbest[1]]:
                fbest = (h2, j, fp)
        h, j, fp = fbest
        peak_cols, peak_prof, pi = fine, fp, j
    else:
        peak_cols, peak_prof, pi = coarse, prof, i
    # sub-column peak by a parabola through the three best samples
    off = 0.0
    if 0 < pi < len(peak_prof) - 1:
        y0, y1, y2 = peak_prof[pi - 1], peak_prof[pi], peak_prof[pi + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            off = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
    peak_col = float(peak_cols[pi] + off)
    az = float(geometry.col_to_az(peak_col)) % 360.0
    peak = float(peak_prof[pi])
    med = float(np.median(prof))
    mad = float(np.median(np.abs(prof - med))) * 1.4826 + 1e-6
    z = (peak - med) / mad
    # best rival: outside +-(band width + 3 deg) of the peak
    excl = (slit_half_width_deg(30.0, h) * 2 + 3.0) / (geometry.az_step_deg * stride)
    d = np.abs(np.arange(len(prof)) - i)
    if around_deg is None:
        n = len(prof)
        d = np.minimum(d, n - d)
    far = d > excl
    rival = float(prof[far].max()) if far.any() else med
    ratio = peak / max(rival, 1e-6)
    terms = _pair_score(grad, rows, t_rows, geometry, h, np.array([round(peak_col)], dtype=np.float64),
                        per_row=True)[:, 0]
    support = float(np.mean(terms > 1.5))
    return AzimuthFit(azimuth_deg=az, half_width=float(h), score=peak, z=z, ratio=ratio,
                      support=support, profile=prof)


@dataclass(frozen=True)
class OpeningFit:
    """The slit's opening read along its band."""

    open_fraction: float
    state: str
    split_t_deg: float | None
    sky_score_low: float
    sky_score_high: float
    split_gain: float
    margin: float = 0.0  # 0..1: how clearly the reading beat its alternatives


def _band_profiles(strip: np.ndarray, valid: np.ndarray, geometry: StripGeometry, az: float,
                   half_width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-row interior and flanking-dome levels along the slit at ``az`` (NaN where unseen)."""
    t = geometry.row_to_t(np.arange(geometry.height))
    hw = slit_half_width_deg(t, half_width)
    inner = np.full(geometry.height, np.nan, np.float32)
    flank = np.full(geometry.height, np.nan, np.float32)
    s = strip.astype(np.float32)
    for r in range(geometry.height):
        w = hw[r]
        if w >= 60.0:  # at the zenith the band covers every azimuth: interior only
            cols_in = geometry.az_to_col(np.linspace(az - 40, az + 40, 9))
            cols_out = np.array([])
        else:
            cols_in = geometry.az_to_col(np.linspace(az - 0.55 * w, az + 0.55 * w, 7))
            off = np.concatenate([np.linspace(1.35 * w + 2, 1.35 * w + 10, 5)])
            cols_out = geometry.az_to_col(np.concatenate([az - off, az + off]))
        for cols, out in ((cols_in, inner), (cols_out, flank)):
            if cols.size == 0:
                continue
            ci = np.round(cols).astype(int) % geometry.width
            ok = valid[r, ci]
            if ok.sum() >= max(2, cols.size // 2):
                out[r] = float(np.median(s[r, ci[ok]]))
    return t, inner, flank, hw


def fit_opening(strip: np.ndarray, valid: np.ndarray, geometry: StripGeometry, az: float,
                half_width: float, slit_length_deg: float) -> OpeningFit:
    """Read the open fraction along the slit at ``az`` (see the module docstring)."""
    t, inner, flank, _ = _band_profiles(strip, valid, geometry, az, half_width)
    # Beyond ~80 degrees the band widens over the zenith and stops being a band: read below.
    L = min(slit_length_deg - 1.0, T_OPENING_MAX)
    use = (t >= 1.0) & (t <= L) & np.isfinite(inner)
    if use.sum() < 8:
        return OpeningFit(0.0, "unknown", None, 0.0, 0.0, 0.0, 0.0)
    tt = t[use][::-1]          # increasing t
    ii = inner[use][::-1]
    ff = flank[use][::-1]
    # where the flank is missing (zenith), carry the nearest flank value
    if np.isnan(ff).all():
        ff = np.full_like(ii, np.nanmedian(strip))
    else:
        idx = np.where(np.isfinite(ff), np.arange(len(ff)), 0)
        np.maximum.accumulate(idx, out=idx)
        ff = ff[idx]
        first = np.flatnonzero(np.isfinite(ff))
        ff[: first[0]] = ff[first[0]] if first.size else 0
    scale = float(np.median(ff)) + 5.0
    x = (ii - ff) / scale          # interior relative to the dome beside it

    def sky_score(seg_i: np.ndarray, seg_f: np.ndarray) -> float:
        # shutter: the interior follows the dome's illumination (ratio ~ constant, close to 1);
        # sky: far darker (night) or far brighter (day) than the dome, or unrelated to it.
        ratio = (np.median(seg_i) + 3.0) / (np.median(seg_f) + 3.0)
        level = abs(math.log(max(ratio, 1e-3)))
        if len(seg_i) >= 6 and np.std(seg_f) > 1.0 and np.std(seg_i) > 0.5:
            corr = float(np.corrcoef(seg_i, seg_f)[0, 1])
        else:
            corr = 0.0
        return level + 0.5 * (1.0 - max(corr, 0.0))

    n = len(x)
    total_sse = float(np.sum((x - x.mean()) ** 2))
    best_k, best_sse = None, total_sse
    c1 = np.cumsum(x)
    c2 = np.cumsum(x * x)
    for k in range(3, n - 3):
        s1, q1 = c1[k - 1], c2[k - 1]
        s2, q2 = c1[-1] - s1, c2[-1] - q1
        sse = (q1 - s1 * s1 / k) + (q2 - s2 * s2 / (n - k))
        if sse < best_sse:
            best_k, best_sse = k, sse
    gain = (total_sse - best_sse) / (total_sse + 1e-6)
    whole = sky_score(ii, ff)
    if best_k is not None:
        low = sky_score(ii[:best_k], ff[:best_k])
        high = sky_score(ii[best_k:], ff[best_k:])
        jump = abs(x[:best_k].mean() - x[best_k:].mean())
        if gain > 0.4 and jump > 0.1 and low > high + 0.1 and low > SKY_THRESHOLD:
            split_t = float(0.5 * (tt[best_k - 1] + tt[best_k]))
            frac = float(np.clip(split_t / slit_length_deg, 0.0, 1.0))
            margin = min(1.0, (low - high) / 0.3, gain / 0.6)
            return OpeningFit(frac, state_for_fraction(frac), split_t, low, high, gain, margin)
    frac = 1.0 if whole > SKY_THRESHOLD else 0.0
    margin = min(1.0, abs(whole - SKY_THRESHOLD) / 0.3)
    return OpeningFit(frac, state_for_fraction(frac), None, whole, whole, gain, margin)


class ClassicalEstimator:
    """The model-free estimator, reusing strip maps across frames of the same camera.

    Args:
        slit_length_deg: the slit's arc from the horizon over the zenith to its end (degrees).
        min_confidence: below this a reading is returned as ``unknown``.
        half_widths: the edge half-widths searched (a site's, from an adapted model folder).
    """

    def __init__(self, *, slit_length_deg: float = 100.0, min_confidence: float = 0.35,
                 geometry: StripGeometry = CLASSICAL_GEOMETRY,
                 half_widths: tuple[float, ...] = HALF_WIDTHS):
        self.half_widths = tuple(half_widths)
        self.slit_length_deg = slit_length_deg
        self.min_confidence = min_confidence
        self.geometry = geometry
        self._mappers: dict[tuple, StripMapper] = {}

    def mapper(self, calibration: Calibration, shape: tuple[int, ...]) -> StripMapper:
        """The strip mapper for this calibration and frame size (a few are kept)."""
        key = (calibration, tuple(shape[:2]))
        m = self._mappers.get(key)
        if m is None:
            if len(self._mappers) >= 4:
                self._mappers.pop(next(iter(self._mappers)))
            m = StripMapper(calibration, shape, self.geometry)
            self._mappers[key] = m
        return m

    def estimate(self, frame: np.ndarray, calibration: Calibration, *,
                 time: datetime | None = None) -> SlitReading:
        """Read the slit from one frame (see :func:`estimate`)."""
        now = time or datetime.now(timezone.utc)
        gray = to_gray(frame)
        mapper = self.mapper(calibration, gray.shape)
        strip = mapper.unwrap(gray)
        return self.estimate_strip(strip, mapper.valid, now)

    def estimate_strip(self, strip: np.ndarray, valid: np.ndarray, now: datetime) -> SlitReading:
        """Read the slit from a grey strip in this estimator's geometry."""
        q = frame_quality(strip, valid)
        if not q.readable:
            return SlitReading.unknown(now, source="classical", reason="frame unreadable",
                                       dark=q.dark_fraction, saturated=q.saturated_fraction,
                                       contrast=q.contrast)
        fit = fit_azimuth(strip, valid, self.geometry, half_widths=self.half_widths)
        if fit is None:
            return SlitReading.unknown(now, source="classical", reason="no usable rows")
        conf = confidence_from_fit(fit)
        if conf < self.min_confidence:
            return SlitReading.unknown(now, source="classical", confidence=conf,
                                       reason="no clear slit", z=fit.z, ratio=fit.ratio)
        op = fit_opening(strip, valid, self.geometry, fit.azimuth_deg, fit.half_width,
                         self.slit_length_deg)
        if op.state == "unknown":
            return SlitReading.unknown(now, source="classical", confidence=conf,
                                       reason="slit band not visible along its length")
        # the state is only as sure as the weaker of the two readings
        conf = min(conf, 0.3 + 0.7 * op.margin)
        if op.open_fraction >= T_OPENING_MAX / self.slit_length_deg - 0.02 and op.state != "closed":
            op_fraction, state = 1.0, "open"
        else:
            op_fraction, state = op.open_fraction, op.state
        if conf < self.min_confidence:
            return SlitReading.unknown(now, source="classical", confidence=conf,
                                       reason="state unclear", azimuth_deg=fit.azimuth_deg)
        return SlitReading(time=now, azimuth_deg=round(fit.azimuth_deg, 3),
                           open_fraction=round(op_fraction, 3), state=state,
                           confidence=round(conf, 3), source="classical",
                           details={"z": fit.z, "ratio": fit.ratio, "half_width": fit.half_width,
                                    "support": fit.support, "split_gain": op.split_gain})


def confidence_from_fit(fit: AzimuthFit) -> float:
    """Map the edge-pair peak's significance (height, uniqueness) to a 0..1 confidence."""
    a = np.clip((fit.ratio - 1.15) / 0.6, 0.0, 1.0)
    b = np.clip((fit.z - 5.0) / 10.0, 0.0, 1.0)
    c = np.clip((fit.support - 0.3) / 0.4, 0.0, 1.0)
    return float((a * b * c) ** (1 / 3))


def estimate(frame: np.ndarray, calibration: Calibration, *, time: datetime | None = None,
             slit_length_deg: float = 100.0) -> SlitReading:
    """Read the slit's azimuth, opening and state from one IR frame, without a model.

    Args:
        frame: the camera frame (BGR or grey, uint8).
        calibration: the camera's calibration.
        time: the frame's UTC timestamp (now when None).
        slit_length_deg: the slit's arc from the horizon over the zenith (90 + overshoot).

    Returns:
        A :class:`SlitReading` (``source="classical"``); ``state="unknown"`` with a low
        confidence when the slit cannot be made out.

    Raises:
        VisionError: the frame is empty or its size does not fit the calibration at all.
    """
    return ClassicalEstimator(slit_length_deg=slit_length_deg).estimate(frame, calibration, time=time)
