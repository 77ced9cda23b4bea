"""The slit band reader: a small CNN on the slit, straightened, says where it is open and whether it is there.

Once the detector has an azimuth, the frame is resampled along the slit itself: rows are the arc
``t`` from the horizon over the zenith (:data:`BAND_T`, one degree per row), columns the offset
across the slit in dome radii (:data:`BAND_U`), each (t, u) a point on the dome's sphere seen from
the camera's calibrated position. In this band the slit is a vertical stripe of constant width
from the horizon to past the zenith, whatever the lens, the camera's offset or the azimuth (the
strip's columns, by contrast, widen without bound towards the zenith).

A convolutional network (trained with torch by :mod:`tenmon.vision.slit.training.band`, shipped as
``models/slit_band.onnx`` and run with onnxruntime on one thread) reads the band and gives:

- per row: sky (the open part), cover (shutter panel or the dome past the slit's end), occluded
  (telescope tube, off the sensor);
- the state: closed, partial, open;
- ``here``: the probability that a slit is seen centred in the band. A reading whose band does
  not show a slit is not an answer (the azimuth was wrong, or the slit is hidden).

Why a network and not the per-row features of :mod:`slit_opening`: at night the open sky and a
dark shutter panel differ by texture (stars, clouds, the panel's ribs and lip) and by the step
between them more than by level; per-row levels with a few neighbours read 84 % of the states
right where the deciding part was in view. Measured in ``docs/bench/slit_encoder.md``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tenmon.core.errors import VisionError
from tenmon.core.onnx_session import load_session
from tenmon.vision.slit.polar import directions_to_pixels
from tenmon.vision.slit.reading import Calibration

log = logging.getLogger(__name__)

#: The packaged band network.
DEFAULT_BAND_MODEL = Path(__file__).resolve().parent / "models" / "slit_band.onnx"

#: Arc along the slit of each band row, degrees from the horizon (row 0 at the horizon).
BAND_T = np.arange(112, dtype=np.float64) + 0.5

#: Offset across the slit of each band column, dome radii (slits are 0.04-0.065 half-wide).
BAND_U = np.linspace(-0.3, 0.3, 48)

#: Row classes and states, in the network's output order.
ROW_CLASSES = ("sky", "cover", "occluded")
STATES = ("closed", "partial", "open")

#: Input channels: normalised grey, on-sensor mask, and two constant planes of frame levels.
CHANNELS = 4


def band_points(az_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(east, north, up) on the unit dome of every band pixel for a slit at ``az_deg``."""
    a = math.radians(az_deg)
    ua = np.array([math.sin(a), math.cos(a), 0.0])      # towards the slit's horizon end
    na = np.array([math.cos(a), -math.sin(a), 0.0])     # across the slit
    t = np.radians(BAND_T)[:, None]
    u = BAND_U[None, :]
    r = np.sqrt(np.maximum(1.0 - u ** 2, 0.0))
    e = u * na[0] + r * np.cos(t) * ua[0]
    n = u * na[1] + r * np.cos(t) * ua[1]
    up = r * np.sin(t) + 0.0 * u
    return e, n, up


def band_maps(calibration: Calibration, az_deg: float, shape: tuple[int, ...]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remap tables (x, y, float32) and the on-sensor mask of the band at ``az_deg``."""
    e, n, up = band_points(az_deg)
    c = calibration
    x, y = directions_to_pixels(c, e - c.camera_offset_east, n - c.camera_offset_north,
                                up - c.camera_offset_up)
    h, w = shape[:2]
    valid = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return x.astype(np.float32), y.astype(np.float32), valid


def extract_band(gray: np.ndarray, calibration: Calibration, az_deg: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The grey band (uint8, rows x cols) at ``az_deg`` and its on-sensor mask."""
    mx, my, valid = band_maps(calibration, az_deg, gray.shape)
    band = cv2.remap(gray, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)
    return band, valid


def frame_levels(strip: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
    """5th, 50th and 95th percentile of a frame's on-sensor strip pixels (its exposure)."""
    vals = strip[valid] if valid.any() else strip.ravel()
    if vals.size > 20000:
        vals = vals[:: vals.size // 20000]
    p5, p50, p95 = np.percentile(vals.astype(np.float32), [5, 50, 95])
    return float(p5), float(p50), float(p95)


def band_input(band: np.ndarray, valid: np.ndarray, levels: tuple[float, float, float]) -> np.ndarray:
    """The network's input (CHANNELS x rows x cols, float32) for one band."""
    p5, p50, p95 = levels
    scale = max(p95 - p5, 4.0)
    x = np.empty((CHANNELS,) + band.shape, np.float32)
    x[0] = np.where(valid, (band.astype(np.float32) - p50) / scale, 0.0)
    x[1] = valid
    x[2] = p50 / 255.0
    x[3] = scale / 255.0
    return x


def row_labels(open_fraction: float, slit_length_deg: float, seen: np.ndarray) -> np.ndarray:
    """Training labels of the band rows: 0 sky, 1 cover, 2 occluded (``seen`` per row, 0..1)."""
    a = open_fraction * slit_length_deg
    lab = np.where(BAND_T < a, 0, 1)
    return np.where(seen < 0.5, 2, lab).astype(np.int64)


@dataclass(frozen=True)
class BandReading:
    """What the band network read."""

    here: float                 # probability that a slit is centred in the band
    state_probs: np.ndarray     # closed, partial, open
    row_probs: np.ndarray       # rows x 3 (sky, cover, occluded)

    @property
    def state(self) -> str:
        return STATES[int(np.argmax(self.state_probs))]


class BandReader:
    """Runs the packaged band network (onnxruntime, one thread).

    Raises:
        VisionError: the model file is missing or unreadable.
    """

    def __init__(self, path: Path | None = None, threads: int = 1, flip_average: bool = True):
        path = Path(path or DEFAULT_BAND_MODEL)
        if not path.exists():
            raise VisionError(f"slit band model not found: {path}")
        self.path = path
        self.flip_average = flip_average
        self.session = load_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        if list(shape[1:]) != [CHANNELS, len(BAND_T), len(BAND_U)]:
            raise VisionError(f"{path}: input {shape} is not a {CHANNELS}x{len(BAND_T)}x{len(BAND_U)} band")

    def read_input(self, x: np.ndarray) -> BandReading:
        """Run the network on one input from :func:`band_input`.

        With ``flip_average`` the band and its mirror image (the slit seen from the other side)
        are both read and their logits averaged.
        """
        outs = [self.session.run(None, {self.input_name: x[None].astype(np.float32)})]
        if self.flip_average:
            xf = np.ascontiguousarray(x[:, :, ::-1], dtype=np.float32)
            outs.append(self.session.run(None, {self.input_name: xf[None]}))
        rows = np.mean([o[0][0] for o in outs], axis=0)
        state = np.mean([o[1][0] for o in outs], axis=0)
        here = float(np.mean([float(o[2].ravel()[0]) for o in outs]))
        return BandReading(here=float(1.0 / (1.0 + math.exp(-here))),
                           state_probs=_softmax(state), row_probs=_softmax(rows.T))

    def read(self, gray: np.ndarray, calibration: Calibration, az_deg: float,
             levels: tuple[float, float, float]) -> BandReading:
        """Read the band of a grey frame at ``az_deg``."""
        band, valid = extract_band(gray, calibration, az_deg)
        return self.read_input(band_input(band, valid, levels))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
