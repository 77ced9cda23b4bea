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

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class CameraState(str, enum.Enum):
    """ASCOM-like camera states: ``reading`` is readout (and, simulated, rendering) after the
    shutter closed and before the file is written."""

    IDLE = "idle"
    EXPOSING = "exposing"
    READING = "reading"
    ERROR = "error"


class CameraSettings(BaseModel):
    """The science CCD (``[camera]``). Sizes are of the *binned* frame a night produces.

    The defaults are the 60 cm's 2k x 2k camera at 0.32"/px (an 11' field) read out binned 2 x 2:
    1024 x 1024 pixels of 0.64", which keeps a simulated night's frames small and fast.
    """

    model_config = ConfigDict(extra="forbid")

    width_px: int = Field(default=1024, ge=64, le=8192, description="binned frame width")
    height_px: int = Field(default=1024, ge=64, le=8192, description="binned frame height")
    binning: int = Field(default=2, ge=1, le=16)
    pixel_scale_arcsec: float = Field(default=0.32, gt=0, description="unbinned pixel scale")
    rotation_deg: float = Field(default=0.0, description="position angle of image +y, E of N")
    focal_length_mm: float = Field(default=8700.0, gt=0, description="for the FOCALLEN card")
    gain_e_per_adu: float = Field(default=1.5, gt=0)
    read_noise_e: float = Field(default=8.0, ge=0)
    bias_adu: float = Field(default=500.0, ge=0)
    overscan_px: int = Field(default=16, ge=0, le=256, description="overscan columns at the right")
    saturation_adu: float = Field(default=65535.0, gt=0)
    zero_point_mag: float = Field(default=22.5, description="magnitude giving 1 e-/s in total")
    seeing_arcsec: float = Field(default=2.0, gt=0, description="simulated seeing FWHM")
    dark_sky_mag: float = Field(default=21.0, description="zenith dark sky, V mag/arcsec^2")
    readout_s: float = Field(default=5.0, ge=0, description="readout time after the shutter")
    timeout_s: float = Field(default=120.0, gt=0, description="exposure + readout must end by then")

    @property
    def binned_scale_arcsec(self) -> float:
        """Pixel scale of the binned frame, arcsec/px."""
        return self.pixel_scale_arcsec * self.binning

    @property
    def field_arcmin(self) -> tuple[float, float]:
        """Field of view (width, height) in arcmin."""
        s = self.binned_scale_arcsec / 60.0
        return self.width_px * s, self.height_px * s


@runtime_checkable
class Camera(Protocol):
    """A CCD camera whose frames end up as FITS files in the frames directory.

    ``start_exposure`` raises :class:`~tenmon.errors.DeviceError` when the camera is busy or in
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
