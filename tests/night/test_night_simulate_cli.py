"""`tenmon simulate`: arguments, weather scripts (with errors that name the problem), and a tiny
night end to end through the command with --json."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

import pytest

from tenmon.cli import simulate
from tenmon.cli.simulate import SimulateError, load_weather_script
from tenmon.config.loader import simulated_config_path


def _parser():
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    sub = p.add_subparsers()
    simulate.register(sub)
    return p


def test_weather_scripts(tmp_path):
    t = tmp_path / "w.toml"
    t.write_text('[[event]]\nafter_s = 600\ncondition = "rain"\n\n'
                 '[[event]]\nat_utc = 2026-11-21T14:00:00Z\ncondition = "wind"\nwind_ms = 22\n')
    steps = load_weather_script(t)
    assert steps[0].condition == "rain" and steps[0].after_s == 600
    assert steps[1].at_utc == datetime(2026, 11, 21, 14, tzinfo=timezone.utc)
    assert steps[1].wind_ms == 22
    j = tmp_path / "w.json"
    j.write_text(json.dumps([{"at_utc": "2026-11-21T13:00:00Z", "condition": "humid"}]))
    assert load_weather_script(j)[0].condition == "humid"
    bad = [
        ([{"after_s": 1, "condition": "snow"}], "event 1: condition 'snow'"),
        ([{"after_s": 1, "at_utc": "2026-11-21T13:00:00Z", "condition": "rain"}],
         "exactly one of after_s and at_utc"),
        ([{"after_s": 1, "condition": "rain", "speed": 3}], "unknown key(s) speed"),
        ([{"after_s": -5, "condition": "rain"}], "after_s must be >= 0"),
        ({"after_s": 1}, "must be a list"),
    ]
    for data, words in bad:
        j.write_text(json.dumps(data))
        with pytest.raises(SimulateError) as info:
            load_weather_script(j)
        assert words in str(info.value) and str(j) in str(info.value)
    with pytest.raises(SimulateError, match="not valid TOML"):
        t.write_text("[[event]\n")
        load_weather_script(t)
    with pytest.raises(SimulateError, match="cannot read"):
        load_weather_script(tmp_path / "missing.toml")


def test_arguments_and_refusals(tmp_path):
    p = _parser()
    args = p.parse_args(["simulate", "--night", "2026-11-21", "--speed", "120",
                         "--restart-at", "16:30", "--restart-at", "01:00", "--json"])
    assert args.speed == 120 and args.json and args.night.isoformat() == "2026-11-21"
    assert simulate._restart_time("16:30", args.night) == datetime(2026, 11, 21, 16, 30,
                                                                   tzinfo=timezone.utc)
    assert simulate._restart_time("01:00", args.night).day == 22
    with pytest.raises(SystemExit):
        p.parse_args(["simulate", "--night", "21/11/2026"])
    with pytest.raises(SimulateError, match="--restart-at"):
        simulate._restart_time("half past", args.night)
    with pytest.raises(SimulateError, match="--frame-px 1000"):
        simulate.camera_for(1000)
    args = p.parse_args(["simulate", "--night", "2026-11-21", "--speed", "-1"])
    with pytest.raises(SimulateError, match="--speed"):
        args.func(args)
    used = tmp_path / "used"
    used.mkdir()
    (used / "tenmon.sqlite").write_bytes(b"")
    args = p.parse_args(["simulate", "--night", "2026-11-21", "--data-dir", str(used)])
    with pytest.raises(SimulateError, match="already holds a simulation"):
        args.func(args)


@pytest.mark.slow
def test_a_tiny_night_through_the_command(tmp_path, capsys):
    # a site where the nautical night lasts about an hour, as a config file
    text = simulated_config_path().read_text()
    text = text.replace("latitude_deg = 35.0253", "latitude_deg = 54.3").replace(
        "longitude_deg = 134.3356", "longitude_deg = 0.0")
    cfg = tmp_path / "site.toml"
    cfg.write_text(text)
    w = tmp_path / "weather.json"
    w.write_text(json.dumps([{"at_utc": "2026-06-21T23:40:00Z", "condition": "rain"},
                             {"at_utc": "2026-06-21T23:45:00Z", "condition": "clear"}]))
    p = _parser()
    args = p.parse_args(["--config", str(cfg), "simulate", "--night", "2026-06-21", "--fast",
                         "--observe-twilight", "nautical", "--frame-px", "512",
                         "--n-targets", "6", "--exposure-s", "30", "--count", "2",
                         "--tick-s", "0.5", "--margin-min", "5", "--weather", str(w),
                         "--data-dir", str(tmp_path / "state"), "--json"])
    code = args.func(args)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    r = json.loads(out[0])
    assert code == 0, r["errors"]
    assert r["opened_utc"] and r["closed_utc"] and r["targets_observed"] >= 1
    assert r["frames"] >= 2 and r["frames_solved"] == r["frames"]
    assert r["safety_closes"] == 1 and r["weather_lost_s"] >= 300
    assert r["simulation"]["tick_s"] == 0.5 and r["simulation"]["data_dir"] == str(
        tmp_path / "state")
    assert {"late", "tick_duration", "late_while_processing"} <= set(r["tick_latency"])
