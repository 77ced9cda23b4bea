"""INDI CCD camera: exposures through ``CCD_EXPOSURE``, the image as a BLOB, written as a full FITS file.

Properties used (INDI's standard CCD properties, as ``indi_simulator_ccd`` and every INDI CCD
driver define them): ``CCD_EXPOSURE`` (start; the driver counts it down, ``Ok`` when read out,
``Alert`` on failure), ``CCD_ABORT_EXPOSURE``, ``CCD_FRAME_TYPE`` (light/bias/dark/flat),
``CCD_BINNING``, ``CCD_FRAME`` (subframe), ``CCD_TEMPERATURE`` and ``CCD_COOLER`` (when the
camera has them), ``CCD_GAIN``, ``UPLOAD_MODE`` (client), ``CCD_TRANSFER_FORMAT`` (FITS) and the
``CCD1`` BLOB.

The BLOB arrives on the connection's thread; on the camera's writer thread its pixels are read
and written by :func:`~tenmon.drivers.camera_fits.write_frame` (tenmon's one FITS writer: the
same cards as every camera's frame, to a temporary name then renamed into the frames
directory); ``update()`` only looks at flags. A frame that does not arrive ``readout_timeout_s``
after the exposure should have ended is aborted and the camera goes to ``error``, as it does when the server goes away mid-exposure,
the device disconnects, or the driver reports ``Alert``.
"""

from __future__ import annotations

import collections
import io
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tenmon.core.clock import Clock
from tenmon.drivers.camera import CameraState
from tenmon.config.services import CameraSettings
from tenmon.drivers.camera_fits import (HeaderContext, frame_file_name, normalise_image_type,
                                        write_frame)
from tenmon.drivers.indi.device import IndiDevice
from tenmon.core.errors import DeviceError

__all__ = ["FRAME_TYPES", "IndiCamera", "read_indi_image"]

log = logging.getLogger(__name__)

#: tenmon's frame types -> INDI's CCD_FRAME_TYPE members
FRAME_TYPES = {"light": "FRAME_LIGHT", "dark": "FRAME_DARK", "bias": "FRAME_BIAS",
               "flat": "FRAME_FLAT"}

#: Keyword arguments of write_frame a header context may give.
_CONTEXT_KEYS = ("site", "ra_deg", "dec_deg", "focus_position", "focus_temp_c", "filter_name",
                 "pixel_scale_arcsec", "telescope")


def read_indi_image(blob: bytes) -> tuple[np.ndarray, str | None]:
    """The 2-D pixels of the INDI driver's FITS ``blob`` and the driver's own DATE-OBS (or
    ``None``). Raises DeviceError when the blob is not a FITS image with 2-D data."""
    from astropy.io import fits

    try:
        with fits.open(io.BytesIO(blob), memmap=False) as hdul:
            hdu = hdul[0]
            data = None if hdu.data is None else np.array(hdu.data)
            date = hdu.header.get("DATE-OBS")
    except Exception as exc:  # noqa: BLE001 - whatever astropy says, it is not a usable frame
        raise DeviceError("camera", f"the INDI image is not a FITS file ({exc})") from exc
    if data is None or data.ndim != 2:
        raise DeviceError("camera", "the INDI image has no 2-D data")
    return data, (str(date) if date is not None else None)


