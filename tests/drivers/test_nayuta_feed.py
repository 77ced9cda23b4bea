"""Nayuta's slit-viewer feeds: the watched directory (newest complete frame only) and the simulated feed."""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tenmon.core.clock import FakeClock
from tenmon.drivers.nayuta_feed import (NayutaDirectoryFeed, SimulatedNayutaFeed, make_feed,
                                        read_slit_viewer_frame)
from tenmon.config.services import NayutaFeedSettings, SimulatedSlitViewerSettings
from tenmon.core.errors import DeviceError
from tenmon.vision import nayuta as N
from tenmon.core.astro import separation_deg

T0 = datetime(2026, 11, 21, 13, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def sim_feed():
    return SimulatedNayutaFeed(SimulatedSlitViewerSettings(sky_seed=5, seed=9))


@pytest.fixture(scope="module")
def target(sim_feed):
    return sim_feed.nearest_star(200.0, 35.0)


def test_simulated_feed_shows_the_target_on_the_slit(sim_feed, target):
    ra, dec, mag = target
    assert 11.0 <= mag <= 16.0
    f = sim_feed(ra, dec, T0)
    t = f.truth
    assert f.image.shape == (600, 1050) and t.target_mag == pytest.approx(mag)
    assert separation_deg(np.array([t.target_ra_deg]), np.array([t.target_dec_deg]), ra, dec)[0] < 1e-9
    # the target sits on the slit within the guiding jitter (0.15" rms)
    g = N.find_slit(f.image)
    assert g.found
    _, across = g.to_slit(*t.target_xy)
    assert abs(float(across)) * 0.4 < 0.6
    # the header says where Nayuta *reports* it points: off by its own pointing error
    rep = separation_deg(np.array([f.header["RA"]]), np.array([f.header["DEC"]]), ra, dec)[0] * 3600
    assert 0.0 < rep < 100.0 and f.hint.scale_arcsec == 0.4 and f.hint.radius_deg * 3600 >= 3 * 20.0 - 1e-9
    assert f.exposure_s == 10.0 and f.date_obs == T0


def test_simulated_frames_change_with_time_but_are_reproducible(sim_feed, target):
    ra, dec, _ = target
    a = sim_feed(ra, dec, T0)
    b = sim_feed(ra, dec, T0)
    c = sim_feed(ra, dec, T0 + timedelta(seconds=12))
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    assert a.truth.target_xy != c.truth.target_xy  # guiding jitter
    assert (a.header["RA"], a.header["DEC"]) == (c.header["RA"], c.header["DEC"])  # pointing error per target


def test_a_target_where_the_sky_has_no_star_is_added_for_both_telescopes():
    feed = SimulatedNayutaFeed(SimulatedSlitViewerSettings(sky_seed=5, target_mag=13.5))
    ra, dec = 10.123456, -5.4321
    before = feed.sky.cone(ra, dec, 1 / 3600)
    f = feed(ra, dec, T0)
    assert len(before) == 0 and f.truth.target_mag == pytest.approx(13.5)
    # the 60 cm's simulated CCD renders feed.sky: the star is there
    after = feed.sky.cone(ra, dec, 1 / 3600)
    assert len(after) == 1 and float(after["mag"][0]) == pytest.approx(13.5)


def test_simulated_feed_rejects_naive_times(sim_feed, target):
    with pytest.raises(ValueError, match="timezone"):
        sim_feed(target[0], target[1], datetime(2026, 11, 21, 13, 0))
    with pytest.raises(DeviceError, match="no star"):
        sim_feed.nearest_star(200.0, 35.0, mag_bright=5.0, mag_faint=6.0)


def test_directory_feed_delivers_the_newest_complete_frame_only(tmp_path, sim_feed, target):
    ra, dec, _ = target
    clock = FakeClock(T0)
    feed = NayutaDirectoryFeed(NayutaFeedSettings(type="directory", directory=tmp_path, stable_s=1.0), clock=clock)
    assert feed.poll() is None
    old = sim_feed.write(tmp_path, ra, dec, T0 - timedelta(seconds=30), name="sv-001.fits")
    new = sim_feed.write(tmp_path, ra, dec, T0 - timedelta(seconds=15), name="sv-002.fits")
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (1_000_100, 1_000_100))
    # a frame being written: half its bytes, under a name that matches the pattern
    half = tmp_path / "sv-003.fits"
    half.write_bytes(new.read_bytes()[: 2880 * 3])
    os.utime(half, (1_000_200, 1_000_200))
    assert feed.poll() is None  # first sight: not steady yet
    clock.advance(1.5)
    got = feed.poll()
    assert got is not None and got.path == new and feed.skipped == 1
    assert got.hint.ra_deg == pytest.approx(new_header_ra(new)) and got.hint.scale_arcsec == 0.4
    assert got.exposure_s == 10.0 and got.gain == 1.5
    assert feed.poll() is None  # delivered once; the half-written one never
    clock.advance(5.0)
    assert feed.poll() is None
    assert feed.is_stale(got) is False
    clock.advance(200.0)
    assert feed.is_stale(got) is True


def new_header_ra(path) -> float:
    from astropy.io import fits

    return float(fits.getheader(path)["RA"])


def test_directory_feed_reads_frames_the_locator_can_use(tmp_path, sim_feed, target):
    ra, dec, _ = target
    path = sim_feed.write(tmp_path, ra, dec, T0)
    f = read_slit_viewer_frame(path)
    loc = N.locate_target(f.image, sv_exposure_s=f.exposure_s, sv_gain=f.gain)
    assert loc.target.found
    assert math.hypot(loc.target.x - f.header["SIMTX"], loc.target.y - f.header["SIMTY"]) < 0.3


def test_missing_directory_is_a_device_error(tmp_path):
    feed = NayutaDirectoryFeed(NayutaFeedSettings(type="directory", directory=tmp_path / "nope"))
    with pytest.raises(DeviceError, match="nayuta.*does not exist"):
        feed.poll()
    with pytest.raises(DeviceError, match="nayuta"):
        read_slit_viewer_frame(tmp_path / "absent.fits")


def test_settings_and_factory(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        NayutaFeedSettings(type="directory")
    with pytest.raises(ValueError):
        NayutaFeedSettings(typo=1)
    assert isinstance(make_feed(NayutaFeedSettings()), SimulatedNayutaFeed)
    assert isinstance(make_feed(NayutaFeedSettings(type="directory", directory=tmp_path)), NayutaDirectoryFeed)
