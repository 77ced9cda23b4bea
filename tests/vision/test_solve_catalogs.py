"""Catalogue providers: the deterministic simulated sky, local files, the Gaia disk cache (no network)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table

from tenmon.core.astro import separation_deg
from tenmon.vision.render.sky import render_star_field, simple_wcs
from tenmon.vision.solve.catalogs import (
    CatalogError,
    GaiaCatalog,
    LocalFileCatalog,
    SimulatedSky,
)


def test_simulated_sky_is_deterministic_and_cones_agree():
    a = SimulatedSky(seed=3).cone(120.0, 40.0, 0.2)
    b = SimulatedSky(seed=3).cone(120.0, 40.0, 0.2)
    assert len(a) > 100 and np.array_equal(a["ra"], b["ra"]) and np.array_equal(a["mag"], b["mag"])
    # A smaller cone off-centre inside the first holds exactly the same stars there.
    small = SimulatedSky(seed=3).cone(120.05, 40.03, 0.05)
    d = separation_deg(np.asarray(a["ra"]), np.asarray(a["dec"]), 120.05, 40.03)
    assert len(small) == int((d <= 0.05).sum()) > 0
    assert set(np.round(small["ra"], 9)) <= set(np.round(a["ra"], 9))
    assert np.all(np.diff(np.asarray(a["mag"])) >= 0)  # brightest first
    assert not np.array_equal(SimulatedSky(seed=4).cone(120.0, 40.0, 0.2)["ra"][:5], a["ra"][:5])


@pytest.mark.parametrize("ra, dec", [(0.01, 10.0), (359.99, -10.0), (45.0, 89.95), (200.0, -89.9), (10.0, 0.0)])
def test_simulated_sky_density_everywhere(ra, dec):
    sky = SimulatedSky(seed=1, density_per_deg2=30000.0)
    r = 0.1
    t = sky.cone(ra, dec, r)
    expected = 30000.0 * 2 * math.pi * (1 - math.cos(math.radians(r))) * (180 / math.pi) ** 2
    assert abs(len(t) - expected) < 5 * math.sqrt(expected)
    assert np.all(separation_deg(np.asarray(t["ra"]), np.asarray(t["dec"]), ra, dec) <= r)


def test_simulated_sky_magnitudes_follow_the_law():
    t = SimulatedSky(seed=2, mag_bright=10, mag_faint=21, count_slope=0.3).cone(80.0, 20.0, 0.5)
    mags = np.asarray(t["mag"])
    assert mags.min() >= 10 and mags.max() <= 21
    # dN/dm ~ 10**(0.3 m): one magnitude fainter has 10**0.3 ~ 2x the stars.
    n19, n20 = np.sum((mags >= 19) & (mags < 20)), np.sum((mags >= 20) & (mags < 21))
    assert n20 / n19 == pytest.approx(10**0.3, rel=0.1)


def test_the_ccd_renders_the_catalogue_stars():
    sky = SimulatedSky(seed=9)
    shape = (256, 256)
    w = simple_wcs((33.0, -12.0), shape=shape, pixel_scale_arcsec=2.0, rotation_deg=20.0)
    stars = sky.stars_for_wcs(w, shape)
    frame = render_star_field(wcs=w, stars=stars, shape=shape, seed=1, n_cosmic_rays=0, n_hot_pixels=0)
    on = frame.stars[frame.stars["in_frame"]]
    cone = sky.cone(33.0, -12.0, 0.2)
    assert len(on) > 20
    assert set(np.round(on["ra"], 9)) <= set(np.round(cone["ra"], 9))


@pytest.mark.parametrize("suffix, fmt", [(".ecsv", "ascii.ecsv"), (".fits", "fits"), (".csv", "ascii.csv")])
def test_local_file_catalogues(tmp_path, suffix, fmt):
    src = SimulatedSky(seed=5).cone(10.0, 20.0, 0.3)
    t = Table({"RA": src["ra"], "Dec": src["dec"], "MAG": src["mag"]})
    path = tmp_path / f"stars{suffix}"
    t.write(path, format=fmt)
    cat = LocalFileCatalog(path)
    got = cat.cone(10.0, 20.0, 0.1, mag_limit=19.0)
    d = separation_deg(np.asarray(src["ra"]), np.asarray(src["dec"]), 10.0, 20.0)
    assert len(got) == int(((d <= 0.1) & (np.asarray(src["mag"]) <= 19.0)).sum())
    assert got.colnames == ["ra", "dec", "mag"]


def test_local_file_errors_name_the_file(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        LocalFileCatalog(tmp_path / "none.ecsv").cone(0, 0, 1)
    bad = tmp_path / "stars.ecsv"
    Table({"ra": [1.0], "dec": [2.0]}).write(bad)
    with pytest.raises(CatalogError, match=r"stars.ecsv: catalogue lacks column\(s\) mag"):
        LocalFileCatalog(bad).cone(1, 2, 1)
    other = tmp_path / "stars.txt"
    other.write_text("ra dec mag\n")
    with pytest.raises(CatalogError, match="unknown catalogue format"):
        LocalFileCatalog(other).cone(1, 2, 1)
    with pytest.raises(CatalogError, match="radius"):
        SimulatedSky().cone(0, 0, 0)


def test_gaia_cones_inside_a_cached_one_never_reach_the_network(tmp_path, monkeypatch):
    cache = tmp_path / "gaia"
    gaia = GaiaCatalog(cache, mag_limit=18.0, timeout_s=1.0)
    stars = SimulatedSky(seed=6, mag_faint=18.0).cone(150.0, 2.0, 0.5)
    gaia._store(stars, 150.0, 2.0, 0.5, 18.0, truncated=False)

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(GaiaCatalog, "_query", no_network)
    got = gaia.cone(150.1, 2.05, 0.2, mag_limit=17.0)
    d = separation_deg(np.asarray(stars["ra"]), np.asarray(stars["dec"]), 150.1, 2.05)
    assert len(got) == int(((d <= 0.2) & (np.asarray(stars["mag"]) <= 17.0)).sum()) > 0
    # Outside the cached cone it would have to ask the archive.
    with pytest.raises(AssertionError, match="network"):
        gaia.cone(152.0, 2.0, 0.2)
