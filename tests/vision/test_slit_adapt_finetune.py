"""Fine-tuning the packaged band network on a site's bands: a smoke run of both modes (the
front frozen, the default; the whole network), offline, in the training environment."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

FINE_TUNE_SMOKE = r"""
import json, socket, sys
attempts = []
def _blocked(*a, **k):
    attempts.append(repr(a[:2]))
    raise OSError("network disabled in this test")
socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked
from pathlib import Path
import numpy as np
from tenmon.vision.slit.training.adapt import fine_tune
from tenmon.vision.slit.band import BAND_T, BAND_U, CHANNELS, DEFAULT_BAND_MODEL
out = Path(sys.argv[1])
rng = np.random.default_rng(0)
n = 6
data = {"x": rng.normal(0, 0.3, (n, CHANNELS, len(BAND_T), len(BAND_U))).astype(np.float32),
        "rows": rng.integers(-1, 3, (n, len(BAND_T))), "state": np.array([0, 1, 2, -1, 0, -1]),
        "here": np.array([1, 1, 1, 0, 1, 0])}
data["x"][:, 1] = 1.0
reps = {}
for front in (False, True):
    reps[str(front)] = fine_tune(DEFAULT_BAND_MODEL, data, out / f"band_{front}.onnx", steps=3, batch=4,
                                 threads=1, train_front=front)
print("RESULT " + json.dumps({"attempts": attempts, "reports": reps}))
"""


def _python_with(*modules: str) -> str | None:
    if all(importlib.util.find_spec(m) is not None for m in modules):
        return sys.executable
    for venv in (REPO / ".venv-train" / "bin" / "python",):
        if venv.exists():
            ok = subprocess.run([str(venv), "-c", "import " + ", ".join(modules)], capture_output=True)
            if ok.returncode == 0:
                return str(venv)
    return None


def test_band_fine_tuning_runs_offline_in_both_modes_and_exports_usable_models(tmp_path):
    python = _python_with("torch", "onnx")
    if python is None:
        pytest.skip("the 'train' extra (torch, onnx) is not installed here nor in .venv-train")
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([python, "-c", FINE_TUNE_SMOKE, str(tmp_path)], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["attempts"] == []
    assert result["reports"]["False"]["train_front"] is False and result["reports"]["True"]["train_front"] is True
    assert all(r["steps"] == 3 and r["bands"] == 6 for r in result["reports"].values())

    # the exported networks run here, without torch
    from tenmon.vision.slit.band import BAND_T, BAND_U, CHANNELS, BandReader

    x = np.zeros((CHANNELS, len(BAND_T), len(BAND_U)), np.float32)
    x[1] = 1.0
    for front in (False, True):
        r = BandReader(tmp_path / f"band_{front}.onnx").read_input(x)
        assert 0.0 <= r.here <= 1.0 and r.row_probs.shape == (len(BAND_T), 3)
        assert r.state_probs.sum() == pytest.approx(1.0)
