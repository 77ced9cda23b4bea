"""The half-flux radius (vision/frames/hfr.py) on seeded synthetic frames whose answer is known: Moffat
stars of known width (the HFR in closed form), donuts, hot pixels, saturated stars, no stars."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tenmon.core.errors import VisionError
from tenmon.vision.frames.hfr import half_flux_radius
from tenmon.config.vision import HfrSettings


def _moffat_hfr(fwhm: float, beta: float) -> float:
    """Half-flux radius of a Moffat profile: enclosed fraction 1 - (1 + r^2/R^2)^(1 - beta)."""
    big_r = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return big_r * math.sqrt(2.0 ** (1.0 / (beta - 1.0)) - 1.0)


def _frame(seed: int, *, n: int = 40, size: int = 512, fwhm: float = 3.0, beta: float = 4.0,
           donut: float = 0.0, sky: float = 200.0, flux=(2e4, 2e5)) -> np.ndarray:
    """Stars on a sky with Poisson noise (gain 1). ``donut`` > 0: each star is a ring
    (outer Moffat minus an inner one of ``donut`` times its width), a defocused reflector's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.full((size, size), sky)
    # on a grid with jitter: well separated, so every star is measurable
    k = int(math.ceil(math.sqrt(n)))
    step = (size - 80) / k
    for i in range(n):
        x0 = 40 + step * (i % k + 0.5) + rng.uniform(-3, 3)
        y0 = 40 + step * (i // k + 0.5) + rng.uniform(-3, 3)
        f = rng.uniform(*flux)
        prof = _moffat(xx, yy, x0, y0, fwhm, beta)
        if donut:
            inner = _moffat(xx, yy, x0, y0, donut * fwhm, beta)
            prof = np.clip(prof - 0.9 * inner * (donut ** 2), 0, None)
            prof /= prof.sum()
        img += f * prof
    return rng.poisson(img).astype(np.float32)


def _moffat(xx, yy, x0, y0, fwhm, beta):
    big_r = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    p = (1.0 + ((xx - x0) ** 2 + (yy - y0) ** 2) / big_r**2) ** (-beta)
    return p / p.sum()


@pytest.mark.parametrize("fwhm", [2.0, 4.0, 8.0, 16.0])
def test_hfr_of_moffat_stars_is_the_closed_form(fwhm):
    img = _frame(1, fwhm=fwhm, beta=4.0, n=25 if fwhm > 10 else 40)
    m = half_flux_radius(img)
    want = _moffat_hfr(fwhm, 4.0)
    assert m.n_stars >= 10, m
    # the measuring circle is 4 first-pass HFRs: it holds ~99 % of a beta = 4 star
    assert m.hfr_px == pytest.approx(want, rel=0.06), (m, want)
    assert m.scatter_px < 0.1 * want


def test_hfr_grows_with_defocus_and_counts_donuts():
    sizes = [half_flux_radius(_frame(2, fwhm=f, beta=2.5, n=25)).hfr_px
             for f in (2.0, 3.0, 5.0, 8.0, 12.0)]
    assert all(b > 1.2 * a for a, b in zip(sizes, sizes[1:])), sizes
    ring = half_flux_radius(_frame(3, fwhm=12.0, beta=4.0, donut=0.5, n=25))
    disc = half_flux_radius(_frame(3, fwhm=12.0, beta=4.0, n=25))
    # a donut is one star (no deblending into pieces), larger than the disc of the same width
    assert ring.n_stars >= 15 and ring.hfr_px > disc.hfr_px, (ring, disc)


def test_hot_pixels_and_saturated_stars_are_left_out():
    img = _frame(4, fwhm=5.0, beta=4.0, n=36)
    rng = np.random.default_rng(5)
    ys, xs = rng.integers(0, 512, 200), rng.integers(0, 512, 200)
    img[ys, xs] = 30000.0          # hot pixels: sharper than any star
    clean = half_flux_radius(_frame(4, fwhm=5.0, beta=4.0, n=36))
    hot = half_flux_radius(img)
    assert hot.hfr_px == pytest.approx(clean.hfr_px, rel=0.03)
    sat = np.minimum(_frame(4, fwhm=5.0, beta=4.0, n=36, flux=(2e6, 4e6)), 20000.0)
    flat_topped = half_flux_radius(sat, saturation_adu=20000.0)
    assert flat_topped.hfr_px is None or flat_topped.n_stars == 0


def test_no_stars_is_no_hfr_and_bad_input_is_an_error():
    sky = np.random.default_rng(6).poisson(np.full((256, 256), 100.0)).astype(np.float32)
    m = half_flux_radius(sky)
    assert m.hfr_px is None and m.to_json()["hfr_px"] is None
    few = half_flux_radius(_frame(7, n=2, size=256), settings=HfrSettings(min_stars=3))
    assert few.hfr_px is None
    with pytest.raises(VisionError):
        half_flux_radius(np.zeros(10))
