"""The slit detector: YOLO output decoding, model input, the packaged ONNX model, fallbacks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tenmon.core.errors import VisionError
from tenmon.vision.slit.render import render, render_random, site_params
from tenmon.vision.slit.detector import DEFAULT_MODEL_PATH, DetectorSettings, SlitDetector, decode
from tenmon.vision.slit.features import CLASSES, MODEL_GEOMETRY, model_input
from tenmon.vision.slit.reading import angle_diff

G = MODEL_GEOMETRY


def _output(boxes):
    """A fake model output (4 + classes, anchors) with the given (cx, cy, w, h, class, score)."""
    out = np.zeros((4 + len(CLASSES), 50), np.float32)
    out[0:4, :] = [[100.0], [48.0], [10.0], [96.0]]
    out[4:, :] = 0.001
    for k, (cx, cy, w, h, cls, sc) in enumerate(boxes):
        out[0:4, k] = [cx, cy, w, h]
        out[4 + cls, k] = sc
    return out


def test_decode_takes_the_best_box_and_reads_azimuth_top_and_class():
    cx = float(G.az_to_col(123.0)) + 0.5
    top_row = float(G.t_to_row(40.0)) + 0.5  # a partial slit open to t = 40 degrees
    h = G.height - top_row
    det = decode(_output([(cx, top_row + h / 2, 10, h, 2, 0.9), (cx + 100, 48, 10, 96, 0, 0.3)]), G)
    assert det.azimuth_deg == pytest.approx(123.0, abs=1e-3)
    assert det.top_t_deg == pytest.approx(40.0, abs=0.6)
    assert CLASSES[det.cls] == "partial" and det.score == pytest.approx(0.9)
    assert det.rival_score == pytest.approx(0.3)


def test_decode_merges_the_padding_copies_and_prefers_the_unclipped_one():
    a = float(G.az_to_col(5.0)) + 0.5
    b = float(G.az_to_col(365.0)) + 0.5  # the same slit in the right-hand padding, clipped
    det = decode(_output([(a, 48, 10, 96, 0, 0.8), (b, 48, 10, 96, 0, 0.82)]), G)
    assert det.azimuth_deg == pytest.approx(5.0, abs=1e-3)
    assert det.rival_score == 0.0  # a copy is not a rival


def test_decode_of_nothing_is_none():
    assert decode(_output([]) * 0.0, G) is None


def test_model_input_is_three_uint8_channels_and_ignores_invalid_pixels():
    rng = np.random.default_rng(0)
    strip = rng.integers(0, 50, (G.height, G.width)).astype(np.uint8)
    valid = np.ones_like(strip, bool)
    valid[:, :10] = False
    strip[:, :10] = 255
    x = model_input(strip, valid)
    assert x.shape == (G.height, G.width, 3) and x.dtype == np.uint8
    assert (x[:, :10] == 0).all()
    assert x[:, 10:, 0].max() > 200  # the stretch used the valid pixels only


def test_an_explicit_missing_model_is_an_error_and_classical_only_works(tmp_path):
    with pytest.raises(VisionError, match="not found"):
        SlitDetector(DetectorSettings(model_path=tmp_path / "none.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(VisionError, match="cannot load"):
        SlitDetector(DetectorSettings(model_path=bad))
    det = SlitDetector(DetectorSettings(use_model=False))
    assert not det.has_model
    p = replace(site_params(480, 360, tube_alt_deg=5.0, tube_az_deg=200.0, tube_pivot=(0.0, -0.3, -0.2)),
                azimuth_sense=1, north_angle_deg=12.0)
    res = render(222.0, 1.0, p, seed=1)
    r = det.estimate(res.image, res.truth.calibration)
    assert r.source == "classical" and abs(angle_diff(r.azimuth_deg, 222.0)) < 1.0
    assert r.details["elapsed_ms"] > 0


def test_the_packaged_model_ships_small_and_runs_on_one_thread():
    assert DEFAULT_MODEL_PATH.exists(), "the trained model must ship in the package"
    assert DEFAULT_MODEL_PATH.stat().st_size < 5_000_000
    det = SlitDetector()
    assert det.has_model
    opts = det.session.get_session_options()
    assert opts.intra_op_num_threads == 1


def test_the_packaged_model_reads_rendered_frames():
    det = SlitDetector()
    errs, states, stated, hidden_unknown = [], [], [], []
    for seed in range(9_500_000, 9_500_030):  # evaluation seeds, never used in training or tuning
        res = render_random(seed, resolution=(640, 480))
        tr = res.truth
        r = det.estimate(res.image, tr.calibration)
        if r.state == "unknown":
            assert r.open_fraction is None
        if tr.slit_visible:
            errs.append(np.inf if r.azimuth_deg is None else abs(angle_diff(r.azimuth_deg, tr.azimuth_deg)))
            stated.append(r.state != "unknown")
            if r.known:
                states.append(r.state == tr.state)
                assert det.settings.band_state_decided <= r.details["state_confidence"] <= 1.0
        elif tr.visibility < 0.2:
            hidden_unknown.append(r.state == "unknown" and r.azimuth_deg is None)
    errs = np.array(errs)
    assert len(errs) >= 15 and len(hidden_unknown) >= 5
    assert np.median(errs) < 1.0
    assert np.sum(np.isfinite(errs) & (errs > 5.0)) == 0  # an answer is a right answer
    assert all(hidden_unknown)
    assert np.mean(stated) >= 0.5  # most visible frames show what tells the state
    assert len(states) >= 8 and np.mean(states) >= 0.9  # a state given is a right state
