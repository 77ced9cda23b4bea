"""The slit on a slit-viewer frame: angle, centre line, width and visible length.

Part of :mod:`tenmon.vision.nayuta` (see its docstring for the conventions).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, optimize, special

from tenmon.vision.nayuta._common import as_image, ms
from tenmon.config.vision import SlitSearchSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlitGeometry:
    """The slit as :func:`find_slit` found it.

    ``angle_deg``: long axis from image +x towards +y, [0, 180). ``center_x``/``center_y``:
    the middle of the visible slit on its centre line [px]. ``width_px``: full width (edge to
    edge, at half depth); ``edge_sigma_px`` the blur of its edges. ``length_px``: visible length.
    ``level_adu``: the jaws' level beside the slit; ``depth_adu``: how much darker the slit is
    (the sky the jaws reflect: the slit itself shows the frame's floor, bias and dark).
    ``significance``: the dip's significance in the projection search [sigma];
    ``segment_fraction``: share of a dozen segments along the slit that show the dip.
    ``confidence`` in 0..1. ``found`` is False (and ``reason`` says why) when there is no slit.
    """

    found: bool
    angle_deg: float = 0.0
    center_x: float = 0.0
    center_y: float = 0.0
    width_px: float = 0.0
    length_px: float = 0.0
    edge_sigma_px: float = 0.5
    depth_adu: float = 0.0
    level_adu: float = 0.0
    significance: float = 0.0
    confidence: float = 0.0
    segment_fraction: float = 0.0
    elapsed_ms: float = 0.0
    reason: str | None = None

    @classmethod
    def not_found(cls, reason: str, **kw: Any) -> SlitGeometry:
        """The empty answer, with the reason."""
        return cls(found=False, reason=reason, **kw)

    @property
    def direction(self) -> tuple[float, float]:
        """Unit vector along the slit (+s)."""
        a = math.radians(self.angle_deg)
        return math.cos(a), math.sin(a)

    @property
    def normal(self) -> tuple[float, float]:
        """Unit vector across the slit (+t)."""
        a = math.radians(self.angle_deg)
        return -math.sin(a), math.cos(a)

    def to_slit(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel ``(x, y)`` -> slit coordinates ``(s, t)`` [px] (along, across, from the centre)."""
        (dx_, dy_), (nx_, ny_) = self.direction, self.normal
        dx = np.asarray(x, float) - self.center_x
        dy = np.asarray(y, float) - self.center_y
        return dx * dx_ + dy * dy_, dx * nx_ + dy * ny_

    def to_pixel(self, s: np.ndarray | float, t: np.ndarray | float) -> tuple[Any, Any]:
        """Slit coordinates ``(s, t)`` -> pixel ``(x, y)``."""
        (dx_, dy_), (nx_, ny_) = self.direction, self.normal
        return self.center_x + s * dx_ + t * nx_, self.center_y + s * dy_ + t * ny_

    def band_mask(self, shape: tuple[int, int], *, pad_px: float = 1.0) -> np.ndarray:
        """Boolean mask of the slit band, widened by ``pad_px`` on each side (all False if not found)."""
        if not self.found:
            return np.zeros(shape, dtype=bool)
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        s, t = self.to_slit(xx, yy)
        inside = np.abs(t) <= self.width_px / 2.0 + pad_px
        if math.isfinite(self.length_px):
            inside &= np.abs(s) <= self.length_px / 2.0 + pad_px
        return inside

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                for k, v in self.__dict__.items()}


