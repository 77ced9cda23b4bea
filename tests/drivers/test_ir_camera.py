"""IR camera frame sources (OpenCV capture, file replay) and the encoder's settings model."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from tenmon.core.clock import FakeClock
from tenmon.drivers.ir_camera import (EncoderSettings, FileReplaySource, OpenCVCapture, open_source,
                                      read_image)
from tenmon.core.errors import ConfigError, DeviceDisconnected, DeviceNotFound, VisionError


def _write_frames(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"frame_{i:03d}.png"
        cv2.imwrite(str(p), np.full((24, 32, 3), 40 * i, np.uint8))
        os.utime(p, (1_700_000_000 + i, 1_700_000_000 + i))
        paths.append(p)
    (folder / "notes.txt").write_text("not an image")
    return paths


def test_replay_reads_a_folder_in_name_order_with_file_timestamps(tmp_path):
    _write_frames(tmp_path / "f")
    with FileReplaySource(tmp_path / "f") as src:
        frames = list(src)
    assert [f.index for f in frames] == [1, 2, 3]
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 40, 80]
    assert frames[0].time == datetime.fromtimestamp(1_700_000_000, tz=timezone.utc)
    assert all(f.time.tzinfo is not None for f in frames)
    with pytest.raises(StopIteration):
        src.open()
        for _ in range(4):
            src.read()


def test_replay_loops_and_can_stamp_with_the_clock(tmp_path):
    _write_frames(tmp_path / "f", 2)
    clock = FakeClock()
    src = FileReplaySource(tmp_path / "f", loop=True, clock=clock, stamp_with_clock=True)
    src.open()
    a = src.read()
    clock.advance(0.2)
    b = src.read()
    c = src.read()
    assert (b.time - a.time).total_seconds() == pytest.approx(0.2)
    assert int(c.image[0, 0, 0]) == int(a.image[0, 0, 0])


def test_missing_sources_are_named(tmp_path):
    with pytest.raises(DeviceNotFound, match="video77"):
        OpenCVCapture("/dev/video77").open()
    with pytest.raises(DeviceNotFound, match="nothing-here"):
        open_source(str(tmp_path / "nothing-here"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeviceNotFound, match="no images"):
        FileReplaySource(tmp_path / "empty").open()
    with pytest.raises(VisionError, match="not a readable image"):
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"garbage")
        read_image(bad)


def test_opencv_capture_of_a_stream_stamps_frames_and_reports_its_end(tmp_path):
    # a video file is the stand-in for a stream: OpenCV opens both the same way
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    assert writer.isOpened()
    for i in range(4):
        writer.write(np.full((48, 64, 3), 50 * i, np.uint8))
    writer.release()
    clock = FakeClock()
    cap = OpenCVCapture(str(path), clock=clock)
    cap.open()
    frames = []
    for _ in range(4):
        frames.append(cap.read())
        clock.advance(0.2)
    assert frames[0].image.shape == (48, 64, 3)
    assert (frames[-1].time - frames[0].time).total_seconds() == pytest.approx(0.6)
    with pytest.raises(DeviceDisconnected):
        cap.read()
    cap.close()
    with pytest.raises(DeviceDisconnected):
        cap.read()


def test_open_source_picks_the_backend(tmp_path):
    _write_frames(tmp_path / "f", 1)
    assert isinstance(open_source(str(tmp_path / "f")), FileReplaySource)
    assert isinstance(open_source("/dev/video0"), OpenCVCapture)
    assert isinstance(open_source("rtsp://192.0.2.1/stream"), OpenCVCapture)
    assert isinstance(open_source("0"), OpenCVCapture)


def test_encoder_settings(tmp_path):
    s = EncoderSettings()
    assert s.device == "/dev/video0" and s.detector.threads == 1
    with pytest.raises(ValidationError):
        EncoderSettings(devcie="/dev/video1")
    with pytest.raises(ValidationError):
        EncoderSettings(calibration={"center_x": 1, "center_y": 2})  # horizon_radius missing
    cal = {"center_x": 320, "center_y": 240, "horizon_radius": 200, "north_angle_deg": 10, "azimuth_sense": -1}
    assert EncoderSettings(calibration=cal).load_calibration().north_angle_deg == 10
    with pytest.raises(ConfigError, match="no calibration"):
        EncoderSettings().load_calibration()
    f = tmp_path / "cal.json"
    f.write_text('{"center_x": 1, "center_y": 2, "horizon_radius": 3}')
    assert EncoderSettings(calibration_file=f).load_calibration().horizon_radius == 3
    with pytest.raises(ValidationError):
        EncoderSettings(calibration_file=f, calibration=cal)
