"""Background, source extraction and frame quality (sep: SExtractor's algorithms as a library).

Why sep and not photutils: on a 2048x2048 frame sep extracts with deblending in ~0.15-0.3 s,
photutils' segmentation with deblending takes ~2.7 s and DAOStarFinder ~0.8 s (DESIGN.md;
re-measured, with completeness and position accuracy on the same frames, by
``benchmarks/frame_pipeline.py --compare-photutils``). Both are astropy-affiliated, maintained
libraries; sep is the one that fits the frame budget.

Detection makes SExtractor's choices (its defaults, ``source-extractor -dd``): background mesh 64
px, median filter 3 meshes; the default.conv 3x3 pyramid filter; 1.5 sigma of the *global* sky rms
(SExtractor without a weight map); 5 pixels; 32 deblending thresholds, contrast 0.005; cleaning
1.0. Kron fluxes leave the neighbours' pixels out (SExtractor's MASK_TYPE CORRECT). Against
SExtractor 2.25 itself on 25 real frames of 8 telescopes, all but one of its SNR >= 10 objects
have a tenmon source within 1 px (the exception: an object SExtractor's cleaning keeps and sep's
removes); ``benchmarks/sources_vs_sextractor.py``, docs/bench/sources.md. The solver extracts
with this same function (``tenmon.vision.solve.detect``).

Positions, 0-based with the first pixel's centre at 0: extended, elongated, saturated and border
objects, and every object of a frame where fewer than 3 stars fit a PSF, keep the isophotal
barycentre (SExtractor's X_IMAGE/Y_IMAGE); point sources get
windowed centroids (SExtractor's XWIN/YWIN: an iterated Gaussian-weighted centroid in the frame
PSF's window), then a simultaneous PSF fit (the frame's pixel-integrated Moffat; flux, x, y and
local sky per star, neighbours' models
subtracted). On isolated stars the windowed centroids are already within a few per cent of the
Cramer-Rao bound (the photon-noise limit of any unbiased estimator: 1.02-1.04x on benchmark
frames); the fit gains ~1 % there and more on stars with deblended neighbours (an equal pair 2
FWHM apart: 0.055 -> 0.022 px). ``benchmarks/frame_pipeline.py`` reports the rms and the bound. Fluxes: ``flux`` is the Kron
("auto") flux, ``flux_aper`` a circular aperture of radius one frame FWHM; ``snr`` is the
aperture's (local sky noise), ``snr_auto`` SExtractor's FLUX_AUTO/FLUXERR_AUTO (global sky rms).
``fwhm`` is twice the
half-light radius, scaled per frame by the ratio of the FWHMs of bright stars (pixel-integrated
Moffat fits with free beta) to their ``2*r_half`` (1 for a Gaussian PSF, ~0.85 for a Moffat).
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

import numpy as np
import sep
from astropy.table import Table
from scipy import optimize

from tenmon.core.errors import VisionError
from tenmon.config.vision import SourceSettings

log = logging.getLogger(__name__)


class SourceFlag(enum.IntFlag):
    """Bits of the ``flags`` column (0 = clean)."""

    SATURATED = 1  #: a pixel of the source reached saturation
    EDGE = 2  #: within ``edge_px`` of the border, or its aperture is truncated
    BLENDED = 4  #: deblended from a neighbour (sep's OBJ_MERGED)
    COSMIC = 8  #: cosmic-ray-cleaned pixels inside the aperture (interpolated values)
    BAD_PIXEL = 16  #: masked (bad) pixels inside the aperture
    ELONGATED = 32  #: ellipticity above ``max_ellipticity``
    EXTENDED = 64  #: FWHM above twice the frame median (galaxy, blend, trail)


@dataclass(frozen=True)
class Background:
    """Sky background: per-pixel ``level`` and ``rms`` maps [ADU] and their global values."""

    level: np.ndarray
    rms: np.ndarray
    global_level: float
    global_rms: float


@dataclass(frozen=True)
class FrameQuality:
    """Frame quality from its sources.

    ``fwhm_px`` (median of clean stars), ``background``/``background_rms`` [ADU],
    ``n_sources``, ``ellipticity`` (median), ``limiting_mag``: magnitude of a point source at
    SNR 5 in an aperture of radius one FWHM (``zero_point_mag`` is the magnitude of 1 ADU/s;
    instrumental unless calibrated), ``n_saturated``.
    """

    fwhm_px: float | None
    background: float
    background_rms: float
    n_sources: int
    ellipticity: float | None
    limiting_mag: float | None
    n_saturated: int

    def to_json(self) -> dict:
        return {
            "fwhm_px": _r(self.fwhm_px, 3),
            "background": _r(self.background, 3),
            "background_rms": _r(self.background_rms, 3),
            "n_sources": self.n_sources,
            "ellipticity": _r(self.ellipticity, 3),
            "limiting_mag": _r(self.limiting_mag, 2),
            "n_saturated": self.n_saturated,
        }


def measure_background(image: np.ndarray, *, mask: np.ndarray | None = None, box_px: int = 64,
                       filter_px: int = 3) -> Background:
    """Estimate the sky on a mesh (SExtractor's mode estimator), interpolated to every pixel.

    Args:
        image: 2-D frame [ADU].
        mask: True on pixels to ignore (bad pixels, cosmic rays, saturated stars).
        box_px: mesh size [px]; filter_px: median filter size [meshes].

    Raises:
        VisionError: on an image that is not 2-D or smaller than one mesh.
    """
    img = _as_image(image)
    if min(img.shape) < 2:
        raise VisionError(f"image too small for a background: shape {img.shape}")
    box = int(min(box_px, max(2, min(img.shape))))
    m = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    bkg = sep.Background(img, mask=m, bw=box, bh=box, fw=filter_px, fh=filter_px)
    return Background(level=bkg.back(), rms=bkg.rms(), global_level=float(bkg.globalback),
                      global_rms=float(bkg.globalrms))


_COLUMNS = ("id", "x", "y", "flux", "flux_err", "flux_aper", "flux_aper_err", "snr", "snr_auto", "fwhm", "a", "b",
            "theta_deg", "ellipticity", "peak", "npix", "flags")


def empty_sources() -> Table:
    """The typed, empty source table (same columns as :func:`extract_sources`)."""
    t = Table()
    for c in _COLUMNS:
        t[c] = np.zeros(0, dtype=np.int64 if c in ("id", "npix", "flags") else np.float64)
    return t


def extract_sources(
    image: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    cosmic_mask: np.ndarray | None = None,
    background: Background | None = None,
    gain: float | None = None,
    saturation_adu: float | None = None,
    settings: SourceSettings | None = None,
) -> Table:
    """Detect and measure sources.

    Args:
        image: 2-D frame [ADU], cosmic rays already cleaned if possible, background NOT
            subtracted (it is estimated here unless ``background`` is given).
        mask: True on bad pixels: ignored for detection and measurement (flag ``BAD_PIXEL``).
        cosmic_mask: True on cleaned cosmic-ray pixels (flag ``COSMIC`` only).
        background: a :class:`Background` already measured on this image.
        gain: [e-/ADU] for Poisson terms in the flux errors; sky-only errors when ``None``.
        saturation_adu: level of saturation in ``image`` units (flag ``SATURATED``).
        settings: :class:`SourceSettings`.

    Returns:
        Table with columns ``id``, ``x``, ``y`` (0-based px), ``flux``, ``flux_err`` (Kron
        flux) [ADU], ``flux_aper``, ``flux_aper_err`` [ADU], ``snr`` (aperture), ``snr_auto``
        (SExtractor's FLUX_AUTO/FLUXERR_AUTO, global sky rms), ``fwhm`` [px], ``a``,
        ``b`` [px], ``theta_deg``, ``ellipticity`` (1 - b/a), ``peak`` [ADU above sky], ``npix``,
        ``flags`` (:class:`SourceFlag` bits); sorted by decreasing flux; ``meta['fwhm_px']``
        holds the frame's median FWHM. Empty (typed) when nothing is found.

    Raises:
        VisionError: on an image that is not 2-D.
    """
    s = settings or SourceSettings()
    img = _as_image(image)
    bad = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    if background is None:
        background = measure_background(img, mask=bad, box_px=s.background_box_px,
                                        filter_px=s.background_filter_px)
    sub = np.ascontiguousarray(img - background.level, dtype=np.float32)
    rms = np.ascontiguousarray(background.rms, dtype=np.float32)
    # SExtractor without a weight map thresholds at DETECT_THRESH times the global sky rms
    noise = background.global_rms if s.threshold_noise == "global" else rms
    seg = None
    if s.mask_neighbours:
        objs, seg = _detect(sub, noise, bad, s, segmentation_map=True)
    else:
        objs = _detect(sub, noise, bad, s)
    seg_ids = np.arange(1, len(objs) + 1, dtype=np.int32)  # sep's segmentation map numbers objects from 1
    if len(objs):
        # Drop obvious noise before the per-object measurements: isophotal SNR well below the
        # catalogue's cut (the aperture SNR decides below). At a 2-sigma threshold most
        # detections are noise, and this keeps the measurement cost proportional to the stars.
        at_peak = (np.clip(objs["ycpeak"], 0, img.shape[0] - 1), np.clip(objs["xcpeak"], 0, img.shape[1] - 1))
        sky_sig = background.global_rms if s.threshold_noise == "global" else rms[at_peak]
        iso_snr = objs["flux"] / (np.sqrt(np.maximum(objs["npix"], 1)) * np.maximum(sky_sig, 1e-30))
        keep = iso_snr >= 0.5 * s.min_snr
        objs, seg_ids = objs[keep], seg_ids[keep]
    if len(objs) == 0:
        t = empty_sources()
        t.meta["fwhm_px"] = None
        return t

    ny, nx = img.shape
    x0, y0 = objs["x"], objs["y"]
    # Half-light radius in a generous circle (6 px or 3 isophotal a), then windowed centroids.
    rmax = np.clip(3.0 * objs["a"], max(6.0, 2.0 * s.fwhm_guess_px), 60.0)
    r_half, _ = sep.flux_radius(sub, x0, y0, rmax, 0.5, mask=bad, subpix=5)
    r_half = np.where(np.isfinite(r_half) & (r_half > 0.3), r_half, 0.5 * s.fwhm_guess_px)

    # Frame FWHM from Moffat fits of bright clean stars; then half-light radii again within a
    # circle that surely holds such a star, and the fitted stars calibrate 2*r_half to FWHM.
    fwhm_raw = 2.0 * r_half
    fwhm_frame, beta_frame, fitted = _frame_fwhm(sub, x0, y0, objs, fwhm_raw, bad)
    if fwhm_frame:
        rmax2 = np.clip(np.maximum(3.0 * objs["a"], 3.0 * fwhm_frame), 6.0, 100.0)
        r2, _ = sep.flux_radius(sub, x0, y0, rmax2, 0.5, mask=bad, subpix=5)
        r_half = np.where(np.isfinite(r2) & (r2 > 0.3), r2, r_half)
        fwhm_raw = 2.0 * r_half
    scale = fwhm_frame / float(np.median(fwhm_raw[fitted])) if fwhm_frame and len(fitted) >= 3 else 1.0
    fwhm = fwhm_raw * scale

    # Positions. Point sources (round, not extended, not saturated, off the border): a windowed
    # centroid in the PSF's window, then the simultaneous PSF fit. Everything else keeps the
    # isophotal barycentre, SExtractor's X_IMAGE/Y_IMAGE: a PSF window or model pulls an extended,
    # elongated or clipped object's position by a pixel or more (measured against SExtractor on
    # real frames, benchmarks/sources_vs_sextractor.py).
    fw_ref = fwhm_frame or s.fwhm_guess_px
    psf_sig = fw_ref / 2.3548
    ell0 = np.where(objs["a"] > 0, 1.0 - objs["b"] / np.maximum(objs["a"], 1e-9), 0.0)
    # A deblended source's half-light radius is inflated by its neighbours: its extent is judged
    # by its own isophotal second moments instead (~ the PSF's sigma for a star; a piece of a
    # galaxy or a nebula is larger).
    blended = (objs["flag"] & sep.OBJ_MERGED) != 0
    compact = np.where(blended, objs["a"] <= 2.0 * psf_sig, fwhm <= 2.0 * fw_ref)
    point = compact & (ell0 <= s.max_ellipticity)
    point &= (x0 >= s.edge_px) & (y0 >= s.edge_px) & (x0 <= nx - 1 - s.edge_px) & (y0 <= ny - 1 - s.edge_px)
    if saturation_adu is not None:
        pk = objs["peak"] + background.level[np.clip(objs["ypeak"], 0, ny - 1), np.clip(objs["xpeak"], 0, nx - 1)]
        point &= pk < 0.98 * saturation_adu
    # The window and the PSF model come from the frame's PSF; when fewer than 3 stars could be
    # fitted (a cut-out with a handful of sources) the frame FWHM is a guess (a 100x100 DECam
    # cut-out: ~13 px from 3 blended objects, a 5.5 px window that moved a blended object 2.5 px).
    # Then every object keeps its barycentre, SExtractor's X_IMAGE.
    if len(fitted) < 3:
        point = np.zeros_like(point)
    xw, yw, _ = sep.winpos(sub, x0, y0, np.full(len(x0), psf_sig), mask=bad, subpix=0)
    moved = ~np.isfinite(xw) | ~np.isfinite(yw) | (np.hypot(xw - x0, yw - y0) > max(1.5, psf_sig))
    x = np.where(point & ~moved, xw, x0).astype(np.float64)
    y = np.where(point & ~moved, yw, y0).astype(np.float64)
    if fwhm_frame and s.psf_fit:
        xf, yf, okf = _psf_fit_positions(sub, rms, x, y, objs["peak"], point, fwhm_frame, beta_frame, bad, gain,
                                          n_iter=s.psf_fit_iterations)
        x = np.where(okf, xf, x)
        y = np.where(okf, yf, y)
    ap_r = float(fwhm_frame if fwhm_frame else s.fwhm_guess_px)

    err = background.rms
    flux_ap, flux_ap_err, aflag = sep.sum_circle(sub, x, y, ap_r, err=err, mask=bad, gain=gain, subpix=5)
    ea, eb = np.maximum(objs["a"], 0.3).astype(np.float64), np.maximum(objs["b"], 0.3).astype(np.float64)
    # float32 theta can round to just above pi/2, which sep's aperture functions reject.
    th = np.clip(objs["theta"].astype(np.float64), -math.pi / 2, math.pi / 2)
    # SExtractor's FLUX_AUTO leaves the pixels of other detected objects out of the Kron radius and
    # flux (MASK_TYPE CORRECT, its default): inside a galaxy or beside a bright star the
    # neighbour's light otherwise inflates the Kron radius and the flux, or, where the mesh
    # background follows the neighbour, drives both negative.
    seg_kw = {"segmap": seg, "seg_id": seg_ids} if seg is not None else {}
    kr_raw, _ = sep.kron_radius(sub, x, y, ea, eb, th, 6.0, mask=bad, **seg_kw)
    kr_raw = np.where(np.isfinite(kr_raw) & (kr_raw > 0), kr_raw, 0.0)
    kr = np.maximum(kr_raw, 1.0)
    # SExtractor's rule with a larger floor: small Kron apertures give way to a circle of
    # radius 2 FWHM (99.9 % of a Gaussian star's flux).
    kron_ok = 2.5 * kr * np.sqrt(ea * eb) >= 2.0 * ap_r
    flux_auto, flux_auto_err, _ = sep.sum_ellipse(sub, x, y, ea, eb, th, 2.5 * kr, err=err, mask=bad, gain=gain,
                                                  subpix=1, **seg_kw)
    fc, fce, _ = sep.sum_circle(sub, x, y, 2.0 * ap_r, err=err, mask=bad, gain=gain, subpix=5, **seg_kw)
    if seg is not None:
        # sep drops the neighbours' pixels; SExtractor replaces each by its mirror image through the
        # object's centre (0 where the mirror pixel is a neighbour's too). For a symmetric object
        # that is the flux scaled by the aperture's area over its unmasked area, at most 2.
        one = np.ones_like(sub)
        ce = _unmasked_area_ratio(
            sep.sum_ellipse(one, x, y, ea, eb, th, 2.5 * kr, mask=bad, subpix=1)[0],
            sep.sum_ellipse(one, x, y, ea, eb, th, 2.5 * kr, mask=bad, subpix=1, **seg_kw)[0])
        cc = _unmasked_area_ratio(sep.sum_circle(one, x, y, 2.0 * ap_r, mask=bad, subpix=5)[0],
                                  sep.sum_circle(one, x, y, 2.0 * ap_r, mask=bad, subpix=5, **seg_kw)[0])
        flux_auto, flux_auto_err = flux_auto * ce, flux_auto_err * np.sqrt(ce)
        fc, fce = fc * cc, fce * np.sqrt(cc)
    flux = np.where(kron_ok, flux_auto, fc)
    flux_err = np.where(kron_ok, flux_auto_err, fce)
    snr = np.where(flux_ap_err > 0, flux_ap / np.maximum(flux_ap_err, 1e-30), 0.0)
    # SExtractor's SNR, FLUX_AUTO / FLUXERR_AUTO: without a weight map SExtractor's noise is the
    # global sky rms (plus the source's Poisson term), not the local rms map used for flux_err.
    # Near a bright galaxy or a nebula the two differ several-fold; a detection is kept when
    # either reaches min_snr, so tenmon's catalogue holds what SExtractor's holds. SExtractor's
    # aperture, too (PHOT_AUTOPARAMS 2.5, 3.5): the Kron ellipse of 2.5 Kron radii, at least 3.5
    # isophotal a and b (`flux` above floors it at a circle of 2 FWHM instead, for the star's whole
    # light). A Kron radius that cannot be measured (first moment <= 0: a faint object on a
    # background map pulled up by a galaxy) takes the minimum, as in SExtractor.
    r_sex = np.maximum(2.5 * kr_raw, 3.5)
    if np.array_equal(r_sex, 2.5 * kr):
        flux_sex = flux_auto
    else:
        flux_sex = sep.sum_ellipse(sub, x, y, ea, eb, th, r_sex, mask=bad, subpix=1, **seg_kw)[0]
        if seg is not None:
            flux_sex = flux_sex * _unmasked_area_ratio(
                sep.sum_ellipse(one, x, y, ea, eb, th, r_sex, mask=bad, subpix=1)[0],
                sep.sum_ellipse(one, x, y, ea, eb, th, r_sex, mask=bad, subpix=1, **seg_kw)[0])
    area = math.pi * r_sex ** 2 * ea * eb
    if s.threshold_noise == "global":
        sky2 = background.global_rms ** 2
    else:
        sky2 = rms[np.clip(np.rint(y).astype(int), 0, ny - 1), np.clip(np.rint(x).astype(int), 0, nx - 1)] ** 2.0
    var_auto = area * sky2 + (np.maximum(flux_sex, 0.0) / gain if gain else 0.0)
    snr_auto = np.where(var_auto > 0, flux_sex / np.sqrt(np.maximum(var_auto, 1e-30)), 0.0)

    a, b = objs["a"], objs["b"]
    ell = np.where(a > 0, 1.0 - b / np.maximum(a, 1e-9), 0.0)
    flags = np.zeros(len(objs), dtype=np.int64)
    flags |= np.where((objs["flag"] & sep.OBJ_MERGED) != 0, int(SourceFlag.BLENDED), 0)
    edge = (x < s.edge_px) | (y < s.edge_px) | (x > nx - 1 - s.edge_px) | (y > ny - 1 - s.edge_px)
    edge |= (aflag & sep.APER_TRUNC) != 0
    flags |= np.where(edge, int(SourceFlag.EDGE), 0)
    flags |= np.where((aflag & sep.APER_HASMASKED) != 0, int(SourceFlag.BAD_PIXEL), 0)
    if saturation_adu is not None:
        peak_abs = objs["peak"] + background.level[np.clip(objs["ypeak"], 0, ny - 1), np.clip(objs["xpeak"], 0, nx - 1)]
        flags |= np.where(peak_abs >= 0.98 * saturation_adu, int(SourceFlag.SATURATED), 0)
    if cosmic_mask is not None and cosmic_mask.any():
        ncr, _, _ = sep.sum_circle(np.ascontiguousarray(cosmic_mask, dtype=np.float32), x, y, ap_r, subpix=1)
        flags |= np.where(ncr > 0.5, int(SourceFlag.COSMIC), 0)
    flags |= np.where(ell > s.max_ellipticity, int(SourceFlag.ELONGATED), 0)
    if fwhm_frame:
        extended = fwhm > 2.0 * fwhm_frame
        # "Extended" is relative to the frame's FWHM: when most sources come out extended, that
        # FWHM is what is wrong (seen once on an undersampled frame), not the sources.
        if extended.mean() <= 0.5:
            flags |= np.where(extended, int(SourceFlag.EXTENDED), 0)
        else:
            log.warning("%d of %d sources are over twice the frame FWHM (%.2f px): that FWHM is "
                        "doubtful; no source flagged extended", int(extended.sum()), len(extended),
                        fwhm_frame)

    t = Table(
        {
            "id": np.arange(1, len(objs) + 1, dtype=np.int64),
            "x": x.astype(np.float64),
            "y": y.astype(np.float64),
            "flux": flux.astype(np.float64),
            "flux_err": flux_err.astype(np.float64),
            "flux_aper": flux_ap.astype(np.float64),
            "flux_aper_err": flux_ap_err.astype(np.float64),
            "snr": snr.astype(np.float64),
            "snr_auto": snr_auto.astype(np.float64),
            "fwhm": fwhm.astype(np.float64),
            "a": a.astype(np.float64),
            "b": b.astype(np.float64),
            "theta_deg": np.degrees(objs["theta"]).astype(np.float64),
            "ellipticity": ell.astype(np.float64),
            "peak": objs["peak"].astype(np.float64),
            "npix": objs["npix"].astype(np.int64),
            "flags": flags,
        }
    )
    keep = (t["snr"] >= s.min_snr) | (t["snr_auto"] >= s.min_snr)
    t = t[keep]
    t.sort("flux", reverse=True)
    t["id"] = np.arange(1, len(t) + 1, dtype=np.int64)
    t.meta["fwhm_px"] = fwhm_frame
    t.meta["aperture_radius_px"] = ap_r
    for c, unit in (("x", "pix"), ("y", "pix"), ("fwhm", "pix"), ("a", "pix"), ("b", "pix"), ("theta_deg", "deg"),
                    ("flux", "adu"), ("flux_err", "adu"), ("flux_aper", "adu"), ("flux_aper_err", "adu"),
                    ("peak", "adu")):
        t[c].unit = unit
    return t


def frame_quality(
    sources: Table,
    background: Background,
    *,
    gain: float,
    exposure_s: float | None,
    zero_point_mag: float = 25.0,
    snr_limit: float = 5.0,
) -> FrameQuality:
    """Quality figures of a frame from its sources and background.

    The limiting magnitude solves the CCD equation for a point source of SNR ``snr_limit`` in an
    aperture of radius one FWHM (enclosed fraction of a Gaussian, 93.8 %), with the measured
    background rms and ``gain`` [e-/ADU]; ``zero_point_mag`` is the magnitude of 1 ADU/s.
    """
    clean = sources[sources["flags"] == 0] if len(sources) else sources
    fwhm = sources.meta.get("fwhm_px")
    if fwhm is None and len(clean):
        fwhm = float(np.median(clean["fwhm"]))
    ell = float(np.median(clean["ellipticity"])) if len(clean) else None
    n_sat = int(np.sum((sources["flags"] & SourceFlag.SATURATED) != 0)) if len(sources) else 0
    lim = None
    if fwhm and exposure_s and exposure_s > 0 and background.global_rms > 0:
        n_pix = math.pi * fwhm**2
        b_e2 = n_pix * (background.global_rms * gain) ** 2
        s2 = snr_limit**2
        f_e = (s2 + math.sqrt(s2 * s2 + 4 * s2 * b_e2)) / 2.0
        total_adu = f_e / gain / 0.938
        lim = zero_point_mag - 2.5 * math.log10(total_adu / exposure_s)
    return FrameQuality(
        fwhm_px=float(fwhm) if fwhm else None,
        background=background.global_level,
        background_rms=background.global_rms,
        n_sources=len(sources),
        ellipticity=ell,
        limiting_mag=lim,
        n_saturated=n_sat,
    )


# --------------------------------------------------------------------------- helpers


def _frame_fwhm(sub: np.ndarray, x: np.ndarray, y: np.ndarray, objs: np.ndarray, fwhm_raw: np.ndarray,
                bad: np.ndarray | None, n_fit: int = 20) -> tuple[float | None, float, np.ndarray]:
    """Median FWHM of bright isolated stars from pixel-integrated Moffat fits (beta free, so a
    Gaussian PSF is the large-beta limit), and the indices of the stars fitted."""
    ny, nx = sub.shape
    good_raw = fwhm_raw[np.isfinite(fwhm_raw) & (fwhm_raw > 0.5)]
    # Stamps of about 3 FWHM on a side (at least 11 px): large seeing discs must fit inside.
    h = int(np.clip(np.ceil(1.5 * np.median(good_raw)), 5, 30)) if len(good_raw) else 5
    ok = (objs["flag"] == 0) & (x > h + 1) & (x < nx - h - 2) & (y > h + 1) & (y < ny - h - 2)
    ok &= np.isfinite(fwhm_raw) & (fwhm_raw > 0.5)
    # Hot pixels and cosmic rays (a frame that was not cleaned: `tenmon solve`, a guider frame) are
    # sharper than any star: 2*r_half below ~1.2 px, or well below the typical source's. Left in,
    # they are the brightest "stars" and the frame's FWHM came out at the fit's floor (0.5 px).
    if ok.any():
        typical = float(np.median(fwhm_raw[ok]))
        sharp = fwhm_raw < max(1.2, 0.6 * typical)
        if (ok & ~sharp).sum() >= 3:
            ok &= ~sharp
    if not ok.any():
        return (float(np.median(fwhm_raw)) if len(fwhm_raw) else None), 4.0, np.zeros(0, dtype=int)
    # Brightest non-saturated candidates: skip the top few percent (likely saturated).
    idx = np.nonzero(ok)[0]
    idx = idx[np.argsort(objs["peak"][idx])[::-1]]
    idx = idx[len(idx) // 20 :][: n_fit]
    sub3 = (np.arange(3) - 1) / 3.0  # 3x3 sub-pixel samples: the PSF integrated over pixels
    g = np.arange(-h, h + 1)
    px = (g[:, None] + sub3[None, :]).ravel()
    fits_, betas, used = [], [], []
    for i in idx:
        cx, cy = int(round(x[i])), int(round(y[i]))
        stamp = sub[cy - h : cy + h + 1, cx - h : cx + h + 1].astype(np.float64)
        if bad is not None and bad[cy - h : cy + h + 1, cx - h : cx + h + 1].any():
            continue
        dx0, dy0 = x[i] - cx, y[i] - cy
        peak = float(stamp.max())
        if peak <= 0:
            continue

        def resid(p, stamp=stamp):
            amp, mx, my, fw, beta, bg = p
            alpha = fw / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
            r2 = (px[:, None] - my) ** 2 + (px[None, :] - mx) ** 2
            prof = (1.0 + r2 / (alpha * alpha)) ** (-beta)
            model = prof.reshape(2 * h + 1, 3, 2 * h + 1, 3).mean(axis=(1, 3))
            return (amp * model + bg - stamp).ravel()

        try:
            r = optimize.least_squares(resid, [peak, dx0, dy0, max(0.8, fwhm_raw[i] * 0.9), 4.0, 0.0],
                                       bounds=([0, -2, -2, 0.5, 1.2, -np.inf], [np.inf, 2, 2, 15, 30, np.inf]),
                                       max_nfev=60)
        except (ValueError, RuntimeError):
            continue
        if r.success and 0.8 < r.x[3] < 14.5:  # a fit at a bound is no star's FWHM
            fits_.append(float(r.x[3]))
            betas.append(float(r.x[4]))
            used.append(i)
    if len(fits_) < 3:
        return float(np.median(fwhm_raw[ok])), 4.0, np.zeros(0, dtype=int)
    return float(np.median(fits_)), float(np.median(betas)), np.asarray(used, dtype=int)


def _psf_fit_positions(sub: np.ndarray, rms: np.ndarray, x: np.ndarray, y: np.ndarray, peak: np.ndarray,
                       fit: np.ndarray, fwhm: float, beta: float, bad: np.ndarray | None, gain: float | None,
                       n_iter: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions [px] from a simultaneous PSF fit of the sources where ``fit`` is True.

    Model per star: flux x the frame's Moffat (``fwhm``, ``beta``; beta ~30 is a Gaussian)
    integrated over pixels (3x3 sub-samples) + a constant local sky, on a stamp of radius
    ~1 FWHM, weighted by the sky variance plus the model's Poisson variance (``gain``
    [e-/ADU]), masked pixels ignored. Every Gauss-Newton iteration first subtracts the current
    models of all other fitted stars (ALLSTAR-like, without regrouping), so deblended
    neighbours no longer pull each other's centroids. Steps are capped at 0.5 px; a fit that
    ends more than max(1, FWHM/2) px from its start keeps the start (returned ``ok`` False).

    Written here rather than with photutils' ``PSFPhotometry``: this fits all stars of a frame
    at once in a few vectorised numpy passes, ``PSFPhotometry`` one at a time through astropy's
    fitters. On the same 2048x2048 benchmark frames and starting positions both reach the same
    accuracy (within 0.002 px rms), but ``PSFPhotometry``, even given the true PSF shape, took
    1.3-1.9 s per frame where this fit adds ~0.1 s to the source step (0.29 -> 0.39 s median);
    ``benchmarks/frame_pipeline.py --compare-photutils``, docs/bench/frame_pipeline.md.

    Returns:
        ``(x, y, ok)``: refined positions (the inputs where not fitted or not accepted) and
        whether each source's fit was accepted.
    """
    ny, nx = sub.shape
    idx = np.nonzero(fit)[0]
    xs_out, ys_out, ok_out = x.copy(), y.copy(), np.zeros(len(x), bool)
    if len(idx) == 0:
        return xs_out, ys_out, ok_out
    beta = float(np.clip(beta, 1.2, 30.0))
    a2 = (fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))) ** 2
    norm = (beta - 1.0) / (math.pi * a2)
    # A stamp of radius ~1 FWHM holds nearly all the positional information of a star (the
    # derivative of the PSF peaks at ~0.4 FWHM) and as little of its neighbours as possible.
    h = int(np.clip(math.ceil(fwhm), 2, 8))
    g = np.arange(-h, h + 1)
    so = (np.arange(3) + 0.5) / 3 - 0.5  # 3x3 sub-pixel samples: the PSF integrated over each pixel
    px = x[idx].astype(np.float64)
    py = y[idx].astype(np.float64)
    cx, cy = np.rint(px).astype(int), np.rint(py).astype(int)
    flux = np.maximum(peak[idx].astype(np.float64), 1e-3) * 2.0 * math.pi * (fwhm / 2.3548) ** 2
    sky = np.zeros(len(idx))
    var_floor = 1e-12
    if np.any(rms > 0):
        var_floor = max(var_floor, 1e-4 * float(np.median(rms[rms > 0])) ** 2)
    chunks = [slice(i, min(i + 512, len(idx))) for i in range(0, len(idx), 512)]  # bounded memory
    X = np.broadcast_to(cx[:, None, None] + g[None, None, :], (len(idx), g.size, g.size))
    Y = np.broadcast_to(cy[:, None, None] + g[None, :, None], X.shape)
    inside = (X >= 0) & (X < nx) & (Y >= 0) & (Y < ny)
    # The stamps' pixels, numbered compactly: the models of all stars add up on them.
    upix, inv = np.unique(np.clip(Y, 0, ny - 1) * nx + np.clip(X, 0, nx - 1), return_inverse=True)
    inv = inv.reshape(X.shape)
    data = sub.ravel()[upix].astype(np.float64)[inv]
    var_sky = rms.ravel()[upix].astype(np.float64)[inv] ** 2
    w = inside if bad is None else inside & ~bad.ravel()[upix][inv]

    def profile(c: slice, derivatives: bool):
        ddx = (X[c] - px[c, None, None])[..., None, None] + so[None, None, None, None, :]
        ddy = (Y[c] - py[c, None, None])[..., None, None] + so[None, None, None, :, None]
        q = 1.0 + (ddx * ddx + ddy * ddy) / a2
        p = norm * q ** (-beta)
        if not derivatives:
            return p.mean(axis=(3, 4)), None, None
        dpc = p * (2.0 * beta / a2) / q  # d/dx0 of the profile = dpc * (x - x0)
        return p.mean(axis=(3, 4)), (dpc * ddx).mean(axis=(3, 4)), (dpc * ddy).mean(axis=(3, 4))

    own = np.empty(X.shape)
    for it in range(n_iter):
        if it == 0:
            for c in chunks:
                own[c] = flux[c, None, None] * profile(c, False)[0]
        full = np.bincount(inv[inside], weights=own[inside], minlength=len(upix))
        for c in chunks:
            P, Px, Py = profile(c, True)
            own_c = flux[c, None, None] * P
            tot = full[inv[c]] - own[c] + own_c  # all stars' models; own[c] is from the last pass
            d = data[c] - (tot - own_c)  # neighbours' current models subtracted
            var = var_sky[c] + np.maximum(tot, 0.0) / gain if gain else var_sky[c]
            wt = np.where(w[c], 1.0 / np.maximum(var, var_floor), 0.0)
            r = d - own_c - sky[c, None, None]
            J = np.stack([P, flux[c, None, None] * Px, flux[c, None, None] * Py, np.ones_like(P)], axis=1)
            A = np.einsum("nisj,nksj,nsj->nik", J, J, wt)
            A += np.eye(4)[None] * (1e-9 * np.trace(A, axis1=1, axis2=2) + 1e-30)[:, None, None]
            step = np.linalg.solve(A, np.einsum("nisj,nsj->ni", J, wt * r)[..., None])[..., 0]
            step[:, 1:3] = np.clip(step[:, 1:3], -0.5, 0.5)
            flux[c] = np.maximum(flux[c] + step[:, 0], 1e-3)
            px[c] += step[:, 1]
            py[c] += step[:, 2]
            sky[c] += step[:, 3]
            # The model at the updated parameters, linearised (exact enough for the next pass).
            own[c] = own_c + step[:, 0, None, None] * P + flux[c, None, None] * (step[:, 1, None, None] * Px
                                                                                  + step[:, 2, None, None] * Py)
    ok = np.isfinite(px) & np.isfinite(py) & (np.hypot(px - x[idx], py - y[idx]) < max(1.0, 0.5 * fwhm))
    xs_out[idx] = np.where(ok, px, x[idx])
    ys_out[idx] = np.where(ok, py, y[idx])
    ok_out[idx] = ok
    return xs_out, ys_out, ok_out