def _robust_sky(img: np.ndarray) -> tuple[float, float]:
    """Median and MAD-sigma of a (sub-sampled) image."""
    flat = img[:: max(1, img.shape[0] // 300), :: max(1, img.shape[1] // 300)].ravel()
    flat = flat[np.isfinite(flat)]
    med = float(np.median(flat))
    sig = 1.4826 * float(np.median(np.abs(flat - med)))
    if sig <= 0:
        sig = float(np.std(flat)) or 1.0
    # one clipping pass: stars inflate neither much, but the slit's floor pulls the median down
    ok = np.abs(flat - med) < 4 * sig
    if ok.sum() > 10:
        med = float(np.median(flat[ok]))
        sig = 1.4826 * float(np.median(np.abs(flat[ok] - med))) or sig
    return med, sig


def _bin(img: np.ndarray, good: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of good pixels in b x b blocks, and the number of good pixels per block."""
    if b == 1:
        return np.where(good, img, 0.0), good.astype(np.float64)
    ny, nx = img.shape
    my, mx = ny // b * b, nx // b * b
    v = np.where(good, img, 0.0)[:my, :mx].reshape(my // b, b, mx // b, b).sum(axis=(1, 3))
    n = good[:my, :mx].reshape(my // b, b, mx // b, b).sum(axis=(1, 3)).astype(np.float64)
    return np.where(n > 0, v / np.maximum(n, 1), 0.0), n


class _Projector:
    """Projections of a (binned) image along lines of any angle: the Radon transform, one angle at a time."""

    def __init__(self, values: np.ndarray, weights: np.ndarray, xs: np.ndarray, ys: np.ndarray):
        ok = weights > 0
        self.v = (values * weights)[ok]
        self.w = weights[ok]
        self.x = xs[ok]
        self.y = ys[ok]

    def profile(self, angle_deg: float, bin_px: float, rho0: float | None = None,
                n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Mean value and weight per bin of ``t = -x sin a + y cos a`` (bins of ``bin_px``)."""
        a = math.radians(angle_deg)
        t = -self.x * math.sin(a) + self.y * math.cos(a)
        if rho0 is None:
            rho0 = float(t.min())
        idx = np.floor((t - rho0) / bin_px).astype(np.int64)
        if n_bins is None:
            n_bins = int(idx.max()) + 1
        ok = (idx >= 0) & (idx < n_bins)
        sums = np.bincount(idx[ok], weights=self.v[ok], minlength=n_bins)
        wts = np.bincount(idx[ok], weights=self.w[ok], minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(wts > 0, sums / wts, np.nan)
        return mean, wts, rho0


def _dip_score(mean: np.ndarray, wts: np.ndarray, sigma_pix: float, window: int) -> tuple[float, int, float]:
    """Most significant narrow dip of a projection: (sigma, bin index, depth)."""
    valid = wts >= max(10.0, 0.25 * float(np.nanmax(wts))) if np.any(wts > 0) else np.zeros(len(wts), bool)
    idx = np.flatnonzero(valid)
    if len(idx) < 2 * window:
        return 0.0, -1, 0.0
    lo, hi = idx[0], idx[-1] + 1
    m = mean[lo:hi].copy()
    w = wts[lo:hi]
    bad = ~np.isfinite(m) | (w < max(10.0, 0.25 * float(np.nanmax(wts))))
    if bad.any():
        m[bad] = np.interp(np.flatnonzero(bad), np.flatnonzero(~bad), m[~bad])
    base = ndimage.median_filter(m, size=window, mode="nearest")
    noise = sigma_pix / np.sqrt(np.maximum(w, 1.0))
    best = (0.0, -1, 0.0)
    edge = 2
    for k in (1, 2, 3, 5):
        if k >= len(m) - 2 * edge:
            break
        kern = np.ones(k)
        d = np.convolve(base - m, kern, mode="same")
        n = np.sqrt(np.convolve(noise**2, kern, mode="same"))
        z = d / n
        z[:edge] = 0
        z[-edge:] = 0
        j = int(np.argmax(z))
        if z[j] > best[0]:
            best = (float(z[j]), int(lo + j), float(d[j] / k))
    return best


def find_slit(image: np.ndarray, *, settings: SlitSearchSettings | None = None,
              bad_mask: np.ndarray | None = None) -> SlitGeometry:
    """Find the dark spectrograph slit on a slit-viewer frame.

    Steps: stars masked (pixels above sky + ``star_clip_sigma``, grown by 2 px); a coarse
    projection search over all angles on the frame binned to ``coarse_px`` (the slit is the most
    significant narrow dip of a projection, against a running-median baseline); a fine search
    around it on a finer binning; then at full resolution the centre line fitted through the
    dips of a dozen segments along the slit, the width, edge blur and depth fitted to the
    stacked cross-slit profile, and the visible length found from where the dip is present.

    Args:
        image: 2-D frame [ADU] (bias and dark need not be removed).
        settings: :class:`SlitSearchSettings`.
        bad_mask: True on pixels to ignore.

    Returns:
        :class:`SlitGeometry`; ``found=False`` with a reason when no slit is there.

    Raises:
        NayutaError: for an image that is not 2-D or has no finite pixels.
    """
    t0 = time.perf_counter()
    s = settings or SlitSearchSettings()
    img = as_image(image)
    ny, nx = img.shape
    finite = np.isfinite(img)
    sky, sig = _robust_sky(img)
    good = finite & (img < sky + s.star_clip_sigma * sig)
    good = ~ndimage.binary_dilation(~good, iterations=2) & finite
    if bad_mask is not None:
        good &= ~np.asarray(bad_mask, bool)
    img0 = np.where(finite, img, sky)

    # ---- coarse: every angle
    b1 = max(1, int(math.ceil(max(ny, nx) / s.coarse_px)))
    cb, cw = _bin(img0, good, b1)
    cy, cx = np.mgrid[0 : cb.shape[0], 0 : cb.shape[1]]
    proj = _Projector(cb.ravel(), cw.ravel(), cx.ravel().astype(float), cy.ravel().astype(float))
    sig_pix = sig  # per full-resolution pixel; a bin's mean of w pixels has sig / sqrt(w)
    angles = np.arange(0.0, 180.0, s.coarse_step_deg)
    best = (0.0, 0.0, 0.0)
    for ang in angles:
        mean, wts, rho0 = proj.profile(ang, 1.0)
        z, j, _ = _dip_score(mean, wts, sig_pix, 31)
        if z > best[0]:
            best = (z, ang, rho0 + j + 0.5)
    z1, ang1, rho1 = best
    if z1 < s.min_significance:
        return SlitGeometry.not_found(f"no dark band across the frame (best dip {z1:.1f} sigma, "
                                      f"need {s.min_significance:g})", significance=z1, elapsed_ms=ms(t0))
    # ---- fine: around the coarse answer, on a finer binning, near the line only
    b2 = max(1, int(math.ceil(max(ny, nx) / s.fine_px)))
    fb, fw = _bin(img0, good, b2)
    fy, fx = np.mgrid[0 : fb.shape[0], 0 : fb.shape[1]]
    # fine pixel (i, j) covers full pixels j*b2 .. j*b2 + b2 - 1: its centre is (j + 0.5) b2 - 0.5
    fxf = (fx.ravel() + 0.5) * b2 - 0.5
    fyf = (fy.ravel() + 0.5) * b2 - 0.5
    a1 = math.radians(ang1)
    # coarse pixel (i, j) covers full pixels j*b1 .. j*b1 + b1 - 1: its centre is j*b1 + (b1 - 1)/2
    rho_full = rho1 * b1 + (b1 - 1) / 2.0 * (math.cos(a1) - math.sin(a1))
    tt = -fxf * math.sin(a1) + fyf * math.cos(a1)
    near = np.abs(tt - rho_full) < 6 * b1 + 10
    proj2 = _Projector(fb.ravel()[near], fw.ravel()[near], fxf[near], fyf[near])
    best2 = (0.0, ang1, rho_full)
    for ang in np.arange(ang1 - s.coarse_step_deg, ang1 + s.coarse_step_deg + 1e-9, s.fine_step_deg):
        mean, wts, r0 = proj2.profile(ang, float(b2))
        z, j, _ = _dip_score(mean, wts, sig_pix, 31)
        if z > best2[0]:
            best2 = (z, ang, r0 + (j + 0.5) * b2)
    _, ang2, rho2 = best2

    # ---- full resolution: a first edge profile and the visible stretch, then the centre line
    # from segments of that stretch, then the edge profile again about the fitted line
    yy, xx = np.mgrid[0:ny, 0:nx]
    a2 = math.radians(ang2)
    tfull = -xx * math.sin(a2) + yy * math.cos(a2) - rho2
    strip = good & (np.abs(tfull) < 4 * b1 + 12)
    xs, ys, vs = xx[strip].astype(float), yy[strip].astype(float), img0[strip].astype(float)
    ts = tfull[strip]
    ss = xs * math.cos(a2) + ys * math.sin(a2)
    prof = _fit_edge_profile(ts, vs, sig)
    if prof is None:
        return SlitGeometry.not_found("a dark band was found but its edges could not be fitted",
                                      significance=z1, elapsed_ms=ms(t0))
    s_lo, s_hi = _visible_extent(ss, ts - prof[0], vs, prof[1], prof[2], prof[3], sig)
    on = (ss >= s_lo) & (ss <= s_hi)
    geo = _fit_centre_line(ss[on], ts[on], vs[on], sig)
    if geo is None:
        return SlitGeometry.not_found("a dark band was found but its centre line could not be fitted",
                                      significance=z1, elapsed_ms=ms(t0))
    slope, offset, seg_frac = geo
    ang3 = ang2 + math.degrees(math.atan(slope))  # not wrapped yet: s and t keep their sense
    a3 = math.radians(ang3)
    # the fitted line passes through the old line's point at s = 0 shifted across by the offset
    px0 = -math.sin(a2) * (rho2 + offset)
    py0 = math.cos(a2) * (rho2 + offset)
    rho3 = -px0 * math.sin(a3) + py0 * math.cos(a3)
    t3 = -xs * math.sin(a3) + ys * math.cos(a3) - rho3
    s3 = xs * math.cos(a3) + ys * math.sin(a3)
    on = (s3 >= s_lo) & (s3 <= s_hi)
    prof = _fit_edge_profile(t3[on], vs[on], sig)
    if prof is None:
        return SlitGeometry.not_found("a dark band was found but its edges could not be fitted",
                                      significance=z1, elapsed_ms=ms(t0))
    t_c, width, edge_sig, depth, level = prof
    if width < s.min_width_px:
        return SlitGeometry.not_found(
            f"the darkest band is only {width:.2f} px wide (a dead column?); a slit is at least "
            f"{s.min_width_px:g} px", significance=z1, angle_deg=float(ang3 % 180.0), width_px=float(width),
            elapsed_ms=ms(t0))
    rho3 += t_c
    t3 = t3 - t_c
    s_lo, s_hi = _visible_extent(s3, t3, vs, width, edge_sig, depth, sig)
    s_mid = 0.5 * (s_lo + s_hi)
    cxp = s_mid * math.cos(a3) - rho3 * math.sin(a3)
    cyp = s_mid * math.sin(a3) + rho3 * math.cos(a3)
    confidence = float(np.clip((z1 - s.min_significance) / 15.0 + 0.3, 0.0, 1.0) * min(1.0, seg_frac / 0.8))
    found = seg_frac >= s.min_segment_fraction
    g = SlitGeometry(
        found=found, angle_deg=float(ang3 % 180.0), center_x=float(cxp), center_y=float(cyp), width_px=float(width),
        length_px=float(s_hi - s_lo), edge_sigma_px=float(edge_sig), depth_adu=float(depth), level_adu=float(level),
        significance=float(z1), confidence=confidence if found else 0.0, segment_fraction=float(seg_frac),
        elapsed_ms=ms(t0),
        reason=None if found else f"the dark band shows in only {seg_frac:.0%} of its segments",
    )
    log.debug("slit: %s", g)
    return g


def _fit_centre_line(s: np.ndarray, t: np.ndarray, v: np.ndarray, sig: float) -> tuple[float, float, float] | None:
    """Dip centre in ~12 segments along the slit, a straight line through them: (slope, offset, fraction)."""
    if len(s) < 100:
        return None
    lo, hi = float(s.min()), float(s.max())
    nseg = 12
    edges = np.linspace(lo, hi, nseg + 1)
    centres, weights, mids = [], [], []
    for i in range(nseg):
        sel = (s >= edges[i]) & (s < edges[i + 1])
        if sel.sum() < 50:
            continue
        tb = np.floor(t[sel] * 2.0).astype(np.int64)  # half-pixel bins
        tmin = tb.min()
        sums = np.bincount(tb - tmin, weights=v[sel])
        cnt = np.bincount(tb - tmin).astype(float)
        ok = cnt >= 3
        if ok.sum() < 8:
            continue
        prof = np.where(ok, sums / np.maximum(cnt, 1), np.nan)
        tc = (np.arange(len(prof)) + tmin + 0.5) / 2.0
        base = np.nanmedian(prof)
        dip = np.where(ok, base - prof, 0.0)
        noise = sig / np.sqrt(np.maximum(cnt, 1))
        # smooth by 3 bins and take the deepest; its centroid over the neighbouring bins
        sm = np.convolve(dip, np.ones(3) / 3, mode="same")
        j = int(np.argmax(sm))
        zj = sm[j] / (float(np.median(noise[ok])) / math.sqrt(3))
        if zj < 4.0:
            continue
        w = np.clip(dip[max(0, j - 6) : j + 7], 0, None)
        if w.sum() <= 0:
            continue
        c = float(np.sum(w * tc[max(0, j - 6) : j + 7]) / w.sum())
        centres.append(c)
        weights.append(zj)
        mids.append(0.5 * (edges[i] + edges[i + 1]))
    frac = len(centres) / nseg
    if len(centres) < 3:
        return None
    m = np.array(mids)
    c = np.array(centres)
    w = np.array(weights)
    keep = np.ones(len(c), bool)
    for _ in range(3):
        A = np.column_stack([m[keep] - m.mean(), np.ones(keep.sum())])
        coef, *_ = np.linalg.lstsq(A * w[keep, None], c[keep] * w[keep], rcond=None)
        r = c - (coef[0] * (m - m.mean()) + coef[1])
        mad = 1.4826 * np.median(np.abs(r[keep])) + 0.05
        new = np.abs(r) < 4 * mad
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    slope = float(coef[0])
    offset = float(coef[1] - coef[0] * m.mean())  # t of the line at s = 0
    return slope, offset, float(keep.sum() / nseg)


def slit_fraction(t: np.ndarray, t0: float, width: float, sigma: float) -> np.ndarray:
    k = 1.0 / (math.sqrt(2.0) * max(sigma, 1e-3))
    return 0.5 * (special.erf((width / 2 - (t - t0)) * k) + special.erf((width / 2 + (t - t0)) * k))


def _fit_edge_profile(t: np.ndarray, v: np.ndarray, sig: float) -> tuple[float, float, float, float, float] | None:
    """Fit level - depth * box(width) (x) Gaussian(sigma) to the stacked cross-slit profile.

    Returns (centre offset, width, edge sigma, depth, level) or None.
    """
    tb = np.floor(t * 4.0).astype(np.int64)  # quarter-pixel bins: the slit is sampled by many pixels
    tmin = tb.min()
    sums = np.bincount(tb - tmin, weights=v)
    cnt = np.bincount(tb - tmin).astype(float)
    ok = cnt >= 5
    if ok.sum() < 12:
        return None
    tc = (np.arange(len(sums)) + tmin + 0.5) / 4.0
    prof = sums[ok] / cnt[ok]
    tc = tc[ok]
    err = sig / np.sqrt(cnt[ok])
    level = float(np.median(prof[np.abs(tc) > 0.5 * np.max(np.abs(tc))]))
    dmin = float(np.min(np.convolve(prof, np.ones(3) / 3, mode="same")[1:-1]))
    depth0 = max(level - dmin, 3 * sig / math.sqrt(float(np.median(cnt[ok]))))
    below = tc[prof < level - depth0 / 2]
    w0 = float(np.clip(below.max() - below.min() if len(below) > 1 else 2.0, 0.8, 0.8 * np.ptp(tc)))

    def model(p: np.ndarray) -> np.ndarray:
        lev, slope, dep, c, w, es = p
        return lev + slope * tc - dep * slit_fraction(tc, c, w, es)

    p0 = np.array([level, 0.0, depth0, 0.0, w0, 0.6])
    lo = [-np.inf, -np.inf, 0.0, -w0, 0.3, 0.15]
    hi = [np.inf, np.inf, np.inf, w0, 4 * w0 + 5, 5.0]
    p0 = np.clip(p0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    try:
        r = optimize.least_squares(lambda p: (model(p) - prof) / err, p0, bounds=(lo, hi), loss="soft_l1",
                                   f_scale=3.0)
    except (ValueError, np.linalg.LinAlgError):
        return None
    lev, _slope, dep, c, w, es = r.x
    return float(c), float(w), float(es), float(dep), float(lev)


def _visible_extent(s: np.ndarray, t: np.ndarray, v: np.ndarray, width: float, edge_sig: float,
                    depth: float, sig: float) -> tuple[float, float]:
    """(s_min, s_max) of the stretch where the slit's dip is present (gaps up to 2 chunks allowed)."""
    lo, hi = float(s.min()), float(s.max())
    chunk = max(10.0, 4 * width, (hi - lo) / 60.0)
    n = max(1, int(math.ceil((hi - lo) / chunk)))
    idx = np.clip(((s - lo) / chunk).astype(int), 0, n - 1)
    inner = np.abs(t) < max(0.5, width / 2 - edge_sig)
    outer = (np.abs(t) > width / 2 + 2 * edge_sig + 1) & (np.abs(t) < width / 2 + 2 * edge_sig + 1 + max(width, 4.0))
    si = np.bincount(idx[inner], weights=v[inner], minlength=n)
    ci = np.bincount(idx[inner], minlength=n).astype(float)
    so = np.bincount(idx[outer], weights=v[outer], minlength=n)
    co = np.bincount(idx[outer], minlength=n).astype(float)
    known = (ci >= 3) & (co >= 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = so / co - si / ci
        noise = sig * np.sqrt(1 / np.maximum(ci, 1) + 1 / np.maximum(co, 1))
    present = known & (d > 0.5 * depth) & (d > 3 * noise)
    absent = known & ~present
    # longest run of present chunks, bridging up to 2 unknown or absent chunks
    best = (0, -1, -1)
    i = 0
    while i < n:
        if not present[i]:
            i += 1
            continue
        j = i
        gap = 0
        last = i
        k = i + 1
        while k < n:
            if present[k]:
                last = k
                gap = 0
            else:
                gap += 1
                if gap > 2 or (absent[k] and gap > 1):
                    break
            k += 1
        j = last
        if j - i + 1 > best[0]:
            best = (j - i + 1, i, j)
        i = k
    if best[0] == 0:
        return lo, hi
    return lo + best[1] * chunk, min(hi, lo + (best[2] + 1) * chunk)
