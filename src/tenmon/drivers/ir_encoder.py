"""The optical encoder as a device: IR camera -> slit detector -> tracker in a worker thread.

:class:`IrCameraEncoder` implements the :class:`~tenmon.drivers.base.Encoder` protocol the dome
and slit controllers read. Inference takes 13-35 ms a frame (more on a Pi), so it never runs on
the control loop: a worker thread captures a frame, reads it with
:class:`~tenmon.vision.slit.detector.SlitDetector`, fuses it with
:class:`~tenmon.vision.slit.tracker.SlitTracker` and publishes the result, stamped with the
frame's capture time, by replacing one reference. ``update()`` and ``reading()`` only read that
reference (no lock, no waiting), so a tick costs microseconds whatever the camera does.

Honesty rules:

- a frame on which the slit cannot be seen (lights off, lens covered, glare) publishes
  ``unknown`` at once (the tracker keeps its track for when the view comes back; the controllers'
  own grace time bridges a single lost frame);
- a frame on which the slit is found but its state cannot be told (the telescope hides the part
  of the slit that tells it) updates the azimuth; the published state and opening are the
  tracker's, carried from the last frames that could tell them;
- a reading older than ``stale_s`` (a frozen or unplugged camera, a dead worker) reads as
  ``unknown`` with zero confidence, so a frozen camera stops the dome;
- the published time is the frame's capture time, so the controllers extrapolate over the
  camera's latency (:class:`~tenmon.drivers.motion.EncoderView` places each reading at its
  capture time).

At a site the frames come from :func:`tenmon.drivers.ir_camera.open_source` (``config.device``)
with the calibration file ``config.calibration``; in simulated mode from
:class:`tenmon.drivers.sim.ir_camera.SimulatedIrCamera`, which carries its own calibration.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tenmon.core.clock import Clock
from tenmon.drivers.base import SlitReading
from tenmon.core.errors import ConfigError, DeviceError, DeviceNotFound, TenmonError

log = logging.getLogger(__name__)

SOURCE = "ir-camera"


class IrEncoderOptions(BaseModel):
    """How the worker runs; read from the encoder's config section (the keys it has).

    The site's ``IrCameraEncoderConfig`` and the simulated ``SimulatedIrEncoderConfig`` both
    provide these keys; a key a config section lacks takes the default here (the one place the
    defaults live until the site model carries every key).
    """

    model_config = ConfigDict(extra="ignore")

    rate_hz: float = Field(default=5.0, gt=0, le=60, description="readings per clock second")
    stale_s: float = Field(default=2.0, gt=0, description="an older reading is unknown")
    model: Path | None = Field(default=None, description="ONNX slit model; the packaged one when None")
    use_model: bool = True
    model_dir: Path | None = Field(default=None, description="a site-adapted model folder")
    threads: int = Field(default=1, ge=1, le=8, description="onnxruntime intra-op threads")
    width_px: int | None = Field(default=None, gt=0, description="requested capture width")
    height_px: int | None = Field(default=None, gt=0, description="requested capture height")
    first_reading_timeout_s: float = Field(default=10.0, gt=0,
                                           description="connect() waits this long (wall s) for a reading")
    reconnect_s: float = Field(default=2.0, gt=0, description="wall seconds between reopen attempts")

    @classmethod
    def of(cls, config: Any) -> "IrEncoderOptions":
        """The options a config section (any object with some of these attributes) gives."""
        data = {name: getattr(config, name) for name in cls.model_fields if hasattr(config, name)}
        return cls.model_validate(data)


class IrCameraEncoder:
    """The IR-camera slit encoder (see the module docstring). Non-blocking ``update``/``reading``.

    Args:
        config: the encoder's config section (``IrCameraEncoderConfig`` at a site,
            ``SimulatedIrEncoderConfig`` in simulation); see :class:`IrEncoderOptions`.
        clock: the injected clock; readings and staleness are in its time.
        source: a frame source (``open``/``read``/``close``); by default
            ``open_source(config.device)`` at connect.
        calibration: the camera's calibration; by default the source's ``calibration``
            attribute, else the JSON file ``config.calibration``.

    Raises:
        ConfigError: no calibration, a calibration file missing or invalid (the message names
            the file), or a configured model file that does not exist.
    """

    def __init__(self, config: Any, clock: Clock, *, source: Any = None, calibration: Any = None):
        from tenmon.vision.slit.reading import Calibration

        self.config = config
        self.clock = clock
        self.options = IrEncoderOptions.of(config)
        self._source = source
        if calibration is None and source is not None:
            calibration = getattr(source, "calibration", None)
        if calibration is None:
            path = getattr(config, "calibration", None)
            if path is None:
                raise ConfigError("encoder.calibration: no IR camera calibration configured (run "
                                  "`tenmon encoder calibrate` and name the JSON file here)",
                                  [("encoder.calibration", None, "missing")])
            calibration = Calibration.load(path)  # ConfigError naming the file
        elif isinstance(calibration, (str, Path)):
            calibration = Calibration.load(calibration)
        self.calibration: Calibration = calibration
        model = self.options.model
        if model is not None and self.options.use_model and not Path(model).is_file():
            raise ConfigError(f"encoder.model: slit model file not found: {model}",
                              [("encoder.model", None, f"no such file: {model}")])
        mdir = self.options.model_dir
        if mdir is not None and not (Path(mdir) / "adapt.json").is_file():
            raise ConfigError(f"encoder.model_dir: not an adapted model folder: {mdir}",
                              [("encoder.model_dir", None, f"no adapt.json in {mdir}")])
        #: collects labelled frames when set (:class:`FrameCollector`; the daemon installs it)
        self.collector: FrameCollector | None = None
        self.error: str | None = None
        self._latest: SlitReading = SlitReading.unknown(clock.now(), source=SOURCE,
                                                        reason="not connected")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._detector = None
        self._tracker = None
        self._stopping = False
        self._died_reported = False
        #: worker statistics: frames read, frames processed, processing times (ms)
        self.frames_read = 0
        self.frames_processed = 0
        #: the frame behind the newest reading (the operator page draws the reading on it)
        self.latest_frame = None
        self.processing_ms: deque[float] = deque(maxlen=500)

    # ------------------------------------------------------------------ the Encoder protocol

    def connect(self) -> None:
        """Load the model, open the camera, start the worker; wait (bounded) for a first reading.

        Blocks for at most ``first_reading_timeout_s`` wall seconds.

        Raises:
            DeviceNotFound: the camera is missing, or the model cannot be loaded.
        """
        if self._thread is not None and self._thread.is_alive():
            return
        from tenmon.vision.slit.detector import DetectorSettings, SlitDetector
        from tenmon.vision.slit.tracker import SlitTracker, TrackerSettings

        o = self.options
        try:
            self._detector = SlitDetector(DetectorSettings(model_path=o.model, model_dir=o.model_dir,
                                                           use_model=o.use_model, threads=o.threads))
        except TenmonError as exc:  # VisionError: the model file cannot be loaded
            raise DeviceNotFound("encoder", f"slit detector: {exc}") from None
        self._tracker = SlitTracker(TrackerSettings(stale_s=o.stale_s))
        if self._source is None:
            from tenmon.drivers.ir_camera import open_source

            self._source = open_source(self.config.device, clock=self.clock, width=o.width_px,
                                       height=o.height_px)
        self._source.open()  # DeviceNotFound naming the device
        self.error = None
        self._stopping = False
        self._died_reported = False
        self._stop.clear()
        self._latest = SlitReading.unknown(self.clock.now(), source=SOURCE, reason="no frame yet")
        first = self._latest
        self._thread = threading.Thread(target=self._run, name="ir-encoder", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + o.first_reading_timeout_s
        while self._latest is first and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if self._latest is first:
            log.warning("IR encoder: no reading within %.0f s of connecting", o.first_reading_timeout_s)

    def disconnect(self) -> None:
        """Stop the worker and release the camera. Never moves hardware; never raises."""
        self._stopping = True
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=1.0)
        if self._source is not None:
            try:
                self._source.close()  # also wakes a read() still waiting for its frame
            except Exception as exc:  # noqa: BLE001 - teardown must finish; logged
                log.error("IR encoder: closing the camera failed: %s", exc)
        if thread is not None and thread.is_alive():
            thread.join(timeout=5.0)
            if thread.is_alive():
                log.error("IR encoder: worker thread did not stop within 6 s")
        self._thread = None
        self._latest = SlitReading.unknown(self.clock.now(), source=SOURCE, reason="disconnected")

    def update(self) -> None:
        """Notice a dead worker (non-blocking; readings themselves arrive from the worker)."""
        t = self._thread
        if t is not None and not t.is_alive() and not self._stopping and not self._died_reported:
            self._died_reported = True
            self.error = self.error or "worker thread ended"
            log.error("IR encoder: worker stopped: %s", self.error)

    def reading(self) -> SlitReading:
        """The latest tracked reading, stamped with its frame's capture time.

        ``unknown`` with zero confidence when it is older than ``stale_s`` (clock seconds).
        Never blocks.
        """
        r = self._latest
        now = self.clock.now()
        age = (now - r.time).total_seconds()
        if r.state != "unknown" and age > self.options.stale_s:
            return SlitReading.unknown(now, source=SOURCE, reason=f"stale: last frame {age:.1f} s ago",
                                       last_azimuth_deg=r.azimuth_deg)
        return r

    # ------------------------------------------------------------------ extras

    @property
    def running(self) -> bool:
        """True while the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def last_frame_time(self) -> datetime:
        """Capture time (UTC) of the frame behind the latest published reading."""
        return self._latest.time

    def stats(self) -> dict[str, Any]:
        """Worker figures: frames read and processed, processing time median/max (ms)."""
        ms = list(self.processing_ms)
        return {"frames_read": self.frames_read, "frames_processed": self.frames_processed,
                "processing_ms_median": statistics.median(ms) if ms else None,
                "processing_ms_max": max(ms) if ms else None, "error": self.error}

    # ------------------------------------------------------------------ the worker

    def _publish(self, reading: SlitReading) -> None:
        self._latest = reading  # one reference store: atomic for the readers

    def _run(self) -> None:
        period = 1.0 / self.options.rate_hz
        last: datetime | None = None
        while not self._stop.is_set():
            try:
                frame = self._source.read()
            except StopIteration:
                self.error = "frame replay ended"
                log.info("IR encoder: %s", self.error)
                return
            except DeviceError as exc:
                if self._stop.is_set():
                    return
                self._lost(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a camera bug must read as unknown, not kill the encoder silently
                if self._stop.is_set():
                    return
                log.exception("IR encoder: reading a frame failed")
                self._lost(f"camera failure: {exc}")
                continue
            self.frames_read += 1
            # a live camera delivers at its own rate: process at most rate_hz frames a second
            if last is not None and (frame.time - last).total_seconds() < 0.9 * period:
                continue
            last = frame.time
            try:
                self._process(frame)
            except Exception as exc:  # noqa: BLE001 - logged; published as unknown
                log.exception("IR encoder: processing a frame failed")
                self.error = f"processing failed: {exc}"
                self._publish(SlitReading.unknown(frame.time, source=SOURCE, reason=self.error))

    def _lost(self, message: str) -> None:
        """The camera failed: publish unknown, wait, try to reopen."""
        if self.error != message:
            log.warning("IR encoder: %s", message)
        self.error = message
        self._publish(SlitReading.unknown(self.clock.now(), source=SOURCE, reason=message))
        if self._stop.wait(self.options.reconnect_s):
            return
        try:
            self._source.close()
            self._source.open()
        except DeviceError as exc:
            self.error = str(exc)

    def _process(self, frame) -> None:
        t0 = time.perf_counter()
        from tenmon.core.errors import VisionError

        try:
            raw = self._detector.estimate(frame.image, self.calibration, time=frame.time)
        except VisionError as exc:
            raw = SlitReading.unknown(frame.time, source=SOURCE, reason=str(exc))
        tracked = self._tracker.update(raw)
        collector = self.collector
        if collector is not None:
            try:
                collector.offer(frame.image, frame.time, raw)
            except Exception as exc:  # noqa: BLE001 - collecting must never stop the encoder; logged
                log.error("IR encoder: collecting a labelled frame failed: %s", exc)
        ms = (time.perf_counter() - t0) * 1000.0
        self.processing_ms.append(ms)
        self.frames_processed += 1
        if not raw.azimuth_known or raw.confidence < self._tracker.settings.min_confidence:
            # cannot see the slit in this frame: say so now (the controllers bridge one frame)
            out = SlitReading.unknown(frame.time, source=SOURCE, confidence=0.0,
                                      reason=raw.details.get("reason", "slit not seen"),
                                      frame_confidence=raw.confidence,
                                      track_azimuth_deg=tracked.azimuth_deg)
        else:
            out = tracked
        out.details.update(frame_index=frame.index, processing_ms=round(ms, 2),
                           frame_azimuth_deg=raw.azimuth_deg, frame_state=raw.state,
                           frame_open_fraction=raw.open_fraction)
        self.error = None
        self.latest_frame = frame  # one reference store: the operator page shows it
        self._publish(out)


class FrameCollector:
    """Writes frames the daemon can label (:class:`~tenmon.vision.slit.labels.SiteLabeller`) to a
    labels folder (:class:`~tenmon.vision.slit.labels.LabelWriter`): at most one frame per
    ``interval_s`` (frame time) while the label stays the same, at once when it changes.

    ``enabled`` switches it on and off at run time (``tenmon encoder collect on|off``). Called
    from the encoder's worker thread; never blocks the control loop.
    """

    def __init__(self, labeller, folder: Path, *, interval_s: float = 20.0, enabled: bool = True):
        from tenmon.vision.slit.labels import LabelWriter

        self.labeller = labeller
        self.folder = Path(folder)
        self.writer = LabelWriter(self.folder)
        self.interval_s = float(interval_s)
        self.enabled = enabled
        self.offered = 0
        self._last_t: float | None = None
        self._last_key = None

    @property
    def written(self) -> int:
        return self.writer.written

    def offer(self, image, time: datetime, reading) -> bool:
        """Write ``image`` if its label is worth it; True when written."""
        if not self.enabled:
            return False
        self.offered += 1
        t = time.timestamp()
        label = self.labeller.label(t, reading)
        if label is None:
            return False
        key = (label.state, None if label.open_fraction is None else round(label.open_fraction, 1),
               label.azimuth_deg is None)
        if (self._last_t is not None and t - self._last_t < self.interval_s and key == self._last_key):
            return False
        self._last_t, self._last_key = t, key
        self.writer.write(f"{time:%Y%m%dT%H%M%S_%f}.png", image, label)
        return True

    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "folder": str(self.folder), "labels": str(self.writer.path),
                "written": self.written, "offered": self.offered}
