"""`tenmon encoder adapt` end to end in the training environment (torch), offline: a tiny label
set, a model folder `tenmon encoder estimate --model DIR` loads, and a worse model refused.

Runs in this interpreter when torch is importable here, else in ``.venv-train`` (as the smoke
training test does), with the network cut off inside the process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from tenmon.vision.slit.render import render, site_params
from tenmon.vision.slit.adapt import split

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, socket, sys
attempts = []
def _blocked(*a, **k):
    attempts.append(repr(a[:2]))
    raise OSError("network disabled in this test")
socket.socket.connect = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
from tenmon.cli.main import main
code = main(sys.argv[1:])
print("RESULT " + json.dumps({"attempts": attempts, "code": code}))
"""


def _python_with_torch() -> str | None:
    import importlib.util
    import sys

    if importlib.util.find_spec("torch") is not None and importlib.util.find_spec("onnx") is not None:
        return sys.executable
    venv = REPO / ".venv-train" / "bin" / "python"
    if venv.exists() and subprocess.run([str(venv), "-c", "import torch, onnx"],
                                        capture_output=True).returncode == 0:
        return str(venv)
    return None


def _site():
    return replace(site_params(320, 240, tube_alt_deg=5.0, tube_az_deg=200.0, tube_pivot=(0.0, -0.3, -0.2),
                               n_ribs=16), north_angle_deg=40.0, azimuth_sense=1)


N = 24
HELD = 0.5


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """24 rendered frames, open or closed, with true labels; and the calibration."""
    d = tmp_path_factory.mktemp("labelled")
    (d / "frames").mkdir()
    rng = np.random.default_rng(5)
    rows, cal = [], None
    for i in range(N):
        az = float(rng.uniform(0, 360))
        frac = 1.0 if i % 2 else 0.0
        res = render(az, frac, _site(), seed=100 + i)
        cv2.imwrite(str(d / "frames" / f"f{i:02d}.png"), res.image)
        cal = res.truth.calibration
        rows.append({"image": f"frames/f{i:02d}.png", "state": "open" if frac else "closed",
                     "open_fraction": frac, "azimuth_deg": round(az, 2)})
    cal.save(d / "cal.json")
    return d, rows


def _adapt(python, labels: Path, cal: Path, out: Path, cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([python, "-c", SCRIPT, "encoder", "adapt", str(labels), "--calibration", str(cal),
                           "--out", str(out), "--held-back", str(HELD), "--steps", "30", "--threads", "1",
                           "--json"], capture_output=True, text=True, timeout=900, cwd=cwd, env=env)
    res = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res, proc.stderr[-3000:]
    result = json.loads(res[-1][len("RESULT "):])
    report = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    return result, report


def _estimate(argv):
    from tenmon.cli import encoder as encoder_cli

    parser = argparse.ArgumentParser()
    encoder_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_adapt_writes_a_model_folder_that_estimate_loads(labelled, tmp_path, capsys):
    python = _python_with_torch()
    if python is None:
        pytest.skip("the 'train' extra (torch, onnx) is not installed here nor in .venv-train")
    d, rows = labelled
    labels = d / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "model"
    result, report = _adapt(python, labels, d / "cal.json", out, tmp_path)
    assert result["attempts"] == []
    assert result["code"] == 0 and report["written"] is True, report.get("error")
    assert report["learn"] + report["calibrate"] + report["judge"] == N
    assert {"before", "after", "settings", "train"} <= set(report)
    for name in ("slit.onnx", "slit_band.onnx", "slit_finder.onnx", "adapt.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "adapt.json").read_text())
    assert 0.5 <= meta["settings"]["band_state_decided"] <= 1.0
    # estimate --model DIR reads with it
    capsys.readouterr()
    img = d / rows[1]["image"]
    assert _estimate(["encoder", "estimate", "--calibration", str(d / "cal.json"), "--model", str(out),
                      "--json", str(img)]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["state"] in ("open", "closed", "partial", "unknown")
    from tenmon.vision.slit.detector import DetectorSettings, SlitDetector

    det = SlitDetector(DetectorSettings(model_dir=out))
    assert det.finder is not None and det.band.path == out / "slit_band.onnx"


def test_adapt_refuses_a_model_worse_on_the_held_back_frames(labelled, tmp_path):
    """Training labels swapped (open called closed and the reverse), held-back labels true: the
    adapted model reads worse than the packaged one where it is judged, and nothing is written."""
    python = _python_with_torch()
    if python is None:
        pytest.skip("the 'train' extra (torch, onnx) is not installed here nor in .venv-train")
    d, rows = labelled
    learn, _cal, _judge = split(N, HELD, 0)
    bad = [dict(r) for r in rows]
    for i in learn:
        swapped = "closed" if bad[i]["state"] == "open" else "open"
        bad[i].update(state=swapped, open_fraction=1.0 if swapped == "open" else 0.0)
    labels = d / "swapped.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in bad))
    out = tmp_path / "model"
    result, report = _adapt(python, labels, d / "cal.json", out, tmp_path)
    assert result["code"] == 1 and report["written"] is False
    assert report["refused"] and "worse" in report["error"]
    assert not out.exists()
    assert not any(p.name.startswith(".model") for p in tmp_path.iterdir())  # no half-written folder
