"""Adapting the slit encoder to its site: data, azimuth correction, thresholds, scores (no torch).

``tenmon encoder adapt LABELS.jsonl --calibration CAL.json --out DIR`` (see :func:`adapt`):

1. the labelled frames (:mod:`slit_labels`) are split, seeded, into a training part and a held-back
   part; the held-back part is halved again: one half *calibrates* (thresholds, the azimuth
   correction's check), the other *judges* (before / after, and the refusal);
2. the packaged detector reads every frame; each training frame gives a band at the slit
   (the detector's azimuth where it agrees with the label's, else the label's) with its state,
   per-row (from the open fraction; rows the packaged band network saw occluded stay occluded) and
   presence labels, and a band at a wrong azimuth (no slit);
3. the band network is fine-tuned on them (:mod:`slit_adapt_train`, torch);
4. the azimuth correction: a robust low-order Fourier series in azimuth, fitted to the label -
   reading differences (a camera tilt or an imperfect lens model bends azimuths smoothly);
5. ``band_state_decided`` is chosen on the calibrating half: the lowest state probability above
   which the stated states are right (confidence calibrated: it states a state that is right, or
   says ``unknown``);
6. both models are scored on the judging half; a model worse than the one it replaces is not
   written.

A model folder holds ``slit.onnx`` (the detector, copied), ``slit_band.onnx`` (adapted) and
``adapt.json`` (settings, correction, report); :class:`~slit_detector.SlitDetector` takes it as
``DetectorSettings(model_dir=...)``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tenmon.core.errors import ConfigError, VisionError

log = logging.getLogger(__name__)

ADAPT_FILE = "adapt.json"
DETECTOR_FILE = "slit.onnx"
BAND_FILE = "slit_band.onnx"

#: States the encoder reads (label ``moving`` is judged by its open fraction, if any).
READ_STATES = ("closed", "partial", "open")


# --------------------------------------------------------------------------- azimuth correction


@dataclass
class AzimuthCorrection:
    """``true - read`` azimuth as a Fourier series in the read azimuth (degrees); zero by default."""

    coeffs: list[float] = field(default_factory=list)   # c0, a1, b1, a2, b2, ...

    @property
    def active(self) -> bool:
        return any(abs(c) > 0 for c in self.coeffs)

    def __call__(self, az_deg):
        a = np.radians(np.asarray(az_deg, np.float64))
        out = np.zeros_like(a)
        if self.coeffs:
            out = out + self.coeffs[0]
            for k in range(1, (len(self.coeffs) - 1) // 2 + 1):
                out = out + self.coeffs[2 * k - 1] * np.cos(k * a) + self.coeffs[2 * k] * np.sin(k * a)
        return float(out) if np.ndim(out) == 0 else out

    @classmethod
    def fit(cls, az_read: np.ndarray, residual: np.ndarray, order: int = 2,
            iterations: int = 8) -> "AzimuthCorrection":
        """Robust (Huber, IRLS) fit of ``residual`` (true - read) against ``az_read``."""
        az_read = np.asarray(az_read, np.float64)
        residual = np.asarray(residual, np.float64)
        n_terms = 1 + 2 * order
        if len(az_read) < 3 * n_terms:
            order = max(0, (len(az_read) // 3 - 1) // 2)
            n_terms = 1 + 2 * order
        if len(az_read) == 0:
            return cls()
        a = np.radians(az_read)
        cols = [np.ones_like(a)]
        for k in range(1, order + 1):
            cols += [np.cos(k * a), np.sin(k * a)]
        x = np.stack(cols, 1)
        w = np.ones_like(residual)
        beta = np.zeros(n_terms)
        for _ in range(iterations):
            sw = np.sqrt(w)
            beta, *_ = np.linalg.lstsq(x * sw[:, None], residual * sw, rcond=None)
            r = residual - x @ beta
            scale = max(1.4826 * float(np.median(np.abs(r))), 0.05)
            u = np.abs(r) / (1.345 * scale)
            w = np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-9))
        return cls([float(b) for b in beta])


def load_model_dir(folder: str | Path) -> tuple[dict[str, Any], AzimuthCorrection]:
    """Detector settings and the azimuth correction of an adapted model folder.

    Raises:
        VisionError: the folder, a model file or ``adapt.json`` is missing or invalid.
    """
    d = Path(folder)
    meta = d / ADAPT_FILE
    if not meta.is_file():
        raise VisionError(f"{d}: not an adapted model folder (no {ADAPT_FILE}; made by `tenmon encoder adapt`)")
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise VisionError(f"{meta}: unreadable: {exc}") from None
    update: dict[str, Any] = {"model_path": d / DETECTOR_FILE, "band_model_path": d / BAND_FILE}
    for p in (d / DETECTOR_FILE, d / BAND_FILE):
        if not p.is_file():
            raise VisionError(f"{d}: {p.name} is missing")
    if (d / FINDER_FILE).is_file():
        update["finder_model_path"] = d / FINDER_FILE
    update.update({k: v for k, v in data.get("settings", {}).items()})
    return update, AzimuthCorrection(list(data.get("azimuth_correction", [])))


# --------------------------------------------------------------------------- scoring


def angle_err(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def label_read_state(label) -> str | None:
    """The state a reading of this frame should give (None: the label does not say)."""
    if label.state in READ_STATES:
        return label.state
    if label.state == "moving" and label.open_fraction is not None:
        f = label.open_fraction
        return "closed" if f <= 0.02 else "open" if f >= 0.98 else "partial"
    return None


def score(readings: list, labels: list, *, far_deg: float = 5.0) -> dict[str, Any]:
    """Figures of ``readings`` against ``labels`` (same order).

    ``state_coverage``: share of frames with a state label given a state; ``state_accuracy``: share
    of those right; azimuth errors over frames with an azimuth label and a reading azimuth;
    ``confidently_wrong``: a state given with the azimuth more than ``far_deg`` off (or a state
    given that is wrong) as a share of all frames.
    """
    n = len(labels)
    st_lab = st_given = st_right = 0
    az_errs = []
    az_lab = 0
    conf_wrong = 0
    for r, lab in zip(readings, labels):
        want = label_read_state(lab)
        given = r.state if r.state in READ_STATES else None
        if want is not None:
            st_lab += 1
            if given is not None:
                st_given += 1
                st_right += given == want
        if lab.azimuth_deg is not None:
            az_lab += 1
            if r.azimuth_deg is not None:
                e = angle_err(r.azimuth_deg, lab.azimuth_deg)
                az_errs.append(e)
                if given is not None and e > far_deg:
                    conf_wrong += 1
    errs = np.array(az_errs) if az_errs else np.array([np.nan])
    return {
        "frames": n, "state_labelled": st_lab, "state_given": st_given, "state_right": st_right,
        "state_wrong": st_given - st_right,
        "state_coverage": round(st_given / st_lab, 4) if st_lab else None,
        "state_accuracy": round(st_right / st_given, 4) if st_given else None,
        "azimuth_labelled": az_lab, "azimuth_given": len(az_errs),
        "azimuth_coverage": round(len(az_errs) / az_lab, 4) if az_lab else None,
        "azimuth_median_deg": None if not az_errs else round(float(np.median(errs)), 3),
        "azimuth_p95_deg": None if not az_errs else round(float(np.percentile(errs, 95)), 3),
        "azimuth_over_5deg": int(np.sum(errs > 5.0)) if az_errs else 0,
        "confidently_wrong": conf_wrong,
        "confidently_wrong_rate": round(conf_wrong / n, 4) if n else None,
    }


def worse(new: dict, old: dict) -> list[str]:
    """Why ``new`` is worse than ``old`` on the same frames (empty: not worse)."""
    why = []
    if new["state_wrong"] > old["state_wrong"] and new["state_right"] - 3 * new["state_wrong"] < \
            old["state_right"] - 3 * old["state_wrong"]:
        why.append(f"more wrong states ({new['state_wrong']} against {old['state_wrong']})")
    if new["state_right"] + 2 < old["state_right"] and new["state_wrong"] >= old["state_wrong"]:
        why.append(f"fewer right states ({new['state_right']} against {old['state_right']})")
    if new["confidently_wrong"] > old["confidently_wrong"]:
        why.append(f"more confidently wrong readings ({new['confidently_wrong']} against "
                   f"{old['confidently_wrong']})")
    if new["azimuth_over_5deg"] > old["azimuth_over_5deg"] and \
            new["azimuth_over_5deg"] / max(new["azimuth_given"], 1) > old["azimuth_over_5deg"] / max(old["azimuth_given"], 1):
        why.append(f"more azimuths over 5 degrees off ({new['azimuth_over_5deg']} of {new['azimuth_given']}, "
                   f"against {old['azimuth_over_5deg']} of {old['azimuth_given']})")
    mn, mo = new["azimuth_median_deg"], old["azimuth_median_deg"]
    if mn is not None and mo is not None and mn > mo + 0.05:
        why.append(f"azimuth median error {mn} deg against {mo}")
    if new["azimuth_given"] + 2 < old["azimuth_given"] and (mn is None or mo is None or mn >= mo):
        why.append(f"fewer azimuths ({new['azimuth_given']} against {old['azimuth_given']})")
    return why


def choose_state_threshold(probs: np.ndarray, right: np.ndarray, *, max_error: float = 0.01,
                           floor: float = 0.6, default: float = 0.97) -> float:
    """The lowest state probability above which at most ``max_error`` of stated states are wrong.

    ``probs``: each reading's state probability; ``right``: whether its guess was right. With one
    wrong guess above every candidate threshold the answer is the smallest threshold above the
    most confident wrong guess. Never below ``floor``; ``default`` when there is nothing to judge.
    """
    probs = np.asarray(probs, np.float64)
    right = np.asarray(right, bool)
    if probs.size < 5:
        return default
    cands = np.unique(np.concatenate([[floor], probs[probs >= floor]]))
    for t in cands:
        sel = probs >= t
        n = int(sel.sum())
        if n == 0:
            break
        wrong = int((~right[sel]).sum())
        # allow max_error of them wrong, but never the most confident guess wrong
        if wrong <= math.floor(max_error * n):
            return float(min(max(t, floor), 0.9999))
    return 0.9999


# --------------------------------------------------------------------------- data


@dataclass
class Frame:
    """One labelled frame read by the packaged detector."""

    label: Any
    gray: np.ndarray
    reading: Any
    levels: tuple[float, float, float]


def read_frames(labels: list, calibration, detector, progress: Callable[[int], None] | None = None
                ) -> list[Frame]:
    """Read every labelled frame with ``detector`` (grey kept for the bands)."""
    from datetime import datetime, timezone

    from tenmon.vision.images import read_image
    from tenmon.vision.slit.polar import to_gray
    from tenmon.vision.slit.band import frame_levels

    out = []
    t = datetime(2000, 1, 1, tzinfo=timezone.utc)
    for lab in labels:
        gray = to_gray(read_image(lab.image))
        r = detector.estimate(gray, calibration, time=t)
        maps = detector.maps(calibration, gray.shape)
        levels = frame_levels(maps.model.unwrap(gray), maps.model.valid)
        out.append(Frame(lab, gray, r, levels))
        if progress:
            progress(1)
    return out


def band_examples(frames: list[Frame], calibration, base_band, *, slit_length_deg: float = 100.0,
                  seed: int = 0, negatives: int = 1,
                  refine: Callable[[Frame, float], float | None] | None = None) -> dict[str, np.ndarray]:
    """Inputs and labels (rows, state, here; -1 = no label) of the band network from frames.

    The band is taken at the label's azimuth; without one, where ``refine`` (frame, the packaged
    detector's confident reading or None -> an azimuth, or None: the frame is skipped) puts it,
    or at that confident reading when there is no ``refine``.
    """
    from tenmon.vision.slit.band import BAND_T, STATES, band_input, extract_band

    rng = np.random.default_rng(seed)
    xs, rows, states, heres = [], [], [], []
    for f in frames:
        lab, r = f.label, f.reading
        det_az = r.azimuth_deg
        if lab.azimuth_deg is not None:
            agree = det_az is not None and angle_err(det_az, lab.azimuth_deg) <= 3.0
            az = lab.azimuth_deg
            seen_by_detector = agree
        elif refine is not None:
            az, seen_by_detector = refine(f, det_az if det_az is not None and r.confidence >= 0.3 else None), True
            if az is None:
                continue
        elif det_az is not None and r.confidence >= 0.3:
            az, seen_by_detector = det_az, True
        else:
            continue
        az_pos = az + float(rng.normal(0.0, 0.3))
        band, valid = extract_band(f.gray, calibration, az_pos)
        x = band_input(band, valid, f.levels)
        base = base_band.read_input(x)
        occluded = base.row_probs[:, 2] > 0.5
        want = label_read_state(lab)
        frac = lab.open_fraction
        if frac is None and want in ("open", "closed"):
            frac = 1.0 if want == "open" else 0.0
        if frac is not None:
            # rows the packaged network saw occluded are left out (a telescope in front, or its
            # error: it has never seen this site); rows off the sensor are occluded
            rl = np.where(BAND_T < frac * slit_length_deg, 0, 1)
            rl = np.where(occluded, -1, rl)
            rl = np.where(~valid.any(axis=1), 2, rl)
        else:
            rl = np.full(len(BAND_T), -1)
        here = 1 if (seen_by_detector or base.here >= 0.5 or lab.azimuth_deg is not None) else -1
        st = STATES.index(want) if want is not None else -1
        xs.append(x)
        rows.append(rl.astype(np.int64))
        states.append(st)
        heres.append(here)
        for _ in range(negatives):
            off = float(rng.uniform(5.0, 15.0) if rng.random() < 0.5 else rng.uniform(15.0, 180.0))
            bn, vn = extract_band(f.gray, calibration, az + off * (1 if rng.random() < 0.5 else -1))
            xs.append(band_input(bn, vn, f.levels))
            rows.append(np.full(len(BAND_T), -1, np.int64))
            states.append(-1)
            heres.append(0)
    if not xs:
        raise VisionError("no labelled frame gives a band to learn from (no azimuth known or read)")
    return {"x": np.stack(xs).astype(np.float32), "rows": np.stack(rows), "state": np.array(states),
            "here": np.array(heres)}


def finder_examples(frames: list[Frame], calibration) -> tuple[np.ndarray, np.ndarray]:
    """Finder inputs and slit azimuths: the label's azimuth, else a confident reading's."""
    from tenmon.vision.slit.polar import StripMapper

    xs, azs = [], []
    mapper = None
    for f in frames:
        az = f.label.azimuth_deg
        if az is None and f.reading.azimuth_deg is not None and f.reading.confidence >= 0.5:
            az = f.reading.azimuth_deg
        if az is None:
            continue
        if mapper is None or mapper.frame_shape != f.gray.shape[:2]:
            mapper = StripMapper(calibration, f.gray.shape, FINDER_GEOMETRY)
        xs.append(finder_input(mapper.unwrap(f.gray), mapper.valid, f.levels))
        azs.append(az)
    if not xs:
        return np.zeros((0, 2, 1, 1), np.float32), np.zeros(0)
    return np.stack(xs), np.array(azs)


#: Edge-pair significance of a whole-circle search that a frame without an azimuth label is
#: learnt from (on 60 development frames of the second site, every such peak above 30 was the slit).
UNMISTAKABLE_Z = 30.0


def half_width_ranges() -> list[tuple[float, ...]]:
    """Candidate edge half-width sets of a site's azimuth refinement: 9 widths over 0.02 dome
    radii, from a narrow slit's (0.03) to a wide one's (0.17)."""
    return [tuple(float(v) for v in np.round(np.arange(lo, lo + 0.0201, 0.0025), 4))
            for lo in np.arange(0.03, 0.1501, 0.01)]


def choose_half_widths(frames: list[Frame], calibration, detector, *, start_off_deg: float = 2.0,
                       cap_deg: float = 3.0) -> tuple[list[float] | None, list[tuple[float, float]], dict]:
    """The edge half-widths with which the azimuth refinement best finds the labelled azimuths.

    Each frame with an azimuth label is refined from the label moved by ``start_off_deg`` (to one
    side, then the other: as far as a detector's first guess may be), with the packaged widths
    and with each of :func:`half_width_ranges`; a set's loss is the mean error against the labels,
    each capped at ``cap_deg`` (a rib pair or a rail taken for the slit costs the cap, not more).

    Returns the chosen widths (None: the packaged ones), (refined, label) azimuth pairs of the
    chosen set where the refinement held (for the azimuth correction), and a small report.
    """
    from tenmon.vision.slit.classical import CLASSICAL_GEOMETRY, HALF_WIDTHS, fit_azimuth

    window = detector.settings.refine_window_deg
    strips = []
    for k, f in enumerate(frames):
        if f.label.azimuth_deg is None:
            continue
        m = detector.maps(calibration, f.gray.shape)
        strips.append((m.fine.unwrap(f.gray), m.fine.valid, f.label.azimuth_deg,
                       start_off_deg if k % 2 else -start_off_deg))
    if len(strips) < 10:
        return None, [], {"frames": len(strips), "chosen": None}
    best = None
    losses = {}
    for hw in [None] + half_width_ranges():
        errs, pairs = [], []
        for strip, valid, lab, off in strips:
            fit = fit_azimuth(strip, valid, CLASSICAL_GEOMETRY, around_deg=lab + off, window_deg=window,
                              half_widths=hw or HALF_WIDTHS)
            if fit is None or fit.support < 0.25 or angle_err(fit.azimuth_deg, lab + off) >= window - 0.1:
                errs.append(min(abs(off), cap_deg))
                continue
            e = angle_err(fit.azimuth_deg, lab)
            errs.append(min(e, cap_deg))
            if e <= cap_deg:
                pairs.append((float(fit.azimuth_deg), float(lab)))
        loss = float(np.mean(errs))
        losses["packaged" if hw is None else f"{hw[0]:.3f}-{hw[-1]:.3f}"] = round(loss, 3)
        if best is None or loss < best[0] - 1e-9:
            best = (loss, hw, pairs)
    loss, hw, pairs = best
    return (None if hw is None else list(hw)), pairs, {"frames": len(strips), "losses": losses,
                                                       "chosen": None if hw is None else [hw[0], hw[-1]],
                                                       "loss": round(loss, 3)}


def split(n: int, held_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the training, calibrating and judging parts (seeded)."""
    order = np.random.default_rng(seed).permutation(n)
    n_held = max(2, int(round(held_fraction * n)))
    n_cal = n_held // 2
    return order[n_held:], order[:n_cal], order[n_cal:n_held]


# --------------------------------------------------------------------------- the whole run


class AdaptRefused(VisionError):
    """The adapted model is worse than the one it would replace on the held-back frames."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def adapt(labels_path: Path, calibration, out: Path, *, base_dir: Path | None = None,
          held_fraction: float = 0.3, steps: int | None = None, seed: int = 0, threads: int = 2,
          progress: bool = False, log_fn: Callable[[str], None] | None = None,
          train_front: bool = False) -> dict[str, Any]:
    """Fine-tune the encoder on a labels file; write ``out`` unless the result is worse.

    Needs torch (the ``train`` extra). Returns the report (also in ``out/adapt.json``).

    Raises:
        ConfigError: an unreadable labels file, too few labels.
        AdaptRefused: the adapted model is worse on the judging frames (nothing written).
    """
    from tenmon.vision.slit.training import adapt as slit_adapt_train
    from tenmon.vision.slit.band import DEFAULT_BAND_MODEL, BandReader
    from tenmon.vision.slit.detector import DEFAULT_MODEL_PATH, DetectorSettings, SlitDetector
    from tenmon.vision.slit.labels import read_labels
    from tenmon.vision.slit.reading import atomic_write_text

    say = log_fn or (lambda m: None)
    t_start = time.monotonic()
    labels = read_labels(labels_path)
    if len(labels) < 10:
        raise ConfigError(f"{labels_path}: {len(labels)} labelled frames; adapting needs at least 10")
    base_settings = DetectorSettings(model_dir=base_dir) if base_dir else DetectorSettings()
    base = SlitDetector(base_settings)
    base_det_path = Path(base.model_path or DEFAULT_MODEL_PATH)
    base_band_path = Path(base.settings.band_model_path or DEFAULT_BAND_MODEL)
    tr_i, cal_i, judge_i = split(len(labels), held_fraction, seed)
    say(f"{len(labels)} labelled frames: {len(tr_i)} to learn from, {len(cal_i)} to calibrate, "
        f"{len(judge_i)} to judge")
    bar = _bar(len(labels), "reading frames", progress)
    frames = read_frames(labels, calibration, base, progress=bar.update if bar else None)
    if bar:
        bar.close()
    t_read = time.monotonic() - t_start
    tr = [frames[i] for i in tr_i]
    cal = [frames[i] for i in cal_i]
    judge = [frames[i] for i in judge_i]
    before = score([f.reading for f in judge], [f.label for f in judge])
    # the refinement's edge widths, and the azimuth correction of what it finds, from the
    # frames learnt from (the correction is kept only if the calibrating half agrees)
    hws, pairs, hw_report = choose_half_widths(tr, calibration, base)
    say(f"azimuth refinement: edge half-widths {hw_report.get('chosen') or 'packaged'} "
        f"(on {hw_report['frames']} frames, loss {hw_report.get('loss')})")
    extra = {"refine_half_widths": hws} if hws else {}
    site_refiner = SlitDetector(base_settings)
    site_refiner.settings = site_refiner.settings.model_copy(update=extra)

    def refine(f: Frame, az: float | None) -> float | None:
        # a frame without an azimuth label: the packaged reading refined with the site's widths,
        # else the model-free search over the whole circle where its edge pair is unmistakable
        m = site_refiner.maps(calibration, f.gray.shape)
        strip = m.fine.unwrap(f.gray)
        if az is not None:
            a, fit = site_refiner._refine(az, strip, m.fine.valid)
            if fit is not None:
                return a
        from tenmon.vision.slit.classical import CLASSICAL_GEOMETRY, fit_azimuth

        fit = fit_azimuth(strip, m.fine.valid, CLASSICAL_GEOMETRY,
                          half_widths=tuple(hws) if hws else site_refiner.classical.half_widths)
        return fit.azimuth_deg if fit is not None and fit.z >= UNMISTAKABLE_Z else None

    base_reader = BandReader(base_band_path, threads=1, flip_average=False)
    data = band_examples(tr, calibration, base_reader, slit_length_deg=base.settings.slit_length_deg,
                         seed=seed, refine=refine)
    say(f"{len(data['x'])} bands to learn from ({int((data['state'] >= 0).sum())} with a state)")
    out = Path(out)
    tmp = out.parent / f".{out.name}.adapting"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        t0 = time.monotonic()
        train_report = slit_adapt_train.fine_tune(base_band_path, data, tmp / BAND_FILE, steps=steps,
                                                  seed=seed, threads=threads, progress=progress,
                                                  train_front=train_front)
        fx, faz = finder_examples(tr, calibration)
        finder_report = None
        if len(fx) >= 10:
            finder_report = slit_adapt_train.train_finder(fx, faz, tmp / FINDER_FILE, seed=seed,
                                                          steps=steps, threads=threads,
                                                          progress=progress)
            train_report["finder"] = finder_report
        else:
            say(f"{len(fx)} frames with an azimuth to learn from: no slit finder")
        t_train = time.monotonic() - t0
        shutil.copyfile(base_det_path, tmp / DETECTOR_FILE)
        train_report["half_widths"] = hw_report
        if len(pairs) >= 6:
            a_ref = np.array([p[0] for p in pairs])
            corr = AzimuthCorrection.fit(a_ref, (np.array([p[1] for p in pairs]) - a_ref + 180.0) % 360.0 - 180.0)
        else:
            corr = _fit_correction(tr + cal, base.correction)
        settings = {"band_state_decided": 0.5, **extra}
        _write_meta(tmp, settings, corr, {})
        cand = SlitDetector(DetectorSettings(model_dir=tmp))
        cal_read = _reread(cand, cal, calibration)
        cal_score_c = score(cal_read, [f.label for f in cal])
        cand.correction = AzimuthCorrection()
        cal_score_n = score(_reread(cand, cal, calibration), [f.label for f in cal])
        if (cal_score_c["azimuth_median_deg"] or 0) > (cal_score_n["azimuth_median_deg"] or 0):
            corr = AzimuthCorrection()
            say("azimuth correction not kept: no better on the calibrating frames")
        # the state threshold: the lowest probability at which the stated states are right
        probs, right = [], []
        for r, f in zip(cal_read, cal):
            want = label_read_state(f.label)
            guess = r.details.get("state_guess", r.state)
            if want is None or guess not in READ_STATES or "state_confidence" not in r.details:
                continue
            probs.append(float(r.details["state_confidence"]))
            right.append(guess == want)
        thr = choose_state_threshold(np.array(probs), np.array(right),
                                     default=base.settings.band_state_decided)
        settings = {"band_state_decided": round(thr, 4), **extra}
        say(f"state decided from probability {thr:.4f} (calibrated on {len(probs)} frames)")
        _write_meta(tmp, settings, corr, {})
        new_det = SlitDetector(DetectorSettings(model_dir=tmp))
        after = score(_reread(new_det, judge, calibration), [f.label for f in judge])
        why = worse(after, before)
        report = {"labels": str(labels_path), "frames": len(labels), "learn": len(tr),
                  "calibrate": len(cal), "judge": len(judge), "seed": seed,
                  "base": {"detector": str(base_det_path), "band": str(base_band_path)},
                  "settings": settings, "azimuth_correction": corr.coeffs,
                  "before": before, "after": after, "refused": why,
                  "train": train_report,
                  "seconds": {"reading": round(t_read, 1), "training": round(t_train, 1),
                              "total": round(time.monotonic() - t_start, 1)}}
        if why:
            raise AdaptRefused("the adapted model is worse on the held-back frames: " + "; ".join(why)
                               + f"; nothing written to {out}", report)
        _write_meta(tmp, settings, corr, report)
        if out.exists():
            old = out.parent / f".{out.name}.old"
            if old.exists():
                shutil.rmtree(old)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
        report["out"] = str(out)
        atomic_write_text(out / ADAPT_FILE, json.dumps(_meta(settings, corr, report), indent=1) + "\n")
        return report
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _meta(settings: dict, corr: AzimuthCorrection, report: dict) -> dict:
    return {"settings": settings, "azimuth_correction": corr.coeffs, "report": report}


def _write_meta(folder: Path, settings: dict, corr: AzimuthCorrection, report: dict) -> None:
    from tenmon.vision.slit.reading import atomic_write_text

    atomic_write_text(folder / ADAPT_FILE, json.dumps(_meta(settings, corr, report), indent=1) + "\n")


def _reread(detector, frames: list[Frame], calibration) -> list:
    from datetime import datetime, timezone

    t = datetime(2000, 1, 1, tzinfo=timezone.utc)
    return [detector.estimate(f.gray, calibration, time=t) for f in frames]


def _fit_correction(frames: list[Frame], prior: AzimuthCorrection) -> AzimuthCorrection:
    """The correction (on top of ``prior``'s) from frames with a label and a reading close to it."""
    az, res = [], []
    for f in frames:
        r, lab = f.reading, f.label
        if r.azimuth_deg is None or lab.azimuth_deg is None:
            continue
        raw = r.details.get("uncorrected_azimuth_deg", r.azimuth_deg)
        d = (lab.azimuth_deg - raw + 180.0) % 360.0 - 180.0
        if abs(d) <= 8.0:
            az.append(raw)
            res.append(d)
    if len(az) < 6:
        return prior
    return AzimuthCorrection.fit(np.array(az), np.array(res))


def _bar(total: int, desc: str, on: bool):
    if not on:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame")


def summary_line(s: dict) -> str:
    """One line of figures (for people)."""
    def pct(v):
        return "--" if v is None else f"{100 * v:.1f} %"

    return (f"state on {pct(s['state_coverage'])} of {s['state_labelled']}, right {pct(s['state_accuracy'])}; "
            f"azimuth median {s['azimuth_median_deg']} deg, p95 {s['azimuth_p95_deg']} deg; "
            f"confidently wrong {s['confidently_wrong']}")


def median_or_none(values):
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- the site's slit finder

#: The finder's strip: exactly 360 degrees (circular: a rolled strip is the dome turned), 1.25
#: degrees a column; rows from 110 degrees of arc down to the horizon.
FINDER_GEOMETRY = None  # set below (import order: polar imports slit_types only)
FINDER_FILE = "slit_finder.onnx"


def _finder_geometry():
    from tenmon.vision.slit.polar import StripGeometry

    return StripGeometry(width=288, height=96, pad_deg=0.0, t_max_deg=110.0)


FINDER_GEOMETRY = _finder_geometry()


def finder_input(strip: np.ndarray, valid: np.ndarray, levels: tuple[float, float, float]) -> np.ndarray:
    """The finder's input (2 x rows x cols, float32): normalised grey and the on-sensor mask."""
    p5, p50, p95 = levels
    scale = max(p95 - p5, 4.0)
    x = np.empty((2,) + strip.shape, np.float32)
    x[0] = np.where(valid, (strip.astype(np.float32) - p50) / scale, 0.0)
    x[1] = valid
    return x


def finder_target(az_deg: float, sigma_cols: float = 1.2) -> np.ndarray:
    """A circular Gaussian over the finder's columns centred on ``az_deg`` (sums to 1)."""
    g = FINDER_GEOMETRY
    c = float(g.az_to_col(az_deg % 360.0))
    cols = np.arange(g.width)
    d = (cols - c + g.width / 2) % g.width - g.width / 2
    t = np.exp(-0.5 * (d / sigma_cols) ** 2)
    return (t / t.sum()).astype(np.float32)


class SlitFinder:
    """The site's slit finder (``slit_finder.onnx`` of an adapted model folder): a small network
    over the 360-degree strip giving, per azimuth column, the probability that the slit is there.

    Raises:
        VisionError: the model cannot be loaded.
    """

    def __init__(self, path: Path, threads: int = 1):
        from tenmon.core.onnx_session import load_session

        self.session = load_session(Path(path), threads)
        self.name = self.session.get_inputs()[0].name
        self._maps: dict = {}

    def probabilities(self, gray: np.ndarray, calibration, levels) -> np.ndarray:
        from tenmon.vision.slit.polar import StripMapper

        key = (calibration, gray.shape[:2])
        m = self._maps.get(key)
        if m is None:
            if len(self._maps) > 3:
                self._maps.clear()
            m = self._maps[key] = StripMapper(calibration, gray.shape, FINDER_GEOMETRY)
        x = finder_input(m.unwrap(gray), m.valid, levels)
        z = self.session.run(None, {self.name: x[None]})[0].reshape(-1).astype(np.float64)
        z = np.exp(z - z.max())
        return z / z.sum()

    def candidates(self, gray: np.ndarray, calibration, levels, n: int = 3,
                   min_prob: float = 0.02) -> list[tuple[float, float]]:
        """Up to ``n`` (azimuth, probability mass within 3 columns) peaks, best first, 6 degrees apart."""
        p = self.probabilities(gray, calibration, levels)
        g = FINDER_GEOMETRY
        w = len(p)
        mass = sum(np.roll(p, k) for k in range(-3, 4))
        out: list[tuple[float, float]] = []
        for i in np.argsort(-mass):
            if len(out) >= n or mass[i] < min_prob:
                break
            a = float(g.col_to_az(i))
            if any(angle_err(a, b) < 6.0 for b, _ in out):
                continue
            # sub-column peak: parabola through the neighbours
            y0, y1, y2 = p[(i - 1) % w], p[i], p[(i + 1) % w]
            den = y0 - 2 * y1 + y2
            off = 0.5 * (y0 - y2) / den if den < 0 else 0.0
            out.append((float(g.col_to_az(i + np.clip(off, -0.5, 0.5))) % 360.0, float(mass[i])))
        return out
