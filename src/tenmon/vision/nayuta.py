"""Following Nayuta: its slit-viewer frame simulated, the slit and the target on it found, the target's sky position and brightness.

Nayuta (the 2 m telescope beside the 60 cm) puts its target on the slit of its spectrograph. The
slit-viewer camera images the reflective slit jaws: a small field (7' x 4') with the slit as a
*dark* band (light falling into the slit goes to the spectrograph) and the target on it, its
light partly lost, leaving a wing on either side. This module is pure (arrays, tables and WCSs in,
results out):

* :func:`render_slit_viewer`: the simulated feed: the simulated sky around the target through
  a TAN WCS of any rotation and parity, seeing, the slit transmission, sky, Poisson and read noise;
* :func:`find_slit`: the slit's angle, centre line, width and visible length (a coarse-to-fine
  projection (Radon) search of the star-masked frame, then a fit of the edge profile);
* :func:`find_target`: where along the slit a star's wings straddle it; its brightness from the
  wings (photutils aperture photometry of the light on the jaws: a *lower bound*) and from a
  PSF-times-slit model fit (an estimate corrected for the light lost in the slit);
* :func:`register_in_frame`: a similarity transform (rotation, translation, optional parity
  flip, scale within a few % of the known ratio) of slit-viewer sources into a 60 cm frame,
  by triangle voting and verification against chance;
* :func:`target_sky_position`: the target's ICRS position by solving the slit-viewer frame with
  the solver chain (``route="solve"``) or through the registration into a solved 60 cm frame
  (``route="register"``);
* :func:`locate_target`: all of the above on a slit-viewer frame (and optionally a 60 cm frame),
  with aperture photometry of the target in both: what ``tenmon nayuta locate`` and the daemon's
  sync call.

Conventions: pixel positions are 0-based ``(x, y)`` (x = column). ``angle_deg`` of the slit is its
long axis measured from image +x towards +y, in [0, 180). Along/across slit coordinates ``s``/``t``
are measured from the slit centre along ``(cos a, sin a)`` and ``(-sin a, cos a)``. Sky rotation
and parity follow the plate solver (``tenmon.vision.solve.base``): rotation is the position
angle of the image's +y (E of N), parity ``normal`` or ``flipped``.

Default slit-viewer figures chosen for the simulation (stated, not measured at Nayuta): 0.2"/px
unbinned over 7' x 4' (2100 x 1200 px; the simulated feed reads out 2 x 2 binned, 0.4"/px),
a 1.2" slit, 1.6" seeing, zero point 24.5 mag (1 e-/s; the 2 m's area is 11x the 60 cm's, less
the jaws' and relay's losses), 10 s exposures.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from astropy.table import Table, vstack
from astropy.wcs import WCS
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage, optimize, special
from scipy.spatial import cKDTree
from scipy.stats import poisson

from tenmon import offline
from tenmon.astro import separation_deg
from tenmon.errors import VisionError
from tenmon.vision.solve.base import SolveHint, SolveResult
from tenmon.vision.solve.hinted import Triangles, apply_similarity, fit_similarity, unique_pairs
from tenmon.vision.solve.wcsfit import make_tan_wcs

offline.configure()

log = logging.getLogger(__name__)

#: Default slit-viewer geometry of the simulation (see the module docstring).
SV_SCALE_ARCSEC = 0.2
SV_SHAPE = (1200, 2100)
#: Moffat beta of the simulated seeing (skyrender's default) and of the target model fit.
MOFFAT_BETA = 4.0


class NayutaError(VisionError):
    """A slit-viewer or 60 cm frame that cannot be processed at all (not 2-D, no finite pixels)."""


# ============================================================================== settings


class SlitSearchSettings(BaseModel):
    """How :func:`find_slit` searches (``[nayuta.slit]``)."""

    model_config = ConfigDict(extra="forbid")

    coarse_px: int = Field(300, ge=64, le=2000, description="coarse search: image binned to this long side")
    coarse_step_deg: float = Field(0.5, gt=0, le=5, description="angle step of the coarse search")
    fine_px: int = Field(1100, ge=128, le=8000, description="fine search: image binned to this long side")
    fine_step_deg: float = Field(0.05, gt=0, le=1, description="angle step of the fine search")
    min_significance: float = Field(9.0, gt=0, description="dip significance (sigma) below this: no slit")
    min_segment_fraction: float = Field(0.5, gt=0, le=1, description="share of slit segments that must show it")
    star_clip_sigma: float = Field(3.0, gt=0, description="pixels above sky + this many sigma are stars")
    min_width_px: float = Field(1.2, gt=0, description="a darker band narrower than this is a bad column, not the slit")


class TargetSearchSettings(BaseModel):
    """How :func:`find_target` looks for a star straddling the slit (``[nayuta.target]``)."""

    model_config = ConfigDict(extra="forbid")

    min_significance: float = Field(5.0, gt=0, description="each wing must be this significant (sigma)")
    min_symmetry: float = Field(0.15, ge=0, le=1, description="fainter wing / brighter wing, at least")
    strip_fwhm: float = Field(1.5, gt=0, description="width of the wing strips beside the slit, in FWHM")
    aperture_fwhm: float = Field(2.5, gt=0, description="photometry aperture radius, in FWHM")
    annulus_fwhm: tuple[float, float] = Field((3.0, 5.0), description="sky annulus radii, in FWHM")


class RegistrationSettings(BaseModel):
    """How :func:`register_in_frame` matches slit-viewer stars into a 60 cm frame (``[nayuta.registration]``)."""

    model_config = ConfigDict(extra="forbid")

    n_sv_stars: int = Field(40, ge=5, le=200, description="brightest slit-viewer sources forming triangles")
    max_frame_stars: int = Field(400, ge=20, le=3000, description="cap on 60 cm sources forming triangles")
    neighbours: int = Field(6, ge=3, le=15, description="triangles: each star with pairs of its k nearest")
    match_radius_px: float = Field(3.0, gt=0, description="verification radius, 60 cm frame pixels")
    min_matches: int = Field(6, ge=4, description="fewer matched stars than this: not registered")
    false_alarm: float = Field(1e-6, gt=0, lt=1e-2, description="max probability that the match is chance")


class NayutaSettings(BaseModel):
    """Following Nayuta (``[nayuta]``): the slit viewer's scale, the route to the sky, the searches."""

    model_config = ConfigDict(extra="forbid")

    sv_scale_arcsec: float = Field(SV_SCALE_ARCSEC * 2, gt=0, description="slit-viewer pixel scale as read out")
    scale_tolerance: float = Field(0.03, gt=0, lt=0.3, description="how well both pixel scales are known")
    sv_pointing_error_deg: float = Field(
        0.05, gt=0, le=5, description="how far Nayuta's reported position may be from the slit viewer's centre"
    )
    route: Literal["auto", "solve", "register"] = Field(
        "auto", description="solve the slit viewer, register it in the 60 cm frame, or auto (solve, then register)"
    )
    min_slit_confidence: float = Field(0.3, ge=0, le=1, description="a slit found with less is not used")
    target_reference_xy: tuple[float, float] | None = Field(
        None, description="slit-viewer pixel where Nayuta puts its targets; None: the slit's middle"
    )
    max_route_disagreement_arcsec: float = Field(
        5.0, gt=0, description="both routes done and further apart than this: the answer is flagged"
    )
    sv_max_rms_arcsec: float = Field(
        0.5, gt=0, description="slit-viewer solutions with a larger rms are rejected (its pixels are small)"
    )
    slit: SlitSearchSettings = Field(default_factory=SlitSearchSettings)
    target: TargetSearchSettings = Field(default_factory=TargetSearchSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)


