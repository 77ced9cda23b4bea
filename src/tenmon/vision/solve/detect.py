"""Sources for solving: the frame pipeline's own extraction (``tenmon.vision.frames.sources``).

One extraction everywhere: the solver sees exactly the stars the frame pipeline measures, found
with SExtractor's choices and placed with the frame's own FWHM (measured on the frame, robust to
the hot pixels and cosmic rays of an uncleaned frame). The solver only needs ``x``, ``y``
(0-based) and ``flux``; the frame's gain and saturation come from its header when given.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from astropy.table import Table

from tenmon.core.errors import VisionError
from tenmon.vision.frames.sources import extract_sources
from tenmon.config.vision import SourceSettings

log = logging.getLogger(__name__)

GAIN_KEYS = ("GAIN", "EGAIN", "CCDGAIN")
SATURATION_KEYS = ("SATURATE", "SATLEVEL", "DATAMAX")


def header_gain_saturation(header: Any) -> tuple[float | None, float | None]:
    """``(gain [e-/ADU], saturation [ADU])`` from a FITS header's usual keys, ``None`` where absent."""
    def first(keys: tuple[str, ...]) -> float | None:
        if header is None:
            return None
        for k in keys:
            try:
                v = float(header[k])
            except (KeyError, TypeError, ValueError):
                continue
            if np.isfinite(v) and v > 0:
                return v
        return None
    return first(GAIN_KEYS), first(SATURATION_KEYS)


def detect_sources(image: np.ndarray, *, header: Any = None, gain: float | None = None,
                   saturation_adu: float | None = None, settings: SourceSettings | None = None,
                   max_sources: int = 2000) -> Table:
    """Sources of a 2-D image: Table ``x``, ``y`` (0-based pixels), ``flux``; brightest first.

    ``gain`` and ``saturation_adu`` default to the header's (GAIN/EGAIN, SATURATE/SATLEVEL).
    ``meta['fwhm_px']`` is the frame's FWHM as measured by the extraction.
    Raises ``VisionError`` for an image that is not 2-D or has no finite pixels.
    """
    data = np.asarray(image)
    if data.ndim != 2 or data.size == 0:
        raise VisionError(f"need a 2-D image, got shape {data.shape}")
    if not np.isfinite(data).any():
        raise VisionError("image has no finite pixels")
    h_gain, h_sat = header_gain_saturation(header)
    t = extract_sources(data, gain=gain if gain is not None else h_gain,
                        saturation_adu=saturation_adu if saturation_adu is not None else h_sat,
                        settings=settings)
    out = Table({"x": np.asarray(t["x"], float), "y": np.asarray(t["y"], float),
                 "flux": np.asarray(t["flux"], float)})
    out.meta["fwhm_px"] = t.meta.get("fwhm_px")
    order = np.argsort(-np.asarray(out["flux"], float), kind="stable")
    return out[order][:max_sources]
