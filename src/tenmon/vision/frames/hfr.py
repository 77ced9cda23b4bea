"""The half-flux radius (HFR) of a frame's stars: the focus measure of autofocus.

The frame pipeline's FWHM (:mod:`tenmon.vision.frames.sources`) is a PSF model's width: it is fitted on
bright, sharp-enough stars and refuses fits at its bounds, which is right for photometry and
astrometry and wrong for focusing: a defocused star (a wide Moffat disc, a donut) is exactly what
it leaves out. The half-flux radius needs no model: the radius of the circle, centred on the
star, that holds half of the star's flux. It grows with defocus whatever the star's shape is.

:func:`half_flux_radius` measures it with sep (SExtractor's algorithms as a library):

1. the sky: sep's mesh background;
2. detection at ``threshold_sigma`` of the global sky rms, **without deblending** (a donut, or a
   star with a dark centre, stays one object) and without cleaning, with its segmentation map;
3. the candidates: not touching the border, no masked (bad, saturated) pixel in the footprint,
   round enough (``b/a >= min_axis_ratio``: blends of two stars and trails are not), the
   ``max_stars`` brightest; an HFR under ``min_hfr_px`` is a hot pixel or a cosmic ray;
4. per star, a circle of ``aperture_factor`` times its own HFR, found by iteration from its
   isophotal size: the sky left around the star is the mean in an annulus just outside the
   circle (``sep.sum_circann``, other objects' pixels masked by the segmentation map), taken
   off a stamp, and ``sep.flux_radius(..., 0.5)`` gives the radius holding half of what the
   circle holds (other objects masked). A circle proportional to the star keeps the measure
   proportional to its size at any defocus (3 HFRs hold ~94 % of a beta = 2.5 Moffat star, so a
   frame's HFR comes out ~5 % under the profile's, alike for every frame of a sweep); the local
   sky keeps a faint wide star's HFR from running off with a sky residual of a fraction of an
   ADU. The centre is the isophotal barycentre (a donut's centre, where a peak-seeking centroid
   would fall on its ring). A star is kept when the iteration converged, its circle stays inside
   the frame and holds no other detected object brighter than ``neighbour_flux_ratio`` of it
   (when that leaves none, the crowded stars count);
5. the frame's HFR is the median over the kept stars (``n_stars``; ``scatter_px`` is their
   robust spread, 1.4826 x MAD). Fewer than ``min_stars`` (default 1: a focusing field may hold
   a single bright star): no HFR (``None``).

Units: pixels of the image given. Pure: an array in, numbers out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep

from tenmon.core.errors import VisionError
from tenmon.config.vision import HfrSettings


@dataclass(frozen=True)
class HalfFluxRadius:
    """A frame's half-flux radius: ``hfr_px`` (median over ``n_stars``; ``None`` when fewer
    than the settings' ``min_stars`` were measured), ``scatter_px`` (1.4826 x MAD of the
    stars' HFRs), ``aperture_px`` (the median measuring circle's radius), ``n_detected``."""

    hfr_px: float | None
    n_stars: int
    scatter_px: float | None
    aperture_px: float | None
    n_detected: int

    def to_json(self) -> dict:
        return {"hfr_px": _r(self.hfr_px), "n_stars": self.n_stars,
                "scatter_px": _r(self.scatter_px), "aperture_px": _r(self.aperture_px),
                "n_detected": self.n_detected}


def half_flux_radius(image: np.ndarray, *, mask: np.ndarray | None = None,
                     saturation_adu: float | None = None,
                     settings: HfrSettings | None = None) -> HalfFluxRadius:
    """The median half-flux radius of the frame's well-measured stars [px].

    Args:
        image: 2-D frame [ADU], background not subtracted (cosmic rays cleaned if possible).
        mask: True on pixels to ignore (bad pixels, cosmic rays).
        saturation_adu: stars reaching 98 % of it are left out.
        settings: :class:`HfrSettings`.

    Raises:
        VisionError: on an image that is not 2-D or smaller than 8 x 8.
    """
    s = settings or HfrSettings()
    img = np.asarray(image)
    if img.ndim != 2 or min(img.shape) < 8:
        raise VisionError(f"half-flux radius needs a 2-D image, got shape {img.shape}")
    img = np.ascontiguousarray(img, dtype=np.float32)
    finite = np.isfinite(img)
    if not finite.all():
        img = np.where(finite, img, np.float32(np.nanmedian(img))).astype(np.float32)
    bad = ~finite if mask is None else (np.asarray(mask, dtype=bool) | ~finite)
    if saturation_adu is not None:
        bad = bad | (img >= 0.98 * saturation_adu)
    bad = np.ascontiguousarray(bad)
    box = int(min(s.background_box_px, min(img.shape)))
    bkg = sep.Background(img, mask=bad, bw=box, bh=box, fw=3, fh=3)
    sub = np.ascontiguousarray(img - bkg.back(), dtype=np.float32)
    objs, seg = _extract(sub, s, float(bkg.globalrms), bad)
    none = HalfFluxRadius(None, 0, None, None, len(objs))
    if len(objs) == 0:
        return none

    cand = (objs["flag"] & sep.OBJ_TRUNC) == 0
    n_bad, _, _ = sep.sum_circle(bad.astype(np.float32), objs["x"], objs["y"],
                                 np.maximum(2.0 * objs["a"], 1.0), subpix=1)
    cand &= n_bad < 0.5
    cand &= objs["b"] >= s.min_axis_ratio * np.maximum(objs["a"], 1e-6)
    idx = np.nonzero(cand)[0]
    idx = idx[np.argsort(objs["flux"][idx])[::-1]][: s.max_stars]
    radii, apertures, kept = [], [], []
    ones = np.ones(sub.shape, dtype=np.float32)   # the annulus' unmasked area by sum_circann
    for i in idx:
        m = _star_hfr(sub, seg, bad, ones, objs, int(i), s)
        if m is not None:
            radii.append(m[0])
            apertures.append(m[1])
            kept.append(i)
    if not kept:
        return none
    r = np.asarray(radii)
    ap = np.asarray(apertures)
    alone = _isolated(objs, np.asarray(kept), ap, s.neighbour_flux_ratio)
    if alone.any():
        r, ap = r[alone], ap[alone]
    if len(r) < s.min_stars:
        return HalfFluxRadius(None, len(r), None, None, len(objs))
    med = float(np.median(r))
    mad = float(np.median(np.abs(r - med))) * 1.4826
    return HalfFluxRadius(med, len(r), mad, float(np.median(ap)), len(objs))


def _star_hfr(sub: np.ndarray, seg: np.ndarray, bad: np.ndarray, ones: np.ndarray,
              objs: np.ndarray, i: int, s: HfrSettings) -> tuple[float, float] | None:
    """One star's HFR and its circle's radius (see the module docstring), or ``None`` when the
    iteration did not settle, the circle left the frame or held masked pixels."""
    ny, nx = sub.shape
    x, y = float(objs["x"][i]), float(objs["y"][i])
    sid = np.array([i + 1], dtype=np.int32)
    radius = max(4.0, 2.0 * math.sqrt(float(objs["npix"][i]) / math.pi))
    for _ in range(s.max_iterations):
        width = max(s.sky_annulus_px, 0.5 * radius)
        xa, ya = np.array([x]), np.array([y])
        total, _, _ = sep.sum_circann(sub, xa, ya, radius, radius + width, mask=bad,
                                       segmap=seg, seg_id=sid, subpix=1)
        area, _, _ = sep.sum_circann(ones, xa, ya, radius, radius + width,
                                     mask=bad, segmap=seg, seg_id=sid, subpix=1)
        sky = float(total[0]) / float(area[0]) if area[0] >= 8 else 0.0
        h = int(math.ceil(radius)) + 2
        cx, cy = int(round(x)), int(round(y))
        if cx - h < 0 or cy - h < 0 or cx + h >= nx or cy + h >= ny:
            return None          # the circle leaves the frame
        y0, x0 = cy - h, cx - h
        stamp = np.ascontiguousarray(sub[y0:cy + h + 1, x0:cx + h + 1] - np.float32(sky))
        sg = np.ascontiguousarray(seg[y0:cy + h + 1, x0:cx + h + 1])
        mk = np.ascontiguousarray(bad[y0:cy + h + 1, x0:cx + h + 1])
        r, flag = sep.flux_radius(stamp, np.array([x - x0]), np.array([y - y0]),
                                  np.array([radius]), 0.5, mask=mk, segmap=sg, seg_id=sid,
                                  subpix=5)
        r0 = float(r[0])
        if not math.isfinite(r0) or r0 < s.min_hfr_px or (int(flag[0]) & sep.APER_HASMASKED):
            return None
        new = max(3.0, s.aperture_factor * r0)
        if abs(new - radius) <= 0.02 * radius:
            return r0, radius
        radius = new
        if radius > 0.5 * min(nx, ny):
            return None
    return None   # no settled circle: a sky that is not flat around it, or no star


def _extract(sub: np.ndarray, s: HfrSettings, rms: float,
             bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Objects and their segmentation map (no deblending, no cleaning)."""
    def run():
        return sep.extract(sub, s.threshold_sigma, err=max(rms, 1e-12), mask=bad,
                           minarea=s.min_area_px, filter_type="conv", deblend_cont=1.0,
                           clean=False, segmentation_map=True)

    try:
        return run()
    except Exception as exc:  # sep raises a bare Exception when its pixel stack overflows
        if "pixel buffer full" not in str(exc):
            raise VisionError(f"half-flux radius: extraction failed: {exc}") from exc
        sep.set_extract_pixstack(max(3_000_000, sep.get_extract_pixstack() * 4))
        try:
            return run()
        except Exception as exc2:
            raise VisionError(f"half-flux radius: extraction failed: {exc2}") from exc2


def _isolated(objs: np.ndarray, idx: np.ndarray, radius: np.ndarray,
              ratio: float) -> np.ndarray:
    """True for each ``objs[idx]`` without another object brighter than ``ratio`` of it whose
    footprint (barycentre less 2 isophotal ``a``) reaches into its circle of ``radius``."""
    from scipy.spatial import cKDTree

    xy = np.column_stack([objs["x"], objs["y"]]).astype(np.float64)
    ext = 2.0 * np.asarray(objs["a"], dtype=np.float64)
    tree = cKDTree(xy)
    out = np.ones(len(idx), dtype=bool)
    for k, (i, rad) in enumerate(zip(idx, radius)):
        for j in tree.query_ball_point(xy[i], float(rad) + float(ext.max())):
            if j != i and math.hypot(*(xy[j] - xy[i])) - ext[j] < rad \
                    and objs["flux"][j] > ratio * objs["flux"][i]:
                out[k] = False
                break
    return out


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), nd)


__all__ = ["HalfFluxRadius", "HfrSettings", "half_flux_radius"]
