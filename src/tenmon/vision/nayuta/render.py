"""The slit-viewer frame simulated: the sky through a TAN WCS, seeing, the slit, noise.

Part of :mod:`tenmon.vision.nayuta` (see its docstring for the conventions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from astropy.wcs import WCS
from scipy import special

from tenmon.vision.nayuta.settings import MOFFAT_BETA, SV_SHAPE
from tenmon.config.vision import SV_SCALE_ARCSEC
from tenmon.core.astro import separation_deg
from tenmon.vision.solve.catalogs import frame_cone, select_cone
from tenmon.vision.solve.wcsfit import make_tan_wcs


@dataclass(frozen=True)
class SlitViewerTruth:
    """What :func:`render_slit_viewer` drew: the truth tests and benchmarks compare against.

    ``wcs`` is the true celestial WCS; ``rotation_deg``/``parity`` its solver-convention
    description. ``target_xy`` is the target's pixel; ``slit_*`` the slit (``slit_length_px``
    is ``inf`` for a slit across the whole field). Fluxes are noise-free [ADU]:
    ``target_flux_adu`` in total, ``target_flux_outside_adu`` what falls on the jaws (the
    wings), times the jaws' reflectivity. ``stars`` is the renderer's star truth table.
    """

    wcs: WCS
    rotation_deg: float
    parity: str
    scale_arcsec: float
    target_ra_deg: float
    target_dec_deg: float
    target_mag: float
    target_xy: tuple[float, float]
    slit_angle_deg: float
    slit_center_xy: tuple[float, float]
    slit_width_px: float
    slit_length_px: float
    fwhm_px: float
    sky_adu: float
    exposure_s: float
    gain: float
    zero_point_mag: float
    bias_adu: float
    target_flux_adu: float
    target_flux_outside_adu: float
    stars: Table = field(repr=False)


class SkyWithExtraStars:
    """A catalogue provider (``cone``, ``stars_for_wcs``) that adds fixed stars to another one.

    The simulated Nayuta target is such an added star, so that the simulated 60 cm CCD (which
    renders ``stars_for_wcs`` of its sky) and the slit viewer show the same target.
    """

    def __init__(self, sky: Any, extra: Table):
        for col in ("ra", "dec", "mag"):
            if col not in extra.colnames:
                raise ValueError(f"extra stars table has no {col!r} column")
        self.sky = sky
        self.extra = Table({c: np.asarray(extra[c], float) for c in ("ra", "dec", "mag")})
        self.name = f"{getattr(sky, 'name', 'sky')}+{len(extra)} stars"

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, mag_limit: float | None = None) -> Table:
        base = self.sky.cone(ra_deg, dec_deg, radius_deg, mag_limit=mag_limit)
        e = self.extra
        extra = select_cone(np.asarray(e["ra"]), np.asarray(e["dec"]), np.asarray(e["mag"]),
                            ra_deg, dec_deg, radius_deg, mag_limit)
        out = vstack([base[["ra", "dec", "mag"]], extra], metadata_conflicts="silent")
        out.sort("mag")
        return out

    def stars_for_wcs(self, wcs: WCS, shape: tuple[int, int], *, margin_px: float = 20.0,
                      mag_limit: float | None = None) -> Table:
        ra0, dec0, radius = frame_cone(wcs, shape, margin_px=margin_px)
        return self.cone(ra0, dec0, radius, mag_limit=mag_limit)


def slit_viewer_wcs(*, target_ra_deg: float, target_dec_deg: float, target_xy: tuple[float, float],
                    scale_arcsec_px: float, rotation_deg: float, parity: str,
                    shape: tuple[int, int]) -> WCS:
    """A TAN WCS putting (``target_ra_deg``, ``target_dec_deg``) on pixel ``target_xy``.

    ``rotation_deg`` is the position angle of the image's +y (E of N), ``parity`` ``normal``
    (north up puts east left) or ``flipped``, exactly as :func:`describe_wcs` reports them.
    Raises ``ValueError`` for another parity or a non-positive scale.
    """
    if parity not in ("normal", "flipped"):
        raise ValueError(f"parity must be 'normal' or 'flipped', got {parity!r}")
    if scale_arcsec_px <= 0:
        raise ValueError("scale_arcsec_px must be positive")
    s = scale_arcsec_px / 3600.0
    th = math.radians(rotation_deg)
    p = 1.0 if parity == "normal" else -1.0
    # Columns: +x and +y as (east, north) unit vectors times the scale.
    cd = s * np.array([[-math.cos(th) * p, math.sin(th)], [math.sin(th) * p, math.cos(th)]])
    return make_tan_wcs((target_ra_deg, target_dec_deg), (target_xy[0] + 1.0, target_xy[1] + 1.0), cd, shape)


def slit_transmission(x: np.ndarray, y: np.ndarray, *, center_xy: tuple[float, float], angle_deg: float,
                      width_px: float, length_px: float = math.inf, edge_sigma_px: float = 0.5) -> np.ndarray:
    """Fraction of light *not* lost into the slit at pixels ``(x, y)`` (0 in the slit, 1 on the jaws).

    The slit is a box ``width_px`` x ``length_px`` centred on ``center_xy`` with its long axis at
    ``angle_deg``; its edges are blurred by a Gaussian of ``edge_sigma_px`` (the relay optics
    re-imaging the jaws onto the camera).
    """
    a = math.radians(angle_deg)
    dx = np.asarray(x, float) - center_xy[0]
    dy = np.asarray(y, float) - center_xy[1]
    s = dx * math.cos(a) + dy * math.sin(a)
    t = -dx * math.sin(a) + dy * math.cos(a)
    k = 1.0 / (math.sqrt(2.0) * max(edge_sigma_px, 1e-3))
    across = 0.5 * (special.erf((width_px / 2 - t) * k) + special.erf((width_px / 2 + t) * k))
    if math.isfinite(length_px):
        along = 0.5 * (special.erf((length_px / 2 - s) * k) + special.erf((length_px / 2 + s) * k))
    else:
        along = 1.0
    return 1.0 - across * along


def render_slit_viewer(
    *,
    target_ra_deg: float,
    target_dec_deg: float,
    sky: Any,
    scale_arcsec_px: float = SV_SCALE_ARCSEC,
    shape: tuple[int, int] = SV_SHAPE,
    rotation_deg: float = 0.0,
    parity: str = "normal",
    slit_width_arcsec: float = 1.2,
    slit_angle_deg: float = 0.0,
    slit_length_arcsec: float | None = None,
    slit_center_xy: tuple[float, float] | None = None,
    seeing_arcsec: float = 1.6,
    target_mag: float | None = 14.0,
    target_offset_arcsec: tuple[float, float] = (0.0, 0.0),
    exposure_s: float = 10.0,
    sky_mag_arcsec2: float = 20.5,
    zero_point_mag: float = 24.5,
    gain: float = 1.5,
    read_noise_e: float = 5.0,
    bias_adu: float = 100.0,
    dark_e_per_s: float = 0.01,
    jaw_reflectivity: float = 0.9,
    saturation_adu: float = 65535.0,
    seed: int,
) -> tuple[np.ndarray, SlitViewerTruth]:
    """The simulated slit-viewer frame: the sky around the target, the dark slit, the target on it.

    Stars come from ``sky`` (a provider with ``stars_for_wcs``, e.g. ``SimulatedSky``, or a
    Table with ``ra``, ``dec``, ``mag``) plus the target, drawn with a Moffat seeing PSF by
    ``skyrender.render_star_field`` (noise-free); the slit removes the light (stars and sky)
    falling into it (:func:`slit_transmission`, edges blurred by 0.5 px); the jaws reflect
    ``jaw_reflectivity`` of the rest; then Poisson noise in electrons, read noise, bias, ADC
    rounding and saturation.

    Args:
        target_ra_deg, target_dec_deg: ICRS position of Nayuta's target [deg].
        sky: the star provider or table.
        scale_arcsec_px: pixel scale ["/px].
        shape: ``(ny, nx)`` [px].
        rotation_deg: position angle of the image's +y, E of N [deg].
        parity: ``"normal"`` or ``"flipped"`` (mirrored, as a relay with an odd number of
            reflections gives).
        slit_width_arcsec: slit width ["].
        slit_angle_deg: slit long axis from image +x towards +y [deg].
        slit_length_arcsec: slit length ["]; ``None``: across the whole field.
        slit_center_xy: the slit centre [px]; default the image centre.
        seeing_arcsec: seeing FWHM ["].
        target_mag: the target's magnitude (added to the stars at the target position); ``None``
            takes the sky's own star within 0.5" of the position.
        target_offset_arcsec: the target's (along, across) offset from the slit centre ["]
            (guiding error, or a target placed away from the slit's middle).
        exposure_s: [s]; sky_mag_arcsec2: sky brightness [mag/arcsec^2];
        zero_point_mag: magnitude giving 1 e-/s; gain: [e-/ADU]; read_noise_e: [e-];
        bias_adu: [ADU]; dark_e_per_s: [e-/s/px]; jaw_reflectivity: 0..1;
        saturation_adu: ADC maximum.
        seed: random seed.

    Returns:
        ``(image, truth)``: float32 ADU image of ``shape`` and a :class:`SlitViewerTruth`.

    Raises:
        ValueError: on a bad parity, non-positive scale, width, seeing or exposure, or no sky
            star at the target when ``target_mag`` is ``None``.
    """
    from tenmon.vision.render.sky import render_star_field

    if min(scale_arcsec_px, slit_width_arcsec, seeing_arcsec, exposure_s, gain) <= 0:
        raise ValueError("scale, slit width, seeing, exposure and gain must be positive")
    if not 0 < jaw_reflectivity <= 1:
        raise ValueError("jaw_reflectivity must be in (0, 1]")
    ny, nx = int(shape[0]), int(shape[1])
    cxy = slit_center_xy if slit_center_xy is not None else ((nx - 1) / 2.0, (ny - 1) / 2.0)
    a = math.radians(slit_angle_deg)
    along, across = (v / scale_arcsec_px for v in target_offset_arcsec)
    txy = (cxy[0] + along * math.cos(a) - across * math.sin(a), cxy[1] + along * math.sin(a) + across * math.cos(a))
    wcs = slit_viewer_wcs(target_ra_deg=target_ra_deg, target_dec_deg=target_dec_deg, target_xy=txy,
                          scale_arcsec_px=scale_arcsec_px, rotation_deg=rotation_deg, parity=parity, shape=(ny, nx))
    if hasattr(sky, "stars_for_wcs"):
        stars = sky.stars_for_wcs(wcs, (ny, nx), margin_px=60.0)
    else:
        stars = Table({c: np.asarray(sky[c], float) for c in ("ra", "dec", "mag")})
    stars = Table({c: np.asarray(stars[c], float) for c in ("ra", "dec", "mag")})
    if target_mag is None:
        d = separation_deg(np.asarray(stars["ra"]), np.asarray(stars["dec"]), target_ra_deg, target_dec_deg)
        if len(d) == 0 or float(np.min(d)) * 3600.0 > 0.5:
            raise ValueError("target_mag is None but the sky has no star within 0.5\" of the target")
        tmag = float(stars["mag"][int(np.argmin(d))])
    else:
        tmag = float(target_mag)
        stars.add_row((float(target_ra_deg) % 360.0, float(target_dec_deg), tmag))
    fwhm_px = seeing_arcsec / scale_arcsec_px
    rng = np.random.default_rng(seed)
    render_seed, noise_seed = (int(v) for v in rng.integers(0, 2**62, 2))
    # The renderer draws the noise-free starlight; the slit acts on light before any noise.
    frame = render_star_field(wcs=wcs, stars=stars, shape=(ny, nx), fwhm_px=fwhm_px, sky_adu=0.0,
                              exposure_s=exposure_s, gain=gain, read_noise_e=0.0, zero_point_mag=zero_point_mag,
                              n_cosmic_rays=0, n_hot_pixels=0, bad_columns=(), full_well_e=None,
                              dark_e_per_s=0.0, seed=render_seed)
    star_e = frame.star_adu.astype(np.float64) * gain
    yy, xx = np.mgrid[0:ny, 0:nx]
    length_px = math.inf if slit_length_arcsec is None else slit_length_arcsec / scale_arcsec_px
    width_px = slit_width_arcsec / scale_arcsec_px
    trans = slit_transmission(xx, yy, center_xy=cxy, angle_deg=slit_angle_deg, width_px=width_px,
                              length_px=length_px) * jaw_reflectivity
    sky_e = 10 ** (-0.4 * (sky_mag_arcsec2 - zero_point_mag)) * scale_arcsec_px**2 * exposure_s
    expected = (star_e + sky_e) * trans + dark_e_per_s * exposure_s
    nrng = np.random.default_rng(noise_seed)
    electrons = nrng.poisson(expected).astype(np.float64) + nrng.normal(0.0, read_noise_e, size=expected.shape)
    image = np.clip(np.rint(electrons / gain + bias_adu), 0, saturation_adu).astype(np.float32)
    total_e = exposure_s * 10 ** (-0.4 * (tmag - zero_point_mag))
    outside_e = _target_light_outside(txy, total_e, fwhm_px, cxy, slit_angle_deg, width_px, length_px)
    truth = SlitViewerTruth(
        wcs=wcs, rotation_deg=float(rotation_deg) % 360.0, parity=parity, scale_arcsec=float(scale_arcsec_px),
        target_ra_deg=float(target_ra_deg) % 360.0, target_dec_deg=float(target_dec_deg), target_mag=tmag,
        target_xy=(float(txy[0]), float(txy[1])), slit_angle_deg=float(slit_angle_deg) % 180.0,
        slit_center_xy=(float(cxy[0]), float(cxy[1])), slit_width_px=float(width_px), slit_length_px=float(length_px),
        fwhm_px=float(fwhm_px), sky_adu=float(sky_e * jaw_reflectivity / gain), exposure_s=float(exposure_s),
        gain=float(gain), zero_point_mag=float(zero_point_mag), bias_adu=float(bias_adu),
        target_flux_adu=float(total_e / gain), target_flux_outside_adu=float(outside_e * jaw_reflectivity / gain),
        stars=frame.stars,
    )
    return image, truth


def _target_light_outside(txy, total_e, fwhm_px, cxy, angle_deg, width_px, length_px) -> float:
    """Noise-free target light falling on the jaws [e-] (Moffat PSF sampled 5x5 per pixel)."""
    alpha = fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / MOFFAT_BETA) - 1.0))
    half = int(math.ceil(12 * fwhm_px))
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    g = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()
    xs = txy[0] + g
    ys = txy[1] + g
    X, Y = np.meshgrid(xs, ys)
    r2 = (X - txy[0]) ** 2 + (Y - txy[1]) ** 2
    prof = (MOFFAT_BETA - 1) / (math.pi * alpha**2) * (1 + r2 / alpha**2) ** (-MOFFAT_BETA) / 25.0
    tr = slit_transmission(X, Y, center_xy=cxy, angle_deg=angle_deg, width_px=width_px, length_px=length_px)
    return float(total_e * np.sum(prof * tr))
