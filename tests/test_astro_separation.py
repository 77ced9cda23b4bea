"""tenmon's one angular separation (tenmon.core.astro) agrees with astropy's SkyCoord.separation."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from tenmon.core.astro import separation_arcsec, separation_deg


def _astropy_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    a = SkyCoord(np.asarray(ra1) * u.deg, np.asarray(dec1) * u.deg)
    b = SkyCoord(np.asarray(ra2) * u.deg, np.asarray(dec2) * u.deg)
    return np.asarray(a.separation(b).deg)


def test_arrays_agree_with_astropy_over_the_sphere():
    rng = np.random.default_rng(13)
    n = 2000
    ra1, ra2 = rng.uniform(0, 360, n), rng.uniform(0, 360, n)
    dec1 = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    dec2 = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    ours = separation_deg(ra1, dec1, ra2, dec2)
    assert isinstance(ours, np.ndarray) and ours.shape == (n,)
    assert np.max(np.abs(ours - _astropy_deg(ra1, dec1, ra2, dec2))) * 3600 < 1e-6


@pytest.mark.parametrize("ra1, dec1, ra2, dec2", [
    (10.0, 20.0, 10.0, 20.0),                   # the same point
    (10.0, 20.0, 10.0 + 1e-7, 20.0 + 1e-7),     # sub-milliarcsec (arccos fails here)
    (0.0, 0.0, 180.0, 0.0),                     # antipodes (haversine fails here)
    (0.0, 30.0, 180.0, -30.0 + 1e-6),           # nearly antipodal
    (359.9999, 89.9999, 0.0001, 89.9999),       # over RA 0 at the pole
    (123.4, -90.0, 300.0, -90.0),               # the pole: RA does not matter
    (-30.0, 45.0, 330.0, 45.0),                 # RA out of 0..360
])
def test_scalars_agree_with_astropy_at_hard_angles(ra1, dec1, ra2, dec2):
    ours = separation_deg(ra1, dec1, ra2, dec2)
    assert type(ours) is float
    assert abs(ours - float(_astropy_deg(ra1, dec1, ra2, dec2))) * 3600 < 1e-6
    assert separation_arcsec(ra1, dec1, ra2, dec2) == pytest.approx(ours * 3600, abs=1e-9)


def test_broadcasts_one_point_against_many_and_grids():
    ra = np.array([0.0, 1.0, 2.0])
    dec = np.array([0.0, 0.0, 0.0])
    assert np.allclose(separation_deg(ra, dec, 0.0, 0.0), [0.0, 1.0, 2.0])
    grid = separation_deg(ra[:, None], dec[:, None], ra[None, :], dec[None, :])
    assert grid.shape == (3, 3) and np.allclose(grid, np.abs(ra[:, None] - ra[None, :]))


def test_az_alt_pairs_are_azimuth_first():
    """(az, alt) pairs: azimuth plays longitude, altitude latitude."""
    assert separation_deg(0.0, 90.0, 180.0, 0.0) == pytest.approx(90.0)
    assert separation_deg(90.0, 45.0, 270.0, 45.0) == pytest.approx(90.0)
