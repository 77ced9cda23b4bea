"""A whole (short) simulated night through the daemon: opens after dusk when safe, observes,
closes within the slit's travel time when rain comes, reopens when clear while still dark, closes
before dawn; every frame processed and solved; a crash and restart in the middle loses nothing.

The site is at 54.3 N at midsummer, where the nautical night lasts about an hour, so the whole
night runs in well under a minute with simulated time waiting for the frame pool (speed 0).
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta, timezone

import astropy.units as u
import pytest
from astropy.coordinates import EarthLocation
from astropy.io import fits

from tenmon.cli.simulate import SimulationOptions, WeatherStep, run_simulated_night
from tenmon.config.services import NightSettings, SchedulerSettings, SequencerSettings
from tenmon.scheduler.night import night_for_date
from tenmon.config.vision import (CatalogSettings, CosmicSettings, PipelineSettings,
                                  ProductSettings, SolverSettings)

SITE = (54.3, 0.0, 50.0)
NIGHT = date(2026, 6, 21)
LOC = EarthLocation.from_geodetic(SITE[1] * u.deg, SITE[0] * u.deg, SITE[2] * u.m)


def _utc(h, m, day=22):
    return datetime(2026, 6, day, h, m, tzinfo=timezone.utc)


def short_night_options(tmp_path, **kw) -> SimulationOptions:
    """Options of the short test night (small frames, no LA Cosmic: the frame pipeline has its
    own tests; here the daemon's night is under test)."""
    sections = {
        "scheduler": SchedulerSettings(observe_twilight="nautical"),
        "pipeline": PipelineSettings(cosmics=CosmicSettings(enabled=False),
                                     products=ProductSettings(clean_fits=False, mask_fits=False,
                                                              preview=False, regions=False)),
        "solver": SolverSettings(order=["hinted"], pointing_error_deg=0.1,
                                 catalog=CatalogSettings(provider="simulated")),
        # reopening after rain waits out the observatory's hold-off (safety.reopen_after_s,
        # 600 s by default, shared by every open path)
        "night": NightSettings(sequencer=SequencerSettings(reopen_min_dark_s=600)),
    }
    base = dict(night=NIGHT, speed=0.0, site=SITE, frame_px=512, n_targets=10, exposure_s=60.0,
                count=3, tick_s=0.2, before_s=600.0, after_s=300.0, progress=False,
                data_dir=tmp_path / "state", files_dir=tmp_path / "files", sections=sections)
    base.update(kw)
    return SimulationOptions(**base)


@pytest.mark.slow
def test_a_night_with_rain_and_a_crash(tmp_path):
    rain, clear = _utc(0, 0), _utc(0, 8)
    crash = datetime(2026, 6, 21, 23, 50, tzinfo=timezone.utc)
    opts = short_night_options(tmp_path, weather=[WeatherStep("rain", at_utc=rain),
                                                  WeatherStep("clear", at_utc=clear)],
                               restart_at=[crash])
    r = run_simulated_night(opts)
    dusk = night_for_date(NIGHT, LOC, "nautical")
    for key in ("opened_utc", "closed_utc", "targets_observed", "frames", "frames_solved",
                "safety_closes", "weather_lost_s", "errors"):
        assert key in r
    assert r["errors"] == []
    opened = datetime.fromisoformat(r["opened_utc"])
    closed = datetime.fromisoformat(r["closed_utc"])
    assert dusk.start <= opened < dusk.start + timedelta(minutes=3)  # after dusk, at once: safe
    assert closed < dusk.end  # before dawn
    # rain: one safety close, the slit closed within its travel time; reopened while dark
    assert r["safety_closes"] == 1 and "rain" in r["safety_close_reasons"][0]
    assert r["slit_closed_after_s"][0] <= 60.0 + 2.0
    assert r["reopens"] == 1
    shower = (clear - rain).total_seconds()
    # + safe for safety.reopen_after_s (600 s), + opening
    assert shower + 600 <= r["weather_lost_s"] <= shower + 600 + 120
    # observed, every frame processed and solved, nothing lost in the crash
    assert r["targets_observed"] >= 6
    assert r["frames"] >= 20
    assert r["frames"] == r["frames_processed"] == r["frames_solved"]
    assert r["frames_unprocessed"] == 0 and r["simulation"]["restarts"] == 1
    db = sqlite3.connect(opts.data_dir / "tenmon.sqlite")
    paths = [p for (p,) in db.execute("SELECT path FROM frames")]
    assert len(paths) == len(set(paths)) == r["frames"]
    on_disk = sorted((opts.files_dir / "frames").glob("*.fits"))
    assert sorted(map(str, on_disk)) == sorted(paths)
    assert db.execute("SELECT COUNT(*) FROM solves WHERE solved = 1").fetchone()[0] == r["frames"]
    kinds = [k for (k,) in db.execute("SELECT kind FROM night_log ORDER BY id")]
    assert "resume" in kinds
    # the dome was slaved: every exposure saw the sky through the open slit
    assert all(fits.getheader(p)["LIGHTFR"] == 1.0 for p in on_disk)
    # centring: the first frame of a block is up to arcminutes off; the check frame after the
    # correction is within the centring tolerance (10")
    corrected = [t["centre_arcsec"] for t in r["targets"] if len(t["centre_arcsec"]) >= 2]
    assert corrected and all(c[-1] < 10.0 for c in corrected)
    assert max(c[0] for c in corrected) > 30.0
    # no target observed twice
    outcomes = {t["target"]: t["outcomes"] for t in r["targets"]}
    assert all(o.count("observed") <= 1 for o in outcomes.values())
    assert r["tick_latency"]["tick_duration"]["n"] > 10000
