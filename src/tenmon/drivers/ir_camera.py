"""IR camera frame sources: OpenCV capture (V4L2 device or stream URL) and file/directory replay.

Every frame carries a timezone-aware UTC timestamp taken from the injected clock when it was
grabbed (live sources) or from the file (replay). A missing device raises
:class:`~tenmon.core.errors.DeviceNotFound` naming it; a device that stops delivering raises
:class:`~tenmon.core.errors.DeviceDisconnected`. The simulated IR camera lives with the simulated
world (``drivers/sim``) and draws its frames with
:func:`tenmon.vision.slit.render.render_world_view`.

:class:`EncoderSettings` is the optical encoder's settings model (camera, calibration, model,
thresholds), mounted into the site config.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tenmon.core.clock import Clock, RealClock
from tenmon.core.errors import ConfigError, DeviceDisconnected, DeviceNotFound
from tenmon.vision.images import read_image  # noqa: F401 - re-exported: drivers.ir_camera.read_image
from tenmon.vision.slit.detector import DetectorSettings
from tenmon.vision.slit.tracker import TrackerSettings
from tenmon.vision.slit.reading import Calibration

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class EncoderSettings(BaseModel):
    """The optical slit encoder: which camera, how it is calibrated, how readings are made."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(default="/dev/video0",
                        description="V4L2 device path or index, stream URL, or an image file/folder to replay")
    calibration_file: Path | None = Field(default=None, description="calibration JSON (tenmon encoder calibrate)")
    calibration: dict | None = Field(default=None, description="inline calibration keys (instead of a file)")
    width_px: int | None = Field(default=None, gt=0, description="requested capture width")
    height_px: int | None = Field(default=None, gt=0, description="requested capture height")
    rate_hz: float = Field(default=5.0, gt=0, le=60, description="readings per second")
    read_timeout_s: float = Field(default=5.0, gt=0, description="no frame for this long: disconnected")
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)

    @model_validator(mode="after")
    def _one_calibration(self) -> "EncoderSettings":
        if self.calibration is not None and self.calibration_file is not None:
            raise ValueError("give either calibration_file or calibration, not both")
        if self.calibration is not None:
            try:
                Calibration.from_dict(self.calibration, source="encoder.calibration")
            except ConfigError as exc:  # pydantic reports ValueErrors with the key path
                raise ValueError(str(exc)) from None
        return self

    def load_calibration(self) -> Calibration:
        """The configured calibration.

        Raises:
            ConfigError: none configured, or the file/keys are invalid.
        """
        if self.calibration is not None:
            return Calibration.from_dict(self.calibration, source="encoder.calibration")
        if self.calibration_file is not None:
            return Calibration.load(self.calibration_file)
        raise ConfigError("encoder: no calibration configured (run `tenmon encoder calibrate`)",
                          [("encoder.calibration_file", None, "missing")])


@dataclass(frozen=True)
class Frame:
    """One camera frame: uint8 image (BGR or grey), UTC timestamp, running index, origin."""

    image: np.ndarray
    time: datetime
    index: int
    source: str


@runtime_checkable
class FrameSource(Protocol):
    """Where IR frames come from. ``read()`` blocks for at most one frame interval."""

    name: str

    def open(self) -> None:
        """Start delivering frames. Raises DeviceNotFound when the source is missing."""

    def read(self) -> Frame:
        """The next frame. Raises DeviceDisconnected (live) or StopIteration (replay, at the end)."""

    def close(self) -> None:
        """Release the device (idempotent)."""


class _SourceBase:
    name = "camera"

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                yield self.read()
            except StopIteration:
                return


