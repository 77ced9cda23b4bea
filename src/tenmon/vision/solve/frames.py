"""FITS frames for solving: read the image, take hints from the header, write a solved copy.

Header hints, in order of trust: an existing celestial WCS (its centre and scale), numeric
``RA``/``DEC`` in degrees, sexagesimal ``OBJCTRA``/``OBJCTDEC`` (or ``RA``/``DEC`` strings),
PANOPTES-style ``RA-MNT``/``DEC-MNT``; the scale from ``PIXSCALE``/``SECPIX``/``SCALE`` or from
the pixel size and focal length (``XPIXSZ`` um x ``XBINNING`` / ``FOCALLEN`` mm x 206.265).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from tenmon.core.atomicfile import atomic_write
from tenmon.core.errors import VisionError
from tenmon.vision.solve.base import SolveHint, SolveResult, describe_wcs

log = logging.getLogger(__name__)


def read_frame(path: str | os.PathLike[str]) -> tuple[np.ndarray, fits.Header]:
    """The first 2-D image HDU of a FITS file (float) and its header; the file is not modified.

    Raises ``VisionError`` naming the file if it is missing, not FITS, or has no 2-D image.
    """
    p = Path(path)
    if not p.is_file():
        raise VisionError(f"{p}: file not found")
    try:
        with fits.open(p, memmap=False) as hdul:
            for hdu in hdul:
                if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2 and hdu.data.size > 0:
                    return np.asarray(hdu.data, dtype=np.float32), hdu.header.copy()
    except (OSError, ValueError) as exc:
        raise VisionError(f"{p}: not a readable FITS file: {exc}") from exc
    raise VisionError(f"{p}: no 2-D image in any HDU")


def header_wcs(header: fits.Header) -> WCS | None:
    """The header's celestial WCS, or ``None`` if it has none (or a broken one)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(header, relax=True).celestial
    except Exception:  # astropy raises many kinds for malformed WCS cards
        return None
    if not w.has_celestial or w.wcs.ctype[0].strip() == "" or not np.all(np.isfinite(w.wcs.crval)):
        return None
    return w


def _num(header: fits.Header, key: str) -> float | None:
    v = header.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    return None


def _sexagesimal(text: object, hours: bool) -> float | None:
    if not isinstance(text, str) or not text.strip():
        return None
    parts = text.replace(":", " ").replace("h", " ").replace("m", " ").replace("s", " ").replace("d", " ").split()
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        return None
    if not vals:
        return None
    sign = -1.0 if parts[0].startswith("-") else 1.0
    v = abs(vals[0]) + sum(x / 60.0**i for i, x in enumerate(vals[1:3], start=1))
    return sign * v * (15.0 if hours else 1.0)


def hint_from_header(header: fits.Header, shape: tuple[int, int]) -> SolveHint:
    """Position and scale hints from a FITS header (fields ``None`` when absent)."""
    ra = dec = scale = None
    w = header_wcs(header)
    if w is not None:
        try:
            geo = describe_wcs(w, shape)
            ra, dec, scale = geo["ra_deg"], geo["dec_deg"], geo["scale_arcsec"]
        except Exception:  # a WCS that cannot be evaluated is no hint
            ra = dec = scale = None
    if ra is None:
        ra, dec = _num(header, "RA"), _num(header, "DEC")
    if ra is None or dec is None:
        ra = _sexagesimal(header.get("OBJCTRA") or header.get("RA"), hours=True)
        dec = _sexagesimal(header.get("OBJCTDEC") or header.get("DEC"), hours=False)
    if ra is None or dec is None:
        ra, dec = _num(header, "RA-MNT"), _num(header, "DEC-MNT")
    if ra is None or dec is None or not -90.0 <= dec <= 90.0:
        ra = dec = None
    if scale is None:
        for key in ("PIXSCALE", "SECPIX", "SCALE"):
            scale = _num(header, key)
            if scale:
                break
    if not scale:
        pix = _num(header, "XPIXSZ")
        focal = _num(header, "FOCALLEN")
        if pix and focal and focal > 0:
            # XPIXSZ is usually already binned (MaxIm, SBFITSEXT); XBINNING is informational.
            scale = 206.265 * pix / focal
    return SolveHint(ra_deg=ra % 360.0 if ra is not None else None, dec_deg=dec,
                     scale_arcsec=scale if scale and scale > 0 else None)


def write_solved_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str], result: SolveResult) -> Path:
    """Copy the FITS file ``src`` to ``dest`` with the solution in the image HDU's header.

    Written to a temporary name in ``dest``'s directory and renamed (atomic); ``src`` is only
    read. The image data are copied unchanged. Raises ``VisionError`` if ``src`` has no image.
    """
    src, dest = Path(src), Path(dest)
    if src.resolve() == dest.resolve():
        raise VisionError(f"{dest}: refusing to overwrite the input frame")
    with fits.open(src, memmap=False) as hdul:
        out = fits.HDUList([h.copy() for h in hdul])
    for hdu in out:
        if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
            hdu.header = result.annotate_header(hdu.header)
            break
    else:
        raise VisionError(f"{src}: no 2-D image to annotate")
    atomic_write(dest, lambda tmp: out.writeto(tmp, overwrite=True, output_verify="silentfix"),
                 mode=0o644)
    return dest
