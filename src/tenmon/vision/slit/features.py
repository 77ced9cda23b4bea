"""The unwrapped strip as the slit detector sees it, and the YOLO box of a slit in it.

Shared by training (dataset generation) and run time, so the model sees exactly the same input in
both. The input has three channels computed from the grey strip: a robust contrast stretch, the
local contrast (strip minus a blurred strip) and each row normalised by its median and spread;
they make the slit's band stand out whatever the exposure, the illuminator's fall-off or the
polarity (dark sky at night, bright sky by day).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tenmon.vision.slit.polar import StripGeometry

#: Detector classes, in the model's class order.
CLASSES = ("open", "closed", "partial")

#: The strip the model reads: 400 degrees of azimuth (20 of circular padding each side) in 320
#: columns (1.25 deg each), arc 0..110 degrees in 96 rows. Small on purpose: the model finds the
#: slit and its state; the azimuth is then refined on a finer strip (slit_classical.refine_azimuth).
MODEL_GEOMETRY = StripGeometry(width=320, height=96, pad_deg=20.0, t_max_deg=110.0)


def model_input(strip: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The three-channel uint8 image (H x W x 3, stored order) fed to the model for a grey strip.

    Args:
        strip: the grey strip (uint8 or float), H x W.
        valid: optional mask of strip pixels that come from the sensor (others are ignored by
            the contrast statistics).
    """
    s = strip.astype(np.float32)
    sample = s[valid] if valid is not None and valid.any() else s.ravel()
    if sample.size > 20000:
        sample = sample[:: sample.size // 20000]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    scale = 255.0 / max(float(hi - lo), 1.0)
    c0 = (s - lo) * scale
    blur = cv2.GaussianBlur(c0, (0, 0), 6.0)
    c1 = 128.0 + 2.0 * (c0 - blur)
    med = np.median(c0, axis=1, keepdims=True)
    mad = np.median(np.abs(c0 - med), axis=1, keepdims=True)
    c2 = 128.0 + 24.0 * (c0 - med) / (mad + 4.0)
    out = np.stack([c0, c1, c2], axis=-1)
    if valid is not None:
        out[~valid] = 0.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SlitBox:
    """A slit's box in strip pixels (x0, y0, x1, y1) and its class index."""

    cls: int
    x0: float
    y0: float
    x1: float
    y1: float

    def yolo_line(self, width: int, height: int) -> str:
        """The box as a YOLO label line (class, centre and size normalised to the image)."""
        xc = (self.x0 + self.x1) / 2 / width
        yc = (self.y0 + self.y1) / 2 / height
        return f"{self.cls} {xc:.6f} {yc:.6f} {(self.x1 - self.x0) / width:.6f} {(self.y1 - self.y0) / height:.6f}"


def slit_boxes(geometry: StripGeometry, azimuth_deg: float, open_fraction: float, state: str,
               slit_width_frac: float, slit_length_deg: float, rail_width: float = 0.015
               ) -> list[SlitBox]:
    """Boxes of a slit in the strip: one per copy (the circular padding can hold two).

    The box spans the slit's width at the horizon (rails included) and, along the slit, the open
    part for a partly open slit, the whole slit otherwise; its class says the state. Copies whose
    centre falls outside the strip are dropped; boxes are clipped to the strip.
    """
    cls = CLASSES.index(state)
    half = float(np.degrees(np.arcsin(min(slit_width_frac + rail_width, 0.9))))
    top_t = open_fraction * slit_length_deg if state == "partial" else slit_length_deg
    top_t = min(top_t, geometry.t_max_deg)
    y0 = float(geometry.t_to_row(top_t)) + 0.5
    y1 = float(geometry.height)
    out = []
    for az in (azimuth_deg - 360.0, azimuth_deg, azimuth_deg + 360.0):
        xc = float(geometry.az_to_col(az)) + 0.5
        if not 0 <= xc < geometry.width:
            continue
        hw = half / geometry.az_step_deg
        x0, x1 = max(xc - hw, 0.0), min(xc + hw, float(geometry.width))
        if x1 - x0 < hw:  # less than half of it inside: not a usable copy
            continue
        out.append(SlitBox(cls, x0, max(y0, 0.0), x1, y1))
    return out
