"""Reading and writing image files (8-bit BGR or grey), shared by vision, drivers and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from tenmon.core.errors import VisionError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file unchanged in depth (8-bit BGR or grey; 16-bit is scaled to 8).

    Raises:
        VisionError: the file is missing or not a readable image.
    """
    p = Path(path)
    data = np.fromfile(str(p), dtype=np.uint8) if p.is_file() else None
    if data is None or data.size == 0:
        raise VisionError(f"{p}: no such image file")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise VisionError(f"{p}: not a readable image")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write ``image`` to ``path`` (format from the suffix) through a temporary name and a rename.

    Raises:
        VisionError: the image cannot be encoded or written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(p.suffix or ".png", image)
    if not ok:
        raise VisionError(f"{p}: cannot encode the image")
    tmp = p.with_name(f".{p.name}.tmp")
    buf.tofile(str(tmp))
    os.replace(tmp, p)
    return p
