"""Labels the daemon knows (SiteLabeller), the labels file, the azimuth correction and the
adaptation's scoring rules (pure; no torch)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from tenmon.core.errors import ConfigError
from tenmon.vision.slit.adapt import (AzimuthCorrection, choose_state_threshold, label_read_state,
                                      score, worse)
from tenmon.vision.slit.labels import (FrameLabel, LabellerSettings, LabelWriter, SiteLabeller,
                                       read_labels, write_labels)
from tenmon.vision.slit.reading import SlitReading

T0 = datetime(2026, 11, 21, 13, tzinfo=timezone.utc)


def _run(lab: SiteLabeller, t0: float, t1: float, dt: float = 0.1, **relays) -> float:
    t = t0
    while t < t1 - 1e-9:
        lab.observe(t, **relays)
        t += dt
    lab.observe(t1, **relays)
    return t1


def test_slit_labels_follow_the_relays():
    lab = SiteLabeller(LabellerSettings(travel_time_s=20.0))
    assert lab.label(0.0) is None  # nothing known yet
    # a full close (relay on for more than the travel): closed, whatever was before
    t = _run(lab, 0.0, 22.0, slit_relay=-1)
    assert lab.label(t - 1).state == "moving" and lab.label(t - 1).open_fraction is None
    t = _run(lab, t, t + 1.0, slit_relay=0)
    l0 = lab.label(t)
    assert (l0.state, l0.open_fraction) == ("closed", 0.0)
    # a timed partial open from the known end: 5 s of 20 -> 0.25
    t = _run(lab, t, t + 5.0, slit_relay=1)
    mid = lab.label(t - 2.5)
    assert mid.state == "moving" and mid.open_fraction == pytest.approx(0.125, abs=0.01)
    t = _run(lab, t, t + 1.0, slit_relay=0)
    part = lab.label(t)
    assert part.state == "partial" and part.open_fraction == pytest.approx(0.25, abs=0.01)
    # a stopped open of unknown length: the driver verifies it open
    t = _run(lab, t, t + 12.0, slit_relay=1)
    t = _run(lab, t, t + 1.0, slit_relay=0)
    assert lab.label(t).state == "partial"  # 0.25 + 12/20 = 0.85: timed
    lab.verified(t, "open")
    assert (lab.label(t).state, lab.label(t).open_fraction) == ("open", 1.0)


def test_pseudo_labels_need_a_confident_reading_that_the_relays_agree_with():
    lab = SiteLabeller(LabellerSettings(travel_time_s=20.0))
    # an open of unknown start, stopped early: no state known
    t = _run(lab, 0.0, 3.0, slit_relay=1)
    t = _run(lab, t, t + 1.0, slit_relay=0)
    assert lab.label(t) is None
    sure_open = SlitReading(T0, 10.0, 1.0, "open", 0.95, details={"state_confidence": 0.999})
    sure_closed = SlitReading(T0, 10.0, 0.0, "closed", 0.95, details={"state_confidence": 0.999})
    unsure_open = SlitReading(T0, 10.0, 1.0, "open", 0.6, details={"state_confidence": 0.999})
    assert lab.label(t, sure_open).state == "open"       # the last motion was an open
    assert "pseudo-label" in lab.label(t, sure_open).extra["why"]
    assert lab.label(t, sure_closed) is None             # disagrees with the relays
    assert lab.label(t, unsure_open) is None             # not confident


def test_dome_azimuth_after_homing_and_timed_rotations():
    s = LabellerSettings(dome_speed_deg_s=3.0, dome_spinup_s=1.5, dome_coast_s=1.0, settle_s=3.0,
                         max_azimuth_sd_deg=1.0)
    lab = SiteLabeller(s)
    t = _run(lab, 0.0, 5.0)
    assert lab.label(t) is None  # never homed: no azimuth
    lab.homed(t, 350.0)
    assert lab.label(t).azimuth_deg == pytest.approx(350.0)
    # 10 s clockwise: 3 * (10 - 1.5 (1 - e^-6.67)) = 25.5 deg, then the coast ~3 deg
    t = _run(lab, t, t + 10.0, dome_relay=1)
    assert lab.label(t) is None  # turning: no azimuth
    t = _run(lab, t, t + 1.0, dome_relay=0)
    assert lab.label(t) is None  # coasting
    t = _run(lab, t, t + 3.0, dome_relay=0)
    v_end = 3.0 * (1 - np.exp(-10 / 1.5))
    want = (350.0 + 3.0 * (10 - 1.5 * (1 - np.exp(-10 / 1.5))) + v_end * 1.0) % 360
    got = lab.label(t).azimuth_deg
    assert abs((got - want + 180) % 360 - 180) < 0.05
    # many rotations later the uncertainty is too large: no azimuth label
    for _ in range(6):
        t = _run(lab, t, t + 30.0, dome_relay=-1)
        t = _run(lab, t, t + 4.0, dome_relay=0)
    assert lab.facts(t)["azimuth_sd_deg"] > 1.0 and lab.label(t) is None


def test_labels_file_round_trip_and_errors(tmp_path):
    w = LabelWriter(tmp_path / "c")
    img = np.full((20, 30, 3), 100, np.uint8)
    w.write("a.png", img, FrameLabel(Path(""), "partial", 0.4, 123.4567))
    w.write("b.png", img, FrameLabel(Path(""), None, None, 5.0))
    lines = (tmp_path / "c" / "labels.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["image"] == "frames/a.png"  # relative to the labels file
    got = read_labels(tmp_path / "c" / "labels.jsonl")
    assert [g.state for g in got] == ["partial", None]
    assert got[0].image == tmp_path / "c" / "frames" / "a.png" and got[0].image.is_file()
    assert got[0].azimuth_deg == pytest.approx(123.457)
    write_labels(tmp_path / "copy.jsonl", got)
    assert [g.image for g in read_labels(tmp_path / "copy.jsonl")] == [g.image for g in got]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png", "state": "ajar"}\n')
    with pytest.raises(ConfigError, match="bad.jsonl:1: state"):
        read_labels(bad)
    bad.write_text('{"image": "x.png"}\n{"image": "y.png", "open_fraction": 1.5}\n')
    with pytest.raises(ConfigError, match="bad.jsonl:2: open_fraction"):
        read_labels(bad)


def test_azimuth_correction_fits_a_smooth_bend_through_outliers():
    rng = np.random.default_rng(3)
    az = rng.uniform(0, 360, 300)
    bend = 0.8 + 1.5 * np.sin(np.radians(az)) - 0.7 * np.cos(np.radians(2 * az))
    res = bend + rng.normal(0, 0.5, az.size)
    res[:15] += rng.uniform(-8, 8, 15)  # wrong labels
    c = AzimuthCorrection.fit(az, res)
    grid = np.arange(0, 360, 5.0)
    truth = 0.8 + 1.5 * np.sin(np.radians(grid)) - 0.7 * np.cos(np.radians(2 * grid))
    assert np.max(np.abs(c(grid) - truth)) < 0.3
    assert not AzimuthCorrection().active and AzimuthCorrection().__call__(10.0) == 0.0


def test_state_threshold_is_where_stated_states_are_right():
    probs = np.array([0.99, 0.98, 0.97, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6])
    right = np.array([1, 1, 1, 1, 1, 0, 1, 0, 1], bool)
    t = choose_state_threshold(probs, right)
    assert t == pytest.approx(0.9)   # above it every guess was right
    assert choose_state_threshold(probs[:3], right[:3], default=0.97) == 0.97  # too few to judge


def test_score_and_worse():
    labels = [FrameLabel(Path("a"), "open", 1.0, 10.0), FrameLabel(Path("b"), "closed", 0.0, 20.0),
              FrameLabel(Path("c"), "moving", 0.5, None), FrameLabel(Path("d"), None, None, 40.0)]
    assert [label_read_state(x) for x in labels] == ["open", "closed", "partial", None]
    good = [SlitReading(T0, 10.2, 1.0, "open", 0.9), SlitReading(T0, 20.1, 0.0, "closed", 0.9),
            SlitReading(T0, 30.0, 0.5, "partial", 0.9), SlitReading(T0, 40.3, None, "unknown", 0.9)]
    bad = [SlitReading(T0, 10.2, 0.0, "closed", 0.9), SlitReading(T0, 30.0, 1.0, "open", 0.9),
           SlitReading(T0, None, None, "unknown", 0.0), SlitReading(T0, 40.3, None, "unknown", 0.9)]
    sg, sb = score(good, labels), score(bad, labels)
    assert sg["state_accuracy"] == 1.0 and sg["state_coverage"] == 1.0 and sg["confidently_wrong"] == 0
    assert sb["state_wrong"] == 2 and sb["confidently_wrong"] == 1  # closed at 30 for 20: 10 deg off
    assert worse(sg, sb) == [] and worse(sb, sg)
