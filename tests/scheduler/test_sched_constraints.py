"""Vectorised constraints: the fast path against astropy, and each constraint against a direct
computation."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_body, get_sun
from astropy.time import Time

from tenmon.scheduler.constraints import (
    AirmassConstraint,
    AltitudeConstraint,
    HorizonMask,
    HourAngleConstraint,
    MoonIlluminationConstraint,
    MoonSeparationConstraint,
    SunAltitudeConstraint,
    TimeWindowConstraint,
    compute_sky_grid,
    constraints_from_settings,
    evaluate,
    moon_illumination,
    time_grid,
)
from tenmon.scheduler.night import night_for_date
from tenmon.config.services import SchedulerSettings
from tenmon.scheduler.targets import Target

SITE = EarthLocation.from_geodetic(134.3356 * u.deg, 35.0253 * u.deg, 449 * u.m)


@pytest.fixture(scope="module")
def night():
    return night_for_date(date(2026, 11, 21), SITE)


@pytest.fixture(scope="module")
def sky(night):
    rng = np.random.default_rng(11)
    ra = rng.uniform(0, 360, 60)
    dec = np.degrees(np.arcsin(rng.uniform(-0.7, 1.0, 60)))
    unix = time_grid(night.start, night.end, 600.0)
    return (ra, dec, unix, compute_sky_grid(ra, dec, unix, SITE),
            compute_sky_grid(ra, dec, unix, SITE, method="astropy"))


def _targets(ra, dec, **kw):
    return [Target(name=f"t{i}", ra_deg=float(a), dec_deg=float(d), priority=1, exposure_s=60,
                   count=1, **kw) for i, (a, d) in enumerate(zip(ra, dec))]


def test_time_grid_is_on_whole_steps_inside_the_span(night):
    unix = time_grid(night.start, night.end, 60.0)
    assert unix[0] >= night.start.timestamp() and unix[-1] <= night.end.timestamp()
    assert unix[0] - night.start.timestamp() < 60 and night.end.timestamp() - unix[-1] < 60
    assert np.all(np.diff(unix) == 60.0) and np.all(unix % 60 == 0)
    assert time_grid(night.end, night.start).size == 0


def test_fast_path_matches_astropy(sky):
    _, _, _, fast, ref = sky
    # Angular distance between the two positions, every target x every time.
    a1, z1 = np.radians(fast.alt_deg), np.radians(fast.az_deg)
    a2, z2 = np.radians(ref.alt_deg), np.radians(ref.az_deg)
    cosd = np.sin(a1) * np.sin(a2) + np.cos(a1) * np.cos(a2) * np.cos(z1 - z2)
    dist_arcsec = np.degrees(np.arccos(np.clip(cosd, -1, 1))) * 3600
    assert dist_arcsec.max() < 2.0
    assert np.abs(fast.alt_deg - ref.alt_deg).max() * 3600 < 2.0


def test_positions_between_grid_times(sky, night):
    ra, dec, unix, fast, _ = sky
    when = unix[3] + 137.0
    alt, az = fast.altaz_at(np.arange(5), np.full(5, when))
    t = Time(when, format="unix")
    aa = SkyCoord(ra[:5] * u.deg, dec[:5] * u.deg).transform_to(AltAz(obstime=t, location=SITE))
    assert np.abs(alt - aa.alt.deg).max() * 3600 < 2.0


def test_hour_angle_matches_apparent_sidereal_time(sky):
    ra, dec, unix, fast, _ = sky
    t = Time(unix, format="unix")
    last = t.sidereal_time("apparent", longitude=SITE.lon).deg
    from astropy.coordinates import TETE

    app = SkyCoord(ra[:, None] * u.deg, dec[:, None] * u.deg).transform_to(TETE(obstime=t[None, :]))
    ha = (last[None, :] - app.ra.deg + 180) % 360 - 180
    diff = (fast.ha_deg - ha + 180) % 360 - 180
    assert np.abs(diff).max() < 1e-3  # 3.6 arcsec


def test_sun_and_moon_match_astropy(sky):
    _, _, unix, fast, _ = sky
    t = Time(unix, format="unix")
    frame = AltAz(obstime=t, location=SITE)
    assert np.allclose(fast.sun_alt_deg, get_sun(t).transform_to(frame).alt.deg, atol=1e-6)
    moon = get_body("moon", t, location=SITE).transform_to(frame)
    assert np.allclose(fast.moon_alt_deg, moon.alt.deg, atol=1e-6)


def test_moon_illumination_follows_the_phase():
    # A synodic month at 6 h steps: illumination spans new to full and matches the simple
    # elongation formula (1 - cos(elongation)) / 2 to about a percent.
    t = Time("2026-11-01T00:00:00") + np.arange(0, 30 * 24, 6) * u.hour
    k = moon_illumination(t)
    assert k.min() < 0.01 and k.max() > 0.99
    elong = get_sun(t).separation(get_body("moon", t), origin_mismatch="ignore").rad
    assert np.abs(k - (1 - np.cos(elong)) / 2).max() < 0.01


def test_horizon_mask_interpolates_and_wraps():
    mask = HorizonMask([(350.0, 40.0), (10.0, 20.0), (180.0, 10.0)])
    assert mask.min_alt_deg(0.0) == pytest.approx(30.0)          # across north
    assert mask.min_alt_deg(360.0) == pytest.approx(30.0)
    assert mask.min_alt_deg(95.0) == pytest.approx(15.0)          # halfway 10 -> 180
    assert mask.min_alt_deg(265.0) == pytest.approx(25.0)         # halfway 180 -> 350
    assert np.allclose(mask.min_alt_deg(np.array([10.0, 180.0])), [20.0, 10.0])
    assert not HorizonMask() and HorizonMask().min_alt_deg(123.0) == 0.0
    assert HorizonMask([(0, 15)]).min_alt_deg(200.0) == 15.0


def test_altitude_airmass_and_hour_angle_masks_match_direct_computation(sky):
    ra, dec, unix, fast, ref = sky
    targets = _targets(ra, dec)
    pts = [(0.0, 25.0), (90.0, 45.0), (200.0, 15.0)]
    c = AltitudeConstraint(30.0, pts)
    expected = ref.alt_deg >= np.maximum(30.0, np.interp(ref.az_deg, [0, 90, 200],
                                                         [25, 45, 15], period=360))
    got = c.mask(fast, targets)
    # Identical except where a target sits within 2" of its limit.
    close = np.abs(ref.alt_deg - np.maximum(30.0, np.interp(ref.az_deg, [0, 90, 200],
                                                            [25, 45, 15], period=360))) < 1e-3
    assert np.array_equal(got[~close], expected[~close]) and got.any() and not got.all()
    secz = 1 / np.sin(np.radians(ref.alt_deg))
    am = AirmassConstraint(1.5).mask(fast, targets)
    assert np.array_equal(am, (ref.alt_deg > 0) & (secz <= 1.5))
    ha = HourAngleConstraint(-30, 45).mask(fast, targets)
    assert np.array_equal(ha, (fast.ha_deg >= -30) & (fast.ha_deg <= 45)) and ha.any()
    with pytest.raises(ValueError):
        HourAngleConstraint(10, -10)


def test_moon_constraints_and_sun_presets(sky):
    ra, dec, unix, fast, ref = sky
    targets = _targets(ra, dec)
    t = Time(unix, format="unix")
    frame = AltAz(obstime=t, location=SITE)
    moon = get_body("moon", t, location=SITE).transform_to(frame)
    tgt = SkyCoord(ra[:, None] * u.deg, dec[:, None] * u.deg).transform_to(
        AltAz(obstime=t[None, :], location=SITE))
    sep = tgt.separation(moon[None, :]).deg
    assert np.abs(fast.moon_separation_deg - sep).max() < 1e-3
    ms = MoonSeparationConstraint(40.0).mask(fast, targets)
    assert np.array_equal(ms[np.abs(sep - 40) > 1e-3], (sep >= 40)[np.abs(sep - 40) > 1e-3])
    mi = np.broadcast_to(MoonIlluminationConstraint(0.5).mask(fast, targets), ms.shape)
    # Bright moon (~0.9 lit on 2026-11-21): the constraint fails exactly when the moon is up.
    assert np.array_equal(mi[0], fast.moon_alt_deg <= 0)
    assert SunAltitudeConstraint.twilight_civil().max_deg == -6
    assert SunAltitudeConstraint.twilight_nautical().max_deg == -12
    assert SunAltitudeConstraint.twilight_astronomical().max_deg == -18
    sun = SunAltitudeConstraint(-30).mask(fast, targets)[0]
    assert np.array_equal(sun, fast.sun_alt_deg <= -30) and sun.any() and not sun.all()


def test_time_windows_and_evaluate_reasons(sky, night):
    ra, dec, unix, fast, _ = sky
    t_mid = datetime.fromtimestamp(float(unix[len(unix) // 2]), tz=timezone.utc)
    targets = _targets(ra, dec)
    targets[0] = targets[0].model_copy(update={"window_start": t_mid})
    targets[1] = targets[1].model_copy(update={"window_end": night.start - timedelta(hours=1)})
    w = TimeWindowConstraint().mask(fast, targets)
    assert np.array_equal(w[0], unix >= t_mid.timestamp())
    assert not w[1].any() and w[2].all()
    res = evaluate(constraints_from_settings(SchedulerSettings()), fast, targets)
    assert "inside the target's time window" in res.never_met(1)
    assert res.ok.shape == (60, unix.size)
    # ok is the AND of every constraint.
    alt_ok = AltitudeConstraint(30).mask(fast, targets)
    assert not np.any(res.ok & ~alt_ok)
    with pytest.raises(ValueError):
        evaluate([], fast, targets[:3])