class OpenCVCapture(_SourceBase):
    """A live camera through OpenCV: a V4L2 device (``/dev/video0`` or ``0``) or a stream URL.

    Args:
        device: device path, device index (int or digit string), or URL (rtsp://, http://...).
        clock: stamps each frame when it is grabbed (the real clock by default).
        width, height: requested capture size (the driver may pick another).
    """

    def __init__(self, device: str | int, *, clock: Clock | None = None, width: int | None = None,
                 height: int | None = None):
        self.device = device
        self.name = f"camera {device}"
        self.clock = clock or RealClock()
        self.width = width
        self.height = height
        self._cap = None
        self._index = 0

    def _target(self) -> tuple[str | int, int]:
        d = self.device
        if isinstance(d, int) or (isinstance(d, str) and d.isdigit()):
            return int(d), cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY
        if _URL.match(str(d)):
            return str(d), cv2.CAP_ANY
        if not Path(d).exists():
            raise DeviceNotFound("encoder.camera", f"no camera device at {d}")
        if str(d).startswith("/dev/") and os.name == "posix":
            return str(d), cv2.CAP_V4L2
        return str(d), cv2.CAP_ANY  # a video file: OpenCV's own readers

    def open(self) -> None:
        """Open the device.

        Raises:
            DeviceNotFound: the device path does not exist or OpenCV cannot open it.
        """
        target, api = self._target()
        cap = cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            raise DeviceNotFound("encoder.camera", f"cannot open camera {self.device!r}")
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        self._cap = cap

    def read(self) -> Frame:
        """Grab the next frame and stamp it.

        Raises:
            DeviceDisconnected: the camera delivered no frame (unplugged, stream ended).
        """
        if self._cap is None:
            raise DeviceDisconnected("encoder.camera", f"camera {self.device!r} is not open")
        ok, image = self._cap.read()
        now = self.clock.now()
        if not ok or image is None or image.size == 0:
            raise DeviceDisconnected("encoder.camera", f"camera {self.device!r} delivered no frame")
        self._index += 1
        return Frame(image=image, time=now, index=self._index, source=str(self.device))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def list_images(path: str | Path) -> list[Path]:
    """Image files named by ``path``: the file itself, or a folder's images sorted by name.

    Raises:
        DeviceNotFound: nothing there, or no image in the folder.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise DeviceNotFound("encoder.camera", f"no images ({', '.join(IMAGE_SUFFIXES)}) in {p}")
        return files
    if p.is_file():
        return [p]
    raise DeviceNotFound("encoder.camera", f"no image file or folder at {p}")


class FileReplaySource(_SourceBase):
    """Replays image files (one file, or a folder's images in name order) as a camera.

    Timestamps: each file's modification time (UTC), or the clock's time at reading when
    ``stamp_with_clock`` (useful to replay a recording as if live). ``loop`` starts over at the
    end instead of stopping.
    """

    def __init__(self, path: str | Path, *, loop: bool = False, clock: Clock | None = None,
                 stamp_with_clock: bool = False):
        self.path = Path(path)
        self.name = f"replay {self.path}"
        self.loop = loop
        self.clock = clock or RealClock()
        self.stamp_with_clock = stamp_with_clock
        self._files: list[Path] = []
        self._pos = 0
        self._index = 0

    def open(self) -> None:
        """List the files. Raises DeviceNotFound when there are none."""
        self._files = list_images(self.path)
        self._pos = 0

    def read(self) -> Frame:
        """The next file's image. Raises StopIteration at the end (unless looping)."""
        if not self._files:
            raise DeviceDisconnected("encoder.camera", f"replay {self.path} is not open")
        if self._pos >= len(self._files):
            if not self.loop:
                raise StopIteration
            self._pos = 0
        f = self._files[self._pos]
        self._pos += 1
        image = read_image(f)
        if self.stamp_with_clock:
            t = self.clock.now()
        else:
            t = datetime.fromtimestamp(f.stat().st_mtime, tz=timezone.utc)
        self._index += 1
        return Frame(image=image, time=t, index=self._index, source=str(f))

    def close(self) -> None:
        self._files = []


def open_source(device: str | int, *, clock: Clock | None = None, width: int | None = None,
                height: int | None = None, loop: bool = False) -> FrameSource:
    """Pick the frame source a device string names (not yet opened).

    ``/dev/video*``, a number, or a URL: live OpenCV capture. An existing image file or folder:
    replay. Anything else raises DeviceNotFound naming it.
    """
    d = str(device)
    if d.isdigit() or _URL.match(d) or d.startswith("/dev/"):
        return OpenCVCapture(device, clock=clock, width=width, height=height)
    p = Path(d)
    if p.is_dir() or p.is_file():
        return FileReplaySource(p, loop=loop, clock=clock)
    raise DeviceNotFound("encoder.camera", f"no camera, stream or image folder at {d!r}")
