"""The opening along the slit: change point over classified rows, the state model, the packaged weights."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tenmon.vision.slit.render import render, site_params
from tenmon.vision.slit.polar import StripMapper, to_gray
from tenmon.vision.slit.classical import CLASSICAL_GEOMETRY as G
from tenmon.vision.slit.opening import (DEFAULT_ROWS_MODEL, STATE_CLASSES, STATE_FEATURES,
                                        OpeningReader, RowsModel, read_opening, row_features,
                                        row_labels, state_features)

T = G.row_to_t(np.arange(G.height))


def _probs(a_deg: float, *, occluded: tuple[float, float] | None = None, p: float = 0.9) -> np.ndarray:
    """Row probabilities of a slit open to arc ``a_deg``: sky below, cover above."""
    out = np.where((T < a_deg)[:, None], [p, 1 - p, 0.0], [1 - p, p, 0.0]).astype(np.float64)
    if occluded is not None:
        m = (T >= occluded[0]) & (T <= occluded[1])
        out[m] = [0.02, 0.02, 0.96]
    return out


@pytest.mark.parametrize("a_deg,state", [(0.0, "closed"), (40.0, "partial"), (100.0, "open"),
                                         (10.0, "partial"), (90.0, "partial")])
def test_change_point_reads_the_opening_from_rows(a_deg, state):
    op = read_opening(_probs(a_deg), T, 100.0)
    assert op.state == state
    assert op.open_fraction == pytest.approx(a_deg / 100.0, abs=0.015)
    assert op.confidence > 0.9 and op.seen_fraction > 0.95


def test_rows_hidden_where_the_state_is_decided_leave_the_state_open():
    # sky up to 50 degrees, then the tube hides the rest: open or partly open, nobody can tell
    op = read_opening(_probs(101.0, occluded=(50.0, 110.0)), T, 100.0)
    assert op.posterior["closed"] < 0.01
    assert 0.2 < op.posterior["open"] < 0.9 and op.posterior["partial"] > 0.1
    assert op.seen_fraction < 0.6
    # the same slit fully in view is clearly open
    assert read_opening(_probs(101.0), T, 100.0).posterior["open"] > 0.99


def test_row_labels_mark_sky_cover_and_occluded():
    seen = np.ones_like(T)
    seen[T > 95] = 0.0
    lab = row_labels(T, 0.3, 100.0, seen)
    assert set(lab[T < 29]) == {0} and set(lab[(T > 31) & (T < 95)]) == {1} and set(lab[T > 96]) == {2}


def test_packaged_weights_load_and_give_probabilities():
    d = json.loads(DEFAULT_ROWS_MODEL.read_text())
    assert d["state"]["features"] == list(STATE_FEATURES)
    assert d["state"]["classes"] == list(STATE_CLASSES)
    m = RowsModel.load(DEFAULT_ROWS_MODEL)
    x = np.random.default_rng(0).normal(size=(7, m.mean.size)).astype(np.float32)
    p = m.predict_proba(x)
    assert p.shape == (7, 3) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert DEFAULT_ROWS_MODEL.stat().st_size < 200_000


def _frame(frac: float, az: float = 140.0):
    p = site_params(480, 360, tube_alt_deg=5.0, tube_az_deg=(az + 180.0) % 360, tube_pivot=(0.0, 0.0, -0.2))
    p = replace(p, hot_pixels=0)
    res = render(az, frac, p, seed=5)
    mapper = StripMapper(res.truth.calibration, res.image.shape, G)
    return mapper.unwrap(to_gray(res.image)), mapper.valid, res.truth


@pytest.mark.parametrize("frac", [0.0, 0.45, 1.0])
def test_the_packaged_reader_reads_rendered_openings(frac):
    strip, valid, tr = _frame(frac)
    x = row_features(strip, valid, G, tr.azimuth_deg)
    assert x.shape == (G.height, RowsModel.load(DEFAULT_ROWS_MODEL).mean.size) and np.isfinite(x).all()
    reader = OpeningReader()
    op = reader.read(strip, valid, G, tr.azimuth_deg, 100.0, tr.slit_width_frac)
    assert abs(op.open_fraction - frac) < 0.08
    state, p_state, p = reader.state(op, np.array([0.3, 0.3, 0.3]), 0.3, 50.0, 100.0)
    assert state == tr.state and p.sum() == pytest.approx(1.0)
    assert state_features(op, np.array([0.3, 0.3, 0.3]), 0.3, 50.0, 100.0).shape == (len(STATE_FEATURES),)


@pytest.mark.filterwarnings("ignore")  # sklearn: too few frames to converge or to fill 5 folds
def test_the_training_recipe_runs_end_to_end_on_a_few_frames(tmp_path):
    from tenmon.vision.slit.training.rows import (fit_rows_model, fit_state_model, rows_training_set,
                                               state_training_set)

    x, y = rows_training_set(range(1_000_000, 1_000_004))
    assert x.shape == (4 * G.height, RowsModel.load(DEFAULT_ROWS_MODEL).mean.size) and set(y) <= {0, 1, 2}
    out = tmp_path / "rows.json"
    acc = fit_rows_model(x, y, out)
    assert 0.0 <= acc <= 1.0 and RowsModel.load(out).predict_proba(x[:3]).shape == (3, 3)
    xs, ys = state_training_set(out, range(8_000_000, 8_000_012))
    assert xs.shape[1] == len(STATE_FEATURES) and len(xs) == len(ys) >= 5
    if len(set(ys)) > 1:
        fit_state_model(np.concatenate([xs] * 3), np.concatenate([ys] * 3), out)
        assert OpeningReader(out).state_model is not None


def test_a_bad_weights_file_is_a_vision_error(tmp_path):
    from tenmon.core.errors import VisionError

    with pytest.raises(VisionError, match="row classifier"):
        OpeningReader(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(VisionError, match="row classifier"):
        OpeningReader(bad)
