"""Training the opening reader: the row classifier (scikit-learn MLP) and the state model, as JSON weights.

Both are small and train on one CPU core in minutes (no torch needed)::

    python -m tenmon.vision.slit.training.rows OUT.json [--train-frames 2400] [--tune-frames 2400]

1. Row classifier: frames rendered with the training seeds (``TRAIN_SEED_BASE`` up, the same
   seeds as the detector's training data), unwrapped with the true calibration; every row of the
   fine strip along the slit (true azimuth jittered by 0.3 degrees, half-width jittered) gets the
   features of :func:`tenmon.vision.slit.opening.row_features` and a label from the truth: sky
   below the opening, cover above, occluded where the telescope or the sensor's edge hides the
   slit (:func:`tenmon.vision.slit.render.slit_line_visibility`), every row occluded on frames whose
   slit is hidden.
2. State model: the full detector (ONNX model, azimuth refinement, the new row classifier) runs
   on frames of the tuning seeds (``TUNE_SEED_BASE`` up, used by neither training nor the
   benchmark); a multinomial logistic regression maps the rows' evidence and the detector's box
   (:data:`~tenmon.vision.slit.opening.STATE_FEATURES`) to the state, on frames where the slit
   is at least partly visible and the azimuth is right to 3 degrees.

The packaged ``models/slit_rows.json`` came from this recipe with the defaults (2400 training
frames, 2400 tuning frames) run as separate steps on 2 shared cores; a rerun draws the same frames
but need not give bit-identical weights (the jitter's random stream differed, and the first 1200
training frames were labelled with the first renderer's visibility). Measured then: row
validation accuracy 0.912, state model 5-fold accuracy 0.826 on 1936 tuning frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tenmon.vision.slit import render as ir_render
from tenmon.vision.slit.polar import StripMapper, to_gray
from tenmon.vision.slit.classical import CLASSICAL_GEOMETRY
from tenmon.vision.slit.features import MODEL_GEOMETRY
from tenmon.vision.slit.opening import (CONTEXT, STATE_CLASSES, STATE_FEATURES, read_opening,
                                        row_features, row_labels, save_rows_model, state_features)
from tenmon.vision.slit.training.detector import TRAIN_SEED_BASE
from tenmon.vision.slit.reading import angle_diff, atomic_write_text

log = logging.getLogger(__name__)

#: Seeds of the frames the thresholds and the state model are tuned on.
TUNE_SEED_BASE = 8_000_000


def _strips(seed: int):
    res = ir_render.render_random(seed)
    tr = res.truth
    gray = to_gray(res.image)
    fine = StripMapper(tr.calibration, gray.shape, CLASSICAL_GEOMETRY)
    model = StripMapper(tr.calibration, gray.shape, MODEL_GEOMETRY)
    return tr, fine.unwrap(gray), fine.valid, model.unwrap(gray), model.valid


def rows_training_set(seeds, *, jitter_deg: float = 0.3, rng_seed: int = 0,
                      progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every row of every frame (rows x features, rows)."""
    from tqdm import tqdm

    rng = np.random.default_rng(rng_seed)
    g = CLASSICAL_GEOMETRY
    t = g.row_to_t(np.arange(g.height))
    xs, ys = [], []
    for seed in tqdm(list(seeds), desc="rows", unit="frame", disable=not progress):
        tr, strip, valid, _, _ = _strips(seed)
        az, frac, params = ir_render.random_frame_params(seed)
        seen = (np.zeros_like(t) if tr.visibility < 0.2
                else ir_render.slit_line_visibility(params, tr.azimuth_deg, t))
        x = row_features(strip, valid, g, tr.azimuth_deg + rng.normal(0, jitter_deg),
                         tr.slit_width_frac * rng.uniform(0.9, 1.4))
        xs.append(x)
        ys.append(row_labels(t, tr.open_fraction, tr.slit_length_deg, seen))
    return np.concatenate(xs), np.concatenate(ys)


