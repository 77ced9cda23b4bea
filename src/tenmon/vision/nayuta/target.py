"""The target on the slit: its position from the wings, photometry, the PSF fit.

Part of :mod:`tenmon.vision.nayuta` (see its docstring for the conventions).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage, optimize, special

from tenmon.vision.nayuta._common import as_image, ms, xyflux
from tenmon.vision.nayuta.settings import MOFFAT_BETA, NayutaError
from tenmon.config.vision import TargetSearchSettings
from tenmon.vision.nayuta.slit import SlitGeometry, slit_fraction


@dataclass(frozen=True)
class Photometry:
    """Aperture photometry of one star (photutils).

    ``flux_adu`` is background-subtracted, over the unmasked part of a circle of ``radius_px``;
    ``mag`` the instrumental magnitude ``-2.5 log10(flux / exposure_s)`` (per second when the
    exposure is known, else per frame); ``None`` fields when the flux is not positive.
    ``saturated``: a pixel in the aperture reached the saturation level given (the flux is then
    too low).
    """

    x: float
    y: float
    radius_px: float
    flux_adu: float
    flux_err_adu: float
    background_adu: float
    mag: float | None
    mag_err: float | None
    masked_fraction: float
    exposure_s: float | None
    saturated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                for k, v in self.__dict__.items()}


def aperture_photometry_at(image: np.ndarray, x: float, y: float, *, fwhm_px: float,
                           mask: np.ndarray | None = None, background: float | np.ndarray | None = None,
                           error: np.ndarray | None = None, exposure_s: float | None = None,
                           gain: float | None = None, saturation_adu: float | None = None,
                           aperture_fwhm: float = 2.5,
                           annulus_fwhm: tuple[float, float] = (3.0, 5.0)) -> Photometry:
    """Background-subtracted aperture photometry at ``(x, y)`` with photutils.

    The aperture has radius ``aperture_fwhm`` x ``fwhm_px``. The background is ``background``
    (a level or a map [ADU]) when given, else the 3-sigma-clipped mean of an annulus
    (``annulus_fwhm`` radii). Pixels where ``mask`` is True count in neither. The error is the
    quadrature sum of ``error`` (a per-pixel 1-sigma map) over the aperture, or the annulus
    scatter, plus, with ``gain`` [e-/ADU], the star's Poisson noise.

    Raises:
        NayutaError: on an image that is not 2-D or a non-positive FWHM.
    """
    from astropy.stats import SigmaClip
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    img = as_image(image)
    if not fwhm_px > 0:
        raise NayutaError(f"photometry needs a positive FWHM, got {fwhm_px}")
    r = aperture_fwhm * fwhm_px
    ap = CircularAperture((x, y), r=r)
    m = ~np.isfinite(img) if mask is None else (np.asarray(mask, bool) | ~np.isfinite(img))
    data = np.where(np.isfinite(img), img, 0.0)
    area = float(ap.area_overlap(data, mask=m))
    if background is None:
        ann = CircularAnnulus((x, y), r_in=annulus_fwhm[0] * fwhm_px, r_out=annulus_fwhm[1] * fwhm_px)
        st = ApertureStats(data, ann, mask=m, sigma_clip=SigmaClip(sigma=3.0, maxiters=5))
        # the clipped mean: a median of integer ADU is quantised, the mean is not
        bkg_level = float(st.mean) if np.isfinite(st.mean) else float(np.nanmedian(data[~m]))
        bstd = float(st.std) if np.isfinite(st.std) else 0.0
        n_ann = max(1.0, float(np.asarray(getattr(st.sum_aper_area, "value", st.sum_aper_area))))
        phot = aperture_photometry(data - bkg_level, ap, mask=m)
        var = area * bstd**2 * (1.0 + area / n_ann)
    else:
        bkg_level = float(np.median(background)) if np.ndim(background) else float(background)
        err = None if error is None else np.asarray(error, float)
        phot = aperture_photometry(data - background, ap, mask=m, error=err)
        var = float(phot["aperture_sum_err"][0]) ** 2 if err is not None else 0.0
    total = float(phot["aperture_sum"][0])
    if gain and total > 0:
        var += total / gain
    err_t = math.sqrt(max(var, 0.0))
    if total > 0:
        per = total / exposure_s if exposure_s else total
        mag = -2.5 * math.log10(per)
        mag_err = 1.0857 * err_t / total
    else:
        mag = mag_err = None
    full = float(ap.area)
    saturated = False
    if saturation_adu is not None:
        vals = ap.to_mask(method="center").get_values(img)
        saturated = bool(vals.size and np.nanmax(vals) >= 0.98 * saturation_adu)
    return Photometry(x=float(x), y=float(y), radius_px=float(r), flux_adu=total, flux_err_adu=err_t,
                      background_adu=bkg_level, mag=mag, mag_err=mag_err,
                      masked_fraction=1.0 - area / full if full else 0.0, exposure_s=exposure_s, saturated=saturated)


@dataclass(frozen=True)
class TargetOnSlit:
    """The star straddling the slit, as :func:`find_target` found it.

    ``x``/``y``: its pixel position; ``s_px``/``t_px`` the same along and across the slit from
    its centre. ``wings``: aperture photometry of the light on the jaws (slit masked): a *lower
    bound* on the star's brightness (``brightness_is_lower_bound``: the star is at least this
    bright, its magnitude at most ``wings.mag``). ``flux_model_adu``/``mag_model``: a Moffat
    (beta 4) PSF times the slit transmission fitted to the wings, an estimate of the whole star
    including the light lost into the slit (model-dependent); ``slit_loss_fraction`` is 1 - wings
    / model. ``significance``: the fainter wing's [sigma]; ``symmetry``: fainter / brighter
    wing; ``n_candidates``: stars seen straddling the slit.
    """

    found: bool
    x: float = math.nan
    y: float = math.nan
    s_px: float = math.nan
    t_px: float = math.nan
    fwhm_px: float = math.nan
    wings: Photometry | None = None
    brightness_is_lower_bound: bool = True
    flux_model_adu: float = math.nan
    mag_model: float | None = None
    slit_loss_fraction: float = math.nan
    significance: float = 0.0
    symmetry: float = 0.0
    n_candidates: int = 0
    elapsed_ms: float = 0.0
    reason: str | None = None

    @classmethod
    def not_found(cls, reason: str, **kw: Any) -> TargetOnSlit:
        return cls(found=False, reason=reason, **kw)

    def to_json(self) -> dict[str, Any]:
        out = {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else (None if isinstance(v, float) else v))
               for k, v in self.__dict__.items() if k != "wings"}
        out["wings"] = self.wings.to_json() if self.wings is not None else None
        return out


def _moffat(r2: np.ndarray, fwhm: float) -> np.ndarray:
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / MOFFAT_BETA) - 1.0))
    return (MOFFAT_BETA - 1) / (math.pi * alpha**2) * (1 + r2 / alpha**2) ** (-MOFFAT_BETA)


def measure_fwhm(image: np.ndarray, sources: Table, *, mask: np.ndarray | None = None,
                 n_stars: int = 15) -> float | None:
    """The frame's seeing FWHM [px]: circular Gaussians fitted (photutils ``fit_fwhm``) to the
    brightest isolated sources, median; ``None`` when no source can be fitted.

    Measured here rather than taken from the extractor: its ``meta['fwhm_px']`` (and the clean
    sources' ``fwhm``) came out at ~0.7 px on some rendered 60 cm frames of 3-12 px FWHM. The
    fit starts from the median ``fwhm`` column and is repeated with a fitting box sized from
    its own answer until that settles. A Gaussian fitted to Moffat (beta 4) stars reads ~9 %
    wide, which only sizes apertures.
    """
    import warnings

    import sep
    from photutils.psf import fit_fwhm

    img = as_image(image)
    if sources is None or len(sources) == 0:
        return None
    x, y, _ = xyflux(sources, "source")
    data = np.ascontiguousarray(np.where(np.isfinite(img), img, np.nanmedian(img)), dtype=np.float32)
    m = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    sub = data - sep.Background(data, mask=m).back()
    guess = 3.0
    if "fwhm" in sources.colnames:
        col = np.asarray(sources["fwhm"], float)
        col = col[np.isfinite(col) & (col > 0)]
        if len(col):
            guess = float(np.median(col))
    ny, nx = img.shape
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) if len(x) <= 3000 else None
    if d is not None:
        np.fill_diagonal(d, np.inf)
        nearest = d.min(axis=1)
    else:
        nearest = np.full(len(x), np.inf)
    for _ in range(4):
        h = int(np.clip(1.5 * guess, 3, 20))
        ok = (nearest > 2 * h) & (x > h) & (y > h) & (x < nx - 1 - h) & (y < ny - 1 - h)
        if m is not None:
            ok &= ~m[np.clip(np.rint(y).astype(int), 0, ny - 1), np.clip(np.rint(x).astype(int), 0, nx - 1)]
        sel = np.flatnonzero(ok)[:n_stars]
        if len(sel) == 0:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's fit warnings on a poor star
            f = np.asarray(fit_fwhm(sub, xypos=np.column_stack([x[sel], y[sel]]), fwhm=guess, fit_shape=2 * h + 1,
                                    mask=m), dtype=float)
        f = f[np.isfinite(f) & (f > 0.5) & (f < 4 * h)]
        if len(f) == 0:
            return None
        new = float(np.median(f))
        if abs(new / guess - 1.0) < 0.15:
            return new
        guess = new
    return guess


def find_target(image: np.ndarray, slit: SlitGeometry, *, fwhm_px: float | None = None,
                fwhm_guess_px: float | None = None, exposure_s: float | None = None, gain: float | None = None,
                saturation_adu: float | None = None,
                reference_xy: tuple[float, float] | None = None, reference_tolerance_px: float | None = None,
                settings: TargetSearchSettings | None = None) -> TargetOnSlit:
    """Find the star whose wings straddle the slit, its position and brightness.

    The frame is first reduced to the starlight on the jaws: minus its floor (bias + dark: the
    slit's level) and minus the sky the jaws reflect, ``data - floor - T (sky - floor)`` with
    ``T`` the slit transmission found by :func:`find_slit`, so that every pixel, the slit's
    edges included, holds ``T x starlight``. Two strips beside the slit (each ``strip_fwhm``
    FWHM wide from the slit's edge outward) give light profiles along the slit; smoothed by the
    PSF, a star on the slit shows as a peak in *both* (a field star beside the slit lights one
    strip only). The most significant peak whose fainter wing passes ``min_significance`` and
    whose wings are balanced enough (``min_symmetry``) is a candidate; the target is the
    candidate nearest the reference point (``reference_xy``, default the slit's middle) within
    ``reference_tolerance_px`` (default 15 % of the visible slit), else the most significant
    candidate. Its along-slit position
    starts as the wings' centroid; a Moffat PSF times ``T`` is then fitted to the pixels around
    it for the position across the slit, the FWHM and the slit-corrected flux. The wings'
    aperture photometry (photutils) is the light on the jaws: a lower bound of the star's.

    Args:
        image: the slit-viewer frame [ADU].
        slit: from :func:`find_slit` (must be found).
        fwhm_px: seeing FWHM [px], held fixed; default fitted.
        fwhm_guess_px: a first guess of it for the search (default twice the slit width).
        reference_xy: the pixel where Nayuta puts its targets on the slit; default the slit's middle.
        reference_tolerance_px: how far along the slit from it the target may be [px].
        exposure_s: for instrumental magnitudes per second; gain: [e-/ADU] for errors;
        saturation_adu: the frame's saturation level (flags saturated wings).
        settings: :class:`TargetSearchSettings`.

    Returns:
        :class:`TargetOnSlit`; ``found=False`` with a reason when no star straddles the slit.

    Raises:
        NayutaError: for an image that is not 2-D.
    """
    import sep
    from scipy.signal import find_peaks

    t0 = time.perf_counter()
    st = settings or TargetSearchSettings()
    img = as_image(image)
    if not slit.found:
        return TargetOnSlit.not_found(f"no slit: {slit.reason}", elapsed_ms=ms(t0))
    ny, nx = img.shape
    finite = np.isfinite(img)
    data = np.ascontiguousarray(np.where(finite, img, np.nanmedian(img)), dtype=np.float32)
    band = slit.band_mask(img.shape, pad_px=2 * slit.edge_sigma_px + 0.5)
    fw_guess = fwhm_px or fwhm_guess_px or max(2.0, 2.0 * slit.width_px)
    box = int(np.clip(16 * fw_guess, 48, 256))
    bkg = sep.Background(data, mask=band | ~finite, bw=box, bh=box, fw=3, fh=3)
    yy, xx = np.mgrid[0:ny, 0:nx]
    s_all, t_all = slit.to_slit(xx, yy)
    strip = max(3.0, st.strip_fwhm * fw_guess)
    reach = slit.width_px / 2.0 + strip
    s_lo = max(float(s_all.min()), -slit.length_px / 2.0) if math.isfinite(slit.length_px) else float(s_all.min())
    s_hi = min(float(s_all.max()), slit.length_px / 2.0) if math.isfinite(slit.length_px) else float(s_all.max())
    near = (np.abs(t_all) <= reach) & (s_all >= s_lo) & (s_all <= s_hi)
    s_n, t_n = s_all[near], t_all[near]
    trans_n = _jaw_transmission(s_n, t_n, slit)
    back_n = bkg.back()[near]
    corr_n = data[near] - back_n + (1.0 - trans_n) * slit.depth_adu  # = T x starlight
    var_n = bkg.rms()[near].astype(np.float64) ** 2
    use = trans_n > 0.5
    si = np.floor(s_n[use] - s_lo).astype(np.int64)
    n = int(si.max()) + 1 if len(si) else 1
    left = t_n[use] < 0
    vals, var = corr_n[use], var_n[use]
    a = np.bincount(si[left], weights=vals[left], minlength=n)
    b = np.bincount(si[~left], weights=vals[~left], minlength=n)
    va = np.bincount(si[left], weights=var[left], minlength=n)
    vb = np.bincount(si[~left], weights=var[~left], minlength=n)
    # a running median along the slit removes what is not a star: a background bias or gradient
    base_w = int(max(31, 10 * fw_guess)) | 1
    a = a - ndimage.median_filter(a, size=base_w, mode="nearest")
    b = b - ndimage.median_filter(b, size=base_w, mode="nearest")
    sigma_s = fw_guess / 2.3548
    half = int(math.ceil(3 * sigma_s))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_s) ** 2)
    za = np.convolve(a, k, mode="same") / np.sqrt(np.maximum(np.convolve(va, k**2, mode="same"), 1e-12))
    zb = np.convolve(b, k, mode="same") / np.sqrt(np.maximum(np.convolve(vb, k**2, mode="same"), 1e-12))
    both = np.minimum(za, zb)
    peaks, _ = find_peaks(both, height=st.min_significance, distance=max(1, int(fw_guess)))
    cands = []
    w = max(2, int(round(1.5 * fw_guess)))
    for p in peaks:
        fa = float(a[max(0, p - w) : p + w + 1].sum())
        fb = float(b[max(0, p - w) : p + w + 1].sum())
        if fa <= 0 or fb <= 0:
            continue
        sym = min(fa, fb) / max(fa, fb)
        if sym < st.min_symmetry:
            continue
        cands.append((float(both[p]), int(p), sym))
    if not cands:
        best_z = float(np.max(both)) if len(both) else 0.0
        return TargetOnSlit.not_found(
            f"no star straddles the slit (best pair of wings {best_z:.1f} sigma, need {st.min_significance:g})",
            elapsed_ms=ms(t0))
    # Nayuta puts its target at a reference point of the slit (its middle unless told): of the
    # stars straddling the slit (a long slit crosses field stars too), the one nearest that point
    # within the tolerance; the most significant one when none is that close.
    if reference_xy is not None:
        s_ref, _ = slit.to_slit(reference_xy[0], reference_xy[1])
        s_ref = float(s_ref)
    else:
        s_ref = 0.0
    tol = reference_tolerance_px if reference_tolerance_px is not None else (
        0.15 * (slit.length_px if math.isfinite(slit.length_px) else s_hi - s_lo))
    dist = [abs(c[1] + 0.5 + s_lo - s_ref) for c in cands]
    close = [i for i, d in enumerate(dist) if d <= tol]
    pick = min(close, key=lambda i: dist[i]) if close else max(range(len(cands)), key=lambda i: cands[i][0])
    z, p, sym = cands[pick]
    win = slice(max(0, p - w), p + w + 1)
    prof = np.clip(a[win] + b[win], 0, None)
    pos = np.arange(win.start, win.start + len(prof), dtype=float) + 0.5 + s_lo
    s0 = float(np.sum(prof * pos) / prof.sum()) if prof.sum() > 0 else p + 0.5 + s_lo
    fa, fb = float(a[win].sum()), float(b[win].sum())
    t0_guess = 0.25 * slit.width_px * (fb - fa) / max(fa + fb, 1e-9)
    fit = _fit_target(s_n, t_n, corr_n, np.sqrt(var_n), trans_n, slit, s0, t0_guess, fwhm_px or fw_guess,
                      fixed_fwhm=fwhm_px is not None)
    if fit is None:
        s_fit, t_fit, fw_fit, flux_model = s0, t0_guess, (fwhm_px or fw_guess), math.nan
    else:
        s_fit, t_fit, fw_fit, flux_model = fit
    x, y = slit.to_pixel(s_fit, t_fit)
    if not (0 <= x <= nx - 1 and 0 <= y <= ny - 1):
        return TargetOnSlit.not_found("the star on the slit falls off the frame", elapsed_ms=ms(t0))
    # The wings' photometry on a cutout. The sky is the 3-sigma-clipped mean of an annulus of jaw
    # pixels (sep's mode estimator is biased by ~1 ADU on integer frames of a few ADU of sky);
    # the background map is that level minus the slit's depth where the slit takes the sky.
    from astropy.stats import SigmaClip
    from photutils.aperture import ApertureStats, CircularAnnulus

    r_ap = st.aperture_fwhm * fw_fit
    r_in, r_out = (f * fw_fit for f in st.annulus_fwhm)
    h = int(math.ceil(r_out + 2))
    ya, yb, xa, xb = max(0, int(y) - h), min(ny, int(y) + h + 1), max(0, int(x) - h), min(nx, int(x) + h + 1)
    cut = np.ascontiguousarray(data[ya:yb, xa:xb], dtype=np.float64)
    ctrans = _jaw_transmission(s_all[ya:yb, xa:xb], t_all[ya:yb, xa:xb], slit)
    ann = CircularAnnulus((float(x) - xa, float(y) - ya), r_in=r_in, r_out=r_out)
    ast = ApertureStats(cut, ann, mask=(ctrans < 0.95) | ~finite[ya:yb, xa:xb],
                        sigma_clip=SigmaClip(sigma=3.0, maxiters=10))
    level = float(ast.mean) if np.isfinite(ast.mean) else float(np.median(back_n))
    noise = float(ast.std) if np.isfinite(ast.std) and ast.std > 0 else float(np.sqrt(np.median(var_n)))
    sky_model = level - (1.0 - ctrans) * slit.depth_adu  # what the frame shows without the star
    wings = aperture_photometry_at(cut, float(x) - xa, float(y) - ya, fwhm_px=fw_fit, background=sky_model,
                                   error=np.full(cut.shape, noise), exposure_s=exposure_s, gain=gain,
                                   saturation_adu=saturation_adu, aperture_fwhm=st.aperture_fwhm)
    wings = replace(wings, x=float(x), y=float(y))
    mag_model = None
    loss = math.nan
    if math.isfinite(flux_model) and flux_model > 0:
        per = flux_model / exposure_s if exposure_s else flux_model
        mag_model = -2.5 * math.log10(per)
        loss = 1.0 - wings.flux_adu / flux_model
    return TargetOnSlit(
        found=True, x=float(x), y=float(y), s_px=float(s_fit), t_px=float(t_fit), fwhm_px=float(fw_fit), wings=wings,
        flux_model_adu=float(flux_model), mag_model=mag_model, slit_loss_fraction=float(loss), significance=z,
        symmetry=sym, n_candidates=len(cands), elapsed_ms=ms(t0),
    )


def _jaw_transmission(s: np.ndarray, t: np.ndarray, slit: SlitGeometry) -> np.ndarray:
    """Fraction of light reaching the jaws at slit coordinates (s, t), as the slit was found."""
    frac = slit_fraction(t, 0.0, slit.width_px, slit.edge_sigma_px)
    if math.isfinite(slit.length_px):
        k = 1.0 / (math.sqrt(2.0) * max(slit.edge_sigma_px, 1e-3))
        half = slit.length_px / 2.0
        frac = frac * 0.5 * (special.erf((half - s) * k) + special.erf((half + s) * k))
    return 1.0 - frac


def _fit_target(s_n, t_n, corr_n, err_n, trans_n, slit: SlitGeometry, s0: float, t0: float, fwhm: float, *,
                fixed_fwhm: bool) -> tuple[float, float, float, float] | None:
    """Least-squares Moffat x slit transmission on the pixels around the star: (s, t, fwhm, flux)."""
    r = 3.0 * fwhm + slit.width_px / 2.0
    sel = (np.abs(s_n - s0) < r) & (trans_n > 0.05)
    if sel.sum() < 20:
        return None
    s, t, d = s_n[sel], t_n[sel], corr_n[sel].astype(np.float64)
    e = np.maximum(err_n[sel].astype(np.float64), 1e-6)
    tr = trans_n[sel]
    flux0 = max(float(d.sum()) * 2.0, 1.0)

    # Moffat values at pixel centres: the FWHM of a slit viewer is several pixels
    def resid(p):
        if fixed_fwhm:
            f, sc, tc, b0 = p
            fw = fwhm
        else:
            f, sc, tc, fw, b0 = p
        return (f * _moffat((s - sc) ** 2 + (t - tc) ** 2, fw) * tr + b0 - d) / e

    lim_t = slit.width_px / 2.0 + fwhm
    if fixed_fwhm:
        p0 = [flux0, s0, t0, 0.0]
        lo = [0.0, s0 - 2 * fwhm, -lim_t, -np.inf]
        hi = [np.inf, s0 + 2 * fwhm, lim_t, np.inf]
    else:
        p0 = [flux0, s0, t0, fwhm, 0.0]
        lo = [0.0, s0 - 2 * fwhm, -lim_t, 0.3 * fwhm, -np.inf]
        hi = [np.inf, s0 + 2 * fwhm, lim_t, 3.0 * fwhm, np.inf]
    p0 = np.clip(p0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    try:
        res = optimize.least_squares(resid, p0, bounds=(lo, hi), x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    p = res.x
    if fixed_fwhm:
        return float(p[1]), float(p[2]), float(fwhm), float(p[0])
    return float(p[1]), float(p[2]), float(p[3]), float(p[0])
