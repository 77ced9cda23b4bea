"""Header facts from any observatory's keywords: what was read, from which keyword, and what was not."""

from __future__ import annotations

import math

from astropy.io import fits

from tenmon.archive.headers import read_facts


def _h(**cards) -> fits.Header:
    h = fits.Header()
    for k, v in cards.items():
        h[k.replace("_", "-") if k in ("DATE_OBS", "MJD_OBS", "TIME_OBS", "DATE_AVG") else k] = v
    return h


def test_modern_header_with_degrees():
    f = read_facts(_h(DATE_OBS="2026-01-02T13:00:00", EXPTIME=60.0, RA=150.0, DEC=20.0, GAIN=1.5,
                      FILTER="V", OBJECT="M67", TELESCOP="60cm", SITELONG=134.3356))
    assert f.keywords["time"] == "DATE-OBS" and f.keywords["pointing"] == "RA/DEC"
    assert math.isclose(f.mjd_start, 61042.541666667, abs_tol=1e-8)
    assert math.isclose(f.mjd_mid - f.mjd_start, 30 / 86400, rel_tol=1e-6)
    assert (f.ra_deg, f.dec_deg, f.gain_e_per_adu, f.filter, f.object) == (150.0, 20.0, 1.5, "V", "M67")
    assert "time" not in f.missing and "gain" not in f.missing
    assert f.night() == "2026-01-02"          # 22:00 local at 134 E: the evening of the 2nd
    assert f.night(longitude_deg=-70.0) == "2026-01-01"  # 08:20 local in Chile: the night before


def test_older_camera_header_mjd_exposure_sexagesimal_egain():
    f = read_facts(_h(MJD_OBS=61042.5, EXPOSURE=120.0, OBJCTRA="10 00 01.0", OBJCTDEC="-20 00 36", EGAIN=2.2,
                      FILTNAM="R"))
    assert f.keywords == {"time": "MJD-OBS", "exptime_s": "EXPOSURE", "filter": "FILTNAM",
                          "gain": "EGAIN", "pointing": "OBJCTRA/OBJCTDEC"}
    assert math.isclose(f.ra_deg, 150.0041667, abs_tol=1e-6) and math.isclose(f.dec_deg, -20.01, abs_tol=1e-9)
    assert math.isclose(f.mjd_mid, 61042.5 + 60 / 86400, abs_tol=1e-9)
    assert set(f.missing) >= {"object", "telescope", "site_lon"}
    assert f.missing["object"][0] == "OBJECT"


def test_pre_2000_date_with_time_obs_and_string_ra():
    f = read_facts(_h(DATE_OBS="21/11/89", TIME_OBS="13:30:00", ITIME=30, RA="05:35:17.3", DEC="-05:23:28"))
    assert f.date_obs.startswith("1989-11-21T13:30:00")
    assert f.keywords["exptime_s"] == "ITIME"
    assert math.isclose(f.ra_deg, 83.822083, abs_tol=1e-5) and f.dec_deg < -5.39


def test_nothing_is_guessed():
    f = read_facts(_h(DATE_OBS="2026-01-02", DATE="2026-01-05T10:00:00", EXPTIME="long", RA=400.0, DEC=95.0))
    # a date alone is no time, and DATE (when the file was written) is never used
    assert f.mjd_mid is None and not f.has_time and f.night() is None
    assert "time" in f.missing and any(p.startswith("DATE-OBS") for p in f.problems)
    assert f.exptime_s is None and any(p.startswith("EXPTIME") for p in f.problems)
    assert f.ra_deg is None and any("outside" in p for p in f.problems)


def test_jd_and_mid_exposure_keywords():
    f = read_facts(_h(JD=2461042.0, EXPTIME=10.0))
    assert f.keywords["time"] == "JD" and math.isclose(f.mjd_start, 61041.5, abs_tol=1e-9)
    g = read_facts(_h(DATE_AVG="2026-01-02T13:00:00", EXPTIME=100.0))
    assert math.isclose(g.mjd_mid, 61042.541666667, abs_tol=1e-8)
    assert math.isclose(g.mjd_mid - g.mjd_start, 50 / 86400, rel_tol=1e-6)
    h = read_facts(_h(MJD_OBS=61042.5))
    assert any("no exposure time" in p for p in h.problems) and h.mjd_mid == 61042.5
