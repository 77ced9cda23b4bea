"""An ASCOM Alpaca Camera as a tenmon :class:`~tenmon.drivers.camera.Camera`.

``start_exposure`` reads the header context (mount pointing, focus, filter, site: cached values,
on the loop thread), queues the exposure for the camera's worker and returns; the camera is
``exposing`` from that moment. On the worker: binning and subframe, ``StartExposure``, then
``ImageReady`` polled every ``poll_s``; the image is downloaded (``ImageArray`` as ImageBytes,
bounded by ``download_timeout_s``) and written by :func:`~tenmon.drivers.camera_fits.write_frame`
into the frames directory, where the frame service takes it. ``take_frame()`` then hands the path
over once.

Nothing hangs: an exposure that has not given an image ``exposure_margin_s`` after its time is
aborted and is a camera error; a server that goes away mid-exposure is a camera error naming it;
the camera's own error state (ASCOM CameraState 5) is one too. The sequencer counts these and
moves on. ``abort()`` abandons the exposure at once (the worker tells the camera within
``poll_s``); no file is written for it.

The image type comes from ``meta["IMAGETYP"]`` (``light`` when absent): dark and bias frames are
taken with the shutter closed (``Light = false``).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from alpaca.camera import Camera

from tenmon.drivers.alpaca._wire import optional
from tenmon.drivers.alpaca._worker import AlpacaDevice
from tenmon.drivers.camera import CameraState
from tenmon.config.services import CameraSettings
from tenmon.drivers.camera_fits import (HeaderContext, frame_file_name, normalise_image_type,
                                        write_frame)
from tenmon.core.errors import DeviceError, DeviceTimeout, ProtocolError

log = logging.getLogger(__name__)

#: ASCOM CameraState values
_ASCOM_IDLE, _ASCOM_WAITING, _ASCOM_EXPOSING, _ASCOM_READING, _ASCOM_DOWNLOAD, _ASCOM_ERROR = \
    range(6)

#: Keyword arguments of write_frame a header context may give.
_CONTEXT_KEYS = ("site", "ra_deg", "dec_deg", "focus_position", "focus_temp_c", "filter_name",
                 "pixel_scale_arcsec", "telescope")


class AlpacaCamera(AlpacaDevice):
    """See the module docstring. ``config``: ``AlpacaCcdConfig``; ``settings``: the ``[camera]``
    section (pixel scale for the header); ``header_context``: see ``camera_fits``."""

    kind = "camera"
    ascom_type = "camera"
    api_class = Camera

    def __init__(self, config, settings: CameraSettings | None, frames_dir: Path, clock,
                 header_context: HeaderContext | None = None):
        super().__init__(config, clock, download_timeout_s=config.download_timeout_s)
        self.settings = settings
        self.frames_dir = Path(frames_dir)
        self.header_context = header_context or (lambda: {})
        self._state = CameraState.IDLE
        self._cam_error: str | None = None
        self._gen = 0              # exposures started
        self._aborted_gen = 0      # exposures up to this one are abandoned
        self._wake = threading.Event()
        self._done: Path | None = None
        self.frames_written = 0
        self.size = (0, 0)
        self.max_bin = 1
        self.electrons_per_adu: float | None = None
        self.gain_setting: float | None = None
        self.instrument = config.instrument
        self.can_abort = True
        self.ccd_temp_c: float | None = None
        self.cooler_on: bool | None = None
        self.cooler_power: float | None = None
        self.last_exposure: dict[str, Any] = {}

    # ------------------------------------------------------------------ worker side

    def _opt(self, what: str, fn):
        return optional(self.kind, self.label, what, fn)

    def _on_open(self) -> None:
        d, cfg = self.dev, self.config
        self.size = (int(self._call("CameraXSize", lambda: d.CameraXSize)),
                     int(self._call("CameraYSize", lambda: d.CameraYSize)))
        self.max_bin = int(self._opt("MaxBinX", lambda: d.MaxBinX) or 1)
        if cfg.binning > self.max_bin:
            raise DeviceError("camera", f"{self.label}: binning {cfg.binning} exceeds the "
                              f"camera's MaxBinX {self.max_bin}")
        if cfg.subframe is not None:
            x, y, w, h = cfg.subframe
            bw, bh = self.size[0] // cfg.binning, self.size[1] // cfg.binning
            if x < 0 or y < 0 or w < 1 or h < 1 or x + w > bw or y + h > bh:
                raise DeviceError("camera", f"{self.label}: subframe {cfg.subframe} does not "
                                  f"fit the binned chip ({bw} x {bh})")
        self.electrons_per_adu = _num(self._opt("ElectronsPerADU", lambda: d.ElectronsPerADU))
        can_abort = self._opt("CanAbortExposure", lambda: d.CanAbortExposure)
        self.can_abort = True if can_abort is None else bool(can_abort)
        if cfg.gain is not None:
            self._call(f"Gain = {cfg.gain}", lambda: setattr(d, "Gain", int(cfg.gain)))
        self.gain_setting = _num(self._opt("Gain", lambda: d.Gain))
        if self.instrument is None:
            self.instrument = (self._opt("SensorName", lambda: d.SensorName)
                               or self._opt("Name", lambda: d.Name) or self.label)
        if cfg.cooler_setpoint_c is not None:
            self._call(f"SetCCDTemperature = {cfg.cooler_setpoint_c:g}",
                       lambda: setattr(d, "SetCCDTemperature", float(cfg.cooler_setpoint_c)))
            self._call("CoolerOn = true", lambda: setattr(d, "CoolerOn", True))

    def _poll(self) -> None:
        d = self.dev
        self.ccd_temp_c = _num(self._opt("CCDTemperature", lambda: d.CCDTemperature))
        on = self._opt("CoolerOn", lambda: d.CoolerOn)
        self.cooler_on = None if on is None else bool(on)
        self.cooler_power = _num(self._opt("CoolerPower", lambda: d.CoolerPower))

    def _cancelled(self, gen: int) -> bool:
        return gen <= self._aborted_gen or self._stop.is_set()

    def _expose(self, job: dict[str, Any]) -> None:
        """One exposure, start to file (worker)."""
        gen = job["gen"]
        if self._cancelled(gen):
            return
        d, cfg = self.dev, self.config
        try:
            b = cfg.binning
            self._call(f"BinX = {b}", lambda: setattr(d, "BinX", b))
            self._call(f"BinY = {b}", lambda: setattr(d, "BinY", b))
            if cfg.subframe is not None:
                x, y, w, h = cfg.subframe
            else:
                x, y, w, h = 0, 0, self.size[0] // b, self.size[1] // b
            for prop, value in (("StartX", x), ("StartY", y), ("NumX", w), ("NumY", h)):
                self._call(f"{prop} = {value}", lambda p=prop, v=value: setattr(d, p, int(v)))
            ccd_temp = _num(self._opt("CCDTemperature", lambda: d.CCDTemperature))
            set_temp = cfg.cooler_setpoint_c
            seconds = job["seconds"]
            light = job["kind"] in ("light", "flat")
            date_obs = self.clock.now()
            self._call(f"StartExposure({seconds:g} s, light={light})",
                       lambda: d.StartExposure(seconds, light))
            deadline = time.monotonic() + seconds + cfg.exposure_margin_s
            while True:
                self._wake.wait(timeout=min(self.poll_s, max(0.05, seconds / 4)))
                self._wake.clear()
                if self._cancelled(gen):
                    self._abort_on_camera()
                    return
                if self._call("ImageReady", lambda: d.ImageReady):
                    break
                state = self._opt("CameraState", lambda: d.CameraState)
                state = int(getattr(state, "value", state)) if state is not None else None
                if state == _ASCOM_ERROR:
                    raise DeviceError("camera", f"{self.label}: the camera reports its error "
                                      "state during the exposure (CameraState = 5)")
                if state in (_ASCOM_READING, _ASCOM_DOWNLOAD):
                    self._state = CameraState.READING
                if time.monotonic() > deadline:
                    self._abort_on_camera()
                    raise DeviceTimeout("camera", f"{self.label}: the exposure of {seconds:g} s "
                                        f"has not ended {cfg.exposure_margin_s:g} s after its "
                                        "time: aborted")
            self._state = CameraState.READING
            image = self._download()
            if self._cancelled(gen):
                return
            header = dict(job["context"])
            header.update(date_obs=date_obs, exptime_s=seconds, image_type=job["kind"],
                          ccd_temp_c=ccd_temp, set_temp_c=set_temp,
                          gain_e_per_adu=self.electrons_per_adu, gain_setting=self.gain_setting,
                          binning=(b, b), subframe_origin=(x, y) if cfg.subframe else None,
                          instrument=self.instrument, object_name=job["object"],
                          extra=job["extra"])
            if job["filter"]:
                header["filter_name"] = job["filter"]
            try:
                path = write_frame(image, self.frames_dir, file_name=job["file_name"], **header)
            except (OSError, ValueError) as exc:
                raise DeviceError("camera", f"{self.label}: frame not written to "
                                  f"{self.frames_dir}: {exc}") from exc
            self.last_exposure = {"path": str(path), "seconds": seconds, "kind": job["kind"],
                                  "shape": tuple(image.shape)}
            self.frames_written += 1
            if not self._cancelled(gen):
                self._done = path
                self._state = CameraState.IDLE
        except DeviceError as exc:
            if not self._cancelled(gen):
                self._cam_error = exc.detail
                self._state = CameraState.ERROR
            raise

    def _abort_on_camera(self) -> None:
        if not self.can_abort:
            return
        try:
            self._call("AbortExposure", self.dev.AbortExposure)
        except DeviceError as exc:
            log.warning("%s: AbortExposure: %s", self.label, exc.detail)

    def _download(self) -> np.ndarray:
        """The image as (rows = y, columns = x)."""
        d = self.dev
        try:
            flat = self._call("ImageArray", lambda: d.ImageArrayRaw)
        except DeviceError as exc:
            if "InvalidValue" not in exc.detail or "imagebytes" not in exc.detail.lower():
                raise
            nested = self._call("ImageArray (JSON)", lambda: d.ImageArray)
            arr = np.asarray(nested)
            if arr.ndim != 2:
                raise ProtocolError("camera", f"{self.label}: a colour image "
                                    f"{arr.shape} (tenmon takes monochrome frames)") from None
            return arr.T
        desc = d.img_desc
        if desc.Rank != 2:
            raise ProtocolError("camera", f"{self.label}: image of rank {desc.Rank} (tenmon takes "
                                "monochrome frames)")
        nx, ny = int(desc.Dimension1), int(desc.Dimension2)
        a = np.frombuffer(flat, dtype=np.dtype(flat.typecode)) if hasattr(flat, "typecode") \
            else np.asarray(flat)
        if a.size != nx * ny:
            raise ProtocolError("camera", f"{self.label}: image of {a.size} pixels, not "
                                f"{nx} x {ny}")
        # ImageBytes are [x][y] (x slowest): rows of the FITS image are y
        return a.reshape(nx, ny).T

    # ------------------------------------------------------------------ loop side

    @property
    def state(self) -> CameraState:
        if self._state == CameraState.IDLE and self._thread is not None and not self._online:
            return CameraState.ERROR
        return self._state

    @property
    def error(self) -> str | None:
        return self._cam_error or super().error

    def clear_error(self) -> None:
        """Leave the error state (the next exposure may be tried)."""
        super().clear_error()
        self._cam_error = None
        if self._state == CameraState.ERROR:
            self._state = CameraState.IDLE

    def start_exposure(self, seconds: float, *, name: str, meta: dict[str, Any] | None = None
                       ) -> None:
        """Start an exposure (non-blocking). Raises DeviceError when the camera is offline,
        busy, or the request is invalid (time outside 0..3600 s, unknown IMAGETYP)."""
        if self._state in (CameraState.EXPOSING, CameraState.READING) or self.busy:
            raise DeviceError("camera", f"{self.label}: busy ({self._state.value})")
        if not 0 <= float(seconds) <= 3600:
            raise DeviceError("camera", f"exposure {seconds} s is outside [0, 3600]")
        meta = dict(meta or {})
        try:
            kind = normalise_image_type(meta.pop("IMAGETYP", None))
        except ValueError as exc:
            raise DeviceError("camera", str(exc)) from None
        try:
            ctx = {k: v for k, v in (self.header_context() or {}).items() if k in _CONTEXT_KEYS}
        except Exception as exc:  # noqa: BLE001 - a header card must never stop an exposure
            log.warning("camera header context failed: %s", exc)
            ctx = {}
        self._gen += 1
        job = {"gen": self._gen, "seconds": float(seconds), "kind": kind, "context": ctx,
               "object": meta.pop("OBJECT", None), "filter": meta.pop("FILTER", None),
               "extra": meta,
               "file_name": frame_file_name(name, self.clock.now(), self._gen)}
        self._done = None
        self._cam_error = None
        self._state = CameraState.EXPOSING
        try:
            self._submit("exposure", lambda: self._expose(job))
        except DeviceError:
            self._state = CameraState.IDLE
            raise

    def abort(self) -> None:
        """Abandon the exposure in progress (no file is written for it). Never raises."""
        self._aborted_gen = self._gen
        self._wake.set()
        if self._state in (CameraState.EXPOSING, CameraState.READING):
            log.info("%s: exposure abandoned", self.label)
            self._state = CameraState.IDLE
        self._done = None

    def take_frame(self) -> Path | None:
        if self._done is None:
            return None
        path, self._done = self._done, None
        return path

    def disconnect(self) -> None:
        self.abort()
        super().disconnect()


def _num(v) -> float | None:
    import math

    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
