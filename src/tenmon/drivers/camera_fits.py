"""Writing a camera's frame as FITS into the frames directory: complete headers, atomic rename.

Every camera backend that reads pixels itself (Alpaca's ImageArray, an INDI BLOB) ends here, so
every frame carries the same cards whichever server the camera sits behind, and the frame
service (``daemon/services/frames.py`` through ``drivers/ccd_directory.py``) takes it exactly as it takes
a site CCD program's frames: the file appears under its final name only when complete (written
to a hidden temporary name in the same directory, then renamed).

Cards written (a value that is unknown or not finite is left out rather than guessed):

``DATE-OBS``/``DATE-END``/``MJD-OBS`` (UTC, ISO), ``TIMESYS = 'UTC'``, ``EXPTIME``/``EXPOSURE``
[s], ``IMAGETYP`` (``Light Frame``, ``Dark Frame``, ``Bias Frame``, ``Flat Field``), site
(``OBSERVAT``, ``SITELAT``, ``SITELONG`` east positive, ``SITEELEV``), the mount's pointing hint
(``RA``/``DEC`` in degrees, ``OBJCTRA``/``OBJCTDEC`` sexagesimal, ``EQUINOX = 2000``),
``OBJECT``, ``FILTER``, ``FOCUSPOS`` [steps], ``FOCTEMP`` [C], ``CCD-TEMP``/``SET-TEMP`` [C],
``GAIN``/``EGAIN`` [e-/ADU] (what the frame pipeline reads as the gain), ``GAINSET`` (the
camera's own gain setting, in its units), ``XBINNING``/``YBINNING``, ``XORGSUBF``/``YORGSUBF``,
``PIXSCALE`` [arcsec/px, binned], ``INSTRUME``, ``TELESCOP``, ``CREATOR``, then the caller's extra
cards (tenmon's block id ...).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["FrameSite", "HeaderContext", "IMAGE_TYPES", "frame_file_name", "frame_header",
           "normalise_image_type", "write_frame"]

#: tenmon's image types -> the IMAGETYP values camera programs (MaxIm, NINA, ACP) write.
IMAGE_TYPES = {"light": "Light Frame", "dark": "Dark Frame", "bias": "Bias Frame",
               "flat": "Flat Field"}

#: What a camera backend calls at the start of an exposure (on the control loop, cheap: cached
#: device properties only) for the cards it cannot know itself: ``RA``/``DEC`` from the mount,
#: ``FOCUSPOS`` from the focuser, ``FILTER`` from the wheel, the site. Returns keyword
#: arguments of :func:`frame_header` (``ra_deg``, ``focus_position``, ``site``...).
HeaderContext = Callable[[], dict[str, Any]]

_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


@dataclass(frozen=True)
class FrameSite:
    """The observatory, for the site cards. Longitude east positive, degrees; elevation m."""

    name: str
    latitude_deg: float
    longitude_deg: float
    elevation_m: float


def normalise_image_type(value: str | None) -> str:
    """``light``, ``dark``, ``bias`` or ``flat`` from any usual spelling (``"Light Frame"``,
    ``"DARK"``, ``"flat field"``); ``None`` is ``light``. Raises ValueError for anything else."""
    if value is None:
        return "light"
    v = str(value).strip().lower().replace("_", " ")
    for key in IMAGE_TYPES:
        if v == key or v.startswith(key + " ") or v == IMAGE_TYPES[key].lower():
            return key
    if v in ("object", "science"):
        return "light"
    if v in ("zero",):
        return "bias"
    raise ValueError(f"unknown image type {value!r} (light, dark, bias or flat)")


def frame_file_name(name: str, when: datetime, count: int) -> str:
    """``<name>-<YYYYmmddTHHMMSS>-<count>.fits``, the name safe for any filesystem (the
    simulated CCD names its frames the same way)."""
    stem = _SAFE.sub("_", name).strip("_") or "frame"
    return f"{stem}-{_utc(when).strftime('%Y%m%dT%H%M%S')}-{count:04d}.fits"


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("DATE-OBS must be a timezone-aware UTC time")
    return t.astimezone(timezone.utc)


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _sexagesimal(deg: float, *, hours: bool) -> str:
    v = deg / 15.0 if hours else abs(deg)
    sign = "" if hours else ("-" if deg < 0 else "+")
    total = round(v * 3600.0, 2 if hours else 1)
    h, rem = divmod(total, 3600.0)
    m, s = divmod(rem, 60.0)
    if hours:
        return f"{int(h) % 24:02d} {int(m):02d} {s:05.2f}"
    return f"{sign}{int(h):02d} {int(m):02d} {s:04.1f}"


def frame_header(*, date_obs: datetime, exptime_s: float, image_type: str = "light",
                 site: FrameSite | None = None, ra_deg: float | None = None,
                 dec_deg: float | None = None, object_name: str | None = None,
                 filter_name: str | None = None, focus_position: int | None = None,
                 focus_temp_c: float | None = None, ccd_temp_c: float | None = None,
                 set_temp_c: float | None = None, gain_e_per_adu: float | None = None,
                 gain_setting: float | None = None, binning: tuple[int, int] = (1, 1),
                 subframe_origin: tuple[int, int] | None = None,
                 pixel_scale_arcsec: float | None = None, instrument: str | None = None,
                 telescope: str | None = None, extra: dict[str, Any] | None = None):
    """The FITS header of one frame (see the module docstring for the cards).

    Raises:
        ValueError: ``date_obs`` is naive, ``exptime_s`` negative or not finite, or the image
            type unknown.
    """
    from astropy.io import fits
    from astropy.time import Time

    kind = normalise_image_type(image_type)
    exp = _num(exptime_s)
    if exp is None or exp < 0:
        raise ValueError(f"exposure time {exptime_s!r} s is not a time")
    start = _utc(date_obs)
    t = Time(start)
    h = fits.Header()
    h["DATE-OBS"] = (t.isot, "UTC start of exposure")
    h["DATE-END"] = (Time(start + timedelta(seconds=exp)).isot, "UTC end of exposure")
    h["MJD-OBS"] = (round(float(t.mjd), 8), "MJD (UTC) of the start of exposure")
    h["TIMESYS"] = ("UTC", "time system of DATE-OBS")
    h["EXPTIME"] = (exp, "[s] exposure time")
    h["EXPOSURE"] = (exp, "[s] exposure time")
    h["IMAGETYP"] = (IMAGE_TYPES[kind], "frame type")
    if site is not None:
        h["OBSERVAT"] = (site.name, "observatory")
        for key, val, comment in (("SITELAT", site.latitude_deg, "[deg] latitude"),
                                  ("SITELONG", site.longitude_deg, "[deg] longitude, east +"),
                                  ("SITEELEV", site.elevation_m, "[m] elevation")):
            if _num(val) is not None:
                h[key] = (float(val), comment)
    ra, dec = _num(ra_deg), _num(dec_deg)
    if ra is not None and dec is not None and -90.0 <= dec <= 90.0:
        ra %= 360.0
        h["RA"] = (round(ra, 6), "[deg] mount's idea of the pointing")
        h["DEC"] = (round(dec, 6), "[deg] mount's idea of the pointing")
        h["OBJCTRA"] = (_sexagesimal(ra, hours=True), "mount RA (J2000)")
        h["OBJCTDEC"] = (_sexagesimal(dec, hours=False), "mount Dec (J2000)")
        h["EQUINOX"] = 2000.0
    if object_name:
        h["OBJECT"] = str(object_name)
    if filter_name:
        h["FILTER"] = (str(filter_name), "filter in the light path")
    if _num(focus_position) is not None:
        h["FOCUSPOS"] = (int(round(float(focus_position))), "[steps] focuser position")
    if _num(focus_temp_c) is not None:
        h["FOCTEMP"] = (round(float(focus_temp_c), 2), "[C] focuser temperature")
    if _num(ccd_temp_c) is not None:
        h["CCD-TEMP"] = (round(float(ccd_temp_c), 2), "[C] sensor temperature at start")
    if _num(set_temp_c) is not None:
        h["SET-TEMP"] = (round(float(set_temp_c), 2), "[C] cooler set point")
    g = _num(gain_e_per_adu)
    if g is not None and g > 0:
        h["GAIN"] = (g, "[e-/ADU]")
        h["EGAIN"] = (g, "[e-/ADU]")
    if _num(gain_setting) is not None:
        h["GAINSET"] = (float(gain_setting), "camera gain setting (device units)")
    bx, by = (int(binning[0]), int(binning[1]))
    h["XBINNING"] = bx
    h["YBINNING"] = by
    if subframe_origin is not None:
        h["XORGSUBF"] = (int(subframe_origin[0]), "subframe origin x (binned px)")
        h["YORGSUBF"] = (int(subframe_origin[1]), "subframe origin y (binned px)")
    if _num(pixel_scale_arcsec) is not None and pixel_scale_arcsec > 0:
        h["PIXSCALE"] = (round(float(pixel_scale_arcsec), 6), "[arcsec/px] binned")
    if instrument:
        h["INSTRUME"] = str(instrument)
    if telescope:
        h["TELESCOP"] = str(telescope)
    h["CREATOR"] = "tenmon"
    for k, v in (extra or {}).items():
        key = str(k).upper()[:8]
        if isinstance(v, tuple):
            if _is_bad(v[0]):
                continue
        elif _is_bad(v):
            continue
        h[key] = v
    return h


def _is_bad(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def write_frame(image: np.ndarray, frames_dir: str | os.PathLike, *, file_name: str,
                **header: Any) -> Path:
    """Write ``image`` (rows = y) as ``frames_dir/file_name`` with :func:`frame_header`'s cards.

    Integers within 0..65535 are stored as unsigned 16-bit (BZERO 32768) as camera programs do;
    other integers as 32-bit, floats as 32-bit floats. Written to a hidden temporary name in
    ``frames_dir`` and renamed, so the frame service never sees a partial file. Blocking (disk
    I/O): call it off the control loop.

    Args:
        image: a 2-D array.
        frames_dir: the frames directory (created if missing).
        file_name: the final name (:func:`frame_file_name`).
        **header: keyword arguments of :func:`frame_header`.

    Returns:
        The path written.

    Raises:
        ValueError: the image is not 2-D or a header value is invalid.
        OSError: the file cannot be written (the temporary file is removed).
    """
    from astropy.io import fits

    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"a frame must be a non-empty 2-D array, not shape {arr.shape}")
    if "/" in file_name or file_name.startswith("."):
        raise ValueError(f"{file_name!r} is not a plain visible file name")
    h = frame_header(**header)
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_):
        lo, hi = (int(arr.min()), int(arr.max()))
        data = arr.astype(np.uint16) if lo >= 0 and hi <= 65535 else arr.astype(np.int32)
    else:
        data = arr.astype(np.float32)
    directory = Path(frames_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name
    hdu = fits.PrimaryHDU(data=data, header=h)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".fits", dir=directory)
    os.close(fd)
    try:
        hdu.writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
