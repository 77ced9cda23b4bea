"""The slit detector at run time: YOLO (ONNX, onnxruntime, one thread) on the unwrapped strip.

Per frame: grey -> polar strip (320 x 96, :data:`~tenmon.vision.slit.features.MODEL_GEOMETRY`)
-> the model's best box (centre: azimuth; top and class: a first guess of the opening) -> the
azimuth refined on a finer strip by the edge-pair fit of :mod:`slit_classical` -> the opening
read along the slit by :mod:`slit_opening` (row classifier, change point, state model) -> a
:class:`SlitReading` with a confidence. A reading is kept when the box is clear
(``accept_score``), or faint but confirmed by both slit edges in the fine strip (``edge_support``,
``edge_z``), or confirmed by the classical estimator at the same azimuth; otherwise, and when the
model sees no slit, the answer is ``unknown``. When the model is absent the classical estimator
answers alone.

Needs no torch: onnxruntime only, telemetry off, one intra-op thread (two threads jitter on a
loaded Pi; see DESIGN.md).
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tenmon.core.errors import VisionError
from tenmon.core.onnx_session import load_session
from tenmon.vision.slit.polar import StripGeometry, StripMapper, to_gray
from tenmon.vision.slit.band import BAND_T, DEFAULT_BAND_MODEL, STATES, BandReader, frame_levels
from tenmon.vision.slit.classical import (CLASSICAL_GEOMETRY, ClassicalEstimator, fit_azimuth,
                                          frame_quality)
from tenmon.vision.slit.features import CLASSES, MODEL_GEOMETRY, model_input
from tenmon.vision.slit.opening import DEFAULT_ROWS_MODEL, OpeningReader, read_opening
from tenmon.vision.slit.reading import Calibration, SlitReading, angle_diff

log = logging.getLogger(__name__)

#: The model shipped with tenmon (absent until trained: then the classical estimator answers).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "slit.onnx"


class DetectorSettings(BaseModel):
    """Slit-reading thresholds and the model file (mounted under the encoder's settings)."""

    model_config = ConfigDict(extra="forbid")

    model_path: Path | None = Field(default=None, description="ONNX model; the packaged one when None")
    model_dir: Path | None = Field(default=None,
                                   description="a site-adapted model folder (`tenmon encoder adapt`): "
                                               "its slit.onnx, slit_band.onnx, thresholds and azimuth "
                                               "correction (adapt.json) replace the packaged ones")
    use_model: bool = Field(default=True, description="false: classical estimator only")
    slit_length_deg: float = Field(default=100.0, gt=45, le=180,
                                   description="arc of the slit from the horizon over the zenith")
    # Tuned on rendered frames with seeds 8000000..8002399 (neither training nor benchmark seeds;
    # the first thresholds were tuned on 3000000..3000599).
    accept_score: float = Field(default=0.4, ge=0, le=1,
                                description="model score from which a reading stands on its own")
    reject_score: float = Field(default=0.05, ge=0, le=1,
                                description="below this the model saw no slit: unknown")
    agree_deg: float = Field(default=3.0, gt=0, description="model and classical must agree this well")
    classical_min_confidence: float = Field(default=0.6, ge=0, le=1,
                                            description="classical readings below this are unknown")
    refine_window_deg: float = Field(default=6.0, gt=0, le=20,
                                     description="search half-width of the azimuth refinement")
    refine_half_widths: list[float] | None = Field(
        default=None, min_length=1,
        description="edge half-widths (dome radii) the azimuth refinement tries; the packaged "
                    "range (0.075-0.17) when None. An adapted model folder sets its site's (a "
                    "narrow slit, or ribs that pair like slit edges, defeat the packaged range)")
    threads: int = Field(default=1, ge=1, le=8, description="onnxruntime intra-op threads")
    # The opening along the slit (slit_opening): the state from the row classifier's evidence and
    # the model's box (a state model fitted on seeds 8000000..8002399).
    use_opening_reader: bool = Field(default=True,
                                     description="read the opening along the slit (row classifier)")
    rows_model_path: Path | None = Field(default=None,
                                         description="row classifier JSON; the packaged one when None")
    min_seen: float = Field(default=0.1, ge=0, le=1,
                            description="share of the slit's rows in view below which: unknown")
    sure_score: float = Field(default=0.6, ge=0, le=1,
                              description="model score that needs no edge-pair fit near the box")
    accept_min_edge_z: float = Field(default=0.0, ge=0,
                                     description="edge-pair significance a reading between "
                                                 "accept_score and sure_score needs")
    edge_support: float = Field(default=0.65, ge=0, le=1,
                                description="rows with both slit edges that confirm a faint box")
    edge_z: float = Field(default=5.0, ge=0,
                          description="edge-pair significance that confirms a faint box")
    # The band reader (slit_band): a CNN on the slit straightened at the reading's azimuth gives
    # the state, the opening and whether a slit is there at all. Thresholds tuned with the full
    # pipeline on seeds 8001000..8001599 (neither training nor benchmark seeds): from 0.5 to 0.7
    # nothing changes there; a search threshold of 0.9 halves the answers > 5 degrees off.
    use_band_reader: bool = Field(default=True,
                                  description="read state, opening and presence from the slit band")
    band_model_path: Path | None = Field(default=None,
                                         description="band network ONNX; the packaged one when None")
    finder_model_path: Path | None = Field(default=None,
                                           description="a site's slit finder ONNX (an adapted model "
                                                       "folder's): its peaks are searched too")
    band_here_accepted: float = Field(default=0.5, ge=0, le=1,
                                      description="band presence a reading the box gate accepted needs")
    band_here_alone: float = Field(default=0.5, ge=0, le=1,
                                   description="band presence that answers when the box gate did not")
    band_here_search: float = Field(default=0.9, ge=0, le=1.01,
                                    description="band presence that answers at another box or the "
                                                "classical estimate's azimuth (above 1: no search)")
    search_min_score: float = Field(default=0.005, ge=0, le=1,
                                    description="other boxes below this score are not searched")
    # Where the telescope hides the part of the slit that tells its state (the horizon end of a
    # closed slit, the far end of an open one, a partly open shutter's edge), no single frame can
    # tell the state; it is then given as "unknown" with the azimuth still read. Chosen with the
    # full pipeline on seeds 8001000..8001599 (benchmarks/slit_band_gate.py).
    band_state_decided: float = Field(default=0.97, ge=0, le=1,
                                      description="band state probability below which the state "
                                                  "is unknown (the azimuth is still given)")
    band_state_temperature: float = Field(default=1.0, gt=0, le=50,
                                          description="the band's state probabilities are "
                                                      "softened by this temperature before the "
                                                      "threshold (an adapted folder's calibration)")


@dataclass
class Detection:
    """The model's best box, decoded (strip pixels), with its class probabilities."""

    azimuth_deg: float
    top_t_deg: float
    cls: int
    score: float
    probs: np.ndarray
    box: tuple[float, float, float, float]
    rival_score: float = 0.0
    candidates: tuple[tuple[float, float], ...] = ()  # other boxes: (azimuth, score), best first


@dataclass
class _Maps:
    model: StripMapper
    fine: StripMapper


class SlitDetector:
    """Reads the slit from IR frames; one instance per camera, reused for every frame.

    Args:
        settings: thresholds and model path (:class:`DetectorSettings`).

    Raises:
        VisionError: a model path was given explicitly but the file is missing or unreadable.
    """

    def __init__(self, settings: DetectorSettings | None = None):
        from tenmon.vision.slit.adapt import AzimuthCorrection, load_model_dir

        self.settings = settings or DetectorSettings()
        #: the site's azimuth correction (an adapted model folder's), identity otherwise
        self.correction = AzimuthCorrection()
        if self.settings.model_dir is not None:
            update, self.correction = load_model_dir(self.settings.model_dir)
            self.settings = self.settings.model_copy(update=update)
        s = self.settings
        self.classical = ClassicalEstimator(slit_length_deg=s.slit_length_deg,
                                            min_confidence=s.classical_min_confidence,
                                            **({"half_widths": tuple(s.refine_half_widths)}
                                               if s.refine_half_widths else {}))
        self.geometry: StripGeometry = MODEL_GEOMETRY
        self.session = None
        self.model_path: Path | None = None
        if s.use_model:
            path = s.model_path or DEFAULT_MODEL_PATH
            if path.exists():
                self.session = load_session(path, s.threads)
                self.model_path = path
                shape = self.session.get_inputs()[0].shape
                if list(shape[2:]) != [self.geometry.height, self.geometry.width]:
                    raise VisionError(f"{path}: model input {shape} does not match the strip "
                                      f"{self.geometry.height}x{self.geometry.width}")
            elif s.model_path is not None:
                raise VisionError(f"slit model not found: {path}")
            else:
                log.warning("no slit model at %s: using the classical estimator", path)
        self.opening: OpeningReader | None = None
        if s.use_opening_reader and self.session is not None:
            rows_path = s.rows_model_path or DEFAULT_ROWS_MODEL
            if rows_path.exists():
                self.opening = OpeningReader(rows_path)
            elif s.rows_model_path is not None:
                raise VisionError(f"slit row classifier not found: {rows_path}")
            else:
                log.warning("no row classifier at %s: the state is the model's class", rows_path)
        self.band: BandReader | None = None
        if s.use_band_reader and self.session is not None:
            band_path = s.band_model_path or DEFAULT_BAND_MODEL
            if band_path.exists():
                self.band = BandReader(band_path, threads=s.threads)
            elif s.band_model_path is not None:
                raise VisionError(f"slit band model not found: {band_path}")
            else:
                log.warning("no band model at %s: the row classifier reads the state", band_path)
        self.finder = None
        if s.finder_model_path is not None and self.band is not None:
            from tenmon.vision.slit.adapt import SlitFinder

            self.finder = SlitFinder(s.finder_model_path, threads=s.threads)
        self._maps: dict[tuple, _Maps] = {}
        self._cl_cache: SlitReading | None = None  # the classical reading of the frame in hand

    @property
    def has_model(self) -> bool:
        """True when an ONNX model is loaded."""
        return self.session is not None

    def maps(self, calibration: Calibration, shape: tuple[int, ...]) -> _Maps:
        """Strip maps for a calibration and frame size (built once, a few kept)."""
        key = (calibration, tuple(shape[:2]))
        m = self._maps.get(key)
        if m is None:
            if len(self._maps) >= 4:
                self._maps.pop(next(iter(self._maps)))
            m = _Maps(StripMapper(calibration, shape, self.geometry),
                      StripMapper(calibration, shape, CLASSICAL_GEOMETRY))
            self._maps[key] = m
        return m

    # -- the model -------------------------------------------------------------------------------

    def _state(self, det: Detection, strip_f: np.ndarray, valid_f: np.ndarray, az: float,
               half_width: float, details: dict) -> tuple[str, float, float]:
        """State, open fraction and the state's probability, from the model's box and the rows."""
        s = self.settings
        py = np.asarray(det.probs, np.float64)
        py = py / max(float(py.sum()), 1e-9)
        box_frac = float(np.clip(det.top_t_deg / s.slit_length_deg, 0.03, 0.97))
        if self.opening is None:
            state = CLASSES[det.cls]
            frac = {"open": 1.0, "closed": 0.0}.get(state, box_frac)
            return state, frac, float(py.max())
        op = self.opening.read(strip_f, valid_f, CLASSICAL_GEOMETRY, az, s.slit_length_deg, half_width)
        state, p_state, p = self.opening.state(op, det.probs, det.score, det.top_t_deg, s.slit_length_deg)
        if state == "open":
            frac = 1.0
        elif state == "closed":
            frac = 0.0
        else:
            # the rows' best partial opening; the box's top when the rows saw no partial slit
            frac = op.open_fraction if op.state == "partial" else float(
                np.clip(op.evidence.get("best_partial_fraction", box_frac), 0.03, 0.97))
        details.update(seen_fraction=round(op.seen_fraction, 3), rows_fraction=op.open_fraction,
                       state_probs={c: round(float(v), 3) for c, v in zip(CLASSES, p)})
        return state, float(frac), p_state

    def detect(self, strip: np.ndarray, valid: np.ndarray) -> Detection | None:
        """Run the model on a grey model-geometry strip; the best slit box or None."""
        if self.session is None:
            return None
        img = model_input(strip, valid)
        x = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        out = self.session.run(None, {self.session.get_inputs()[0].name: x})[0][0]  # (4+nc, N)
        return decode(out, self.geometry)

    # -- one frame --------------------------------------------------------------------------------

    def estimate(self, frame: np.ndarray, calibration: Calibration, *,
                 time: datetime | None = None) -> SlitReading:
        """Read the slit from one frame.

        Args:
            frame: BGR or grey uint8 image from the IR camera.
            calibration: the camera's calibration.
            time: the frame's UTC timestamp (now when None).

        Returns:
            A :class:`SlitReading`; ``unknown`` with a low confidence when the slit cannot be
            read; the azimuth with the state ``unknown`` (and no opening) when the slit is found
            but the part of it that tells its state is hidden (``band_state_decided``; the
            band's guess is in ``details["state_guess"]``). ``details["elapsed_ms"]`` is the
            processing time.

        Raises:
            VisionError: empty frame, or a frame size that does not fit the calibration.
        """
        t0 = _time.perf_counter()
        now = time or datetime.now(timezone.utc)
        gray = to_gray(frame)
        maps = self.maps(calibration, gray.shape)
        reading = self._estimate(gray, maps, now, calibration)
        if reading.azimuth_deg is not None and self.correction.active:
            raw = reading.azimuth_deg
            reading = replace(reading, azimuth_deg=round((raw + self.correction(raw)) % 360.0, 3))
            reading.details["uncorrected_azimuth_deg"] = raw
        reading.details["elapsed_ms"] = (_time.perf_counter() - t0) * 1000.0
        return reading

    def _estimate(self, gray: np.ndarray, maps: _Maps, now: datetime,
                  calibration: Calibration | None = None) -> SlitReading:
        return self.estimate_strips(maps.model.unwrap(gray), maps.model.valid,
                                    maps.fine.unwrap(gray), maps.fine.valid, now,
                                    gray=gray, calibration=calibration)

    def estimate_strips(self, strip_m: np.ndarray, valid_m: np.ndarray, strip_f: np.ndarray,
                        valid_f: np.ndarray, now: datetime, *, gray: np.ndarray | None = None,
                        calibration: Calibration | None = None) -> SlitReading:
        """Read the slit from the two unwrapped grey strips of a frame (model and fine geometry).

        The per-frame work of :meth:`estimate` after the unwrapping; for evaluation on stored
        strips. With the grey frame and its calibration the band reader runs too (when loaded).
        """
        s = self.settings
        q = frame_quality(strip_m, valid_m)
        if not q.readable:
            return SlitReading.unknown(now, source="model" if self.has_model else "classical",
                                       reason="frame unreadable (dark, covered or blinded)",
                                       dark=q.dark_fraction, saturated=q.saturated_fraction)
        if self.session is None:
            return self.classical.estimate_strip(strip_f, valid_f, now)
        self._cl_cache = None
        det = self.detect(strip_m, valid_m)
        with_band = self.band is not None and gray is not None and calibration is not None
        if det is None or det.score < s.reject_score:
            if with_band:
                return self._band_search(det, {"model_score": 0.0 if det is None else det.score},
                                         gray, calibration, strip_m, valid_m, strip_f, valid_f, now)
            return SlitReading.unknown(now, source="model", confidence=0.0 if det is None else det.score,
                                       reason="no slit seen")
        # refine the azimuth on the fine strip around the model's answer
        az, fit = self._refine(det.azimuth_deg, strip_f, valid_f)
        refined = fit is not None
        half_width = fit.half_width if refined else 0.1
        probs = np.sort(det.probs)[::-1]
        margin = float(probs[0] - probs[1]) if probs.size > 1 else float(probs[0])
        conf = det.score * min(1.0, 0.5 + margin) * (1.0 - 0.5 * min(1.0, det.rival_score / max(det.score, 1e-6)))
        conf = float(np.clip(conf, 0.0, 1.0))
        details = {"model_score": det.score, "model_azimuth_deg": det.azimuth_deg, "refined": refined,
                   "probs": [round(float(p), 3) for p in det.probs], "rival_score": det.rival_score}
        if with_band:
            return self._band_reading(det, az, conf, fit, details, gray, calibration,
                                      strip_m, valid_m, strip_f, valid_f, now)
        state, frac, state_conf = self._state(det, strip_f, valid_f, az, half_width, details)
        details["state_confidence"] = round(state_conf, 3)
        if details.get("seen_fraction", 1.0) < s.min_seen:
            return SlitReading.unknown(now, source="model", confidence=min(conf, 0.3),
                                       reason="too little of the slit in view", **details)
        gate = self._gate(det, conf, fit, strip_f, valid_f, now)
        if gate is None:
            return SlitReading.unknown(now, source="model", confidence=min(conf, 0.3),
                                       reason="model unsure and classical disagrees", **details)
        source, conf_g, extra = gate
        return SlitReading(time=now, azimuth_deg=round(az % 360.0, 3), open_fraction=round(frac, 3),
                           state=state, confidence=round(conf_g, 3), source=source,
                           details={**details, **extra})

    def _gate(self, det: Detection, conf: float, fit, strip_f: np.ndarray, valid_f: np.ndarray,
              now: datetime) -> tuple[str, float, dict] | None:
        """Whether the box stands: (source, confidence, details) or None.

        A clear box stands on its own; a faint one when the edge-pair fit (``fit``, None when the
        azimuth was not refined) finds both slit edges clearly, or when the model-free estimator
        finds the slit at the same azimuth.
        """
        s = self.settings
        fit_z = fit.z if fit is not None else 0.0
        if det.score >= s.accept_score and (fit_z >= s.accept_min_edge_z or det.score >= s.sure_score):
            return "model", max(conf, s.reject_score), {}
        if fit is not None and fit.support >= s.edge_support and fit_z >= s.edge_z:
            return ("model+edges", float(np.clip(max(conf, 0.5 * fit.support), 0.0, 1.0)),
                    {"edge_support": round(fit.support, 3), "edge_z": round(fit.z, 2)})
        cl = self._classical(strip_f, valid_f, now)
        if cl.known and abs(angle_diff(cl.azimuth_deg, det.azimuth_deg)) <= s.agree_deg:
            return ("model+classical", float(np.clip(0.5 * (conf + cl.confidence), 0, 1)),
                    {"classical": cl.to_json_dict()})
        return None

    def _band_reading(self, det: Detection, az: float, conf: float, fit, details: dict,
                      gray: np.ndarray, calibration: Calibration, strip_m: np.ndarray,
                      valid_m: np.ndarray, strip_f: np.ndarray, valid_f: np.ndarray,
                      now: datetime) -> SlitReading:
        """The reading when the band reader is loaded (see :mod:`tenmon.vision.slit.band`).

        The band at the refined azimuth must show a slit: ``band_here_accepted`` when the box
        gate (:meth:`_gate`) accepted the box, ``band_here_alone`` when it did not. Failing
        that, the slit is searched for elsewhere (:meth:`_band_search`). The state is the band
        network's; a partial slit's opening is the change point of its rows.
        """
        s = self.settings
        levels = frame_levels(strip_m, valid_m)
        b = self.band.read(gray, calibration, az, levels)
        gate = self._gate(det, conf, fit, strip_f, valid_f, now)
        need = s.band_here_accepted if gate is not None else s.band_here_alone
        details = {**details, "band_here": round(b.here, 3), "box_gate": gate[0] if gate else None}
        source = (gate[0] if gate else "model") + "+band"
        conf_r = gate[1] if gate else conf
        if b.here < need:
            return self._band_search(det, details, gray, calibration, strip_m, valid_m, strip_f,
                                     valid_f, now, tried=az, levels=levels)
        return self._band_answer(az, b, source, conf_r, conf, details, now)

    def _band_search(self, det: Detection | None, details: dict, gray: np.ndarray,
                     calibration: Calibration, strip_m: np.ndarray, valid_m: np.ndarray,
                     strip_f: np.ndarray, valid_f: np.ndarray, now: datetime, *,
                     tried: float | None = None, levels: tuple[float, float, float] | None = None
                     ) -> SlitReading:
        """The slit where the model's best box is not: its other boxes and the classical estimate.

        Each candidate azimuth is refined and its band read; the one most surely showing a slit
        answers if that is at least ``band_here_search``, else the frame is ``unknown``.
        """
        s = self.settings
        levels = levels or frame_levels(strip_m, valid_m)
        cands = [a for a, sc in (det.candidates if det is not None else ()) if sc >= s.search_min_score]
        if det is not None and tried is None:
            cands.insert(0, det.azimuth_deg)
        if self.finder is not None:  # the site's own slit finder (an adapted model folder's)
            cands = [a for a, _ in self.finder.candidates(gray, calibration, levels)] + cands
        cl = self._classical(strip_f, valid_f, now)
        if cl.known:
            cands.append(cl.azimuth_deg)
        done = [] if tried is None else [tried]
        best = None
        for a in cands:
            a, _ = self._refine(a, strip_f, valid_f)
            if any(abs(angle_diff(a, t)) < 2.0 for t in done):
                continue
            done.append(a)
            b = self.band.read(gray, calibration, a, levels)
            if best is None or b.here > best[1].here:
                best = (a, b)
        details = {**details, "searched": len(done) - (tried is not None)}
        if best is None or best[1].here < s.band_here_search:
            if best is not None:
                details["band_here_best"] = round(best[1].here, 3)
            reason = ("no slit seen" if tried is None
                      else "no slit in the band at the model's azimuth nor elsewhere")
            return SlitReading.unknown(now, source="model", confidence=0.0, reason=reason, **details)
        a, b = best
        if tried is not None:
            details["first_azimuth_deg"] = round(tried % 360.0, 3)
            details["first_band_here"] = details.get("band_here")
        details["band_here"] = round(b.here, 3)
        return self._band_answer(a, b, "search+band", 0.5 * b.here, 0.5 * b.here, details, now)

    def _classical(self, strip_f: np.ndarray, valid_f: np.ndarray, now: datetime) -> SlitReading:
        """The classical estimate of this frame (computed once per frame)."""
        if self._cl_cache is None:
            self._cl_cache = self.classical.estimate_strip(strip_f, valid_f, now)
        return self._cl_cache

    def _refine(self, az: float, strip_f: np.ndarray, valid_f: np.ndarray) -> tuple[float, object]:
        """The azimuth refined by the edge-pair fit and the fit, or (``az``, None) when the fit
        is not sound (too little support, or at the edge of the search window)."""
        s = self.settings
        kw = {"half_widths": tuple(s.refine_half_widths)} if s.refine_half_widths else {}
        fit = fit_azimuth(strip_f, valid_f, CLASSICAL_GEOMETRY, around_deg=az, window_deg=s.refine_window_deg,
                          **kw)
        if fit is not None and fit.support >= 0.25 and abs(angle_diff(fit.azimuth_deg, az)) < s.refine_window_deg - 0.1:
            return float(fit.azimuth_deg), fit
        return float(az), None

    def _band_answer(self, az: float, b, source: str, conf_r: float, conf: float, details: dict,
                     now: datetime) -> SlitReading:
        """A reading from the band at ``az``: state, opening, confidence."""
        s = self.settings
        seen = 1.0 - b.row_probs[BAND_T <= s.slit_length_deg, 2]
        seen_fraction = float(np.mean(seen))
        details.update(seen_fraction=round(seen_fraction, 3),
                       state_probs={c: round(float(v), 3) for c, v in zip(STATES, b.state_probs)})
        if seen_fraction < s.min_seen:
            return SlitReading.unknown(now, source="model", confidence=min(conf, 0.3),
                                       reason="too little of the slit in view", **details)
        state = b.state
        if state == "open":
            frac = 1.0
        elif state == "closed":
            frac = 0.0
        else:
            op = read_opening(b.row_probs, BAND_T, s.slit_length_deg)
            frac = op.open_fraction if op.state == "partial" else float(
                np.clip(op.evidence["best_partial_fraction"], 0.03, 0.97))
            details["rows_fraction"] = op.open_fraction
        sp = calibrated_probs(b.state_probs, s.band_state_temperature)
        details["state_probs"] = {c: round(float(v), 4) for c, v in zip(STATES, sp)}
        p_state = float(np.max(sp))
        details["state_confidence"] = round(p_state, 3)
        confidence = float(np.clip(min(max(conf_r, 0.5 * b.here), b.here), 0.0, 1.0))
        if p_state < s.band_state_decided:
            # the slit is there, but what tells its state is hidden or unclear: say so
            details.update(state_guess=state, fraction_guess=round(frac, 3),
                           reason="state undecided: the part of the slit that tells it is hidden or unclear")
            state, frac = "unknown", None
        return SlitReading(time=now, azimuth_deg=round(az % 360.0, 3),
                           open_fraction=None if frac is None else round(frac, 3),
                           state=state, confidence=round(max(confidence, s.reject_score), 3),
                           source=source, details=details)


def calibrated_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softened (``temperature`` > 1) or sharpened by a temperature."""
    p = np.asarray(probs, np.float64)
    if temperature == 1.0:
        return p
    z = np.log(np.clip(p, 1e-12, 1.0)) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def decode(out: np.ndarray, geometry: StripGeometry, min_score: float = 0.005,
           max_candidates: int = 4) -> Detection | None:
    """Decode a YOLO output (4 + classes, anchors) into the best slit box of the strip.

    Copies of the slit in the circular padding collapse into one (the better-placed one wins).
    ``rival_score`` is the best score of a box more than 15 degrees away from the winner;
    ``candidates`` are up to ``max_candidates`` other boxes, each more than 5 degrees from the
    winner and from each other (the band reader checks them when the winner is not a slit).
    """
    boxes = out[:4]
    cls_scores = out[4:]
    scores = cls_scores.max(axis=0)
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return None
    cx, cy, w, h = boxes[:, keep]
    sc = scores[keep]
    az = geometry.col_to_az(cx - 0.5) % 360.0
    # Down-weight boxes clipped by the strip's edge: their centre is biased.
    x0, x1 = cx - w / 2, cx + w / 2
    edge = (x0 <= 1.0) | (x1 >= geometry.width - 1.0)
    rank = sc - 0.05 * edge
    i = int(np.argmax(rank))
    best_az = float(az[i])
    d = np.abs((az - best_az + 180.0) % 360.0 - 180.0)
    far = d > 15.0
    rival = float(sc[far].max()) if far.any() else 0.0
    # other places a slit may be: the best box of each region 5 degrees clear of the ones before
    cands: list[tuple[float, float]] = []
    taken = [best_az]
    for j in np.argsort(-sc)[:200]:
        if len(cands) >= max_candidates:
            break
        a = float(az[j])
        if all(abs((a - b + 180.0) % 360.0 - 180.0) > 5.0 for b in taken):
            taken.append(a)
            cands.append((a, float(sc[j])))
    top_row = float(cy[i] - h[i] / 2)
    top_t = float(geometry.row_to_t(top_row - 0.5))
    probs = cls_scores[:, keep[i]].astype(np.float64)
    return Detection(azimuth_deg=best_az, top_t_deg=top_t, cls=int(np.argmax(probs)),
                     score=float(sc[i]), probs=probs,
                     box=(float(x0[i]), float(cy[i] - h[i] / 2), float(x1[i]), float(cy[i] + h[i] / 2)),
                     rival_score=rival, candidates=tuple(cands))


def estimate(frame: np.ndarray, calibration: Calibration, *, time: datetime | None = None,
             settings: DetectorSettings | None = None) -> SlitReading:
    """One-off reading of one frame with the packaged model (see :class:`SlitDetector`)."""
    return SlitDetector(settings).estimate(frame, calibration, time=time)