# ============================================================================== rendering


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
        keep = separation_deg(np.asarray(e["ra"]), np.asarray(e["dec"]), ra_deg, dec_deg) <= radius_deg
        if mag_limit is not None:
            keep &= np.asarray(e["mag"]) <= mag_limit
        out = vstack([base[["ra", "dec", "mag"]], e[keep]], metadata_conflicts="silent")
        out.sort("mag")
        return out

    def stars_for_wcs(self, wcs: WCS, shape: tuple[int, int], *, margin_px: float = 20.0,
                      mag_limit: float | None = None) -> Table:
        ny, nx = shape
        cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
        c = wcs.all_pix2world(np.array([[cx, cy]]), 0)[0]
        corners = np.array([[-margin_px, -margin_px], [nx - 1 + margin_px, -margin_px],
                            [-margin_px, ny - 1 + margin_px], [nx - 1 + margin_px, ny - 1 + margin_px]])
        cs = wcs.all_pix2world(corners, 0)
        radius = float(np.max(separation_deg(cs[:, 0], cs[:, 1], c[0], c[1])))
        return self.cone(float(c[0]), float(c[1]), radius, mag_limit=mag_limit)


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
    from tenmon.vision.skyrender import render_star_field

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


# ============================================================================== the slit


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
    img = _as_image(image)
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
                                      f"need {s.min_significance:g})", significance=z1, elapsed_ms=_ms(t0))
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
                                      significance=z1, elapsed_ms=_ms(t0))
    s_lo, s_hi = _visible_extent(ss, ts - prof[0], vs, prof[1], prof[2], prof[3], sig)
    on = (ss >= s_lo) & (ss <= s_hi)
    geo = _fit_centre_line(ss[on], ts[on], vs[on], sig)
    if geo is None:
        return SlitGeometry.not_found("a dark band was found but its centre line could not be fitted",
                                      significance=z1, elapsed_ms=_ms(t0))
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
                                      significance=z1, elapsed_ms=_ms(t0))
    t_c, width, edge_sig, depth, level = prof
    if width < s.min_width_px:
        return SlitGeometry.not_found(
            f"the darkest band is only {width:.2f} px wide (a dead column?); a slit is at least "
            f"{s.min_width_px:g} px", significance=z1, angle_deg=float(ang3 % 180.0), width_px=float(width),
            elapsed_ms=_ms(t0))
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
        elapsed_ms=_ms(t0),
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


def _slit_fraction(t: np.ndarray, t0: float, width: float, sigma: float) -> np.ndarray:
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
        return lev + slope * tc - dep * _slit_fraction(tc, c, w, es)

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


# ============================================================================== the target


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
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry

    img = _as_image(image)
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

    img = _as_image(image)
    if sources is None or len(sources) == 0:
        return None
    x, y, _ = _xyflux(sources, "source")
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
    img = _as_image(image)
    if not slit.found:
        return TargetOnSlit.not_found(f"no slit: {slit.reason}", elapsed_ms=_ms(t0))
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
            elapsed_ms=_ms(t0))
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
        return TargetOnSlit.not_found("the star on the slit falls off the frame", elapsed_ms=_ms(t0))
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
        symmetry=sym, n_candidates=len(cands), elapsed_ms=_ms(t0),
    )


def _jaw_transmission(s: np.ndarray, t: np.ndarray, slit: SlitGeometry) -> np.ndarray:
    """Fraction of light reaching the jaws at slit coordinates (s, t), as the slit was found."""
    frac = _slit_fraction(t, 0.0, slit.width_px, slit.edge_sigma_px)
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


# ============================================================================== registration


