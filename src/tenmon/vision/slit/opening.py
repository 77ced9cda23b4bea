"""How far the slit is open: a per-row sky/cover/occluded classifier along the slit, then a change point.

Once the slit's azimuth is known, its centre line is one column of the fine strip (the great
circle from the horizon over the zenith). Each row ``t`` of that line is sky (the open part),
cover (the shutter panel, or the dome past the slit's end) or occluded (the telescope tube, off
the sensor). A small multilayer perceptron (trained with scikit-learn by
:func:`train_row_classifier`, stored as plain JSON weights in ``models/slit_rows.json`` and run
here with numpy) gives the three probabilities for every row from the row's interior and flank
levels and their neighbours. The opening ``a`` is then the change point that best explains the
rows (sky below ``a``, cover from ``a`` to the slit's end), weighed by how much each row is seen,
with a prior that a slit is as often fully open or closed as anywhere in between. The posterior
of each state (closed, partial, open) is its confidence: when the tube hides the rows that decide
the state, the posterior stays spread and the state is not claimed.

Why our own and not the YOLO box: the detector's box top reads the opening only for boxes it
classes as partial (70 % state accuracy on rendered frames); the change point over classified
rows uses every row along the slit and says when it cannot decide (measured in
``docs/bench/slit_encoder.md``).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tenmon.core.errors import VisionError
from tenmon.vision.slit.polar import StripGeometry, slit_half_width_deg
from tenmon.vision.slit.band import frame_levels
from tenmon.vision.slit.reading import state_for_fraction

log = logging.getLogger(__name__)

#: The packaged row classifier (JSON: feature scaling and MLP weights).
DEFAULT_ROWS_MODEL = Path(__file__).resolve().parent / "models" / "slit_rows.json"

#: Row classes, in the classifier's output order.
ROW_CLASSES = ("sky", "cover", "occluded")

#: Neighbouring rows (each side) whose base features join a row's own.
CONTEXT = 3

#: Half-width (dome radii) of the slit's interior sampled per row (inside the narrowest slit).
INTERIOR_HALF_WIDTH = 0.05

#: Prior probability of a fully closed and of a fully open slit (the rest spread over partial).
PRIOR_END = 1.0 / 3.0


def _row_levels(strip: np.ndarray, valid: np.ndarray, geometry: StripGeometry, az: float,
                half_width: float) -> np.ndarray:
    """Per row: interior mean, interior spread, left and right flank medians, interior valid share.

    Returns an (H, 5) float32 array, NaN where nothing is seen.
    """
    H = geometry.height
    rows = np.arange(H)[:, None]
    t = geometry.row_to_t(np.arange(H))
    s = strip.astype(np.float32)
    n360 = int(round(360.0 / geometry.az_step_deg))
    c0 = int(math.ceil(geometry.az_to_col(0.0)))

    def cols_of(offsets: np.ndarray) -> np.ndarray:
        c = np.round(geometry.az_to_col(az + offsets)).astype(np.int64)
        return c0 + np.mod(c - c0, n360)

    out = np.full((H, 5), np.nan, np.float32)
    hw_in = np.minimum(slit_half_width_deg(t, INTERIOR_HALF_WIDTH), 12.0)
    ci = cols_of(hw_in[:, None] * np.linspace(-1.0, 1.0, 7)[None, :])
    vi = valid[rows, ci]
    si = np.where(vi, s[rows, ci], np.nan)
    out[:, 4] = vi.mean(axis=1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out[:, 0] = np.nanmean(si, axis=1)
        out[:, 1] = np.nanstd(si, axis=1)
        hw_slit = slit_half_width_deg(t, half_width)
        near = hw_slit < 45.0
        for k, sign in ((2, -1.0), (3, 1.0)):
            off = sign * (1.3 * hw_slit[:, None] + np.linspace(1.5, 8.0, 6)[None, :])
            cf = cols_of(off)
            vf = valid[rows, cf] & near[:, None]
            out[:, k] = np.nanmedian(np.where(vf, s[rows, cf], np.nan), axis=1)
    return out


def row_features(strip: np.ndarray, valid: np.ndarray, geometry: StripGeometry, az: float,
                 half_width: float = 0.1) -> np.ndarray:
    """The classifier's features for every row of the strip along the slit (H x F float32).

    Args:
        strip: grey strip in ``geometry`` (the fine strip at run time).
        valid: mask of strip pixels that come from the sensor.
        geometry: the strip's geometry.
        az: the slit's azimuth, degrees.
        half_width: the slit's half-width in dome radii (sets where its flanks are sampled).
    """
    lv = _row_levels(strip, valid, geometry, az, half_width)
    H = geometry.height
    t = geometry.row_to_t(np.arange(H))
    p5, p50, p95 = frame_levels(strip, valid)
    scale = max(float(p95 - p5), 4.0)
    inner, spread, fl, fr, vshare = lv.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        flank = np.nanmean(np.stack([fl, fr]), axis=0)
    # carry the nearest flank over the zenith rows (the band covers every azimuth there)
    fin = np.isfinite(flank)
    if fin.any():
        idx = np.arange(H)
        flank = np.interp(idx, idx[fin], flank[fin]).astype(np.float32)
    else:
        flank = np.full(H, p50, np.float32)
    inner_f = np.where(np.isfinite(inner), inner, flank)
    seen = np.isfinite(inner).astype(np.float32)
    base = np.stack([
        (inner_f - flank) / scale,
        np.log((inner_f + 4.0) / (flank + 4.0)),
        (inner_f - p50) / scale,
        (flank - p50) / scale,
        np.nan_to_num(spread, nan=0.0) / scale,
        np.nan_to_num(vshare, nan=0.0) * seen,
        (np.nan_to_num(fl, nan=-999) > -999).astype(np.float32) * (np.nan_to_num(fr, nan=-999) > -999),
        np.nan_to_num(np.abs(fl - fr), nan=0.0) / scale,
    ], axis=1).astype(np.float32)
    # neighbours: the same base features CONTEXT rows up and down (edge rows repeated)
    pad = np.concatenate([np.repeat(base[:1], CONTEXT, 0), base, np.repeat(base[-1:], CONTEXT, 0)])
    ctx = [pad[CONTEXT + k: CONTEXT + k + H, :4] - base[:, :4] for k in range(-CONTEXT, CONTEXT + 1) if k]
    # wider context: mean of the first two base features 4..12 rows up and down, and along
    # the whole slit, relative to the row's own
    cs = np.concatenate([np.zeros((1, 2), np.float32), np.cumsum(base[:, :2], axis=0)])

    def window_mean(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        lo = np.clip(lo, 0, H)
        hi = np.clip(hi, 0, H)
        n = np.maximum(hi - lo, 1)[:, None]
        return (cs[hi] - cs[lo]) / n

    r = np.arange(H)
    wide = [window_mean(r - 12, r - 3) - base[:, :2], window_mean(r + 4, r + 13) - base[:, :2],
            np.broadcast_to(np.median(base[:, :2], axis=0), (H, 2)) - base[:, :2]]
    frame = np.broadcast_to(np.array([p5 / 255.0, p50 / 255.0, p95 / 255.0, scale / 255.0],
                                     np.float32), (H, 4))
    tt = np.stack([t / 100.0, (t > 90.0).astype(np.float32)], axis=1).astype(np.float32)
    return np.concatenate([base] + ctx + wide + [frame, tt], axis=1).astype(np.float32)


@dataclass(frozen=True)
class RowsModel:
    """A multilayer perceptron (ReLU hidden layers, softmax out) with its input scaling."""

    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Row class probabilities (N x 3, :data:`ROW_CLASSES` order)."""
        h = (x - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                np.maximum(h, 0.0, out=h)
        h = h - h.max(axis=1, keepdims=True)
        e = np.exp(h)
        return e / e.sum(axis=1, keepdims=True)

    @classmethod
    def load(cls, path: Path) -> "RowsModel":
        """Read the JSON weights written by :func:`save_rows_model`."""
        d = json.loads(Path(path).read_text())
        f = lambda a: np.asarray(a, np.float32)  # noqa: E731
        return cls(mean=f(d["mean"]), scale=f(d["scale"]), weights=[f(w) for w in d["weights"]],
                   biases=[f(b) for b in d["biases"]])


@dataclass(frozen=True)
class Opening:
    """The opening read along the slit."""

    open_fraction: float
    state: str
    confidence: float                 # posterior probability of ``state``
    posterior: dict[str, float]       # of closed, partial, open
    seen_fraction: float              # share of the slit's rows not occluded
    evidence: dict[str, float] = field(default_factory=dict)  # inputs of the state model


def read_opening(probs: np.ndarray, t: np.ndarray, slit_length_deg: float, *,
                 prior_end: float = PRIOR_END, temperature: float = 1.0) -> Opening:
    """The change point ``a`` along the slit from per-row class probabilities.

    Args:
        probs: per-row probabilities (H x 3: sky, cover, occluded).
        t: each row's arc from the horizon (degrees).
        slit_length_deg: the slit's length (degrees of arc).
        prior_end: prior probability of fully closed and of fully open (each).
        temperature: divides the log-likelihood (rows are not independent; > 1 flattens).
    """
    eps = 1e-4
    ps, pc, po = probs[:, 0], probs[:, 1], probs[:, 2]
    seen = 1.0 - po
    # per row: log-likelihood of sky or cover given it is seen, weighed by how much it is seen
    l_sky = seen * np.log((ps + eps) / (ps + pc + 2 * eps))
    l_cov = seen * np.log((pc + eps) / (ps + pc + 2 * eps))
    on = t <= slit_length_deg + 0.5
    L = slit_length_deg
    # candidate openings: every row boundary along the slit, and its two ends
    step = abs(float(t[1] - t[0])) if len(t) > 1 else 1.0
    cand = np.unique(np.clip(np.concatenate([[0.0, L], t[on] + 0.5 * step]), 0.0, L))
    ll = np.array([np.sum(np.where(t[on] < a, l_sky[on], l_cov[on])) for a in cand]) / temperature
    fr = cand / L
    states = np.array([state_for_fraction(f) for f in fr])
    n_part = max(int(np.sum(states == "partial")), 1)
    prior = np.where(states == "partial", (1.0 - 2 * prior_end) / n_part, 0.0)
    for st in ("closed", "open"):
        m = states == st
        if m.any():
            prior = np.where(m, prior_end / m.sum(), prior)
    lp = ll + np.log(np.maximum(prior, 1e-12))
    lp -= lp.max()
    w = np.exp(lp)
    w /= w.sum()
    post = {st: float(w[states == st].sum()) for st in ("closed", "partial", "open")}
    state = max(post, key=post.get)
    m = states == state
    i = int(np.flatnonzero(m)[np.argmax(w[m])])
    frac = float(fr[i])
    if state == "open":
        frac = 1.0
    elif state == "closed":
        frac = 0.0
    # the evidence per state, untempered and without the prior (features of the state model)
    raw = ll * temperature
    best = {st: float(raw[states == st].max()) if (states == st).any() else -1e9
            for st in ("closed", "partial", "open")}
    mp = states == "partial"
    best_partial = float(fr[np.flatnonzero(mp)[np.argmax(raw[mp])]]) if mp.any() else 0.5
    low = on & (t < 8.0)
    high = on & (t >= min(85.0, L - 8.0))
    feats = {"ll_partial_closed": best["partial"] - best["closed"],
             "ll_partial_open": best["partial"] - best["open"],
             "best_partial_fraction": best_partial,
             "seen_low": float(np.mean(seen[low])) if low.any() else 0.0,
             "seen_high": float(np.mean(seen[high])) if high.any() else 0.0,
             "sky_low": float(np.mean(ps[low])) if low.any() else 0.0,
             "sky_high": float(np.mean(ps[high])) if high.any() else 0.0,
             "cover_high": float(np.mean(pc[high])) if high.any() else 0.0}
    return Opening(open_fraction=round(frac, 3), state=state, confidence=post[state], posterior=post,
                   seen_fraction=float(np.mean(seen[on])), evidence=feats)


#: Inputs of the state model, in order: the rows' evidence, then the detector's.
STATE_FEATURES = ("ll_partial_closed", "ll_partial_open", "best_partial_fraction", "seen_low",
                  "seen_high", "sky_low", "sky_high", "cover_high", "seen_fraction",
                  "log_p_open", "log_p_closed", "log_p_partial", "model_score", "box_top_fraction")

#: The single-frame states the state model chooses between, in its output order.
STATE_CLASSES = ("open", "closed", "partial")


def state_features(op: Opening, yolo_probs: np.ndarray, yolo_score: float, top_t_deg: float,
                   slit_length_deg: float) -> np.ndarray:
    """The state model's input vector (:data:`STATE_FEATURES`) for one frame."""
    ev = op.evidence
    py = np.clip(np.asarray(yolo_probs, np.float64), 1e-3, 1.0)
    x = [np.clip(ev["ll_partial_closed"], -60, 60) / 10.0, np.clip(ev["ll_partial_open"], -60, 60) / 10.0,
         ev["best_partial_fraction"], ev["seen_low"], ev["seen_high"], ev["sky_low"], ev["sky_high"],
         ev["cover_high"], op.seen_fraction, math.log(py[0]), math.log(py[1]), math.log(py[2]),
         yolo_score, top_t_deg / slit_length_deg]
    return np.asarray(x, np.float64)


@dataclass(frozen=True)
class StateModel:
    """Multinomial logistic regression over :data:`STATE_FEATURES` (plain JSON weights)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray       # classes x features
    intercept: np.ndarray  # classes

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """State probabilities (:data:`STATE_CLASSES` order) for one feature vector."""
        z = self.coef @ ((x - self.mean) / self.scale) + self.intercept
        z = np.exp(z - z.max())
        return z / z.sum()

    @classmethod
    def from_dict(cls, d: dict) -> "StateModel":
        """From the ``state`` entry of the weights file."""
        f = lambda a: np.asarray(a, np.float64)  # noqa: E731
        return cls(mean=f(d["mean"]), scale=f(d["scale"]), coef=f(d["coef"]), intercept=f(d["intercept"]))


class OpeningReader:
    """Reads the opening along the slit with the packaged row classifier (and state model).

    Args:
        path: the weights file (``models/slit_rows.json`` when None).
        temperature: see :func:`read_opening`.
        prior_end: see :func:`read_opening`.

    Raises:
        VisionError: the weights file is missing or not a weights file.
    """

    def __init__(self, path: Path | None = None, *, temperature: float = 1.0,
                 prior_end: float = PRIOR_END):
        path = Path(path or DEFAULT_ROWS_MODEL)
        try:
            self.model = RowsModel.load(path)
            state = json.loads(path.read_text()).get("state")
            self.state_model = StateModel.from_dict(state) if state else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VisionError(f"cannot load the slit row classifier {path}: {exc}") from exc
        self.temperature = temperature
        self.prior_end = prior_end

    def read(self, strip: np.ndarray, valid: np.ndarray, geometry: StripGeometry, az: float,
             slit_length_deg: float, half_width: float = 0.1) -> Opening:
        """The opening of the slit at azimuth ``az`` (degrees) in a grey strip."""
        x = row_features(strip, valid, geometry, az, half_width)
        probs = self.model.predict_proba(x)
        t = geometry.row_to_t(np.arange(geometry.height))
        return read_opening(probs, t, slit_length_deg, prior_end=self.prior_end,
                            temperature=self.temperature)

    def state(self, op: Opening, yolo_probs: np.ndarray, yolo_score: float, top_t_deg: float,
              slit_length_deg: float) -> tuple[str, float, np.ndarray]:
        """The frame's state from the rows' evidence and the detector's box (state model).

        Returns the state, its probability and all three probabilities (:data:`STATE_CLASSES`
        order). Without a state model in the weights file: the rows' posterior alone.
        """
        if self.state_model is None:
            p = np.array([op.posterior[c] for c in STATE_CLASSES])
        else:
            p = self.state_model.predict_proba(state_features(op, yolo_probs, yolo_score, top_t_deg,
                                                              slit_length_deg))
        k = int(np.argmax(p))
        return STATE_CLASSES[k], float(p[k]), p


# --------------------------------------------------------------------------- training


def row_labels(t: np.ndarray, open_fraction: float, slit_length_deg: float,
               seen: np.ndarray) -> np.ndarray:
    """Training labels per row: 0 sky, 1 cover, 2 occluded (``seen``: share of the row in view)."""
    a = open_fraction * slit_length_deg
    lab = np.where(t < a, 0, 1)
    return np.where(seen < 0.5, 2, lab).astype(np.int64)


def save_rows_model(clf, mean: np.ndarray, scale: np.ndarray, path: Path, meta: dict) -> None:
    """Write a fitted scikit-learn ``MLPClassifier`` as JSON weights (atomically)."""
    from tenmon.vision.slit.reading import atomic_write_text

    d = {"mean": np.asarray(mean).tolist(), "scale": np.asarray(scale).tolist(),
         "weights": [np.asarray(w).tolist() for w in clf.coefs_],
         "biases": [np.asarray(b).tolist() for b in clf.intercepts_],
         "classes": list(ROW_CLASSES), "context": CONTEXT, "meta": meta}
    atomic_write_text(Path(path), json.dumps(d, separators=(",", ":")) + "\n")
