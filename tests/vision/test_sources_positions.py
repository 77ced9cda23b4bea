"""Position accuracy of extract_sources against the truth and the Cramer-Rao bound (small frames)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table
from scipy.spatial import cKDTree

from tenmon.vision.render import sky as sr
from tenmon.vision.frames import sources as src


def _grid_frame(seed, *, n=256, step=21, mag=(17.0, 19.3), fwhm=2.5, psf="moffat", pairs_px=None):
    """Stars on a jittered grid (random sub-pixel phases), no cosmics or defects; optionally a
    companion of equal brightness ``pairs_px`` away from every other grid star."""
    rng = np.random.default_rng(seed)
    w = sr.simple_wcs((150.0, 20.0), shape=(n, n), pixel_scale_arcsec=0.32)
    g = np.arange(step, n - step + 1, step, dtype=float)
    xx, yy = np.meshgrid(g, g)
    x = xx.ravel() + rng.uniform(-0.5, 0.5, xx.size)
    y = yy.ravel() + rng.uniform(-0.5, 0.5, xx.size)
    m = rng.uniform(*mag, x.size)
    if pairs_px is not None:
        ang = rng.uniform(0, 2 * math.pi, x.size)[::2]
        x, y, m = (np.concatenate([x, x[::2] + pairs_px * np.cos(ang)]),
                   np.concatenate([y, y[::2] + pairs_px * np.sin(ang)]), np.concatenate([m, m[::2]]))
    ra, dec = w.all_pix2world(x, y, 0)
    cat = Table({"ra": ra, "dec": dec, "mag": m})
    return sr.render_star_field(wcs=w, stars=cat, shape=(n, n), fwhm_px=fwhm, psf=psf, n_cosmic_rays=0,
                                n_hot_pixels=0, bad_columns=(), seed=seed + 1)


def _crlb(f, tr, h=10):
    """Per-axis Cramer-Rao bound [px] of each star (the renderer's own PSF, the true noise)."""
    out = np.full(len(tr), np.nan)
    ny, nx = f.noise_adu.shape
    for k, (x, y, fl) in enumerate(zip(tr["x"], tr["y"], tr["flux_adu"])):
        cx, cy = int(round(x)), int(round(y))
        if cx - h < 0 or cy - h < 0 or cx + h + 1 > nx or cy + h + 1 > ny:
            continue
        st = []
        for d in (-0.01, 0.01):
            img = np.zeros((2 * h + 1, 2 * h + 1))
            sr._add_stars(img, np.array([x - cx + h + d]), np.array([y - cy + h]), np.array([fl]), f.fwhm_px,
                          f.extra["psf"], f.extra["moffat_beta"])
            st.append(img)
        der = (st[1] - st[0]) / 0.02
        out[k] = 1.0 / math.sqrt(np.sum(der**2 / f.noise_adu[cy - h : cy + h + 1, cx - h : cx + h + 1] ** 2))
    return out


def _match(t, tr):
    d, i = cKDTree(np.column_stack([t["x"], t["y"]])).query(np.column_stack([tr["x"], tr["y"]]))
    return d, i, np.asarray(t["x"])[i] - tr["x"], np.asarray(t["y"])[i] - tr["y"]


def test_renderer_places_stars_where_its_truth_says():
    # The noise-free image's first moment around each isolated star is its true (0-based) position.
    f = _grid_frame(601, mag=(15.0, 16.0))
    tr = f.stars[f.stars["in_frame"]]
    h = 8
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    off = []
    for x, y in zip(tr["x"], tr["y"]):
        cx, cy = int(round(x)), int(round(y))
        st = f.star_adu[cy - h : cy + h + 1, cx - h : cx + h + 1].astype(np.float64)
        off.append(((xx * st).sum() / st.sum() + cx - x, (yy * st).sum() / st.sum() + cy - y))
    assert np.max(np.abs(off)) < 0.01


@pytest.mark.parametrize("psf,fwhm", [("moffat", 2.3), ("gaussian", 2.8)])
def test_bright_stars_have_no_pixel_phase_bias(psf, fwhm):
    # SNR ~200-600: photon noise is ~0.005 px, so what remains is systematic (pixel-phase bias of
    # the estimator, or an offset in the 0-based convention).
    f = _grid_frame(610 + int(10 * fwhm), mag=(14.5, 15.5), fwhm=fwhm, psf=psf)
    t = src.extract_sources(f.image, gain=f.gain, saturation_adu=f.saturation_adu)
    tr = f.stars[f.stars["in_frame"] & ~f.stars["saturated"]]
    d, _, dx, dy = _match(t, tr)
    ok = d < 1.0
    assert ok.sum() >= 80
    assert abs(np.mean(dx[ok])) < 0.005 and abs(np.mean(dy[ok])) < 0.005  # no convention offset
    assert math.sqrt(np.mean(dx[ok] ** 2 + dy[ok] ** 2)) < 0.02


def test_faint_isolated_stars_reach_the_cramer_rao_bound():
    # SNR ~8-60 on four small frames: the radial rms must be within 10 % of the photon-noise bound
    # (windowed centroids alone were 2-4 % above it on the benchmark frames, isophotal ones ~2x), and below 0.1 px.
    sq = bound = sq20 = 0.0
    n = n20 = 0
    for seed, (psf, fwhm) in zip((620, 621, 622, 623), (("moffat", 2.3), ("gaussian", 2.5), ("moffat", 2.6),
                                                        ("moffat", 2.2))):
        f = _grid_frame(seed, mag=(17.0, 19.0), fwhm=fwhm, psf=psf)
        t = src.extract_sources(f.image, gain=f.gain, saturation_adu=f.saturation_adu)
        tr = f.stars[f.stars["in_frame"] & (f.stars["snr"] >= 10)]
        d, i, dx, dy = _match(t, tr)
        ok = (d < 1.5) & (np.asarray(t["flags"])[i] == 0)
        assert ok.mean() > 0.95
        c = _crlb(f, tr)
        ok &= np.isfinite(c)
        sq += float(np.sum(dx[ok] ** 2 + dy[ok] ** 2))
        bound += float(np.sum(2 * c[ok] ** 2))
        n += int(ok.sum())
        hi = ok & (np.asarray(tr["snr"]) >= 20)
        sq20 += float(np.sum(dx[hi] ** 2 + dy[hi] ** 2))
        n20 += int(hi.sum())
    assert n > 250 and n20 > 50, (n, n20)
    print(f"radial rms {math.sqrt(sq / n):.4f} px, bound {math.sqrt(bound / n):.4f} px ({n} stars); "
          f"SNR >= 20: {math.sqrt(sq20 / n20):.4f} px ({n20})")
    rms, crlb = math.sqrt(sq / n), math.sqrt(bound / n)
    assert rms <= 1.10 * crlb, (rms, crlb)
    # In absolute terms: the bound itself is ~0.1 px here (most stars sit near SNR 10, where it is
    # ~0.17 px radial), so 0.1 px is only asked of the stars above SNR 20.
    assert math.sqrt(sq20 / n20) <= 0.08, math.sqrt(sq20 / n20)


def test_psf_fit_undoes_the_pull_of_a_deblended_neighbour():
    # Equal pairs 2 FWHM apart (deblended by sep): windowed centroids are pulled towards the
    # neighbour; the simultaneous PSF fit subtracts it.
    f = _grid_frame(630, n=320, step=32, mag=(15.5, 16.0), fwhm=2.5, pairs_px=2.0 * 2.5)
    tr = f.stars[f.stars["in_frame"] & ~f.stars["saturated"]]
    out = {}
    for fit in (False, True):
        t = src.extract_sources(f.image, gain=f.gain, saturation_adu=f.saturation_adu,
                                settings=src.SourceSettings(psf_fit=fit))
        d, _, dx, dy = _match(t, tr)
        ok = d < 1.5
        assert ok.mean() > 0.9
        out[fit] = math.sqrt(np.mean(dx[ok] ** 2 + dy[ok] ** 2))
    print(out)
    assert out[True] < 0.05, out
    assert out[True] < 0.5 * out[False], out
