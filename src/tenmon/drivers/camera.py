"""The CCD camera interface: non-blocking exposures that end as a FITS file in the frames directory.

A camera is driven like every other tenmon device: ``start_exposure()`` returns at once, the
control loop calls ``update()`` every tick and polls ``state``; when the frame is written,
``take_frame()`` hands over its path (once) and the camera is idle again. The frame itself reaches
the frame pipeline through the frames directory (``drivers/ccd_directory.py``), exactly as frames
written by a site's own CCD program do, so a simulated night and a site process frames the same
way.

``CameraSettings`` describes the CCD (``[camera]`` in the site file): pixel scale, binning,
detector figures; the simulated CCD renders frames with it and the solver's hints use its scale.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tenmon.config.services import CameraSettings

log = logging.getLogger(__name__)


class CameraState(str, enum.Enum):
    """ASCOM-like camera states: ``reading`` is readout (and, simulated, rendering) after the
    shutter closed and before the file is written."""

    IDLE = "idle"
    EXPOSING = "exposing"
    READING = "reading"
    ERROR = "error"


@runtime_checkable
class Camera(Protocol):
    """A CCD camera whose frames end up as FITS files in the frames directory.

    ``start_exposure`` raises :class:`~tenmon.core.errors.DeviceError` when the camera is busy or in
    error; ``update`` never raises (a failure sets ``state = ERROR`` and ``error``).
    """

    name: str

    @property
    def state(self) -> CameraState: ...

    @property
    def error(self) -> str | None: ...

    def connect(self) -> None:
        """Open the camera. Raises DeviceNotFound."""

    def disconnect(self) -> None:
        """Release the camera; an exposure in progress is abandoned."""

    def update(self) -> None:
        """Advance the exposure (non-blocking); called every control tick."""

    def start_exposure(self, seconds: float, *, name: str, meta: dict[str, Any] | None = None
                       ) -> None:
        """Open the shutter for ``seconds``; the file name starts with ``name``; ``meta`` goes
        into the FITS header (``OBJECT``, ``FILTER``, tenmon's block id...). Non-blocking."""

    def abort(self) -> None:
        """Abandon the exposure in progress (no file is written). Never raises."""

    def take_frame(self) -> Path | None:
        """The path of the finished frame, once (then the camera is idle); ``None`` before."""
