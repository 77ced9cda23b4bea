"""Training path: seeded dataset generation, and a smoke training run (offline, one epoch).

The smoke run needs the ``train`` extra (torch, ultralytics). It runs in this interpreter when
ultralytics is importable here, else in the project's training environment ``.venv-train`` when
that exists (the daemon's environment keeps no torch), and is skipped only when neither has it.
It runs with the network cut off inside the process: any attempt to connect is recorded and fails
the test.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tenmon.vision.slit.polar import StripGeometry
from tenmon.vision.slit.features import CLASSES, MODEL_GEOMETRY, slit_boxes
from tenmon.vision.slit.training.detector import TrainConfig, generate_dataset, render_sample

REPO = Path(__file__).resolve().parents[2]


def test_dataset_is_seeded_and_in_yolo_layout(tmp_path):
    cfg = TrainConfig(n_train=3, n_val=2, workers=1, max_render_pixels=120_000)
    a = generate_dataset(cfg, tmp_path / "a", progress=False)
    generate_dataset(cfg, tmp_path / "b", progress=False)
    assert "names:" in a.read_text() and "train: images/train" in a.read_text()
    imgs = sorted((tmp_path / "a" / "images" / "train").glob("*.png"))
    assert len(imgs) == 3 and len(list((tmp_path / "a" / "images" / "val").glob("*.png"))) == 2
    for img in imgs:
        twin = tmp_path / "b" / "images" / "train" / img.name
        assert img.read_bytes() == twin.read_bytes()
        label = tmp_path / "a" / "labels" / "train" / (img.stem + ".txt")
        for line in label.read_text().splitlines():
            cls, *box = line.split()
            assert int(cls) in range(len(CLASSES))
            assert all(0.0 <= float(v) <= 1.0 for v in box)
    truth = [json.loads(x) for x in (tmp_path / "a" / "truth_train.jsonl").read_text().splitlines()]
    assert len(truth) == 3 and {"azimuth_deg", "state", "slit_visible"} <= set(truth[0])


def test_sample_strip_and_label_agree_with_the_truth():
    img, lines, truth = render_sample(12345, MODEL_GEOMETRY, max_pixels=200_000)
    assert img.shape == (MODEL_GEOMETRY.height, MODEL_GEOMETRY.width, 3) and img.dtype == np.uint8
    if truth["slit_visible"]:
        xs = [float(line.split()[1]) * MODEL_GEOMETRY.width for line in lines]
        azs = [float(MODEL_GEOMETRY.col_to_az(x - 0.5)) % 360 for x in xs]
        assert any(abs((a - truth["azimuth_deg"] + 180) % 360 - 180) < 1.0 for a in azs)
    else:
        assert lines == []


def test_boxes_at_the_seam_come_in_two_copies():
    g = StripGeometry(width=320, height=96)
    boxes = slit_boxes(g, 2.0, 1.0, "open", 0.1, 100.0)
    assert len(boxes) == 2  # at 2 and at 362 degrees
    boxes = slit_boxes(g, 180.0, 0.3, "partial", 0.1, 100.0)
    assert len(boxes) == 1 and boxes[0].cls == CLASSES.index("partial")
    # the partial box reaches up to t = 30 degrees only
    assert boxes[0].y0 == pytest.approx(float(g.t_to_row(30.0)) + 0.5)


def _python_with(*modules: str) -> str | None:
    """This interpreter if it has ``modules``, else ``.venv-train``'s if that has them, else None."""
    if all(importlib.util.find_spec(m) is not None for m in modules):
        return sys.executable
    venv = REPO / ".venv-train" / "bin" / "python"
    if venv.exists():
        ok = subprocess.run([str(venv), "-c", "import " + ", ".join(modules)], capture_output=True)
        if ok.returncode == 0:
            return str(venv)
    return None


