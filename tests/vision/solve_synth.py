"""Synthetic plate-solving inputs for the solver tests: point sets and small rendered frames with truth."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from tenmon.vision.render.sky import simple_wcs
from tenmon.vision.solve.base import SolveHint, describe_wcs
from tenmon.core.astro import separation_deg
from tenmon.vision.solve.catalogs import SimulatedSky


@dataclass
class Case:
    sources: Table
    shape: tuple[int, int]
    hint: SolveHint
    wcs: WCS
    truth: dict
    n_stars: int


def offset_hint(rng: np.random.Generator, ra: float, dec: float, max_off_deg: float, scale: float,
                scale_err: float = 0.04) -> SolveHint:
    """A hint up to ``max_off_deg`` away from (ra, dec), with the scale off by up to ``scale_err``."""
    pa = rng.uniform(0, 2 * math.pi)
    off = max_off_deg * math.sqrt(rng.uniform(0, 1))
    hra = ra + off * math.sin(pa) / math.cos(math.radians(dec))
    hdec = dec + off * math.cos(pa)
    return SolveHint(hra % 360, hdec, radius_deg=max_off_deg + 0.01,
                     scale_arcsec=scale * rng.uniform(1 - scale_err, 1 + scale_err), scale_tolerance=0.05)


def point_case(seed: int, sky: SimulatedSky, *, shape=(2048, 2048), scale=0.32, n_bright: int = 200,
               noise_px: float = 0.15, n_artifacts: int = 10, max_off_deg: float = 5 / 60,
               wcs: WCS | None = None, dec_range=(-60.0, 85.0)) -> Case:
    """Catalogue stars seen through a known WCS: the brightest ``n_bright`` of the frame, centroid
    noise, spurious sources (log-uniform fluxes) mixed in; any rotation and parity."""
    rng = np.random.default_rng(seed)
    if wcs is None:
        ra, dec = rng.uniform(0, 360), rng.uniform(*dec_range)
        wcs = simple_wcs((ra, dec), shape=shape, pixel_scale_arcsec=scale, rotation_deg=rng.uniform(0, 360),
                         flip=bool(rng.integers(2)))
    truth = describe_wcs(wcs, shape)
    stars = sky.stars_for_wcs(wcs, shape, margin_px=0)
    xy = wcs.all_world2pix(np.column_stack([stars["ra"], stars["dec"]]), 0)
    ny, nx = shape
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= nx - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= ny - 1)
    xy, mag = xy[inside][:n_bright], np.asarray(stars["mag"])[inside][:n_bright]
    xy = xy + rng.normal(0, noise_px, xy.shape)
    flux = 10 ** (-0.4 * (mag - 25))
    if n_artifacts:
        lo, hi = (np.log10(flux.min()), np.log10(flux.max())) if len(flux) else (0.0, 1.0)
        xy = np.vstack([xy, rng.uniform(0, [nx - 1, ny - 1], (n_artifacts, 2))])
        flux = np.concatenate([flux, 10 ** rng.uniform(lo, hi, n_artifacts)])
    src = Table({"x": xy[:, 0], "y": xy[:, 1], "flux": flux})
    hint = offset_hint(rng, truth["ra_deg"], truth["dec_deg"], max_off_deg, truth["scale_arcsec"])
    return Case(src, shape, hint, wcs, truth, int(inside.sum()))


def centre_error_arcsec(result, truth: dict) -> float:
    return float(separation_deg(np.array([result.ra_deg]), np.array([result.dec_deg]),
                                      truth["ra_deg"], truth["dec_deg"])[0] * 3600.0)


def angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)
