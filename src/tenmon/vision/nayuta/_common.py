"""Small helpers shared by the modules of tenmon.vision.nayuta.

Part of :mod:`tenmon.vision.nayuta` (see its docstring for the conventions).
"""

from __future__ import annotations

import time

import numpy as np
from astropy.table import Table

from tenmon.vision.nayuta.settings import NayutaError


def xyflux(t: Table, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for c in ("x", "y"):
        if c not in t.colnames:
            raise NayutaError(f"{what} source table has no {c!r} column (columns: {', '.join(t.colnames)})")
    x = np.asarray(t["x"], float)
    y = np.asarray(t["y"], float)
    f = np.asarray(t["flux"], float) if "flux" in t.colnames else np.ones_like(x)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(f)
    x, y, f = x[ok], y[ok], f[ok]
    o = np.argsort(-f, kind="stable")
    return x[o], y[o], f[o]


def as_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2 or img.size == 0:
        raise NayutaError(f"need a 2-D image, got shape {img.shape}")
    img = img.astype(np.float32, copy=False)
    if not np.isfinite(img).any():
        raise NayutaError("image has no finite pixels")
    return img


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
