"""Synthetic CCD frames with truth: star fields, sky, noise, cosmic rays and detector defects.

Pure and seeded: the same arguments and ``seed`` give the same frame, bit for bit. The simulated
CCD draws what the simulated mount really sees with :func:`render_star_field`; tests and
benchmarks use the truth it returns (star pixel positions and fluxes, the cosmic-ray mask, hot
pixels) to measure the frame pipeline.

Physical models, each kept simple and named so it can be replaced:

* stars: a Moffat (default, beta 4; Trujillo et al. 2001, MNRAS 328, 977: turbulence theory
  gives beta ~4.765) or Gaussian seeing PSF, integrated over pixels by 5x5 sub-sampling;
* sky: a flat level in ADU; :func:`sky_surface_brightness` gives V mag/arcsec^2 from the moon
  (Krisciunas & Schaefer 1991, PASP 103, 1033) and twilight, :func:`sky_level_adu` converts it;
* noise: Poisson in electrons, Gaussian read noise, ADC rounding, clipping at saturation, and
  charge bleeding along columns above the full well;
* cosmic rays: straight muon tracks through a thin depletion layer (isotropic with a cos^2
  zenith law), ~75 e-/um with a Landau-like (Moyal) spread, charge diffusion of 0.35 px;
* defects: hot pixels (log-uniform dark rates) and hot columns.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy import special, stats

from tenmon.core import offline
from tenmon.core.atomicfile import atomic_write

offline.configure()

from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.time import Time  # noqa: E402
import astropy.units as u  # noqa: E402

log = logging.getLogger(__name__)

#: Default physical constants of the simulated 60 cm telescope's CCD (a 2k x 2k, 13.5 um back-
#: illuminated sensor). They are defaults of keyword arguments, not hidden state.
PIXEL_SIZE_UM = 13.5
DEPLETION_UM = 15.0
#: Sea-level-ish muon plus radioactivity hit rate seen by observatory CCDs (~3 per cm^2 per min).
COSMIC_RATE_PER_CM2_S = 0.05


@dataclass(frozen=True)
class RenderedFrame:
    """A synthetic frame and its truth.

    ``image`` is float32 ADU (integer values after ADC rounding), shape ``(ny, nx + overscan_px)``.
    ``stars`` holds one row per catalogue star whose centre falls on the data area (plus a
    margin of a few FWHM): ``ra``, ``dec`` [deg], ``mag``, ``x``, ``y`` (0-based pixel centres),
    ``flux_e``/``flux_adu`` (total over the PSF), ``peak_adu`` (noise-free peak above sky),
    ``snr`` (CCD equation in a circular aperture of radius 1 FWHM, star + sky + dark + read
    noise), ``saturated``, ``in_frame`` and ``cluster_id`` (-1 for field stars).
    ``cosmic_adu`` is the charge deposited by cosmic rays [ADU]; ``cosmic_mask`` marks the
    pixels where it exceeds ``cosmic_truth_sigma`` times that pixel's noise without the ray.
    ``star_adu`` is the noise-free star light [ADU] before saturation; ``noise_adu`` the 1-sigma
    noise per pixel without cosmic rays. ``hot_pixels`` is an ``(n, 2)`` array of ``(y, x)``.
    """

    image: np.ndarray
    stars: Table
    cosmic_adu: np.ndarray
    cosmic_mask: np.ndarray
    star_adu: np.ndarray
    noise_adu: np.ndarray
    hot_pixels: np.ndarray
    bad_columns: tuple[int, ...]
    saturated_mask: np.ndarray
    wcs: WCS
    fwhm_px: float
    sky_adu: float
    exposure_s: float
    gain: float
    read_noise_e: float
    bias_adu: float
    saturation_adu: float
    overscan_px: int = 0
    n_cosmic_rays: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def data_shape(self) -> tuple[int, int]:
        """Shape of the light-sensitive area (the image without its overscan columns)."""
        return (self.image.shape[0], self.image.shape[1] - self.overscan_px)

    def star_mask(self, threshold_sigma: float = 1.0) -> np.ndarray:
        """Pixels where star light exceeds ``threshold_sigma`` times the pixel noise (bool)."""
        return self.star_adu > threshold_sigma * self.noise_adu


# --------------------------------------------------------------------------- catalogues


def random_star_catalog(
    center: SkyCoord | tuple[float, float],
    radius_deg: float,
    *,
    density_per_deg2: float = 30000.0,
    mag_bright: float = 10.0,
    mag_faint: float = 21.0,
    count_slope: float = 0.3,
    seed: int,
) -> Table:
    """Draw a random field-star catalogue on a spherical cap.

    Positions are uniform on the cap; magnitudes follow ``dN/dm ~ 10**(count_slope * m)``
    between ``mag_bright`` and ``mag_faint`` (0.3 is close to star counts at intermediate
    Galactic latitude in V/R). ``density_per_deg2`` counts all stars down to ``mag_faint``.

    Args:
        center: cap centre (ICRS ``SkyCoord`` or ``(ra_deg, dec_deg)``).
        radius_deg: cap radius [deg], > 0.
        seed: random seed.

    Returns:
        Table with ``ra``, ``dec`` [deg], ``mag`` and ``cluster_id`` (all -1).

    Raises:
        ValueError: on a non-positive radius or density, or ``mag_bright >= mag_faint``.
    """
    if radius_deg <= 0 or density_per_deg2 <= 0:
        raise ValueError("radius_deg and density_per_deg2 must be positive")
    if mag_bright >= mag_faint:
        raise ValueError("mag_bright must be brighter (smaller) than mag_faint")
    ra0, dec0 = _radec(center)
    rng = np.random.default_rng(seed)
    area = 2 * math.pi * (1 - math.cos(math.radians(radius_deg))) * (180 / math.pi) ** 2
    n = int(rng.poisson(density_per_deg2 * area))
    ra, dec = _uniform_on_cap(rng, ra0, dec0, radius_deg, n)
    mag = _power_law_mags(rng, n, mag_bright, mag_faint, count_slope)
    return Table(
        {"ra": ra, "dec": dec, "mag": mag, "cluster_id": np.full(n, -1, dtype=np.int32)},
        meta={"kind": "random_star_catalog", "seed": seed},
    )


@dataclass(frozen=True)
class ClusterTruth:
    """An injected compact star cluster: centre [deg], truncation radius [deg], members."""

    cluster_id: int
    ra: float
    dec: float
    radius_deg: float
    half_number_radius_deg: float
    n_members: int


def inject_cluster(
    catalog: Table,
    *,
    center: SkyCoord | tuple[float, float],
    n_members: int = 80,
    radius_deg: float = 1.0 / 60.0,
    half_number_radius_deg: float | None = None,
    mag_bright: float = 13.0,
    mag_faint: float = 20.0,
    count_slope: float = 0.15,
    cluster_id: int | None = None,
    seed: int,
) -> tuple[Table, ClusterTruth]:
    """Add a compact star cluster (Plummer profile, truncated) to a catalogue.

    Members follow a Plummer surface density truncated at ``radius_deg``; the default
    half-number radius is 0.4 of it. Magnitudes follow a flatter luminosity function than the
    field (``count_slope`` 0.15), as a cluster's main sequence does.

    Args:
        catalog: table with ``ra``, ``dec``, ``mag`` (and optionally ``cluster_id``).
        center: cluster centre.
        n_members: number of members (>= 1).
        radius_deg: truncation radius [deg] (1 arcmin by default).
        half_number_radius_deg: radius holding half the members [deg].
        cluster_id: id given to members; default one more than the largest in ``catalog``.
        seed: random seed.

    Returns:
        ``(new_table, truth)``; the input table is not modified.

    Raises:
        ValueError: on ``n_members < 1`` or a non-positive radius.
    """
    if n_members < 1 or radius_deg <= 0:
        raise ValueError("n_members must be >= 1 and radius_deg > 0")
    ra0, dec0 = _radec(center)
    rhalf = half_number_radius_deg if half_number_radius_deg is not None else 0.4 * radius_deg
    if not 0 < rhalf < radius_deg:
        raise ValueError("half_number_radius_deg must lie between 0 and radius_deg")
    rng = np.random.default_rng(seed)
    # Plummer: projected number within R is R^2 / (R^2 + a^2); half-number radius = a.
    a = rhalf
    fmax = radius_deg**2 / (radius_deg**2 + a**2)
    f = rng.uniform(0, fmax, n_members)
    r = a * np.sqrt(f / (1 - f))
    pa = rng.uniform(0, 2 * math.pi, n_members)
    c0 = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    members = c0.directional_offset_by(pa * u.rad, r * u.deg)
    mag = _power_law_mags(rng, n_members, mag_bright, mag_faint, count_slope)
    base = catalog.copy()
    if "cluster_id" not in base.colnames:
        base["cluster_id"] = np.full(len(base), -1, dtype=np.int32)
    cid = int(cluster_id if cluster_id is not None else max(-1, int(np.max(base["cluster_id"], initial=-1))) + 1)
    add = Table(
        {
            "ra": members.ra.deg,
            "dec": members.dec.deg,
            "mag": mag,
            "cluster_id": np.full(n_members, cid, dtype=np.int32),
        }
    )
    from astropy.table import vstack

    out = vstack([base[["ra", "dec", "mag", "cluster_id"]], add], metadata_conflicts="silent")
    truth = ClusterTruth(cid, ra0, dec0, radius_deg, rhalf, n_members)
    return out, truth


def simple_wcs(
    center: SkyCoord | tuple[float, float],
    *,
    shape: tuple[int, int] = (2048, 2048),
    pixel_scale_arcsec: float = 0.32,
    rotation_deg: float = 0.0,
    flip: bool = False,
) -> WCS:
    """A TAN WCS centred on the data area, north up and east left when ``rotation_deg`` is 0.

    Args:
        center: sky position of the central pixel.
        shape: ``(ny, nx)`` of the data area.
        pixel_scale_arcsec: ["/px].
        rotation_deg: rotation of the pixel grid on the sky [deg] (0: north up, east left).
        flip: mirror the x axis (east right), as some optical trains do.
    """
    ra0, dec0 = _radec(center)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    s = pixel_scale_arcsec / 3600.0
    t = math.radians(rotation_deg)
    w.wcs.cd = _cd_matrix(s, t, flip)
    w.wcs.radesys = "ICRS"
    w.pixel_shape = (shape[1], shape[0])
    return w


def _cd_matrix(s: float, t: float, flip: bool) -> np.ndarray:
    # Unrotated: x grows west (RA decreasing) unless flipped, y grows north. Rotate by t.
    base = np.array([[s if flip else -s, 0.0], [0.0, s]])
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return rot @ base


# --------------------------------------------------------------------------- sky brightness


_TWILIGHT_TABLE = (  # (sun altitude deg, zenith twilight V mag/arcsec^2), after Patat et al. 2006
    (-18.0, 24.5),
    (-15.0, 19.8),
    (-12.0, 17.3),
    (-9.0, 14.5),
    (-6.0, 11.5),
    (0.0, 7.5),
)


def sky_surface_brightness(
    *,
    target_alt_deg: float,
    sun_alt_deg: float = -30.0,
    moon_alt_deg: float = -30.0,
    moon_separation_deg: float = 90.0,
    moon_phase_angle_deg: float = 180.0,
    dark_sky_mag: float = 21.5,
    extinction_mag: float = 0.17,
) -> float:
    """Night-sky V surface brightness [mag/arcsec^2] at a target, with moon and twilight.

    Dark sky brightens with airmass; moonlight follows Krisciunas & Schaefer (1991, PASP 103,
    1033, eqs. 15-21); twilight is interpolated from zenith values in the style of Patat et al.
    (2006, A&A 455, 385) and added in linear units. Good to a few tenths of a magnitude, which is
    what a simulator needs.

    Args:
        target_alt_deg: target altitude [deg]; clipped to >= 1 deg.
        sun_alt_deg: Sun altitude [deg].
        moon_alt_deg: Moon altitude [deg] (no moonlight below the horizon).
        moon_separation_deg: target-Moon angular distance [deg].
        moon_phase_angle_deg: 0 = full, 180 = new [deg].
        dark_sky_mag: zenith dark-sky brightness [V mag/arcsec^2].
        extinction_mag: V extinction coefficient [mag/airmass].
    """
    def nl(v: float) -> float:  # V mag/arcsec^2 -> nanoLamberts
        return 34.08 * math.exp(20.7233 - 0.92104 * v)

    alt = max(1.0, target_alt_deg)
    z = math.radians(90.0 - alt)
    x = (1 - 0.96 * math.sin(z) ** 2) ** -0.5
    b = nl(dark_sky_mag) * 10 ** (-0.4 * extinction_mag * (x - 1)) * x
    if moon_alt_deg > 0:
        alpha = abs(moon_phase_angle_deg)
        istar = 10 ** (-0.4 * (3.84 + 0.026 * alpha + 4e-9 * alpha**4))
        rho = max(moon_separation_deg, 2.0)
        f = 10**5.36 * (1.06 + math.cos(math.radians(rho)) ** 2) + 10 ** (6.15 - rho / 40.0)
        zm = math.radians(90.0 - moon_alt_deg)
        xm = (1 - 0.96 * math.sin(zm) ** 2) ** -0.5
        b += f * istar * 10 ** (-0.4 * extinction_mag * xm) * (1 - 10 ** (-0.4 * extinction_mag * x))
    if sun_alt_deg > -18.0:
        hs, vs = zip(*_TWILIGHT_TABLE)
        v_tw = float(np.interp(min(sun_alt_deg, 0.0), hs, vs))
        b += nl(v_tw) * x
    return (20.7233 - math.log(b / 34.08)) / 0.92104


def sky_level_adu(
    surface_brightness_mag: float,
    *,
    pixel_scale_arcsec: float,
    exposure_s: float,
    zero_point_mag: float = 22.5,
    gain: float = 1.5,
) -> float:
    """Sky level per pixel [ADU] from a surface brightness [mag/arcsec^2].

    ``zero_point_mag`` is the magnitude that gives 1 e-/s in total; ``gain`` is e-/ADU.
    """
    e_per_s = 10 ** (-0.4 * (surface_brightness_mag - zero_point_mag)) * pixel_scale_arcsec**2
    return e_per_s * exposure_s / gain


# --------------------------------------------------------------------------- rendering


def render_star_field(
    *,
    wcs: WCS,
    stars: Table,
    shape: tuple[int, int] = (2048, 2048),
    fwhm_px: float = 2.5,
    psf: str = "moffat",
    moffat_beta: float = 4.0,
    sky_adu: float = 800.0,
    exposure_s: float = 60.0,
    gain: float = 1.5,
    read_noise_e: float = 8.0,
    zero_point_mag: float = 22.5,
    n_cosmic_rays: int | None = None,
    n_hot_pixels: int = 50,
    bad_columns: Sequence[int] | None = None,
    saturation_adu: float = 65535.0,
    full_well_e: float | None = 100000.0,
    bias_adu: float = 0.0,
    overscan_px: int = 0,
    dark_e_per_s: float = 0.002,
    cosmic_truth_sigma: float = 3.0,
    seed: int,
) -> RenderedFrame:
    """Render a CCD frame of ``stars`` seen through ``wcs``, with its truth.

    Args:
        wcs: the *true* celestial WCS of the data area (0-based pixel ``(x, y)`` = column, row).
        stars: table with ``ra``, ``dec`` [deg] and ``mag``; an optional ``cluster_id`` column is
            carried into the truth.
        shape: ``(ny, nx)`` of the light-sensitive area [px].
        fwhm_px: seeing FWHM [px].
        psf: ``"moffat"`` or ``"gaussian"``.
        moffat_beta: Moffat beta (> 1).
        sky_adu: sky level per pixel over the exposure [ADU].
        exposure_s: exposure time [s].
        gain: [e-/ADU].
        read_noise_e: read noise [e-].
        zero_point_mag: magnitude giving 1 e-/s in total.
        n_cosmic_rays: number of cosmic-ray hits; default from exposure, area and
            :data:`COSMIC_RATE_PER_CM2_S` (Poisson).
        n_hot_pixels: hot pixels (dark rates log-uniform in 1..300 e-/s).
        bad_columns: columns with a hot offset (250-900 e-); default one seeded random column;
            ``()`` for none.
        saturation_adu: ADC maximum [ADU].
        full_well_e: charge above this bleeds along its column; ``None`` disables bleeding.
        bias_adu: bias pedestal [ADU] added to every pixel, overscan included.
        overscan_px: overscan columns appended on the right (bias + read noise only).
        dark_e_per_s: dark current of normal pixels [e-/s].
        cosmic_truth_sigma: threshold of ``cosmic_mask`` in units of the pixel noise.
        seed: random seed (every random draw comes from it).

    Returns:
        A :class:`RenderedFrame`.

    Raises:
        ValueError: on a missing column, non-positive gain/exposure/FWHM, or unknown ``psf``.
    """
    for col in ("ra", "dec", "mag"):
        if col not in stars.colnames:
            raise ValueError(f"stars table has no {col!r} column")
    if gain <= 0 or exposure_s <= 0 or fwhm_px <= 0:
        raise ValueError("gain, exposure_s and fwhm_px must be positive")
    if psf not in ("moffat", "gaussian"):
        raise ValueError(f"unknown psf {psf!r}: use 'moffat' or 'gaussian'")
    ny, nx = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(seed)
    rng_stars, rng_noise, rng_cr, rng_hot = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 4))

    # ---- stars: positions, fluxes, noise-free image in electrons
    ra = np.asarray(stars["ra"], dtype=float)
    dec = np.asarray(stars["dec"], dtype=float)
    mag = np.asarray(stars["mag"], dtype=float)
    cid = np.asarray(stars["cluster_id"], dtype=np.int32) if "cluster_id" in stars.colnames else np.full(len(stars), -1, np.int32)
    if len(stars):
        x, y = wcs.all_world2pix(ra, dec, 0)
    else:
        x = y = np.zeros(0)
    margin = 4 * fwhm_px
    keep = np.isfinite(x) & np.isfinite(y) & (x > -margin) & (x < nx - 1 + margin) & (y > -margin) & (y < ny - 1 + margin)
    x, y, ra, dec, mag, cid = x[keep], y[keep], ra[keep], dec[keep], mag[keep], cid[keep]
    flux_e = exposure_s * 10 ** (-0.4 * (mag - zero_point_mag))
    star_e = np.zeros((ny, nx), dtype=np.float64)
    peak_e = _add_stars(star_e, x, y, flux_e, fwhm_px, psf, moffat_beta)

    # ---- sky, dark, defects (electrons)
    sky_e = sky_adu * gain
    dark_e = np.full((ny, nx), dark_e_per_s * exposure_s)
    n_hot = int(max(0, n_hot_pixels))
    hot_idx = rng_hot.choice(ny * nx, size=min(n_hot, ny * nx), replace=False)
    hot_yx = np.column_stack(np.unravel_index(hot_idx, (ny, nx))).astype(np.int64)
    hot_rate = np.exp(rng_hot.uniform(math.log(1.0), math.log(300.0), len(hot_idx)))
    dark_e.ravel()[hot_idx] += hot_rate * exposure_s
    if bad_columns is None:
        bad_columns = (int(rng_hot.integers(0, nx)),)
    bad_columns = tuple(int(c) for c in bad_columns if 0 <= int(c) < nx)
    for c in bad_columns:
        dark_e[:, c] += rng_hot.uniform(250.0, 900.0)

    expected_e = star_e + sky_e + dark_e
    noise_e = np.sqrt(expected_e + read_noise_e**2)
    electrons = rng_noise.poisson(expected_e).astype(np.float64)

    # ---- cosmic rays
    if n_cosmic_rays is None:
        area_cm2 = nx * ny * (PIXEL_SIZE_UM * 1e-4) ** 2
        n_cosmic_rays = int(rng_cr.poisson(COSMIC_RATE_PER_CM2_S * area_cm2 * exposure_s))
    cr_e = _cosmic_rays(rng_cr, (ny, nx), int(n_cosmic_rays))
    electrons += cr_e

    # ---- charge bleeding above full well, then read out
    if full_well_e is not None:
        _bleed(electrons, float(full_well_e))
    electrons += rng_noise.normal(0.0, read_noise_e, size=electrons.shape)
    adu = electrons / gain + bias_adu
    if overscan_px > 0:
        over = bias_adu + rng_noise.normal(0.0, read_noise_e / gain, size=(ny, int(overscan_px)))
        adu = np.hstack([adu, over])
    adu = np.clip(np.rint(adu), 0, saturation_adu).astype(np.float32)
    saturated = adu[:, :nx] >= saturation_adu

    # ---- truth
    noise_adu = (noise_e / gain).astype(np.float32)
    cosmic_adu = (cr_e / gain).astype(np.float32)
    cosmic_mask = cosmic_adu > cosmic_truth_sigma * noise_adu
    # SNR in a circular aperture of radius 1 FWHM (Moffat/Gaussian enclosed fraction).
    r_ap = fwhm_px
    n_pix = math.pi * r_ap**2
    frac = _enclosed_fraction(r_ap, fwhm_px, psf, moffat_beta)
    sig = flux_e * frac
    snr = sig / np.sqrt(sig + n_pix * (sky_e + dark_e_per_s * exposure_s + read_noise_e**2))
    xi = np.clip(np.rint(x).astype(int), 0, nx - 1)
    yi = np.clip(np.rint(y).astype(int), 0, ny - 1)
    in_frame = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    star_sat = in_frame & ((peak_e + sky_e) / gain + bias_adu >= saturation_adu * 0.98)
    star_sat |= in_frame & saturated[yi, xi]
    truth = Table(
        {
            "ra": ra,
            "dec": dec,
            "mag": mag,
            "x": x,
            "y": y,
            "flux_e": flux_e,
            "flux_adu": flux_e / gain,
            "peak_adu": peak_e / gain,
            "snr": snr,
            "saturated": star_sat,
            "in_frame": in_frame,
            "cluster_id": cid,
        }
    )
    return RenderedFrame(
        image=adu,
        stars=truth,
        cosmic_adu=cosmic_adu,
        cosmic_mask=cosmic_mask,
        star_adu=(star_e / gain).astype(np.float32),
        noise_adu=noise_adu,
        hot_pixels=hot_yx,
        bad_columns=bad_columns,
        saturated_mask=saturated,
        wcs=wcs,
        fwhm_px=float(fwhm_px),
        sky_adu=float(sky_adu),
        exposure_s=float(exposure_s),
        gain=float(gain),
        read_noise_e=float(read_noise_e),
        bias_adu=float(bias_adu),
        saturation_adu=float(saturation_adu),
        overscan_px=int(overscan_px),
        n_cosmic_rays=int(n_cosmic_rays),
        extra={"psf": psf, "moffat_beta": moffat_beta, "zero_point_mag": zero_point_mag, "seed": seed},
    )


def _moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _enclosed_fraction(r: float, fwhm: float, psf: str, beta: float) -> float:
    if psf == "gaussian":
        sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
        return 1.0 - math.exp(-(r**2) / (2 * sigma**2))
    alpha = _moffat_alpha(fwhm, beta)
    return 1.0 - (1.0 + (r / alpha) ** 2) ** (1.0 - beta)


_SUB = 5  # sub-samples per pixel side: integrates the PSF over pixels to < 0.5 % at FWHM 2 px


def _add_stars(img: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, fwhm: float,
               psf: str, beta: float) -> np.ndarray:
    """Add pixel-integrated PSFs to ``img`` in place; return each star's noise-free peak."""
    ny, nx = img.shape
    peaks = np.zeros(len(x))
    sub = (np.arange(_SUB) + 0.5) / _SUB - 0.5
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    alpha = _moffat_alpha(fwhm, beta)
    for i in range(len(x)):
        f = flux[i]
        # Stamp radius: where the profile falls below ~0.05 e-/px, at least 4 FWHM, at most 60 px.
        half = int(min(60, max(4 * fwhm, _radius_for_level(f, fwhm, psf, beta, 0.05))))
        x0, y0 = int(math.floor(x[i] + 0.5)), int(math.floor(y[i] + 0.5))
        xa, xb = max(0, x0 - half), min(nx, x0 + half + 1)
        ya, yb = max(0, y0 - half), min(ny, y0 + half + 1)
        if xa >= xb or ya >= yb:
            continue
        dx = (np.arange(xa, xb)[:, None] + sub[None, :] - x[i]).ravel()
        dy = (np.arange(ya, yb)[:, None] + sub[None, :] - y[i]).ravel()
        if psf == "gaussian":
            # Separable and exact: difference of error functions per pixel edge.
            ex = _gauss_1d(np.arange(xa, xb) - x[i], sigma)
            ey = _gauss_1d(np.arange(ya, yb) - y[i], sigma)
            stamp = f * np.outer(ey, ex)
        else:
            r2 = dy[:, None] ** 2 + dx[None, :] ** 2
            prof = (beta - 1) / (math.pi * alpha**2) * (1 + r2 / alpha**2) ** (-beta)
            stamp = prof.reshape(yb - ya, _SUB, xb - xa, _SUB).mean(axis=(1, 3)) * f
        img[ya:yb, xa:xb] += stamp
        peaks[i] = stamp.max()
    return peaks


def _gauss_1d(d: np.ndarray, sigma: float) -> np.ndarray:
    s = sigma * math.sqrt(2)
    return 0.5 * (special.erf((d + 0.5) / s) - special.erf((d - 0.5) / s))


def _radius_for_level(flux: float, fwhm: float, psf: str, beta: float, level: float) -> float:
    if psf == "gaussian":
        sigma = fwhm / 2.3548
        peak = flux / (2 * math.pi * sigma**2)
        return sigma * math.sqrt(max(0.0, 2 * math.log(max(peak / level, 1.0))))
    alpha = _moffat_alpha(fwhm, beta)
    peak = flux * (beta - 1) / (math.pi * alpha**2)
    return alpha * math.sqrt(max(0.0, (max(peak / level, 1.0)) ** (1 / beta) - 1))


def _cosmic_rays(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    """Cosmic-ray charge [e-]: straight tracks with Landau-like deposits and charge diffusion."""
    ny, nx = shape
    out = np.zeros(shape, dtype=np.float64)
    if n <= 0:
        return out
    # Zenith angle with flux ~ cos^2(theta) per solid angle on a horizontal sensor (cos^3 sin).
    u_ = rng.uniform(0, 1, n)
    theta = np.arccos((1 - u_) ** 0.25)
    length_px = np.minimum(DEPLETION_UM * np.tan(theta) / PIXEL_SIZE_UM, 60.0)
    path_um = DEPLETION_UM / np.cos(np.minimum(theta, math.radians(89.0)))
    # ~75 e-/um most probable for a minimum-ionising particle, Moyal (Landau-like) tail.
    scale = np.clip(stats.moyal.rvs(loc=1.0, scale=0.18, size=n, random_state=rng), 0.5, 20.0)
    charge = path_um * 75.0 * scale
    # A few percent are low-energy electrons / alphas: short, very bright "worms" and spots.
    bright = rng.uniform(0, 1, n) < 0.05
    charge[bright] *= rng.uniform(3, 15, bright.sum())
    x0 = rng.uniform(-0.5, nx - 0.5, n)
    y0 = rng.uniform(-0.5, ny - 0.5, n)
    phi = rng.uniform(0, 2 * math.pi, n)
    xs, ys, qs = [], [], []
    for k in range(n):
        m = max(1, int(math.ceil(length_px[k] / 0.2)))
        t = (np.arange(m) + 0.5) / m - 0.5
        xs.append(x0[k] + t * length_px[k] * math.cos(phi[k]))
        ys.append(y0[k] + t * length_px[k] * math.sin(phi[k]))
        qs.append(np.full(m, charge[k] / m))
    px, py, q = np.concatenate(xs), np.concatenate(ys), np.concatenate(qs)
    # Charge diffusion: each sample spreads as a Gaussian (sigma 0.35 px) over a 3x3 neighbourhood.
    sd = 0.35 * math.sqrt(2)
    cx, cy = np.rint(px).astype(int), np.rint(py).astype(int)
    for oy in (-1, 0, 1):
        wy = 0.5 * (special.erf((cy + oy + 0.5 - py) / sd) - special.erf((cy + oy - 0.5 - py) / sd))
        for ox in (-1, 0, 1):
            wx = 0.5 * (special.erf((cx + ox + 0.5 - px) / sd) - special.erf((cx + ox - 0.5 - px) / sd))
            xx, yy = cx + ox, cy + oy
            ok = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
            np.add.at(out, (yy[ok], xx[ok]), (q * wx * wy)[ok])
    return out


def _bleed(e: np.ndarray, full_well: float) -> None:
    """Move charge above ``full_well`` up and down its column, in place (blooming).

    Each run of over-full pixels keeps ``full_well`` and its excess fills the next pixels
    outward, alternating up and down, to the full well; charge pushed past either end of the
    column is lost to the serial register.
    """
    ny = e.shape[0]
    for c in np.nonzero((e > full_well).any(axis=0))[0]:
        col = e[:, c]
        over = col > full_well
        while over.any():
            a = int(np.argmax(over))
            b = a
            while b + 1 < ny and over[b + 1]:
                b += 1
            excess = float(np.sum(col[a : b + 1] - full_well))
            col[a : b + 1] = full_well
            up, down = b + 1, a - 1
            while excess > 0 and (up < ny or down >= 0):
                for i in (up, down):
                    if 0 <= i < ny and excess > 0:
                        room = max(0.0, full_well - col[i])
                        take = min(room, excess)
                        col[i] += take
                        excess -= take
                up += 1
                down -= 1
            over = col > full_well
        e[:, c] = col


# --------------------------------------------------------------------------- FITS output


def frame_header(
    frame: RenderedFrame,
    *,
    date_obs: datetime | Time,
    mount_ra_deg: float,
    mount_dec_deg: float,
    include_wcs: bool = False,
    object_name: str | None = None,
    filter_name: str | None = None,
    telescope: str = "tenmon 60cm (simulated)",
    instrument: str = "simulated CCD",
    extra: dict | None = None,
) -> fits.Header:
    """A realistic FITS header for a rendered frame.

    ``RA``/``DEC`` (degrees) and ``OBJCTRA``/``OBJCTDEC`` (sexagesimal strings) carry where the
    *mount believes* it points; the true WCS is written only with ``include_wcs``. With an
    overscan, ``BIASSEC``/``DATASEC``/``TRIMSEC`` (1-based, inclusive, FITS order) describe it.
    """
    t = date_obs if isinstance(date_obs, Time) else Time(_utc(date_obs))
    h = fits.Header()
    h["DATE-OBS"] = (t.utc.isot, "UTC start of exposure")
    h["EXPTIME"] = (frame.exposure_s, "[s] exposure time")
    h["EXPOSURE"] = (frame.exposure_s, "[s] exposure time")
    h["IMAGETYP"] = ("Light Frame", "frame type")
    h["GAIN"] = (frame.gain, "[e-/ADU]")
    h["EGAIN"] = (frame.gain, "[e-/ADU]")
    h["RDNOISE"] = (frame.read_noise_e, "[e-] read noise")
    h["SATURATE"] = (frame.saturation_adu, "[ADU] saturation level")
    h["RA"] = (float(mount_ra_deg), "[deg] mount's idea of the pointing")
    h["DEC"] = (float(mount_dec_deg), "[deg] mount's idea of the pointing")
    c = SkyCoord(mount_ra_deg * u.deg, mount_dec_deg * u.deg)
    h["OBJCTRA"] = (c.ra.to_string(unit=u.hourangle, sep=" ", precision=2, pad=True), "mount RA (J2000)")
    h["OBJCTDEC"] = (c.dec.to_string(unit=u.deg, sep=" ", precision=1, alwayssign=True, pad=True), "mount Dec (J2000)")
    h["EQUINOX"] = 2000.0
    h["TELESCOP"] = telescope
    h["INSTRUME"] = instrument
    h["XPIXSZ"] = (PIXEL_SIZE_UM, "[um]")
    h["YPIXSZ"] = (PIXEL_SIZE_UM, "[um]")
    h["XBINNING"] = 1
    h["YBINNING"] = 1
    h["SEEING"] = (frame.fwhm_px, "[px] simulated seeing FWHM")
    if object_name:
        h["OBJECT"] = object_name
    if filter_name:
        h["FILTER"] = filter_name
    if frame.overscan_px:
        ny, nx = frame.data_shape
        h["DATASEC"] = (f"[1:{nx},1:{ny}]", "light-sensitive area")
        h["TRIMSEC"] = (f"[1:{nx},1:{ny}]", "area to keep")
        h["BIASSEC"] = (f"[{nx + 1}:{nx + frame.overscan_px},1:{ny}]", "overscan columns")
    if include_wcs:
        h.update(frame.wcs.to_header(relax=True))
    h["SIMULATD"] = (True, "rendered by tenmon.vision.render.sky")
    h["SIMSEED"] = (int(frame.extra.get("seed", -1)), "renderer seed")
    for k, v in (extra or {}).items():
        h[k] = v
    return h


def write_frame_fits(
    frame: RenderedFrame,
    path: str | os.PathLike,
    *,
    date_obs: datetime | Time,
    mount_ra_deg: float,
    mount_dec_deg: float,
    include_wcs: bool = False,
    atomic: bool = True,
    as_uint16: bool = True,
    **header_kwargs,
) -> Path:
    """Write a rendered frame as a FITS file as a CCD program would.

    Args:
        frame: the frame.
        path: destination; parent directories must exist.
        date_obs: UTC start of the exposure.
        mount_ra_deg, mount_dec_deg: where the mount believes it points [deg].
        include_wcs: also write the true WCS.
        atomic: write to a temporary name in the same directory, then rename.
        as_uint16: store as unsigned 16-bit integers (BZERO 32768) like camera software does.
        **header_kwargs: passed to :func:`frame_header`.

    Returns:
        The path written.
    """
    path = Path(path)
    header = frame_header(frame, date_obs=date_obs, mount_ra_deg=mount_ra_deg,
                          mount_dec_deg=mount_dec_deg, include_wcs=include_wcs, **header_kwargs)
    data = frame.image.astype(np.uint16) if as_uint16 else frame.image
    hdu = fits.PrimaryHDU(data=data, header=header)
    if not atomic:
        hdu.writeto(path, overwrite=True)
        return path
    atomic_write(path, lambda tmp: hdu.writeto(tmp, overwrite=True))
    return path


# --------------------------------------------------------------------------- Gaia-like tables


@dataclass(frozen=True)
class OpenClusterModel:
    """Published parameters of an open cluster, enough to model its Gaia astrometry.

    ``r50_deg`` is the radius holding half the members; ``n_members`` counts members down to
    ``g_faint``; ``pm_dispersion_masyr`` is the intrinsic proper-motion dispersion (per axis).
    """

    name: str
    ra_deg: float
    dec_deg: float
    parallax_mas: float
    pmra_masyr: float
    pmdec_masyr: float
    r50_deg: float
    n_members: int
    pm_dispersion_masyr: float
    g_bright: float
    g_faint: float
    reference: str


#: M67 (NGC 2682). Centre, parallax and mean proper motion: Cantat-Gaudin et al. 2018, A&A 618,
#: A93 (Gaia DR2 members: RA 132.846, Dec +11.814, plx 1.135 mas, pmRA* -10.986, pmDE -2.964
#: mas/yr, r50 ~0.17 deg, ~1200 members with G < 18), consistent with Gaia Collaboration
#: (Babusiaux et al.) 2018, A&A 616, A10. Intrinsic dispersion: 0.80 km/s in radial velocity
#: (Geller et al. 2015, AJ 150, 97) at ~860 pc gives ~0.2 mas/yr.
M67 = OpenClusterModel(
    name="M67 (NGC 2682)", ra_deg=132.846, dec_deg=11.814, parallax_mas=1.135, pmra_masyr=-10.986,
    pmdec_masyr=-2.964, r50_deg=0.17, n_members=1200, pm_dispersion_masyr=0.2, g_bright=10.0,
    g_faint=18.0, reference="Cantat-Gaudin et al. 2018, A&A 618, A93; Babusiaux et al. 2018, A&A 616, A10",
)

# Gaia DR3 formal uncertainties against G (Lindegren et al. 2021, A&A 649, A2, table 4, rounded):
# parallax [mas] and proper motion [mas/yr] per axis.
_GAIA_G = (9.0, 12.0, 15.0, 17.0, 19.0, 20.0, 21.0)
_GAIA_PLX_ERR = (0.02, 0.015, 0.025, 0.07, 0.2, 0.5, 1.3)
_GAIA_PM_ERR = (0.02, 0.015, 0.025, 0.07, 0.2, 0.5, 1.4)


def gaia_like_table(
    cluster: OpenClusterModel = M67,
    *,
    radius_deg: float = 1.0,
    g_limit: float | None = None,
    field_density_per_deg2: float = 2000.0,
    seed: int,
) -> Table:
    """A modelled Gaia-like astrometric table: one open cluster in a Galactic-disc field.

    *Modelled, not a Gaia extract.* Field stars: a double-exponential thin (scale height 300
    pc) plus thick (900 pc, 12 %) disc with a 2.6 kpc scale length, sampled along the line of
    sight (density x d^2), a rough luminosity function, magnitude-limited at ``g_limit``, and
    normalised to ``field_density_per_deg2`` stars per deg^2 (order of magnitude of Gaia DR3 at
    |b| ~ 30 deg, G < 18). Velocities: flat rotation curve (233 km/s) with asymmetric drift and
    velocity ellipsoids (thin 35/25/18 km/s, thick 60/45/40 km/s), seen from astropy's default
    Galactocentric Sun. Cluster members: Plummer profile of half-number radius ``r50_deg`` (all
    members within ``radius_deg``), common parallax, mean proper motion plus the intrinsic
    dispersion. Every star gets Gaia DR3-like errors for its G (Lindegren et al. 2021).

    Args:
        cluster: the cluster model (default :data:`M67`).
        radius_deg: cone radius around the cluster centre [deg].
        g_limit: faint limit [mag]; default the cluster model's ``g_faint``.
        field_density_per_deg2: field stars per deg^2 brighter than ``g_limit``.
        seed: random seed.

    Returns:
        Table with ``source_id``, ``ra``, ``dec`` [deg], ``parallax``, ``parallax_error``
        [mas], ``pmra``, ``pmra_error``, ``pmdec``, ``pmdec_error`` [mas/yr],
        ``phot_g_mean_mag`` and the truth column ``true_member`` (bool); rows shuffled.
    """
    from astropy.coordinates import Galactocentric

    rng = np.random.default_rng(seed)
    g_lim = cluster.g_faint if g_limit is None else float(g_limit)
    ra0, dec0 = cluster.ra_deg, cluster.dec_deg
    area = 2 * math.pi * (1 - math.cos(math.radians(radius_deg))) * (180 / math.pi) ** 2

    # ---- field: distances and absolute magnitudes along the line of sight
    n_field = int(rng.poisson(field_density_per_deg2 * area))
    center = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    gc = Galactocentric()
    d_grid = np.linspace(0.02, 12.0, 1200)  # kpc
    los = SkyCoord(ra=np.full_like(d_grid, ra0) * u.deg, dec=np.full_like(d_grid, dec0) * u.deg,
                   distance=d_grid * u.kpc).transform_to(gc)
    rr = np.hypot(los.x.to_value(u.kpc), los.y.to_value(u.kpc))
    zz = los.z.to_value(u.kpc)
    r0 = gc.galcen_distance.to_value(u.kpc)
    thin = np.exp(-(rr - r0) / 2.6 - np.abs(zz) / 0.3)
    thick = 0.12 * np.exp(-(rr - r0) / 2.6 - np.abs(zz) / 0.9)
    # Absolute-magnitude grid and a rough local luminosity function in G.
    m_grid = np.linspace(-2.0, 14.0, 321)
    lf = np.where(m_grid < 4.0, 10 ** (0.3 * (m_grid - 4.0)), 10 ** (0.06 * (m_grid - 4.0)))
    dm = 5 * np.log10(d_grid * 1000.0) - 5 + 0.1 * d_grid  # 0.1 mag/kpc extinction in G
    app = m_grid[None, :] + dm[:, None]
    seen = (app <= g_lim) & (app >= 6.0)
    weight = ((thin + thick) * d_grid**2)[:, None] * lf[None, :] * seen
    wflat = weight.ravel() / weight.sum()
    pick = rng.choice(wflat.size, size=n_field, p=wflat)
    di, mi = np.unravel_index(pick, weight.shape)
    dist = d_grid[di] + rng.uniform(-0.005, 0.005, n_field)
    gmag_f = app[di, mi] + rng.uniform(-0.025, 0.025, n_field)
    is_thick = rng.uniform(0, 1, n_field) < (thick[di] / (thin[di] + thick[di]))
    fra, fdec = _uniform_on_cap(rng, ra0, dec0, radius_deg, n_field)
    pos = SkyCoord(ra=fra * u.deg, dec=fdec * u.deg, distance=dist * u.kpc).transform_to(gc)
    x, y, z = (pos.x.to_value(u.kpc), pos.y.to_value(u.kpc), pos.z.to_value(u.kpc))
    phi = np.arctan2(y, x)
    # Velocity ellipsoids in (R, phi, z); rotation sense matches astropy's Sun (+y at x < 0).
    s_r = np.where(is_thick, 60.0, 35.0)
    s_p = np.where(is_thick, 45.0, 25.0)
    s_z = np.where(is_thick, 40.0, 18.0)
    lag = np.where(is_thick, 40.0, 10.0)
    v_r = rng.normal(0, 1, n_field) * s_r
    v_p = 233.0 - lag + rng.normal(0, 1, n_field) * s_p
    v_z = rng.normal(0, 1, n_field) * s_z
    vx = v_r * np.cos(phi) + v_p * np.sin(phi)
    vy = v_r * np.sin(phi) - v_p * np.cos(phi)
    moving = SkyCoord(x=x * u.kpc, y=y * u.kpc, z=z * u.kpc, v_x=vx * u.km / u.s, v_y=vy * u.km / u.s,
                      v_z=v_z * u.km / u.s, frame=gc).transform_to("icrs")
    f_pmra = moving.pm_ra_cosdec.to_value(u.mas / u.yr)
    f_pmdec = moving.pm_dec.to_value(u.mas / u.yr)
    f_plx = 1.0 / dist

    # ---- cluster members
    rmax = radius_deg
    a = cluster.r50_deg
    frac_in = rmax**2 / (rmax**2 + a**2)
    n_c = int(rng.poisson(cluster.n_members * frac_in))
    fmax = frac_in
    f = rng.uniform(0, fmax, n_c)
    r = a * np.sqrt(f / (1 - f))
    pa = rng.uniform(0, 360.0, n_c)
    mem = center.directional_offset_by(pa * u.deg, r * u.deg)
    g_c = _power_law_mags(rng, n_c, cluster.g_bright, min(cluster.g_faint, g_lim), 0.12)
    c_pmra = cluster.pmra_masyr + rng.normal(0, cluster.pm_dispersion_masyr, n_c)
    c_pmdec = cluster.pmdec_masyr + rng.normal(0, cluster.pm_dispersion_masyr, n_c)
    c_plx = np.full(n_c, cluster.parallax_mas) + rng.normal(0, 0.005, n_c)  # depth ~ few pc

    ra = np.concatenate([fra, mem.ra.deg])
    dec = np.concatenate([fdec, mem.dec.deg])
    g = np.concatenate([gmag_f, g_c])
    plx_t = np.concatenate([f_plx, c_plx])
    pmra_t = np.concatenate([f_pmra, c_pmra])
    pmdec_t = np.concatenate([f_pmdec, c_pmdec])
    member = np.concatenate([np.zeros(n_field, bool), np.ones(n_c, bool)])
    e_plx = np.interp(g, _GAIA_G, _GAIA_PLX_ERR)
    e_pm = np.interp(g, _GAIA_G, _GAIA_PM_ERR)
    n = len(ra)
    order = rng.permutation(n)
    t = Table(
        {
            "source_id": rng.choice(np.arange(10**15, 10**15 + 50 * n, dtype=np.int64), size=n, replace=False),
            "ra": ra[order],
            "dec": dec[order],
            "parallax": (plx_t + rng.normal(0, 1, n) * e_plx)[order],
            "parallax_error": e_plx[order],
            "pmra": (pmra_t + rng.normal(0, 1, n) * e_pm)[order],
            "pmra_error": e_pm[order],
            "pmdec": (pmdec_t + rng.normal(0, 1, n) * e_pm)[order],
            "pmdec_error": e_pm[order],
            "phot_g_mean_mag": g[order],
            "true_member": member[order],
        },
        meta={
            "comments": [
                f"MODELLED Gaia-like table (tenmon.vision.render.sky.gaia_like_table, seed {seed}): "
                f"{cluster.name} after {cluster.reference}; not a Gaia extract."
            ]
        },
    )
    for c, unit in (("ra", "deg"), ("dec", "deg"), ("parallax", "mas"), ("parallax_error", "mas"),
                    ("pmra", "mas/yr"), ("pmra_error", "mas/yr"), ("pmdec", "mas/yr"), ("pmdec_error", "mas/yr"),
                    ("phot_g_mean_mag", "mag")):
        t[c].unit = unit
    return t


# --------------------------------------------------------------------------- helpers


def _radec(center: SkyCoord | tuple[float, float]) -> tuple[float, float]:
    if isinstance(center, SkyCoord):
        c = center.icrs
        return float(c.ra.deg), float(c.dec.deg)
    ra, dec = center
    return float(ra) % 360.0, float(dec)


def _uniform_on_cap(rng: np.random.Generator, ra0: float, dec0: float, radius_deg: float,
                    n: int) -> tuple[np.ndarray, np.ndarray]:
    cosr = math.cos(math.radians(radius_deg))
    cos_t = rng.uniform(cosr, 1.0, n)
    t = np.degrees(np.arccos(cos_t))
    pa = rng.uniform(0, 360.0, n)
    c = SkyCoord(ra0 * u.deg, dec0 * u.deg).directional_offset_by(pa * u.deg, t * u.deg)
    return np.asarray(c.ra.deg), np.asarray(c.dec.deg)


def _power_law_mags(rng: np.random.Generator, n: int, m1: float, m2: float, slope: float) -> np.ndarray:
    # Inverse CDF of dN/dm ~ 10**(slope m) on [m1, m2].
    k = slope * math.log(10)
    if abs(k) < 1e-12:
        return rng.uniform(m1, m2, n)
    uu = rng.uniform(0, 1, n)
    return np.log(np.exp(k * m1) + uu * (np.exp(k * m2) - np.exp(k * m1))) / k


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("date_obs must be timezone-aware (UTC)")
    return t.astimezone(timezone.utc)


__all__ = [
    "RenderedFrame",
    "ClusterTruth",
    "render_star_field",
    "random_star_catalog",
    "inject_cluster",
    "simple_wcs",
    "sky_surface_brightness",
    "sky_level_adu",
    "frame_header",
    "write_frame_fits",
    "OpenClusterModel",
    "M67",
    "gaia_like_table",
]
