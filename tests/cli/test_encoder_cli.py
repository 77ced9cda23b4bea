"""`tenmon encoder estimate|calibrate|watch|train` through argparse, on rendered frames."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import cv2
import pytest

from tenmon.cli import encoder as encoder_cli
from tenmon.core.errors import ConfigError, TenmonError
from tenmon.vision.slit.render import render, site_params
from tenmon.vision.slit.reading import Calibration, angle_diff


def _run(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    encoder_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def _site():
    return replace(site_params(480, 360, tube_alt_deg=5.0, tube_az_deg=200.0, tube_pivot=(0.0, -0.3, -0.2),
                               n_ribs=16), north_angle_deg=40.0, azimuth_sense=1)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    out = []
    for k, (az, frac) in enumerate([(30.0, 1.0), (120.0, 0.0), (210.0, 1.0), (300.0, 1.0)]):
        res = render(az, frac, _site(), seed=20 + k)
        path = d / f"frame{k}.png"
        cv2.imwrite(str(path), res.image)
        out.append((path, az, frac, res.truth.calibration))
    return out


def test_estimate_json_one_line_per_image(frames, tmp_path, capsys):
    cal = frames[0][3]
    cal_path = tmp_path / "cal.json"
    cal.save(cal_path)
    paths = [str(f[0]) for f in frames[:2]]
    assert _run(["encoder", "estimate", "--calibration", str(cal_path), "--json", *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    rows = [json.loads(x) for x in lines]
    assert set(rows[0]) == {"image", "azimuth_deg", "open_fraction", "state", "confidence", "elapsed_ms"}
    assert rows[0]["image"] == paths[0]
    assert abs(angle_diff(rows[0]["azimuth_deg"], 30.0)) < 1.0 and rows[0]["state"] == "open"
    assert rows[1]["state"] in ("closed", "unknown")
    assert all(r["state"] in ("open", "closed", "partial", "unknown") for r in rows)


def test_estimate_with_a_per_image_calibration_table_and_annotations(frames, tmp_path, capsys):
    table = {f[0].name: f[3].to_dict() for f in frames[:2]}
    cal_path = tmp_path / "cals.json"
    cal_path.write_text(json.dumps(table))
    out_dir = tmp_path / "ann"
    assert _run(["encoder", "estimate", "--calibration", str(cal_path), "--annotate", str(out_dir),
                 str(frames[0][0]), str(frames[1][0])]) == 0
    text = capsys.readouterr().out
    assert "frame0.png: azimuth" in text and "confidence" in text
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == ["frame0.annotated.png", "frame1.annotated.png"]
    img = cv2.imread(str(out_dir / "frame0.annotated.png"))
    assert img.shape == cv2.imread(str(frames[0][0])).shape
    # the input frames were not touched
    assert not (frames[0][0].parent / "frame0.annotated.png").exists()


def test_estimate_names_a_missing_calibration(frames, tmp_path):
    cal_path = tmp_path / "cals.json"
    cal_path.write_text(json.dumps({"other.png": frames[0][3].to_dict()}))
    with pytest.raises(ConfigError, match="frame0.png"):
        _run(["encoder", "estimate", "--calibration", str(cal_path), str(frames[0][0])])
    bad = tmp_path / "bad.json"
    bad.write_text('{"center_x": 1, "center_y": 2, "horizon_radius": -5}')
    with pytest.raises(ConfigError, match="horizon_radius"):
        _run(["encoder", "estimate", "--calibration", str(bad), str(frames[0][0])])


def test_calibrate_writes_json_and_prints_toml(frames, tmp_path, capsys):
    out = tmp_path / "solved.json"
    argv = ["encoder", "calibrate", "--out", str(out), *[str(f[0]) for f in frames],
            "--azimuth", *[str(f[1]) for f in frames]]
    assert _run(argv) == 0
    text = capsys.readouterr().out
    assert "[encoder]" in text and "calibration = " in text and "north_angle_deg" in text
    solved = Calibration.load(out)
    truth = frames[0][3]
    assert solved.azimuth_sense == truth.azimuth_sense
    assert abs(angle_diff(solved.north_angle_deg, truth.north_angle_deg)) < 2.0
    with pytest.raises(ConfigError, match="azimuth"):
        _run(["encoder", "calibrate", "--out", str(out), str(frames[0][0]), str(frames[1][0]),
              "--azimuth", "10"])


def test_watch_replays_a_folder_and_tracks(frames, tmp_path, capsys):
    cal_path = tmp_path / "cal.json"
    frames[0][3].save(cal_path)
    folder = frames[0][0].parent
    assert _run(["encoder", "watch", "--device", str(folder), "--calibration", str(cal_path),
                 "--json", "--count", "3"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 3
    assert {"azimuth_deg", "state", "angular_velocity_deg_s", "frame_state"} <= set(rows[0])
    with pytest.raises(TenmonError, match="video99"):
        _run(["encoder", "watch", "--device", "/dev/video99", "--calibration", str(cal_path)])


def test_train_without_the_extra_says_what_is_missing(monkeypatch, tmp_path):
    from tenmon.vision.slit.training import detector as slit_train

    monkeypatch.setattr(slit_train, "ultralytics_available", lambda: False)
    with pytest.raises(TenmonError, match="train"):
        _run(["encoder", "train", "--out", str(tmp_path)])


def test_annotate_draws_a_reading_whose_state_could_not_be_told(frames):
    from datetime import datetime, timezone

    import numpy as np

    from tenmon.vision.slit.reading import SlitReading

    path, az, _, cal = frames[0]
    image = cv2.imread(str(path))
    reading = SlitReading(time=datetime.now(timezone.utc), azimuth_deg=az, open_fraction=None,
                          state="unknown", confidence=0.7, source="model+band")
    out = encoder_cli.annotate(image, cal, reading)
    assert out.shape == image.shape
    assert np.count_nonzero(np.any(out != image, axis=2)) > 500  # the slit line and the text drawn
