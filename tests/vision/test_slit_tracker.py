"""The slit tracker: circular filtering, velocity, outliers, restarts, opening/closing, honesty."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tenmon.vision.slit.tracker import SlitTracker, TrackerSettings
from tenmon.vision.slit.reading import SlitReading, angle_diff

T0 = datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc)


def _r(t: float, az: float | None, frac: float | None = 1.0, state: str = "open", conf: float = 0.9):
    if az is None:
        return SlitReading.unknown(T0 + timedelta(seconds=t))
    return SlitReading(time=T0 + timedelta(seconds=t), azimuth_deg=az % 360.0, open_fraction=frac,
                       state=state, confidence=conf)


def test_steady_rotation_gives_position_and_velocity_across_the_seam():
    rng = np.random.default_rng(1)
    tr = SlitTracker()
    out = None
    for k in range(100):  # 20 s at 5 Hz, 2 deg/s from 330 through 0/360 to 10
        t = k * 0.2
        out = tr.update(_r(t, 330.0 + 2.0 * t + rng.normal(0, 0.3)))
    assert out.state == "open"
    assert out.angular_velocity_deg_s == pytest.approx(2.0, abs=0.15)
    assert abs(angle_diff(out.azimuth_deg, (330.0 + 2.0 * 19.8) % 360)) < 0.5
    assert out.details["rotating"] is True
    assert out.confidence > 0.5


def test_a_wild_reading_is_rejected_and_does_not_move_the_track():
    tr = SlitTracker()
    for k in range(20):
        tr.update(_r(k * 0.2, 100.0))
    out = tr.update(_r(4.0, 250.0))  # one wrong frame
    assert abs(angle_diff(out.azimuth_deg, 100.0)) < 0.2
    assert tr.rejected == 1
    out = tr.update(_r(4.2, 100.1))
    assert abs(angle_diff(out.azimuth_deg, 100.0)) < 0.3


def test_consistent_outliers_restart_the_track():
    tr = SlitTracker(TrackerSettings(restart_after=3))
    for k in range(10):
        tr.update(_r(k * 0.2, 40.0))
    outs = [tr.update(_r(2.0 + k * 0.2, 200.0)) for k in range(3)]
    assert abs(angle_diff(outs[-1].azimuth_deg, 200.0)) < 0.5


def test_unknown_after_the_readings_stop_and_confidence_decays_before():
    tr = SlitTracker(TrackerSettings(stale_s=5.0))
    for k in range(10):
        tr.update(_r(k * 0.2, 10.0))
    fresh = tr.current(T0 + timedelta(seconds=2.0))
    older = tr.update(_r(5.0, None))  # the camera sees nothing (tube across, lights off)
    assert older.state == "open" and older.confidence < fresh.confidence
    gone = tr.update(_r(8.0, None))
    assert gone.state == "unknown" and gone.azimuth_deg is None and gone.confidence == 0.0


def test_low_confidence_readings_are_ignored():
    tr = SlitTracker(TrackerSettings(min_confidence=0.5))
    out = tr.update(_r(0.0, 90.0, conf=0.2))
    assert out.state == "unknown"
    out = tr.update(_r(0.2, 91.0, conf=0.8))
    assert out.azimuth_deg == pytest.approx(91.0)


@pytest.mark.parametrize("direction", [1, -1])
def test_opening_and_closing_come_from_the_fraction_rate(direction):
    tr = SlitTracker()
    out = None
    for k in range(25):  # 5 s, 0.05 per second
        t = k * 0.2
        f = 0.3 + direction * 0.05 * t
        out = tr.update(_r(t, 180.0, frac=f, state="partial"))
    assert out.state == ("opening" if direction > 0 else "closing")
    still = SlitTracker()
    for k in range(25):
        out = still.update(_r(k * 0.2, 180.0, frac=0.5, state="partial"))
    assert out.state == "partial"
    assert out.angular_velocity_deg_s == pytest.approx(0.0, abs=0.05)


def test_old_readings_do_not_rewind_the_track():
    tr = SlitTracker()
    tr.update(_r(1.0, 50.0))
    out = tr.update(_r(0.5, 70.0))
    assert out.azimuth_deg == pytest.approx(50.0)


def test_frames_that_cannot_tell_the_state_move_the_azimuth_and_carry_the_state():
    tr = SlitTracker()
    for k in range(10):  # seen open at 120 deg
        tr.update(_r(k * 0.2, 120.0))
    out = None
    for k in range(40):  # then the tube hides the slit's far end while the dome turns at 1 deg/s
        t = 2.0 + k * 0.2
        out = tr.update(_r(t, 120.0 + (t - 2.0), frac=None, state="unknown"))
    assert abs(angle_diff(out.azimuth_deg, 120.0 + 7.8)) < 0.5
    assert out.angular_velocity_deg_s == pytest.approx(1.0, abs=0.15)
    assert out.state == "open" and out.open_fraction == 1.0
    assert out.details["state_age_s"] == pytest.approx(9.8 - 1.8, abs=0.01)
    # a closing seen once, then hidden: no rate is claimed from old frames
    closing = SlitTracker()
    for k in range(15):
        closing.update(_r(k * 0.2, 50.0, frac=0.8 - 0.05 * k * 0.2, state="partial"))
    last = closing.current(T0 + timedelta(seconds=2.8))
    assert last.state == "closing"
    for k in range(30):
        out = closing.update(_r(3.0 + k * 0.2, 50.0, frac=None, state="unknown"))
    assert out.state == "partial" and out.open_fraction == last.open_fraction


def test_a_track_begun_without_a_state_gives_the_azimuth_and_an_unknown_state():
    tr = SlitTracker()
    out = tr.update(_r(0.0, 200.0, frac=None, state="unknown"))
    assert out.state == "unknown" and out.azimuth_deg == pytest.approx(200.0)
    assert out.open_fraction is None
    out = tr.update(_r(0.2, 200.0, frac=0.0, state="closed"))
    assert out.state == "closed"
