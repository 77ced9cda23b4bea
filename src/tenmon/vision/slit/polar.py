"""The IR camera model and the polar correction: fisheye frame -> azimuth x arc strip of the dome.

The strip's columns are dome azimuths, padded circularly past 0 and 360 so that a slit at the
seam is seen whole at least once. Its rows are the angle ``t`` along the great circle that rises
from the horizon at the column's azimuth, passes the zenith at ``t = 90`` and carries on down the
far side: the dome's slit, which runs from the horizon over the zenith, is then one vertical band
in one column for its whole length (``t`` is the elevation up to 90 degrees). Row 0 is the top
(largest ``t``), the last row the horizon. Dome points are taken on the dome's sphere and seen
from the camera's calibrated position, so an off-centre camera's parallax is removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from tenmon.core.errors import VisionError
from tenmon.vision.slit.reading import Calibration

log = logging.getLogger(__name__)


def _g(theta_rad: np.ndarray, projection: str) -> np.ndarray:
    """Unscaled fisheye radius of the off-axis angle ``theta`` for a projection."""
    if projection == "equidistant":
        return theta_rad
    if projection == "equisolid":
        return 2.0 * np.sin(theta_rad / 2.0)
    if projection == "stereographic":
        return 2.0 * np.tan(theta_rad / 2.0)
    if projection == "orthographic":
        return np.sin(np.minimum(theta_rad, np.pi / 2))
    raise VisionError(f"unknown fisheye projection {projection!r}")


def _g_inv(g: np.ndarray, projection: str) -> np.ndarray:
    """Off-axis angle (radians) of an unscaled fisheye radius (inverse of :func:`_g`)."""
    if projection == "equidistant":
        return g
    if projection == "equisolid":
        return 2.0 * np.arcsin(np.clip(g / 2.0, -1.0, 1.0))
    if projection == "stereographic":
        return 2.0 * np.arctan(g / 2.0)
    if projection == "orthographic":
        return np.arcsin(np.clip(g, -1.0, 1.0))
    raise VisionError(f"unknown fisheye projection {projection!r}")


def theta_to_radius(theta_deg: np.ndarray | float, horizon_radius: float,
                    projection: str = "equidistant") -> np.ndarray:
    """Image radius in pixels of a direction ``theta_deg`` degrees from the zenith.

    The scale is fixed by ``horizon_radius`` (the radius at ``theta = 90``).
    """
    th = np.radians(np.asarray(theta_deg, dtype=np.float64))
    return horizon_radius * _g(th, projection) / float(_g(np.array(np.pi / 2), projection))


def radius_to_theta(radius_px: np.ndarray | float, horizon_radius: float,
                    projection: str = "equidistant") -> np.ndarray:
    """Zenith angle in degrees of an image radius in pixels (inverse of :func:`theta_to_radius`)."""
    g = np.asarray(radius_px, dtype=np.float64) / horizon_radius * float(_g(np.array(np.pi / 2), projection))
    return np.degrees(_g_inv(g, projection))


def directions_to_pixels(calibration: Calibration, east: np.ndarray, north: np.ndarray,
                         up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image pixel (x, y) of directions seen from the camera (east, north, up components).

    The directions need not be unit vectors. Returns float arrays of the broadcast shape.
    """
    east = np.asarray(east, dtype=np.float64)
    north = np.asarray(north, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    horiz = np.hypot(east, north)
    theta = np.degrees(np.arctan2(horiz, up))  # from the zenith
    az = np.degrees(np.arctan2(east, north))
    r = theta_to_radius(theta, calibration.horizon_radius, calibration.projection)
    alpha = np.radians(calibration.north_angle_deg + calibration.azimuth_sense * az)
    x = calibration.center_x + r * np.sin(alpha)
    y = calibration.center_y - r * np.cos(alpha)
    return x, y


def dome_point(az_deg: np.ndarray | float, t_deg: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point on the unit dome at strip coordinates (azimuth, arc ``t`` from that horizon).

    Returns (east, north, up) in dome radii, origin at the dome's centre.
    """
    a = np.radians(np.asarray(az_deg, dtype=np.float64))
    t = np.radians(np.asarray(t_deg, dtype=np.float64))
    c = np.cos(t)
    return c * np.sin(a), c * np.cos(a), np.sin(t) + 0.0 * a


def dome_to_pixels(calibration: Calibration, az_deg: np.ndarray | float,
                   t_deg: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Image pixel (x, y) of the dome point at (azimuth, arc ``t``), parallax included."""
    e, n, u = dome_point(az_deg, t_deg)
    return directions_to_pixels(calibration, e - calibration.camera_offset_east,
                                n - calibration.camera_offset_north,
                                u - calibration.camera_offset_up)


def pixels_to_directions(calibration: Calibration, x: np.ndarray, y: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (degrees, seen from the camera) of image pixels."""
    dx = np.asarray(x, dtype=np.float64) - calibration.center_x
    dy = np.asarray(y, dtype=np.float64) - calibration.center_y
    r = np.hypot(dx, dy)
    alpha = np.degrees(np.arctan2(dx, -dy))
    az = np.mod(calibration.azimuth_sense * (alpha - calibration.north_angle_deg), 360.0)
    el = 90.0 - radius_to_theta(r, calibration.horizon_radius, calibration.projection)
    return az, el


@dataclass(frozen=True)
class StripGeometry:
    """Size and coverage of the unwrapped strip.

    Columns cover azimuths ``[-pad_deg, 360 + pad_deg)``; rows cover arc ``t`` from ``t_max_deg``
    (row 0) down to 0 (last row).
    """

    width: int = 640
    height: int = 160
    pad_deg: float = 20.0
    t_max_deg: float = 110.0

    @property
    def az_step_deg(self) -> float:
        """Degrees of azimuth per column."""
        return (360.0 + 2.0 * self.pad_deg) / self.width

    @property
    def t_step_deg(self) -> float:
        """Degrees of arc per row."""
        return self.t_max_deg / self.height

    def col_to_az(self, col: np.ndarray | float) -> np.ndarray:
        """Azimuth (degrees, not wrapped) of a column coordinate (pixel centres at integers)."""
        return -self.pad_deg + (np.asarray(col, dtype=np.float64) + 0.5) * self.az_step_deg

    def az_to_col(self, az_deg: np.ndarray | float) -> np.ndarray:
        """Column coordinate of an azimuth (not wrapped)."""
        return (np.asarray(az_deg, dtype=np.float64) + self.pad_deg) / self.az_step_deg - 0.5

    def row_to_t(self, row: np.ndarray | float) -> np.ndarray:
        """Arc ``t`` (degrees) of a row coordinate."""
        return self.t_max_deg - (np.asarray(row, dtype=np.float64) + 0.5) * self.t_step_deg

    def t_to_row(self, t_deg: np.ndarray | float) -> np.ndarray:
        """Row coordinate of an arc ``t`` (degrees)."""
        return (self.t_max_deg - np.asarray(t_deg, dtype=np.float64)) / self.t_step_deg - 0.5


class StripMapper:
    """Unwraps frames of one camera (one calibration, one frame size) into strips.

    The remap tables are built once in the constructor (a few ms) and reused for every frame.
    """

    def __init__(self, calibration: Calibration, frame_shape: tuple[int, ...],
                 geometry: StripGeometry | None = None):
        self.calibration = calibration
        self.geometry = geometry or StripGeometry()
        self.frame_shape = tuple(frame_shape[:2])
        g = self.geometry
        az = g.col_to_az(np.arange(g.width))
        t = g.row_to_t(np.arange(g.height))
        x, y = dome_to_pixels(calibration, az[None, :], t[:, None])
        self.map_x = x.astype(np.float32)
        self.map_y = y.astype(np.float32)
        h, w = self.frame_shape
        # Strip pixels whose source lies on the sensor: the rest are filled, not guessed.
        self.valid = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        if not self.valid.any():
            raise VisionError(
                f"calibration (centre {calibration.center_x:.0f},{calibration.center_y:.0f}, "
                f"horizon radius {calibration.horizon_radius:.0f}) maps no dome point onto a "
                f"{w}x{h} frame")

    def unwrap(self, frame: np.ndarray, *, fill: int | float = 0) -> np.ndarray:
        """The strip of ``frame`` (same dtype and channels), bilinear; off-sensor pixels = ``fill``.

        Raises:
            VisionError: the frame's size differs from the one this mapper was built for.
        """
        if frame.shape[:2] != self.frame_shape:
            raise VisionError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the strip map was built "
                              f"for {self.frame_shape[1]}x{self.frame_shape[0]}")
        return cv2.remap(frame, self.map_x, self.map_y, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def unwrap(frame: np.ndarray, calibration: Calibration,
           geometry: StripGeometry | None = None) -> np.ndarray:
    """One-off polar unwrap of ``frame`` (see :class:`StripMapper` to reuse the tables)."""
    return StripMapper(calibration, frame.shape, geometry).unwrap(frame)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A single-channel view of a frame (BGR or BGRA or already grey), same dtype.

    Raises:
        VisionError: the array is empty or not an image.
    """
    if frame is None or not hasattr(frame, "ndim") or frame.size == 0:
        raise VisionError("empty frame")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    raise VisionError(f"not an image: array of shape {frame.shape}")


def slit_half_width_deg(t_deg: np.ndarray | float, half_width: float) -> np.ndarray:
    """Azimuth half-width (degrees) at arc ``t`` of a slit band ``half_width`` dome radii wide.

    The slit's edges are planes parallel to its centre plane, so the band widens towards the
    zenith (90 degrees of azimuth and more once ``cos t <= half_width``).
    """
    c = np.abs(np.cos(np.radians(np.asarray(t_deg, dtype=np.float64))))
    s = np.clip(half_width / np.maximum(c, 1e-6), 0.0, 1.0)
    return np.degrees(np.arcsin(s))


__all__ = [
    "StripGeometry", "StripMapper", "unwrap", "to_gray", "dome_to_pixels", "dome_point",
    "directions_to_pixels", "pixels_to_directions", "theta_to_radius", "radius_to_theta",
    "slit_half_width_deg",
]