class IndiCamera(IndiDevice):
    """A CCD camera on an indiserver (``[ccd] type = "indi"``). Implements
    :class:`~tenmon.drivers.camera.Camera`.

    Args:
        config: ``IndiCameraConfig``.
        settings: the ``[camera]`` section (``gain_e_per_adu`` for the GAIN card), or ``None``.
        frames_dir: where finished frames go (the frame service watches it).
        clock: the injected clock (exposure start for DATE-OBS, timeouts).
        header_context: the cards the camera cannot know itself (mount pointing, focus, filter,
            site), read at the start of each exposure: see ``camera_fits.HeaderContext``.
    """

    required = ("CCD_EXPOSURE", "CCD1", "CCD_INFO")
    blobs = True

    def __init__(self, config: Any, settings: CameraSettings | None, frames_dir: Path,
                 clock: Clock, header_context: HeaderContext | None = None, *,
                 name: str = "camera"):
        super().__init__(config, clock, name=name)
        self.settings = settings
        self.frames_dir = Path(frames_dir)
        self.header_context = header_context or (lambda: {})
        self._state = CameraState.IDLE
        self._exp: dict[str, Any] | None = None
        self._blobs: collections.deque[tuple[bytes, str]] = collections.deque(maxlen=4)
        self._blob_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future | None = None
        self._done: Path | None = None
        self._count = 0
        self.frames_written = 0
        self.blobs_dropped = 0
        self.last_exposure: dict[str, Any] = {}

    # ------------------------------------------------------------------ life cycle

    def connect(self) -> None:
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        super().connect()
        self._settle()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-fits")
        self._state = CameraState.IDLE
        self._exp = None

    def _settle(self, quiet_s: float = 0.3, bound_s: float = 2.0) -> None:
        """Wait (bounded) until the driver has stopped defining properties after CONNECT: a
        camera defines its optional ones (CCD_GAIN, CCD_COOLER...) after the required ones, and
        the first exposure's header reads them."""
        end = time.monotonic() + min(bound_s, self.config.connect_timeout_s)
        last, since = -1, time.monotonic()
        while time.monotonic() < end:
            n = len(self.conn.devices().get(self.device, {}))
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.05)

    def _after_connect(self) -> None:
        c = self.conn
        dev = self.device
        c.enable_blobs(dev)
        if self.vec("UPLOAD_MODE") is not None:
            c.send_switch(dev, "UPLOAD_MODE", "UPLOAD_CLIENT")
        if self.vec("CCD_TRANSFER_FORMAT") is not None:
            c.send_switch(dev, "CCD_TRANSFER_FORMAT", "FORMAT_FITS")
        if self.vec("CCD_COMPRESSION") is not None and "INDI_DISABLED" in self.vec(
                "CCD_COMPRESSION").values:
            c.send_switch(dev, "CCD_COMPRESSION", "INDI_DISABLED")
        if self.config.binning is not None:
            self.set_binning(self.config.binning)
        if self.config.cooler_setpoint_c is not None:
            self.set_cooler(True, self.config.cooler_setpoint_c)

    def disconnect(self) -> None:
        """Abandon any exposure (the driver is told to abort) and close the link."""
        self.abort()
        super().disconnect()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @property
    def state(self) -> CameraState:
        return self._state

    # ------------------------------------------------------------------ readings

    @property
    def temperature_c(self) -> float | None:
        """CCD temperature, ``None`` when the camera does not report a finite one."""
        t = self.num("CCD_TEMPERATURE", "CCD_TEMPERATURE_VALUE")
        return t if math.isfinite(t) else None

    @property
    def cooler_on(self) -> bool | None:
        v = self.vec("CCD_COOLER")
        return None if v is None else "COOLER_ON" in v.on()

    @property
    def binning(self) -> int | None:
        b = self.num("CCD_BINNING", "HOR_BIN")
        return int(b) if math.isfinite(b) else None

    @property
    def sensor_size(self) -> tuple[int, int] | None:
        """Unbinned (width, height) in pixels."""
        w, h = self.num("CCD_INFO", "CCD_MAX_X"), self.num("CCD_INFO", "CCD_MAX_Y")
        return (int(w), int(h)) if math.isfinite(w) and math.isfinite(h) else None

    # ------------------------------------------------------------------ settings

    def _idle_or_refuse(self, what: str) -> None:
        if self._state in (CameraState.EXPOSING, CameraState.READING):
            raise self._refuse(f"cannot {what} while {self._state.value}")

    def set_binning(self, binning: int) -> None:
        """Bin ``binning`` x ``binning``. Non-blocking; raises DeviceError when exposing or
        when the camera cannot bin."""
        self._idle_or_refuse("change binning")
        v = self.vec("CCD_BINNING")
        if v is None:
            raise self._refuse("the camera has no CCD_BINNING")
        lo, hi = v.limits.get("HOR_BIN", (1.0, 1.0))
        if not lo <= binning <= hi:
            raise self._refuse(f"binning {binning} outside {lo:g}..{hi:g}")
        self._send_number("CCD_BINNING", {"HOR_BIN": binning, "VER_BIN": binning})

    def set_subframe(self, x: int, y: int, width: int, height: int) -> None:
        """Read out only ``width`` x ``height`` unbinned pixels from ``(x, y)``."""
        self._idle_or_refuse("change the subframe")
        size = self.sensor_size
        if size is not None and (x < 0 or y < 0 or width <= 0 or height <= 0
                                 or x + width > size[0] or y + height > size[1]):
            raise self._refuse(f"subframe {x},{y} {width}x{height} outside the "
                               f"{size[0]}x{size[1]} sensor")
        self._send_number("CCD_FRAME", {"X": x, "Y": y, "WIDTH": width, "HEIGHT": height})

    def full_frame(self) -> None:
        size = self.sensor_size
        if size is None:
            raise self._refuse("the camera does not report its size (CCD_INFO)")
        self.set_subframe(0, 0, *size)

    def set_cooler(self, on: bool, setpoint_c: float | None = None) -> None:
        """Switch the cooler and (optionally) set the CCD temperature to hold."""
        if self.vec("CCD_COOLER") is not None:
            self._send_switch("CCD_COOLER", "COOLER_ON" if on else "COOLER_OFF")
        elif not on:
            raise self._refuse("the camera has no CCD_COOLER switch")
        if on and setpoint_c is not None:
            if self.vec("CCD_TEMPERATURE") is None:
                raise self._refuse("the camera has no CCD_TEMPERATURE")
            self._send_number("CCD_TEMPERATURE", {"CCD_TEMPERATURE_VALUE": setpoint_c})

    # ------------------------------------------------------------------ exposures

    def start_exposure(self, seconds: float, *, name: str, meta: dict[str, Any] | None = None
                       ) -> None:
        """Start an exposure; ``meta["IMAGETYP"]`` (``light`` default, ``dark``, ``bias``,
        ``flat``) chooses the frame type, the rest goes into the header. Non-blocking.
        Raises DeviceError when busy, in error, disconnected, or for a bad time or type."""
        if self._pool is None:
            raise self._refuse("not connected")
        if self._state in (CameraState.EXPOSING, CameraState.READING):
            raise self._refuse(f"busy ({self._state.value})")
        if self._state == CameraState.ERROR:
            raise self._refuse(f"in error ({self._error}); connect() again")
        meta = dict(meta or {})
        try:
            kind = normalise_image_type(meta.pop("IMAGETYP", meta.pop("FRAME_TYPE", None)))
        except ValueError as exc:
            raise self._refuse(f"frame type: {exc}") from None
        if kind == "bias":
            seconds = max(0.0, float(seconds))
        elif not (math.isfinite(seconds) and 0 < seconds <= 3600):
            raise self._refuse(f"exposure {seconds} s is outside (0, 3600]")
        v = self.vec("CCD_EXPOSURE")
        if v is not None:
            lo, hi = v.limits.get("CCD_EXPOSURE_VALUE", (0.0, 3600.0))
            seconds = min(max(seconds, lo), hi) if hi > lo else seconds
        self._require_link()
        if self.vec("CCD_FRAME_TYPE") is not None:
            self._send_switch("CCD_FRAME_TYPE", FRAME_TYPES[kind])
        elif kind != "light":
            raise self._refuse("the camera has no CCD_FRAME_TYPE (darks need a shutter)")
        with self._blob_lock:
            self._blobs.clear()
        self._count += 1
        start = self.clock.now()
        fname = frame_file_name(name, start, self._count)
        self._exp = {"seconds": float(seconds), "start": start, "start_m": self.clock.monotonic(),
                     "file_name": fname, "kind": kind,
                     "header": self._header_at_start(start, float(seconds), kind, meta)}
        self._send_number("CCD_EXPOSURE", {"CCD_EXPOSURE_VALUE": seconds})
        self._done = None
        self._error = None
        self._state = CameraState.EXPOSING
        log.info("%s: %s exposure %.3g s started (%s)", self.name, kind, seconds, fname)

    def _header_at_start(self, start, seconds: float, kind: str,
                         meta: dict[str, Any]) -> dict[str, Any]:
        """:func:`~tenmon.drivers.camera_fits.frame_header`'s arguments, from the cache and the
        header context at the start of the exposure (cheap; never blocks)."""
        try:
            ctx = {k: v for k, v in (self.header_context() or {}).items() if k in _CONTEXT_KEYS}
        except Exception as exc:  # noqa: BLE001 - a header card must never stop an exposure
            log.warning("%s: header context failed: %s", self.name, exc)
            ctx = {}
        bx = self.num("CCD_BINNING", "HOR_BIN")
        by = self.num("CCD_BINNING", "VER_BIN")
        bx = int(bx) if math.isfinite(bx) and bx >= 1 else 1
        by = int(by) if math.isfinite(by) and by >= 1 else bx
        origin = None
        fx, fy = self.num("CCD_FRAME", "X"), self.num("CCD_FRAME", "Y")
        if math.isfinite(fx) and math.isfinite(fy) and (fx > 0 or fy > 0):
            origin = (int(fx) // bx, int(fy) // by)
        gain = self.num("CCD_GAIN", "GAIN")
        extra = {"INDISERV": (self.address, "indiserver")}
        for k, v in meta.items():
            extra[str(k).upper()[:8]] = v
        header: dict[str, Any] = dict(ctx)
        header.update(
            date_obs=start, exptime_s=seconds, image_type=kind,
            ccd_temp_c=self.temperature_c,
            set_temp_c=self.config.cooler_setpoint_c if self.cooler_on else None,
            gain_e_per_adu=self.settings.gain_e_per_adu if self.settings is not None else None,
            gain_setting=gain if math.isfinite(gain) else None,
            binning=(bx, by), subframe_origin=origin, instrument=self.device,
            object_name=extra.pop("OBJECT", None), extra=extra)
        filt = extra.pop("FILTER", None)
        if filt:
            header["filter_name"] = filt
        focus = extra.pop("FOCUSPOS", None)
        if focus is not None:
            header["focus_position"] = focus
        return header

    def _write(self, blob: bytes, file_name: str, header: dict[str, Any]) -> Path:
        """Writer thread: the blob's pixels to the frames directory, with the full header."""
        image, driver_date = read_indi_image(blob)
        header = dict(header)
        if driver_date is not None:
            header["extra"] = {**header.get("extra", {}),
                               "INDIDATE": (driver_date, "DATE-OBS as the INDI driver wrote it")}
        try:
            path = write_frame(image, self.frames_dir, file_name=file_name, **header)
        except (OSError, ValueError) as exc:
            raise DeviceError(self.name, f"frame not written to {self.frames_dir}: {exc}") from exc
        self.last_exposure = {"path": str(path), "seconds": header["exptime_s"],
                              "kind": header["image_type"], "shape": tuple(image.shape)}
        return path

    def abort(self) -> None:
        """Tell the driver to abort (best effort) and forget the exposure. Never raises."""
        if self._state in (CameraState.EXPOSING, CameraState.READING):
            try:
                if self.link_problem() is None and self.vec("CCD_ABORT_EXPOSURE") is not None:
                    self.conn.send_switch(self.device, "CCD_ABORT_EXPOSURE", "ABORT")
            except Exception as exc:  # noqa: BLE001 - abort never raises
                log.warning("%s: abort not sent (%s)", self.name, exc)
            log.info("%s: exposure aborted", self.name)
            self._state = CameraState.IDLE
        self._exp = None
        if self._future is not None:
            self._future.cancel()
            self._future = None
        with self._blob_lock:
            self._blobs.clear()

    def take_frame(self) -> Path | None:
        if self._done is None:
            return None
        path, self._done = self._done, None
        return path

    def clear_error(self) -> None:
        """Leave the error state once the link is good again (the next exposure may be tried)."""
        if self._state == CameraState.ERROR and self.link_problem() is None:
            self._state = CameraState.IDLE
            self._error = None

    def _on_blob(self, device: str, vector: str, member: str, data: bytes, fmt: str) -> None:
        if device != self.device:
            return
        with self._blob_lock:
            if len(self._blobs) == self._blobs.maxlen:
                self.blobs_dropped += 1
            self._blobs.append((data, fmt))

    def update(self) -> None:
        """Follow the exposure from the cache (non-blocking). Never raises."""
        try:
            self._update()
        except Exception as exc:  # noqa: BLE001 - update never raises for a device fault
            self._camera_fail(f"update failed: {exc}")

    def _update(self) -> None:
        exp = self._exp
        if self._state not in (CameraState.EXPOSING, CameraState.READING) or exp is None:
            with self._blob_lock:
                if self._blobs:  # a frame nobody asked for (another client's exposure)
                    self._blobs.clear()
            return
        fut = self._future
        if fut is not None:
            if not fut.done():
                return
            self._future = None
            exc = fut.exception()
            if exc is not None:
                self._camera_fail(f"frame could not be written: {exc}")
                return
            self._done = fut.result()
            self.frames_written += 1
            self._exp = None
            self._state = CameraState.IDLE
            log.info("%s: frame written: %s", self.name, self._done.name)
            return
        why = self.link_problem()
        if why is not None:
            self._camera_fail(f"{why} during the exposure")
            return
        with self._blob_lock:
            blob = self._blobs.popleft() if self._blobs else None
        if blob is not None:
            data, fmt = blob
            if fmt and "fits" not in fmt.lower():
                self._camera_fail(f"the driver sent a {fmt!r} image, not FITS "
                                  "(set CCD_TRANSFER_FORMAT to FITS)")
                return
            self._state = CameraState.READING
            self._future = self._pool.submit(self._write, data, exp["file_name"], exp["header"])
            return
        v = self.vec("CCD_EXPOSURE")
        if v is not None and v.state == "Alert":
            msg = self._last_message() or v.message or "no message"
            self._camera_fail(f"the driver failed the exposure ({msg})")
            return
        elapsed = self.clock.monotonic() - exp["start_m"]
        if self._state == CameraState.EXPOSING and v is not None and v.state == "Ok" and \
                elapsed > 0:
            self._state = CameraState.READING
        limit = exp["seconds"] + self.config.readout_timeout_s
        if elapsed > limit:
            try:
                self.conn.send_switch(self.device, "CCD_ABORT_EXPOSURE", "ABORT")
            except Exception:  # noqa: BLE001 - the error below says what matters
                pass
            self._camera_fail(f"exposure of {exp['seconds']:g} s never ended: no frame "
                              f"{elapsed:.0f} s after the start (limit {limit:g} s); aborted")

    def _camera_fail(self, message: str) -> None:
        self._fail(message)
        self._state = CameraState.ERROR
        self._exp = None
        if self._future is not None:
            self._future.cancel()
            self._future = None