#: Run first in the training subprocesses: any attempt to connect is recorded and fails.
NO_NETWORK = r"""
import json, socket, sys
attempts = []
def _blocked(*a, **k):
    attempts.append(repr(a[:2]))
    raise OSError("network disabled in this test")
socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
"""

SMOKE = NO_NETWORK + r"""
from pathlib import Path
from tenmon.vision.slit.training.detector import TrainConfig, train
out = Path(sys.argv[1])
cfg = TrainConfig(n_train=6, n_val=3, epochs=1, batch=3, scale="p", workers=1, threads=1,
                  max_render_pixels=120_000)
report = train(cfg, out / "run", model_out=out / "slit.onnx", progress=False)
import importlib.metadata as md
try:
    md.version("opencv-python")
    gui_cv = True
except md.PackageNotFoundError:
    gui_cv = False
print("RESULT " + json.dumps({"attempts": attempts, "bytes": report["model_bytes"], "gui_opencv": gui_cv}))
"""


def test_smoke_training_runs_offline_and_exports_a_usable_model(tmp_path):
    python = _python_with("ultralytics", "torch", "onnx")
    if python is None:
        pytest.skip("the 'train' extra (torch, ultralytics) is not installed here nor in .venv-train")
    proc = subprocess.run([python, "-c", SMOKE, str(tmp_path)], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["attempts"] == [], f"training tried to reach the network: {result['attempts']}"
    assert result["gui_opencv"] is False, "ultralytics swapped in the GUI OpenCV build"
    model = tmp_path / "slit.onnx"
    assert model.exists() and model.stat().st_size == result["bytes"]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["config"]["epochs"] == 1 and report["seconds"]["training"] > 0
    settings = json.loads((tmp_path / "run" / "ultralytics_config" / "Ultralytics" / "settings.json").read_text())
    assert settings["sync"] is False

    # the exported model runs here, without torch, through the detector
    from tenmon.vision.slit.render import render_random
    from tenmon.vision.slit.detector import DetectorSettings, SlitDetector

    det = SlitDetector(DetectorSettings(model_path=model))
    assert det.has_model
    res = render_random(77, resolution=(320, 240))
    reading = det.estimate(res.image, res.truth.calibration)
    assert reading.state in ("open", "closed", "partial", "unknown")


BAND_SMOKE = NO_NETWORK + r"""
from pathlib import Path
from tenmon.vision.slit.band_data import write_shard
from tenmon.vision.slit.training.band import train
out = Path(sys.argv[1])
(out / "data").mkdir()
write_shard([1000000, 1000001], out / "data" / "band_1000000.npz")
write_shard([1000002], out / "data" / "band_1000002.npz")
report = train(out / "data", out / "band.onnx", epochs=1, threads=1, progress=False)
print("RESULT " + json.dumps({"attempts": attempts, "bands": report["train_bands"], "bytes": report["model_bytes"]}))
"""


def test_band_network_smoke_training_runs_offline_and_exports_a_usable_model(tmp_path):
    python = _python_with("torch", "onnx")
    if python is None:
        pytest.skip("the 'train' extra (torch, onnx) is not installed here nor in .venv-train")
    proc = subprocess.run([python, "-c", BAND_SMOKE, str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["attempts"] == [] and result["bands"] == 4  # 2 frames x (positive, negative)
    model = tmp_path / "band.onnx"
    assert model.stat().st_size == result["bytes"]
    assert json.loads((tmp_path / "band.json").read_text())["epochs"] == 1

    # the exported network runs here, without torch
    from tenmon.vision.slit.band import BAND_T, BandReader

    d = np.load(tmp_path / "data" / "band_1000002.npz")
    from tenmon.vision.slit.band import band_input

    r = BandReader(model).read_input(band_input(d["band_pos"][0], d["valid_pos"][0], tuple(d["levels"][0])))
    assert 0.0 <= r.here <= 1.0 and r.row_probs.shape == (len(BAND_T), 3)
    assert r.state_probs.sum() == pytest.approx(1.0)
