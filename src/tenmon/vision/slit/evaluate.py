"""Scoring slit readers on rendered frames: accuracy, honesty of confidence, speed.

Used by the benchmark (``benchmarks/slit_encoder.py``), the training report and the tests. Frames
come from :func:`tenmon.vision.slit.render.render_random` with the given seeds (benchmarks use seeds
from :data:`tenmon.vision.slit.training.detector.EVAL_SEED_BASE`, which training never touches).

Scoring rules (stated so the figures can be read):

- A frame is *visible* when the renderer's truth says the slit can be made out
  (``slit_visible``: at least half of its lower part is seen), *hidden* when less than a fifth of
  it can be seen (:data:`HIDDEN_BELOW`), and *partly visible* in between: such frames count in
  the honesty figure only (a reader may answer or not, but an answer must be right).
  ``strict=True`` sorts frames by the first renderer's stricter visibility instead (it asked
  every pixel of the slit to stand 4 sigma + 0.02 out of the noise and so called many plainly
  visible slits hidden; see :mod:`tenmon.vision.slit.render`).
- State accuracy *in view*: over the visible frames whose state-deciding part of the slit (its
  ends, or the edge of a partly open shutter) is in view (``state_visibility >= 0.5``); where
  the telescope hides it, no reader can tell the state, only guess it.
- Azimuth error and open-fraction error are over visible frames; a reader that gives no
  azimuth on a visible frame scores an infinite azimuth error, one that gives no state an
  open-fraction error of 1. A reading may give the azimuth with the state ``unknown`` (the slit
  found, the part that tells its state hidden): its azimuth is scored.
- State accuracy is over visible frames; ``unknown`` counts as wrong. State accuracy *of the
  frames given a state*: over the visible frames whose answer is open, closed or partial, with
  the share of visible frames (and of those with the state-deciding part in view) given one.
- Honesty: of all frames a reader gave a state other than ``unknown`` (visible or not), the share
  more than 5 degrees off; the same over all frames given an azimuth. Hidden frames answered
  ``unknown``: the share of hidden frames whose state is ``unknown``, and the share given
  neither a state nor an azimuth.
- Time: per-frame processing time (image decoding and rendering excluded).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from tenmon.vision.slit import render as ir_render
from tenmon.vision.slit.reading import angle_diff

#: Visibility below which the slit "cannot be seen" (the frame must come out unknown).
HIDDEN_BELOW = 0.2


@dataclass
class Answer:
    azimuth_deg: float | None
    open_fraction: float | None
    state: str
    confidence: float
    elapsed_ms: float
    source: str
    cpu_ms: float | None = None


@dataclass
class FrameResult:
    seed: int
    width: int
    height: int
    scene: str
    occlusion: str
    visible: bool
    visibility: float
    azimuth_deg: float
    open_fraction: float
    state: str
    answers: dict[str, Answer] = field(default_factory=dict)
    visibility_strict: float | None = None
    state_visibility: float | None = None

    def az_error(self, reader: str) -> float:
        a = self.answers[reader]
        if a.azimuth_deg is None:
            return math.inf
        return abs(angle_diff(a.azimuth_deg, self.azimuth_deg))


@dataclass
class EvalReport:
    frames: list[FrameResult]

    def readers(self) -> list[str]:
        return list(self.frames[0].answers) if self.frames else []

    def figures(self, reader: str, frames: list[FrameResult] | None = None, *,
                strict: bool = False) -> dict:
        """The scoring rules of the module docstring, for one reader.

        With ``strict`` the frames are sorted into visible / hidden by the first renderer's
        stricter visibility (``visibility_strict``), to compare with figures scored that way.
        """
        frames = self.frames if frames is None else frames
        if strict:
            def v(f: FrameResult) -> float:
                return f.visibility if f.visibility_strict is None else f.visibility_strict
            vis = [f for f in frames if v(f) >= ir_render.VISIBLE_THRESHOLD]
            hid = [f for f in frames if v(f) < HIDDEN_BELOW]
        else:
            vis = [f for f in frames if f.visible]
            hid = [f for f in frames if f.visibility < HIDDEN_BELOW]
        in_view = [f for f in vis if f.state_visibility is None or f.state_visibility >= 0.5]
        st_in_view = np.array([f.answers[reader].state == f.state for f in in_view])
        az = np.array([f.az_error(reader) for f in vis]) if vis else np.array([])
        fe = np.array([abs(f.answers[reader].open_fraction - f.open_fraction)
                       if f.answers[reader].open_fraction is not None and f.answers[reader].state != "unknown"
                       else 1.0 for f in vis]) if vis else np.array([])
        st = np.array([f.answers[reader].state == f.state for f in vis]) if vis else np.array([])
        answered = [f for f in frames if f.answers[reader].state != "unknown"]
        wrong5 = [f for f in answered if f.az_error(reader) > 5.0]
        with_az = [f for f in frames if f.answers[reader].azimuth_deg is not None]
        wrong5_az = [f for f in with_az if f.az_error(reader) > 5.0]
        stated_in_view = [f.answers[reader].state != "unknown" for f in in_view]
        ms = np.array([f.answers[reader].elapsed_ms for f in frames])
        cpu = np.array([f.answers[reader].cpu_ms for f in frames if f.answers[reader].cpu_ms is not None])

        def pct(x: np.ndarray, q: float) -> float | None:
            if x.size == 0:
                return None
            v = float(np.percentile(x, q, method="higher"))
            return None if not math.isfinite(v) else round(v, 3)

        return {
            "frames": len(frames), "visible": len(vis), "hidden": len(hid),
            "partly_visible": len(frames) - len(vis) - len(hid),
            "az_err_median_deg": pct(az, 50), "az_err_p95_deg": pct(az, 95),
            "az_err_p95_answered_deg": pct(az[np.isfinite(az)], 95) if az.size else None,
            "state_accuracy": None if st.size == 0 else round(float(st.mean()), 4),
            "state_in_view": len(in_view),
            "state_accuracy_in_view": None if st_in_view.size == 0 else round(float(st_in_view.mean()), 4),
            "state_accuracy_answered": (None if not any(f.answers[reader].state != "unknown" for f in vis)
                                        else round(float(np.mean([f.answers[reader].state == f.state for f in vis
                                                                  if f.answers[reader].state != "unknown"])), 4)),
            "open_fraction_err_median": None if fe.size == 0 else round(float(np.median(fe)), 3),
            "azimuth_visible": None if not vis else round(sum(f.answers[reader].azimuth_deg is not None for f in vis) / len(vis), 4),
            "answered_visible": None if not vis else round(sum(f.answers[reader].state != "unknown" for f in vis) / len(vis), 4),
            "stated_in_view": None if not stated_in_view else round(float(np.mean(stated_in_view)), 4),
            "answered": len(answered),
            "answered_off_by_5deg": len(wrong5),
            "answered_off_by_5deg_share": None if not answered else round(len(wrong5) / len(answered), 4),
            "azimuth_answered": len(with_az),
            "azimuth_off_by_5deg": len(wrong5_az),
            "azimuth_off_by_5deg_share": None if not with_az else round(len(wrong5_az) / len(with_az), 4),
            "hidden_unknown_share": None if not hid else round(
                sum(f.answers[reader].state == "unknown" for f in hid) / len(hid), 4),
            "hidden_no_azimuth_share": None if not hid else round(
                sum(f.answers[reader].state == "unknown" and f.answers[reader].azimuth_deg is None
                    for f in hid) / len(hid), 4),
            "ms_median": None if ms.size == 0 else round(float(np.median(ms)), 2),
            "ms_p95": None if ms.size == 0 else round(float(np.percentile(ms, 95)), 2),
            "cpu_ms_median": None if cpu.size == 0 else round(float(np.median(cpu)), 2),
        }

    def summary(self) -> dict:
        """Figures per reader, plus per scene and per occlusion for each."""
        out: dict = {}
        for r in self.readers():
            out[r] = self.figures(r)
            out[r]["strict_visibility"] = {k: v for k, v in self.figures(r, strict=True).items()
                                           if not k.startswith(("ms_", "cpu_"))}
            out[r]["by_state"] = {s: self.figures(r, [f for f in self.frames if f.state == s])
                                  for s in ("open", "closed", "partial")}
            out[r]["by_scene"] = {s: self.figures(r, [f for f in self.frames if f.scene == s])
                                  for s in sorted({f.scene for f in self.frames})}
            out[r]["by_occlusion"] = {s: self.figures(r, [f for f in self.frames if f.occlusion == s])
                                      for s in sorted({f.occlusion for f in self.frames})}
        return out

    def rows(self) -> list[dict]:
        """One flat dict per frame (for a JSONL dump)."""
        out = []
        for f in self.frames:
            d = asdict(f)
            out.append(d)
        return out


def evaluate_frames(seeds: Iterable[int], *, model_path: Path | None = None, with_model: bool = True,
                    with_classical: bool = True, progress: bool = False,
                    slit_length_deg: float = 100.0) -> EvalReport:
    """Render a frame per seed and read it with the model pipeline and/or the classical estimator.

    The calibration given to the readers is the renderer's truth (as a site's careful
    calibration would be); calibration errors are studied separately.
    """
    from tqdm import tqdm

    from tenmon.vision.slit.detector import DetectorSettings, SlitDetector

    readers = {}
    if with_model:
        readers["model"] = SlitDetector(DetectorSettings(model_path=model_path, slit_length_deg=slit_length_deg))
    if with_classical:
        readers["classical"] = SlitDetector(DetectorSettings(use_model=False, slit_length_deg=slit_length_deg))
    seeds = list(seeds)
    frames = []
    for seed in tqdm(seeds, desc="frames", unit="frame", disable=not progress):
        res = ir_render.render_random(seed)
        tr = res.truth
        fr = FrameResult(seed=seed, width=int(res.image.shape[1]), height=int(res.image.shape[0]),
                         scene=tr.scene, occlusion=tr.occlusion, visible=bool(tr.slit_visible),
                         visibility=float(tr.visibility), azimuth_deg=float(tr.azimuth_deg),
                         open_fraction=float(tr.open_fraction), state=tr.state,
                         visibility_strict=tr.visibility_strict, state_visibility=tr.state_visibility)
        for name, det in readers.items():
            det.maps(tr.calibration, res.image.shape)  # one-off per camera: not per-frame time
            c0 = time.process_time()
            t0 = time.perf_counter()
            rd = det.estimate(res.image, tr.calibration)
            ms = (time.perf_counter() - t0) * 1000.0
            cpu = (time.process_time() - c0) * 1000.0
            fr.answers[name] = Answer(
                azimuth_deg=None if rd.azimuth_deg is None else float(rd.azimuth_deg),
                open_fraction=None if rd.open_fraction is None else float(rd.open_fraction),
                state=rd.state, confidence=float(rd.confidence), elapsed_ms=float(ms), source=rd.source,
                cpu_ms=float(cpu))
        frames.append(fr)
    return EvalReport(frames)
