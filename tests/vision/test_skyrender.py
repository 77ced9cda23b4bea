"""The synthetic CCD renderer: determinism, truth that matches the pixels, defects, FITS output."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from tenmon.vision.render import sky as sr

CENTER = (150.0, 20.0)


def _wcs(n=256, scale=0.32, rot=0.0):
    return sr.simple_wcs(CENTER, shape=(n, n), pixel_scale_arcsec=scale, rotation_deg=rot)


def _one_star(w, dx_px=0.3, dy_px=-0.2, mag=14.0):
    x = (w.pixel_shape[0] - 1) / 2 + dx_px
    y = (w.pixel_shape[1] - 1) / 2 + dy_px
    ra, dec = w.all_pix2world([[x, y]], 0)[0]
    return Table({"ra": [ra], "dec": [dec], "mag": [mag]}), x, y


def test_same_seed_same_frame_and_different_seed_differs():
    w = _wcs()
    cat = sr.random_star_catalog(CENTER, 0.03, density_per_deg2=50000, seed=1)
    a = sr.render_star_field(wcs=w, stars=cat, shape=(256, 256), seed=5)
    b = sr.render_star_field(wcs=w, stars=cat, shape=(256, 256), seed=5)
    c = sr.render_star_field(wcs=w, stars=cat, shape=(256, 256), seed=6)
    assert a.image.dtype == np.float32
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
    assert np.array_equal(a.stars["x"], c.stars["x"])  # positions come from the WCS, not the seed


@pytest.mark.parametrize("psf", ["moffat", "gaussian"])
def test_star_truth_matches_the_rendered_light(psf):
    w = _wcs()
    cat, x, y = _one_star(w)
    f = sr.render_star_field(wcs=w, stars=cat, shape=(256, 256), psf=psf, fwhm_px=2.5, n_cosmic_rays=0,
                             n_hot_pixels=0, bad_columns=(), seed=3)
    row = f.stars[0]
    assert row["x"] == pytest.approx(x, abs=1e-6) and row["y"] == pytest.approx(y, abs=1e-6)
    light = f.star_adu.astype(np.float64)
    yy, xx = np.mgrid[: light.shape[0], : light.shape[1]]
    assert np.sum(light * xx) / light.sum() == pytest.approx(x, abs=0.01)
    assert np.sum(light * yy) / light.sum() == pytest.approx(y, abs=0.01)
    # Total flux: the zero point, gain and exposure; truncation of the wings costs < 1 %.
    expected = 60.0 * 10 ** (-0.4 * (14.0 - 22.5)) / 1.5
    assert row["flux_adu"] == pytest.approx(expected, rel=1e-9)
    assert light.sum() == pytest.approx(expected, rel=0.01)
    # Half-light radius of a Gaussian is FWHM/2; a Moffat(4) of the same FWHM is wider.
    r = np.hypot(xx - x, yy - y).ravel()
    order = np.argsort(r)
    r_half = r[order][np.searchsorted(np.cumsum(light.ravel()[order]), light.sum() / 2)]
    if psf == "gaussian":
        assert r_half == pytest.approx(1.25, abs=0.12)
    else:
        assert 1.3 < r_half < 1.7


def test_snr_follows_the_ccd_equation_and_noise_matches():
    w = _wcs()
    cat, _, _ = _one_star(w, mag=18.0)
    f = sr.render_star_field(wcs=w, stars=cat, shape=(256, 256), psf="gaussian", sky_adu=500.0, gain=2.0,
                             read_noise_e=5.0, n_cosmic_rays=0, n_hot_pixels=0, bad_columns=(), seed=4)
    row = f.stars[0]
    frac = 1 - math.exp(-(2.5**2) / (2 * (2.5 / (2 * math.sqrt(2 * math.log(2)))) ** 2))
    sig = row["flux_e"] * frac
    npix = math.pi * 2.5**2
    dark = 0.002 * 60
    assert row["snr"] == pytest.approx(sig / math.sqrt(sig + npix * (1000.0 + dark + 25.0)), rel=1e-9)
    # Away from the star the pixel scatter is the model noise (Poisson sky + read noise, ADC rounding).
    corner = f.image[:80, :80]
    assert np.std(corner) == pytest.approx(math.sqrt(1000.0 + dark + 25.0) / 2.0, rel=0.05)
    assert np.median(corner) == pytest.approx(500.0, abs=1.0)


def test_cosmic_truth_mask_is_where_the_deposit_beats_the_noise():
    w = _wcs()
    f = sr.render_star_field(wcs=w, stars=Table({"ra": [], "dec": [], "mag": []}), shape=(256, 256),
                             n_cosmic_rays=40, n_hot_pixels=0, bad_columns=(), seed=8)
    assert f.n_cosmic_rays == 40
    assert np.array_equal(f.cosmic_mask, f.cosmic_adu > 3.0 * f.noise_adu)
    assert f.cosmic_mask.sum() >= 40  # every ray leaves at least one significant pixel
    # The deposit is in the image: cosmic-ray pixels stand far above the sky.
    assert np.median(f.image[f.cosmic_mask]) > 800.0 + 5 * np.median(f.noise_adu)


def test_default_cosmic_ray_count_scales_with_exposure():
    w = _wcs(512)
    empty = Table({"ra": [], "dec": [], "mag": []})
    short = [sr.render_star_field(wcs=w, stars=empty, shape=(512, 512), exposure_s=30, seed=s).n_cosmic_rays
             for s in range(5)]
    long_ = [sr.render_star_field(wcs=w, stars=empty, shape=(512, 512), exposure_s=600, seed=s).n_cosmic_rays
             for s in range(5)]
    area = 512 * 512 * (13.5e-4) ** 2
    assert np.mean(long_) == pytest.approx(sr.COSMIC_RATE_PER_CM2_S * area * 600, rel=0.3)
    assert np.mean(long_) > 5 * np.mean(short)


def test_hot_pixels_bad_column_saturation_and_bleeding():
    w = _wcs()
    cat, x, y = _one_star(w, mag=8.0)  # far above the full well
    f = sr.render_star_field(wcs=w, stars=cat, shape=(256, 256), n_cosmic_rays=0, n_hot_pixels=30,
                             bad_columns=(40,), exposure_s=120, seed=9)
    assert f.stars["saturated"][0]
    sat = f.saturated_mask
    assert sat.any() and f.image.max() == 65535.0
    ys, xs = np.nonzero(sat)
    assert (ys.max() - ys.min()) > 3 * (xs.max() - xs.min() + 1)  # blooming runs along the column
    hot = f.hot_pixels
    assert hot.shape == (30, 2)
    assert np.median(f.image[hot[:, 0], hot[:, 1]]) > np.median(f.image) + 3 * np.median(f.noise_adu)
    assert f.bad_columns == (40,)
    colmed = np.median(f.image, axis=0)
    assert colmed[40] > np.median(colmed) + 100


def test_overscan_bias_and_header(tmp_path):
    w = _wcs(128)
    cat, _, _ = _one_star(w, mag=15)
    f = sr.render_star_field(wcs=w, stars=cat, shape=(128, 128), bias_adu=1000.0, overscan_px=16, seed=2,
                             n_cosmic_rays=0)
    assert f.image.shape == (128, 144) and f.data_shape == (128, 128)
    assert np.median(f.image[:, 128:]) == pytest.approx(1000.0, abs=1.0)
    t = datetime(2026, 11, 21, 14, 30, tzinfo=timezone.utc)
    p = sr.write_frame_fits(f, tmp_path / "a.fits", date_obs=t, mount_ra_deg=150.05, mount_dec_deg=19.98,
                            object_name="field", filter_name="V")
    with fits.open(p) as h:
        hd = h[0].header
        data = h[0].data
    assert data.dtype.kind in "ui" and np.array_equal(data.astype(np.float32), f.image)
    assert hd["DATE-OBS"].startswith("2026-11-21T14:30:00")
    assert hd["EXPTIME"] == 60.0 and hd["GAIN"] == 1.5 and hd["RDNOISE"] == 8.0
    assert hd["RA"] == 150.05 and hd["DEC"] == 19.98
    assert hd["OBJCTRA"] == "10 00 12.00" and hd["OBJCTDEC"] == "+19 58 48.0"
    assert hd["BIASSEC"] == "[129:144,1:128]" and hd["TRIMSEC"] == "[1:128,1:128]"
    assert "CTYPE1" not in hd  # the true WCS only on request
    assert not list(tmp_path.glob(".tmp-*"))  # atomic write left nothing behind
    p2 = sr.write_frame_fits(f, tmp_path / "b.fits", date_obs=t, mount_ra_deg=150.05, mount_dec_deg=19.98,
                             include_wcs=True)
    w2 = WCS(fits.getheader(p2))
    assert np.allclose(w2.all_pix2world([[10.0, 20.0]], 0), w.all_pix2world([[10.0, 20.0]], 0), atol=1e-9)
    with pytest.raises(ValueError):
        sr.write_frame_fits(f, tmp_path / "c.fits", date_obs=datetime(2026, 1, 1), mount_ra_deg=0, mount_dec_deg=0)


def test_random_catalog_density_magnitudes_and_footprint():
    cat = sr.random_star_catalog(CENTER, 0.2, density_per_deg2=20000, mag_bright=12, mag_faint=20, seed=11)
    area = 2 * math.pi * (1 - math.cos(math.radians(0.2))) * (180 / math.pi) ** 2
    assert abs(len(cat) - 20000 * area) < 5 * math.sqrt(20000 * area)
    assert cat["mag"].min() >= 12 and cat["mag"].max() <= 20
    assert np.all(cat["cluster_id"] == -1)
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    sep = SkyCoord(cat["ra"] * u.deg, cat["dec"] * u.deg).separation(SkyCoord(*CENTER, unit="deg")).deg
    assert sep.max() <= 0.2
    # dN/dm ~ 10**(0.3 m): each magnitude holds about twice the previous one.
    n19 = np.sum((cat["mag"] >= 18) & (cat["mag"] < 19))
    n17 = np.sum((cat["mag"] >= 16) & (cat["mag"] < 17))
    assert 2.5 < n19 / n17 < 6.5
    with pytest.raises(ValueError):
        sr.random_star_catalog(CENTER, -1, seed=1)


def test_injected_cluster_members_are_within_the_radius_with_truth():
    base = sr.random_star_catalog(CENTER, 0.1, density_per_deg2=5000, seed=12)
    cat, truth = sr.inject_cluster(base, center=(150.01, 20.01), n_members=200, seed=13)
    assert len(cat) == len(base) + 200 and truth.n_members == 200
    members = cat[cat["cluster_id"] == truth.cluster_id]
    assert len(members) == 200 and truth.cluster_id == 0
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    sep = SkyCoord(members["ra"] * u.deg, members["dec"] * u.deg).separation(
        SkyCoord(150.01 * u.deg, 20.01 * u.deg)).deg
    assert sep.max() <= 1 / 60 + 1e-9
    assert np.mean(sep <= truth.half_number_radius_deg) == pytest.approx(0.5, abs=0.1)


def test_sky_brightness_moon_and_twilight():
    dark = sr.sky_surface_brightness(target_alt_deg=90)
    assert dark == pytest.approx(21.5, abs=0.01)
    low = sr.sky_surface_brightness(target_alt_deg=30)
    assert low < dark  # brighter towards the horizon
    moon = sr.sky_surface_brightness(target_alt_deg=60, moon_alt_deg=50, moon_separation_deg=30,
                                     moon_phase_angle_deg=0)
    assert moon < dark - 2.0  # a full moon 30 deg away brightens the sky by magnitudes
    dusk = [sr.sky_surface_brightness(target_alt_deg=70, sun_alt_deg=h) for h in (-17, -14, -11, -8)]
    assert all(a > b for a, b in zip(dusk, dusk[1:]))
    level = sr.sky_level_adu(21.0, pixel_scale_arcsec=0.5, exposure_s=100, zero_point_mag=22.5, gain=2.0)
    assert level == pytest.approx(10 ** (0.4 * 1.5) * 0.25 * 100 / 2.0)


def test_gaia_like_table_models_m67_in_a_field():
    t = sr.gaia_like_table(radius_deg=0.5, seed=21)
    cols = {"source_id", "ra", "dec", "parallax", "parallax_error", "pmra", "pmra_error", "pmdec",
            "pmdec_error", "phot_g_mean_mag", "true_member"}
    assert cols <= set(t.colnames)
    m = t[t["true_member"]]
    f = t[~t["true_member"]]
    assert 300 < len(m) < 1200 and len(f) > len(m)
    assert np.median(m["parallax"]) == pytest.approx(1.135, abs=0.02)
    assert np.median(m["pmra"]) == pytest.approx(-10.986, abs=0.05)
    assert np.median(m["pmdec"]) == pytest.approx(-2.964, abs=0.05)
    assert np.std(f["pmra"]) > 10 * np.std(m["pmra"])  # the field is kinematically hot
    assert t["phot_g_mean_mag"].max() <= 18.05
    assert np.all(np.diff(np.interp([12, 15, 17, 19], sr._GAIA_G, sr._GAIA_PLX_ERR)) > 0)
    assert "not a Gaia extract" in " ".join(t.meta["comments"])
    again = sr.gaia_like_table(radius_deg=0.5, seed=21)
    assert np.array_equal(t["pmra"], again["pmra"])