def fit_rows_model(x: np.ndarray, y: np.ndarray, out: Path, *, meta: dict | None = None) -> float:
    """Fit the row MLP (96, 48 ReLU units) and write it as JSON; returns its validation accuracy."""
    from sklearn.neural_network import MLPClassifier

    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    clf = MLPClassifier(hidden_layer_sizes=(96, 48), alpha=1e-4, batch_size=512, max_iter=60,
                        early_stopping=True, random_state=0, n_iter_no_change=5)
    clf.fit((x - mean) / scale, y)
    acc = float(clf.best_validation_score_)
    save_rows_model(clf, mean, scale, out, {**(meta or {}), "rows": int(len(y)), "context": CONTEXT,
                                            "hidden_layers": [96, 48], "validation_accuracy": acc})
    return acc


def state_training_set(rows_model: Path, seeds, *, progress: bool = False
                       ) -> tuple[np.ndarray, np.ndarray]:
    """State-model inputs and true states from the detector run on the tuning frames."""
    from tqdm import tqdm

    from tenmon.vision.slit.detector import DetectorSettings, SlitDetector

    det = SlitDetector(DetectorSettings(rows_model_path=rows_model))
    s = det.settings
    xs, ys = [], []
    for seed in tqdm(list(seeds), desc="state", unit="frame", disable=not progress):
        tr, strip_f, valid_f, strip_m, valid_m = _strips(seed)
        if tr.visibility < 0.2:
            continue
        d = det.detect(strip_m, valid_m)
        if d is None:
            continue
        az, fit = det._refine(d.azimuth_deg, strip_f, valid_f)  # as the detector refines
        hw = fit.half_width if fit is not None else 0.1
        if abs(angle_diff(az, tr.azimuth_deg)) > 3.0:
            continue
        probs = det.opening.model.predict_proba(row_features(strip_f, valid_f, CLASSICAL_GEOMETRY, az, hw))
        op = read_opening(probs, CLASSICAL_GEOMETRY.row_to_t(np.arange(CLASSICAL_GEOMETRY.height)),
                          s.slit_length_deg)
        xs.append(state_features(op, d.probs, d.score, d.top_t_deg, s.slit_length_deg))
        ys.append(STATE_CLASSES.index(tr.state))
    return np.array(xs), np.array(ys)


def fit_state_model(x: np.ndarray, y: np.ndarray, rows_model: Path, *, c: float = 0.3,
                    meta: dict | None = None) -> float:
    """Fit the logistic state model and add it to the weights file; returns its 5-fold accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-9
    xs = (x - mean) / scale
    cv = float(np.mean(cross_val_predict(LogisticRegression(C=c, max_iter=2000), xs, y, cv=5) == y))
    m = LogisticRegression(C=c, max_iter=2000).fit(xs, y)
    d = json.loads(Path(rows_model).read_text())
    d["state"] = {"mean": mean.tolist(), "scale": scale.tolist(), "coef": m.coef_.tolist(),
                  "intercept": m.intercept_.tolist(), "features": list(STATE_FEATURES),
                  "classes": list(STATE_CLASSES),
                  "meta": {**(meta or {}), "frames": int(len(y)), "C": c, "cv5_accuracy": cv}}
    atomic_write_text(Path(rows_model), json.dumps(d, separators=(",", ":")) + "\n")
    return cv


def main(argv: list[str] | None = None) -> int:
    """Train both parts and write OUT.json (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--train-frames", type=int, default=2400)
    ap.add_argument("--tune-frames", type=int, default=2400)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    t0 = datetime.now(timezone.utc)
    x, y = rows_training_set(range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + args.train_frames),
                             progress=sys.stderr.isatty())
    acc = fit_rows_model(x, y, args.out, meta={
        "seeds": f"{TRAIN_SEED_BASE}..{TRAIN_SEED_BASE + args.train_frames - 1}", "trained": t0.isoformat()})
    log.info("row classifier: validation accuracy %.3f", acc)
    xs, ys = state_training_set(args.out, range(TUNE_SEED_BASE, TUNE_SEED_BASE + args.tune_frames),
                                progress=sys.stderr.isatty())
    cv = fit_state_model(xs, ys, args.out, meta={
        "seeds": f"{TUNE_SEED_BASE}..{TUNE_SEED_BASE + args.tune_frames - 1}"})
    log.info("state model: 5-fold accuracy %.3f", cv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