#: SExtractor's default detection filter (``default.conv``: 3x3 "all-ground" pyramid, FWHM ~2 px).
DEFAULT_CONV = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32)


def _detect(sub: np.ndarray, rms: np.ndarray | float, bad: np.ndarray | None, s: SourceSettings,
            segmentation_map: bool = False):
    """SExtractor's detection on a background-subtracted image: convolve with the (normalised)
    filter, threshold at ``threshold_sigma`` times the *unfiltered* sky rms (sep's "conv" mode,
    SExtractor's own), at least ``min_area_px`` connected pixels, multi-threshold deblending and
    cleaning as configured. sep's "matched" mode thresholds in units of the filtered noise
    instead: at the same nominal threshold it keeps thousands of noise peaks. Returns the objects,
    or ``(objects, segmentation map)`` with ``segmentation_map``."""
    kernel = DEFAULT_CONV if s.detection_filter == "default" else _gauss_kernel(s.fwhm_guess_px)

    def run():
        return sep.extract(sub, s.threshold_sigma, err=rms, mask=bad, minarea=s.min_area_px,
                           filter_kernel=kernel, filter_type="conv", deblend_nthresh=s.deblend_nthresh,
                           deblend_cont=s.deblend_cont, clean=s.clean, clean_param=s.clean_param,
                           segmentation_map=segmentation_map)

    try:
        return run()
    except Exception as exc:  # sep raises a bare Exception when its pixel stack overflows
        if "pixel buffer full" in str(exc) or "object deblending overflow" in str(exc):
            sep.set_extract_pixstack(max(3_000_000, sep.get_extract_pixstack() * 4))
            sep.set_sub_object_limit(max(4096, sep.get_sub_object_limit() * 2))
            try:
                return run()
            except Exception as exc2:
                raise VisionError(f"source extraction failed: {exc2}") from exc2
        raise VisionError(f"source extraction failed: {exc}") from exc


def _unmasked_area_ratio(full: np.ndarray, unmasked: np.ndarray) -> np.ndarray:
    """Aperture area over its area without the neighbours' pixels, between 1 and 2."""
    return np.clip(np.where(unmasked > 0, full / np.maximum(unmasked, 1e-12), 2.0), 1.0, 2.0)


def _gauss_kernel(fwhm: float) -> np.ndarray:
    sigma = fwhm / 2.3548
    h = max(1, int(math.ceil(1.5 * sigma)))
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    k = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    return (k / k.sum()).astype(np.float32)


def _as_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0:
        raise VisionError(f"expected a 2-D image, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        arr = np.where(np.isfinite(arr), arr, np.float32(np.nanmedian(arr))).astype(np.float32)
    return arr


def _r(v: float | None, nd: int) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), nd)


__all__ = [
    "SourceFlag",
    "SourceSettings",
    "Background",
    "FrameQuality",
    "measure_background",
    "extract_sources",
    "empty_sources",
    "frame_quality",
]