@dataclass(frozen=True)
class Registration:
    """A similarity transform of slit-viewer pixels into 60 cm frame pixels.

    ``frame = a * z + b`` with ``z = x + i y`` (its complex conjugate when ``flipped``);
    ``scale`` = |a| [frame px per slit-viewer px], ``rotation_deg`` = arg a. ``n_matched``
    stars agree within ``rms_px`` (frame pixels); ``p_chance`` is the probability that this
    many matches happen by chance. ``ok`` False (with ``reason``) when no verified match.
    """

    ok: bool
    a_re: float = 1.0
    a_im: float = 0.0
    b_re: float = 0.0
    b_im: float = 0.0
    flipped: bool = False
    n_matched: int = 0
    n_sv: int = 0
    rms_px: float = math.nan
    p_chance: float = 1.0
    elapsed_ms: float = 0.0
    reason: str | None = None

    @classmethod
    def failure(cls, reason: str, **kw: Any) -> Registration:
        return cls(ok=False, reason=reason, **kw)

    @property
    def scale(self) -> float:
        return math.hypot(self.a_re, self.a_im)

    @property
    def rotation_deg(self) -> float:
        return math.degrees(math.atan2(self.a_im, self.a_re)) % 360.0

    def apply(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Slit-viewer pixels -> 60 cm frame pixels."""
        w = apply_similarity(complex(self.a_re, self.a_im), complex(self.b_re, self.b_im),
                             self.flipped, np.atleast_1d(np.asarray(x, float)),
                             np.atleast_1d(np.asarray(y, float)))
        return w[:, 0], w[:, 1]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "scale": round(self.scale, 6), "rotation_deg": round(self.rotation_deg, 4),
                "flipped": self.flipped, "offset_px": [round(self.b_re, 3), round(self.b_im, 3)],
                "n_matched": self.n_matched, "n_sv": self.n_sv,
                "rms_px": round(self.rms_px, 4) if math.isfinite(self.rms_px) else None,
                "p_chance": self.p_chance, "elapsed_ms": round(self.elapsed_ms, 1), "reason": self.reason}


def register_in_frame(
    sv_sources: Table,
    frame_sources: Table,
    scale_ratio: float,
    *,
    scale_tolerance: float = 0.03,
    frame_shape: tuple[int, int] | None = None,
    settings: RegistrationSettings | None = None,
) -> Registration:
    """Register slit-viewer sources inside a (larger) 60 cm frame: rotation, offset, parity, scale.

    The slit-viewer positions are first scaled by ``scale_ratio`` (60 cm pixels per slit-viewer
    pixel, i.e. slit-viewer scale / 60 cm scale), so both sets are in 60 cm pixels and a
    triangle's size is an invariant as well as its shape (the known scale is what makes this
    robust against the 60 cm frame's larger field). Triangles of each star with pairs of its
    nearest neighbours (``tenmon.vision.solve.hinted``'s triangle code) are matched by
    (side ratios, log size), each match gives a similarity transform (mirror when the
    triangles' orientations differ), the transforms vote in (parity, rotation, offset) bins,
    the best bins are verified by counting slit-viewer sources that land on 60 cm sources
    against the number expected by chance (Poisson), and the winner is refined by least squares
    with outlier clipping. Sources the slit hides simply do not match; the spurious halves of a
    star cut by the slit should be removed by the caller (:func:`sources_off_slit`).

    Args:
        sv_sources, frame_sources: Tables with ``x``, ``y`` [px] and ``flux`` (brighter larger).
        scale_ratio: 60 cm px per slit-viewer px (> 0).
        scale_tolerance: fractional uncertainty of ``scale_ratio``.
        frame_shape: ``(ny, nx)`` of the 60 cm frame (for the chance estimate); default the
            sources' bounding box.
        settings: :class:`RegistrationSettings`.

    Returns:
        :class:`Registration` (``ok=False`` with a reason when not verified).

    Raises:
        NayutaError: when a table lacks ``x``/``y`` or ``scale_ratio`` is not positive.
    """
    t0 = time.perf_counter()
    s = settings or RegistrationSettings()
    if not scale_ratio > 0:
        raise NayutaError(f"scale_ratio must be positive, got {scale_ratio}")
    sx, sy, _ = _xyflux(sv_sources, "slit-viewer")
    fx, fy, _ = _xyflux(frame_sources, "60 cm")
    if len(sx) < s.min_matches or len(fx) < s.min_matches:
        return Registration.failure(f"too few sources: {len(sx)} on the slit viewer, {len(fx)} on the 60 cm frame "
                                    f"(need {s.min_matches} each)", n_sv=len(sx), elapsed_ms=_ms(t0))
    if frame_shape is None:
        frame_area = max(1.0, float(np.ptp(fx) * np.ptp(fy)))
    else:
        frame_area = float(frame_shape[0] * frame_shape[1])
    sv = np.column_stack([sx, sy]) * scale_ratio
    fr = np.column_stack([fx, fy])
    sv_area = max(1.0, float(np.ptp(sv[:, 0]) * np.ptp(sv[:, 1])))
    tol = scale_tolerance
    ni = min(len(sv), s.n_sv_stars)
    # as many 60 cm stars as cover the same brightness range over the larger field, with room
    nf = int(min(len(fr), s.max_frame_stars, max(3 * ni, math.ceil(2.0 * ni * frame_area / sv_area))))
    diag = math.hypot(np.ptp(sv[:ni, 0]), np.ptp(sv[:ni, 1]))
    min_side = max(8.0, 0.03 * diag)
    k_f = int(min(15, math.ceil(s.neighbours * math.sqrt(max(1.0, (nf / frame_area) / (ni / sv_area)))) + 2))
    tri_s = Triangles(sv[:ni], k=s.neighbours, min_side=min_side, max_side=diag)
    tri_f = Triangles(fr[:nf], k=k_f, min_side=min_side * (1 - tol), max_side=diag * (1 + tol))
    if len(tri_s.keys) == 0 or len(tri_f.keys) == 0:
        return Registration.failure("too few usable star triangles", n_sv=len(sx), elapsed_ms=_ms(t0))
    eps = 0.012
    wlog = eps / math.log(1.0 + tol + 0.01)
    kf = tri_f.keys * np.array([1.0, 1.0, wlog])
    ks = tri_s.keys * np.array([1.0, 1.0, wlog])
    pairs = cKDTree(kf).query_ball_point(ks, r=eps * math.sqrt(3.0), return_sorted=False)
    ii = np.repeat(np.arange(len(pairs)), [len(p) for p in pairs])
    jj = np.fromiter((j for p in pairs for j in p), dtype=np.int64, count=len(ii))
    if len(ii) == 0:
        return Registration.failure("no star triangle of the slit viewer matches one in the 60 cm frame",
                                    n_sv=len(sx), elapsed_ms=_ms(t0))
    flip = tri_s.orient[ii] != tri_f.orient[jj]
    a, b = fit_similarity(sv[:ni][tri_s.verts[ii]], fr[:nf][tri_f.verts[jj]], flip)
    ok = np.abs(np.abs(a) - 1.0) < tol + 0.01
    a, b, flip = a[ok], b[ok], flip[ok]
    if len(a) == 0:
        return Registration.failure("no triangle match at the known scale ratio", n_sv=len(sx), elapsed_ms=_ms(t0))
    rot = np.degrees(np.angle(a)) % 360.0
    keys = np.column_stack([flip.astype(np.int64), np.floor(rot / 2.0).astype(np.int64),
                            np.floor(b.real / 10.0).astype(np.int64), np.floor(b.imag / 10.0).astype(np.int64)])
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    tree = cKDTree(fr)
    r_m = s.match_radius_px
    lam = len(sv) * (len(fr) / frame_area) * math.pi * r_m**2
    best = None
    n_tested = 0
    for bin_idx in np.argsort(-counts)[:15]:
        n_tested += 1
        mem = np.flatnonzero(inv == bin_idx)
        am = complex(np.median(a[mem].real), np.median(a[mem].imag))
        bm = complex(np.median(b[mem].real), np.median(b[mem].imag))
        fl = bool(flip[mem[0]])
        dist, _ = tree.query(apply_similarity(am, bm, fl, sv[:, 0], sv[:, 1]), distance_upper_bound=r_m)
        n_hit = int(np.isfinite(dist).sum())
        if best is None or n_hit > best[0]:
            best = (n_hit, am, bm, fl)
    n_hit, am, bm, fl = best
    # refine: least squares on matched pairs, shrinking radius, clipping
    radius = r_m
    src_i = cat_i = np.zeros(0, int)
    rms = math.nan
    for _ in range(4):
        dist, idx = tree.query(apply_similarity(am, bm, fl, sv[:, 0], sv[:, 1]), distance_upper_bound=radius)
        src_i, cat_i = unique_pairs(dist, idx)
        if len(src_i) < 3:
            break
        aa, bb = fit_similarity(sv[src_i][None], fr[cat_i][None], np.array([fl]))
        am, bm = complex(aa[0]), complex(bb[0])
        res = np.hypot(*(apply_similarity(am, bm, fl, sv[src_i, 0], sv[src_i, 1]) - fr[cat_i]).T)
        rms = float(np.sqrt(np.mean(res**2)))
        radius = float(np.clip(4.0 * rms, 1.0, r_m))
    n = len(src_i)
    p = min(1.0, n_tested * float(poisson.sf(n - 2 - 1, lam))) if n > 2 else 1.0
    scale = abs(am)
    kw = dict(a_re=am.real * scale_ratio, a_im=am.imag * scale_ratio, b_re=bm.real, b_im=bm.imag, flipped=fl,
              n_matched=n, n_sv=len(sx), rms_px=rms, p_chance=p)
    problems = []
    if n < s.min_matches:
        problems.append(f"only {n} stars matched (need {s.min_matches})")
    if p > s.false_alarm:
        problems.append(f"{n} matches could be chance ({lam:.2f} expected, p={p:.1e})")
    if abs(scale - 1.0) > tol + 0.01:
        problems.append(f"scale off by {abs(scale - 1.0):.1%} (tolerance {tol:.0%})")
    if problems:
        return Registration.failure("not registered: " + "; ".join(problems), elapsed_ms=_ms(t0), **kw)
    return Registration(ok=True, elapsed_ms=_ms(t0), **kw)


def sources_off_slit(sources: Table, slit: SlitGeometry, *, fwhm_px: float,
                     target_xy: tuple[float, float] | None = None) -> Table:
    """Sources not cut by the slit: drop those within ``fwhm_px`` of the slit band or near the target.

    A star on the slit shows as two halves either side (spurious positions); the target's
    wings are such halves too. Returns a new table (the input is not modified).
    """
    if len(sources) == 0 or not slit.found:
        return sources.copy()
    x = np.asarray(sources["x"], float)
    y = np.asarray(sources["y"], float)
    s, t = slit.to_slit(x, y)
    near = np.abs(t) <= slit.width_px / 2.0 + 1.5 * fwhm_px
    if math.isfinite(slit.length_px):
        near &= np.abs(s) <= slit.length_px / 2.0 + fwhm_px
    if target_xy is not None:
        near |= np.hypot(x - target_xy[0], y - target_xy[1]) < 3.0 * fwhm_px
    out = sources[~near]
    out.meta.update(sources.meta)
    return out


# ============================================================================== the sky


@dataclass(frozen=True)
class TargetSky:
    """The target's ICRS position [deg] and how it was found (``method``: ``solve`` or ``register``).

    ``frame_xy`` is the target's pixel in the 60 cm frame when known (``register`` route, or
    ``solve`` mapped through the 60 cm WCS). ``ok`` False with a ``reason`` when no route worked.
    """

    ok: bool
    ra_deg: float = math.nan
    dec_deg: float = math.nan
    method: str = "none"
    frame_xy: tuple[float, float] | None = None
    reason: str | None = None


def sky_by_solving(target_xy: tuple[float, float], sv_sources: Table, sv_shape: tuple[int, int],
                   hint: SolveHint, solver: Any) -> tuple[TargetSky, SolveResult]:
    """Plate-solve the slit-viewer sources (a ``SolverChain`` or any ``Solver``) and map the target.

    ``hint`` carries Nayuta's reported position and the slit viewer's scale. Returns the sky
    position (``ok=False`` with the solver's reason if not solved) and the solve result.
    """
    res = _solve(solver, sv_sources, sv_shape, hint)
    if not res.solved or res.wcs is None:
        return TargetSky(ok=False, reason=f"slit viewer not solved: {res.reason}"), res
    ra, dec = res.wcs.all_pix2world(np.array([[target_xy[0], target_xy[1]]]), 0)[0]
    return TargetSky(ok=True, ra_deg=float(ra) % 360.0, dec_deg=float(dec), method="solve"), res


def sky_by_registration(target_xy: tuple[float, float], registration: Registration, frame_wcs: WCS,
                        frame_shape: tuple[int, int] | None = None) -> TargetSky:
    """Map the target through the registration into the 60 cm frame, then through its WCS."""
    if not registration.ok:
        return TargetSky(ok=False, reason=registration.reason)
    fx, fy = registration.apply(target_xy[0], target_xy[1])
    fxy = (float(fx[0]), float(fy[0]))
    if frame_shape is not None:
        ny, nx = frame_shape
        if not (-0.5 <= fxy[0] <= nx - 0.5 and -0.5 <= fxy[1] <= ny - 0.5):
            log.info("the target maps outside the 60 cm frame at %s", fxy)
    ra, dec = frame_wcs.all_pix2world(np.array([fxy]), 0)[0]
    return TargetSky(ok=True, ra_deg=float(ra) % 360.0, dec_deg=float(dec), method="register", frame_xy=fxy)


def target_sky_position(
    target_xy: tuple[float, float],
    *,
    route: Literal["auto", "solve", "register"] = "auto",
    sv_sources: Table | None = None,
    sv_shape: tuple[int, int] | None = None,
    sv_hint: SolveHint | None = None,
    solver: Any = None,
    registration: Registration | None = None,
    frame_wcs: WCS | None = None,
) -> TargetSky:
    """The target's sky position by either route.

    ``solve``: plate-solve the slit viewer (needs ``sv_sources``, ``sv_shape``, ``sv_hint`` and
    a ``solver``); ``register``: through a verified ``registration`` and the 60 cm frame's
    ``frame_wcs``; ``auto``: solve when a solver is given, else (or when solving fails)
    register. Never raises for "not found": ``ok=False`` with the reasons.
    """
    reasons = []
    if route in ("auto", "solve"):
        if solver is None or sv_sources is None or sv_shape is None or sv_hint is None:
            reasons.append("solve: no solver, sources or hint")
        else:
            sky, _ = sky_by_solving(target_xy, sv_sources, sv_shape, sv_hint, solver)
            if sky.ok:
                return sky
            reasons.append(f"solve: {sky.reason}")
    if route in ("auto", "register"):
        if registration is None or frame_wcs is None:
            reasons.append("register: no registration or no 60 cm WCS")
        else:
            sky = sky_by_registration(target_xy, registration, frame_wcs)
            if sky.ok:
                return sky
            reasons.append(f"register: {sky.reason}")
    return TargetSky(ok=False, reason="; ".join(reasons))


def offset_on_sky_arcsec(wcs: WCS, from_xy: tuple[float, float], to_xy: tuple[float, float]) -> tuple[float, float]:
    """(east, north) offset ["] on the sky from one pixel to another through ``wcs``."""
    from tenmon.vision.solve.wcsfit import tan_project

    p = wcs.all_pix2world(np.array([from_xy, to_xy]), 0)
    xi, eta = tan_project(p[1:, 0], p[1:, 1], float(p[0, 0]), float(p[0, 1]))
    return float(xi[0]) * 3600.0, float(eta[0]) * 3600.0


def nominal_wcs(*, ra_deg: float, dec_deg: float, shape: tuple[int, int], scale_arcsec: float,
                rotation_deg: float = 0.0, parity: str = "normal") -> WCS:
    """A WCS from what is known without solving: the mount's position at the frame centre, the
    camera's scale, rotation and parity. Offsets through it are right; absolute positions are
    only as good as the mount's pointing."""
    ny, nx = shape
    return slit_viewer_wcs(target_ra_deg=ra_deg, target_dec_deg=dec_deg, target_xy=((nx - 1) / 2.0, (ny - 1) / 2.0),
                           scale_arcsec_px=scale_arcsec, rotation_deg=rotation_deg, parity=parity, shape=shape)


# ============================================================================== the whole thing


@dataclass(frozen=True)
class Frame60:
    """A 60 cm frame for :func:`locate_target`: the image, its WCS if solved, its pixel scale,
    the mount's position (hint) and the exposure."""

    image: np.ndarray
    scale_arcsec: float
    wcs: WCS | None = None
    hint: SolveHint | None = None
    exposure_s: float | None = None
    gain: float | None = None
    saturation_adu: float | None = None


@dataclass(frozen=True)
class NayutaLocation:
    """Where Nayuta's target is, and how bright, from a slit-viewer frame (and a 60 cm frame).

    ``located`` True when the target was found on the slit *and* placed on the sky. ``method``
    is the route of the reported position (``solve`` or ``register``; ``none``).
    ``ra_by_route`` holds every route's answer ``{route: (ra, dec)}``;
    ``route_disagreement_arcsec`` their separation when both ran. ``target_xy`` is the slit-viewer
    pixel; ``target_xy_60cm`` the 60 cm pixel (when a 60 cm frame was given).
    ``mag_slit_viewer`` is from the wings (a faint limit: the star is at least this bright),
    ``mag_slit_viewer_model`` slit-loss corrected; ``mag_60cm`` aperture photometry in the 60 cm
    frame; ``mag_difference`` = ``mag_60cm - mag_slit_viewer``. Instrumental magnitudes, per
    second when the exposures are known.
    """

    located: bool
    target_ra_deg: float | None
    target_dec_deg: float | None
    method: str
    slit: SlitGeometry
    target: TargetOnSlit
    target_xy: tuple[float, float] | None
    target_xy_60cm: tuple[float, float] | None = None
    mag_slit_viewer: float | None = None
    mag_slit_viewer_model: float | None = None
    mag_60cm: float | None = None
    mag_difference: float | None = None
    photometry_60cm: Photometry | None = None
    ra_by_route: dict[str, tuple[float, float]] = field(default_factory=dict)
    route_disagreement_arcsec: float | None = None
    sv_solve: SolveResult | None = None
    frame_solve: SolveResult | None = None
    registration: Registration | None = None
    n_sv_sources: int = 0
    elapsed_ms: float = 0.0
    reason: str | None = None
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: the CLI's fields first, then details."""

        def r(v, nd=4):
            return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), nd)

        out: dict[str, Any] = {
            "located": self.located,
            "target_ra_deg": r(self.target_ra_deg, 7),
            "target_dec_deg": r(self.target_dec_deg, 7),
            "method": self.method,
            "slit_angle_deg": r(self.slit.angle_deg, 3) if self.slit.found else None,
            "target_xy": [r(v, 2) for v in self.target_xy] if self.target_xy else None,
            "mag_slit_viewer": r(self.mag_slit_viewer),
            "mag_slit_viewer_is_limit": True,
            "mag_slit_viewer_model": r(self.mag_slit_viewer_model),
            "mag_60cm": r(self.mag_60cm),
            "mag_difference": r(self.mag_difference),
            "saturated": {"slit_viewer": bool(self.target.wings.saturated) if self.target.wings else None,
                          "60cm": bool(self.photometry_60cm.saturated) if self.photometry_60cm else None},
            "photometry_60cm": self.photometry_60cm.to_json() if self.photometry_60cm is not None else None,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "reason": self.reason,
            "target_xy_60cm": [r(v, 2) for v in self.target_xy_60cm] if self.target_xy_60cm else None,
            "routes": {k: {"ra_deg": r(v[0], 7), "dec_deg": r(v[1], 7)} for k, v in self.ra_by_route.items()},
            "route_disagreement_arcsec": r(self.route_disagreement_arcsec, 3),
            "slit": self.slit.to_json(),
            "target": self.target.to_json(),
            "registration": self.registration.to_json() if self.registration is not None else None,
            "sv_solve": self.sv_solve.to_json(include_wcs=False) if self.sv_solve is not None else None,
            "frame_solve": self.frame_solve.to_json(include_wcs=False) if self.frame_solve is not None else None,
            "n_sv_sources": self.n_sv_sources,
            "warnings": list(self.warnings),
        }
        return out


def extract(image: np.ndarray, *, mask: np.ndarray | None = None) -> Table:
    """Sources (``x``, ``y``, ``flux``, ``fwhm``; brightest first) with the frame pipeline's extractor.

    ``mask`` (True = ignore) keeps the slit band out of the background and the detections.
    Uses ``tenmon.vision.sources.extract_sources``; plain sep when that module is absent.
    """
    img = _as_image(image)
    try:
        from tenmon.vision.sources import extract_sources
    except ImportError:  # the frame pipeline is not in this build
        extract_sources = None
    if extract_sources is not None:
        t = extract_sources(img, mask=mask)
        return t
    import sep

    data = np.ascontiguousarray(np.where(np.isfinite(img), img, np.nanmedian(img)), dtype=np.float32)
    m = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    bkg = sep.Background(data, mask=m)
    objs = sep.extract(data - bkg.back(), 5.0, err=bkg.globalrms, mask=m, minarea=5)
    t = Table({"x": objs["x"].astype(float), "y": objs["y"].astype(float), "flux": objs["flux"].astype(float),
               "fwhm": 2.0 * np.sqrt(np.log(2.0) * (objs["a"] ** 2 + objs["b"] ** 2)).astype(float)})
    t.sort("flux", reverse=True)
    return t


def locate_target(
    sv_image: np.ndarray,
    *,
    sv_hint: SolveHint | None = None,
    sv_exposure_s: float | None = None,
    sv_gain: float | None = None,
    sv_saturation_adu: float | None = None,
    solver: Any = None,
    frame60: Frame60 | None = None,
    frame_solver: Any = None,
    settings: NayutaSettings | None = None,
) -> NayutaLocation:
    """Find Nayuta's target on a slit-viewer frame and place it on the sky; photometry in both frames.

    Steps: :func:`find_slit`; sources of the slit viewer with the slit band masked;
    :func:`find_target`; then the sky position by ``settings.route``: ``solve`` plate-solves the
    slit viewer (``solver``, ``sv_hint`` with Nayuta's position and the slit viewer's scale);
    ``register`` registers the slit viewer in ``frame60`` (:func:`register_in_frame`) and maps
    the target through the 60 cm frame's WCS (``frame60.wcs``, else solved with ``solver`` from
    ``frame60.hint``); ``auto`` does what it can and reports the solve route's position first.
    With a 60 cm frame the target is also measured there (aperture photometry at its mapped
    pixel, recentred).

    Args:
        sv_image: the slit-viewer frame [ADU].
        sv_hint: Nayuta's reported position and the slit-viewer scale (for solving).
        sv_exposure_s, sv_gain, sv_saturation_adu: of the slit-viewer frame, for magnitudes per
            second, errors and the saturation flag.
        solver: a ``SolverChain`` (or ``Solver``) with a catalogue for the slit viewer (see
            :func:`slit_viewer_chain`); ``None``: register only.
        frame60: the 60 cm frame, optional.
        frame_solver: the solver for the 60 cm frame when it has no WCS; default ``solver``.
        settings: :class:`NayutaSettings`.

    Returns:
        :class:`NayutaLocation`; ``located=False`` with a reason when the slit, the target or
        the sky position was not found (never raises for that).

    Raises:
        NayutaError: for an image that is not 2-D or has no finite pixels.
    """
    t0 = time.perf_counter()
    st = settings or NayutaSettings()
    img = _as_image(sv_image)
    warnings: list[str] = []
    slit = find_slit(img, settings=st.slit)
    if not slit.found or slit.confidence < st.min_slit_confidence:
        why = slit.reason if not slit.found else f"slit found with confidence {slit.confidence:.2f} only"
        return NayutaLocation(located=False, target_ra_deg=None, target_dec_deg=None, method="none", slit=slit,
                              target=TargetOnSlit.not_found("no slit"), target_xy=None, elapsed_ms=_ms(t0),
                              reason=f"slit not found: {why}")
    band = slit.band_mask(img.shape, pad_px=2 * slit.edge_sigma_px + 1.0)
    sources = extract(img, mask=band)
    fwhm = measure_fwhm(img, sources_off_slit(sources, slit, fwhm_px=max(2.0, 2.0 * slit.width_px)), mask=band)
    target = find_target(img, slit, fwhm_guess_px=fwhm, exposure_s=sv_exposure_s, gain=sv_gain,
                         saturation_adu=sv_saturation_adu,
                         reference_xy=st.target_reference_xy, settings=st.target)
    if not target.found:
        return NayutaLocation(located=False, target_ra_deg=None, target_dec_deg=None, method="none", slit=slit,
                              target=target, target_xy=None, n_sv_sources=len(sources), elapsed_ms=_ms(t0),
                              reason=f"target not found: {target.reason}")
    txy = (target.x, target.y)
    clean = sources_off_slit(sources, slit, fwhm_px=target.fwhm_px, target_xy=txy)
    routes: dict[str, tuple[float, float]] = {}
    reasons: list[str] = []
    sv_solve = frame_solve = None
    registration = None
    frame_xy = None
    if st.route in ("auto", "solve"):
        if solver is not None and sv_hint is not None:
            sky, sv_solve = sky_by_solving(txy, clean, img.shape, sv_hint, solver)
            if sky.ok:
                routes["solve"] = (sky.ra_deg, sky.dec_deg)
            else:
                reasons.append(f"solve: {sky.reason}")
        else:
            reasons.append("solve: no solver or no position hint for the slit viewer")
    frame_wcs = None
    fr_img = None
    if frame60 is not None:
        fr_img = _as_image(frame60.image)
        fr_sources = extract(fr_img)
        frame_wcs = frame60.wcs
        fsolver = frame_solver if frame_solver is not None else solver
        if frame_wcs is None and fsolver is not None and frame60.hint is not None:
            frame_solve = _solve(fsolver, fr_sources, fr_img.shape, frame60.hint)
            if frame_solve.solved:
                frame_wcs = frame_solve.wcs
            else:
                warnings.append(f"60 cm frame not solved: {frame_solve.reason}")
        if st.route in ("auto", "register"):
            sv_scale = sv_hint.scale_arcsec if sv_hint is not None and sv_hint.scale_arcsec else st.sv_scale_arcsec
            registration = register_in_frame(clean, fr_sources, sv_scale / frame60.scale_arcsec,
                                              scale_tolerance=st.scale_tolerance, frame_shape=fr_img.shape,
                                              settings=st.registration)
            if registration.ok:
                fx, fy = registration.apply(txy[0], txy[1])
                frame_xy = (float(fx[0]), float(fy[0]))
                if frame_wcs is not None:
                    sky = sky_by_registration(txy, registration, frame_wcs)
                    routes["register"] = (sky.ra_deg, sky.dec_deg)
                else:
                    reasons.append("register: the 60 cm frame has no WCS and could not be solved")
            else:
                reasons.append(f"register: {registration.reason}")
    elif st.route == "register":
        reasons.append("register: no 60 cm frame given")
    method = "solve" if "solve" in routes else ("register" if "register" in routes else "none")
    ra = dec = None
    if method != "none":
        ra, dec = routes[method]
    disagree = None
    if len(routes) == 2:
        (r1, d1), (r2, d2) = routes["solve"], routes["register"]
        disagree = float(separation_deg(np.array([r1]), np.array([d1]), r2, d2)[0] * 3600.0)
        if disagree > st.max_route_disagreement_arcsec:
            warnings.append(f"the two routes disagree by {disagree:.1f}\"")
    # photometry in the 60 cm frame at the target's pixel there
    phot60 = None
    if fr_img is not None:
        if frame_xy is None and frame_wcs is not None and ra is not None:
            px = frame_wcs.all_world2pix(np.array([[ra, dec]]), 0)[0]
            frame_xy = (float(px[0]), float(px[1]))
        if frame_xy is not None:
            phot60 = _photometry_60cm(fr_img, frame_xy, frame60, st, measure_fwhm(fr_img, fr_sources))
            if phot60 is not None:
                frame_xy = (phot60.x, phot60.y)
    mag_sv = target.wings.mag if target.wings is not None else None
    mag60 = phot60.mag if phot60 is not None else None
    located = method != "none"
    return NayutaLocation(
        located=located, target_ra_deg=ra, target_dec_deg=dec, method=method, slit=slit, target=target,
        target_xy=txy, target_xy_60cm=frame_xy, mag_slit_viewer=mag_sv, mag_slit_viewer_model=target.mag_model,
        mag_60cm=mag60, mag_difference=(mag60 - mag_sv) if (mag60 is not None and mag_sv is not None) else None,
        photometry_60cm=phot60, ra_by_route=routes, route_disagreement_arcsec=disagree, sv_solve=sv_solve,
        frame_solve=frame_solve, registration=registration, n_sv_sources=len(sources), elapsed_ms=_ms(t0),
        reason=None if located else "no sky position: " + "; ".join(reasons), warnings=tuple(warnings),
    )


def slit_viewer_chain(solver_settings: Any, *, catalog: Any, sv_scale_arcsec: float,
                      max_rms_arcsec: float = 0.5) -> Any:
    """The site's solver chain, with its rms limit widened for the slit viewer's small pixels.

    The solvers' limits are in pixels (1 px suits the 60 cm's ~3 px FWHM); the slit viewer
    samples the seeing with ~10 px at 0.2"/px, where faint stars' centroids scatter by ~1 px
    (0.2"). The limit becomes ``max(site limit, max_rms_arcsec / sv_scale_arcsec)`` pixels.
    ``solver_settings`` is a ``SolverSettings``; ``catalog`` a catalogue provider (or ``None``:
    the configured one).
    """
    from tenmon.vision.solve.chain import build_chain

    px = max(solver_settings.max_rms_px, max_rms_arcsec / sv_scale_arcsec)
    s = solver_settings.model_copy(update={
        "max_rms_px": px,
        "hinted": solver_settings.hinted.model_copy(update={"max_rms_px": max(solver_settings.hinted.max_rms_px, px)}),
    })
    return build_chain(s, catalog=catalog) if catalog is not None else build_chain(s)


def _solve(solver: Any, sources: Table, shape: tuple[int, int], hint: SolveHint,
           timeout_s: float = 10.0) -> SolveResult:
    """A ``SolverChain`` (its own timeouts) or a bare ``Solver`` (which takes ``timeout_s``)."""
    import inspect

    if "timeout_s" in inspect.signature(solver.solve).parameters:
        return solver.solve(sources, shape, hint, timeout_s=timeout_s)
    return solver.solve(sources, shape, hint)


def _photometry_60cm(img: np.ndarray, xy: tuple[float, float], frame60: Frame60, st: NayutaSettings,
                     fwhm_px: float | None) -> Photometry | None:
    """Recentre on the star near ``xy`` (photutils centroid) and measure it; None when off the frame.

    ``fwhm_px`` is the frame's (from all its sources); 2" is assumed without it.
    """
    from photutils.centroids import centroid_2dg

    ny, nx = img.shape
    x, y = xy
    if not (0 <= x <= nx - 1 and 0 <= y <= ny - 1):
        return None
    fw = fwhm_px if fwhm_px and fwhm_px > 0 else 2.0 / frame60.scale_arcsec
    h = int(max(3, math.ceil(1.5 * fw)))
    x0, y0 = int(round(x)), int(round(y))
    ya, yb, xa, xb = max(0, y0 - h), min(ny, y0 + h + 1), max(0, x0 - h), min(nx, x0 + h + 1)
    cut = img[ya:yb, xa:xb].astype(float)
    if cut.size >= 9:
        cut = cut - np.median(img[max(0, y0 - 4 * h) : y0 + 4 * h + 1, max(0, x0 - 4 * h) : x0 + 4 * h + 1])
        try:
            import warnings as _w

            with _w.catch_warnings():
                _w.simplefilter("ignore")
                cx, cy = centroid_2dg(cut)
            if np.isfinite(cx) and np.isfinite(cy) and math.hypot(xa + cx - x, ya + cy - y) < 1.5 * fw:
                x, y = xa + float(cx), ya + float(cy)
        except (ValueError, RuntimeError):
            pass
    return aperture_photometry_at(img, x, y, fwhm_px=fw, exposure_s=frame60.exposure_s, gain=frame60.gain,
                                  saturation_adu=frame60.saturation_adu, aperture_fwhm=st.target.aperture_fwhm, annulus_fwhm=st.target.annulus_fwhm)


# ============================================================================== helpers


def _xyflux(t: Table, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for c in ("x", "y"):
        if c not in t.colnames:
            raise NayutaError(f"{what} source table has no {c!r} column (columns: {', '.join(t.colnames)})")
    x = np.asarray(t["x"], float)
    y = np.asarray(t["y"], float)
    f = np.asarray(t["flux"], float) if "flux" in t.colnames else np.ones_like(x)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(f)
    x, y, f = x[ok], y[ok], f[ok]
    o = np.argsort(-f, kind="stable")
    return x[o], y[o], f[o]


def _as_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2 or img.size == 0:
        raise NayutaError(f"need a 2-D image, got shape {img.shape}")
    img = img.astype(np.float32, copy=False)
    if not np.isfinite(img).any():
        raise NayutaError("image has no finite pixels")
    return img


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


__all__ = [
    "SV_SCALE_ARCSEC",
    "SV_SHAPE",
    "NayutaError",
    "NayutaSettings",
    "SlitSearchSettings",
    "TargetSearchSettings",
    "RegistrationSettings",
    "SlitViewerTruth",
    "SkyWithExtraStars",
    "slit_viewer_wcs",
    "slit_transmission",
    "render_slit_viewer",
    "SlitGeometry",
    "find_slit",
    "Photometry",
    "aperture_photometry_at",
    "TargetOnSlit",
    "measure_fwhm",
    "find_target",
    "Registration",
    "register_in_frame",
    "sources_off_slit",
    "TargetSky",
    "sky_by_solving",
    "sky_by_registration",
    "target_sky_position",
    "offset_on_sky_arcsec",
    "nominal_wcs",
    "Frame60",
    "NayutaLocation",
    "extract",
    "locate_target",
    "slit_viewer_chain",
]
