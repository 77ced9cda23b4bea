"""Any observatory's FITS header -> the facts the archive keeps, naming what it could not read.

Each fact is looked up under the keywords observatories use for it, in order; the keyword that
gave it is recorded (``keywords``), and a fact found under none of them is listed in
``missing`` with the keywords tried, never guessed. A keyword that is present but cannot be
read (``DATE-OBS = 'yesterday'``) is a ``problem``, and the next keyword is tried.

Times: ``DATE-OBS`` (ISO; a date alone is completed by ``TIME-OBS``/``UT``/``UTSTART``; the
pre-2000 ``dd/mm/yy`` form is read as 19yy), else ``MJD-OBS``, else ``JD``/``JD-OBS``; all are
the start of the exposure (the FITS standard's meaning), and the mid-exposure time adds half the
exposure. ``DATE-AVG``/``MJD-AVG`` give the middle directly. ``DATE`` (when the file was
written) is never used.
Positions: numeric ``RA``/``DEC`` are degrees; ``RA``/``DEC`` strings with ``:`` or spaces and
``OBJCTRA``/``OBJCTDEC``/``TELRA``/``TELDEC`` are sexagesimal (RA in hours); ``RA_OBJ``/``DEC_OBJ``
are degrees. They are where the telescope pointed (a hint), not the frame's WCS.
Site longitude is east-positive (the FITS ``LONG-OBS``/``OBSGEO-L`` convention).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from astropy.io import fits

from tenmon.core import offline

offline.configure()

from astropy.time import Time  # noqa: E402

#: Keywords tried for each fact, in order.
TIME_KEYS = ("DATE-OBS", "MJD-OBS", "JD", "JD-OBS")
MID_TIME_KEYS = ("DATE-AVG", "MJD-AVG")
EXPTIME_KEYS = ("EXPTIME", "EXPOSURE", "ITIME", "EXP_TIME", "EXPTIM")
FILTER_KEYS = ("FILTER", "FILTER1", "FILTNAM", "FILTNAME", "FILTERID", "FILT")
OBJECT_KEYS = ("OBJECT", "OBJNAME", "TARGNAME", "TARGET")
TELESCOPE_KEYS = ("TELESCOP",)
INSTRUMENT_KEYS = ("INSTRUME", "CAMERA", "DETECTOR")
GAIN_KEYS = ("GAIN", "EGAIN", "CCDGAIN", "GAIN_E")
OBSERVATORY_KEYS = ("OBSERVAT", "SITENAME", "SITE")
LAT_KEYS = ("SITELAT", "LAT-OBS", "OBS-LAT", "LATITUDE", "OBSGEO-B")
LON_KEYS = ("SITELONG", "LONG-OBS", "OBS-LONG", "LONGITUD", "OBSGEO-L")
RA_KEYS = ("RA", "OBJCTRA", "RA_OBJ", "TELRA", "RA-MNT")
DEC_KEYS = ("DEC", "OBJCTDEC", "DEC_OBJ", "TELDEC", "DEC-MNT")
#: Keywords whose string value is sexagesimal hours / degrees.
_SEXA_HOURS = {"OBJCTRA", "TELRA"}


@dataclass
class HeaderFacts:
    """What the archive keeps of a header. Any value may be ``None`` (then it is in ``missing``).

    ``mjd_start``/``mjd_mid``: UTC MJD of the start and middle of the exposure; ``date_obs``:
    ISO UTC start; ``ra_deg``/``dec_deg``: the pointing the header states; ``site_lon_deg``
    east-positive. ``keywords``: fact -> keyword it came from; ``missing``: fact -> keywords
    tried; ``problems``: keywords present but unreadable, with why.
    """

    date_obs: str | None = None
    mjd_start: float | None = None
    mjd_mid: float | None = None
    exptime_s: float | None = None
    filter: str | None = None
    object: str | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    telescope: str | None = None
    instrument: str | None = None
    gain_e_per_adu: float | None = None
    observatory: str | None = None
    site_lat_deg: float | None = None
    site_lon_deg: float | None = None
    keywords: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def has_time(self) -> bool:
        return self.mjd_mid is not None

    def night(self, longitude_deg: float | None = None) -> str | None:
        """The local night (``YYYY-MM-DD`` of the evening): the date of local mean solar time
        minus 12 h, at ``longitude_deg`` (east positive; else the header's site, else 0, so
        UTC noon divides nights). ``None`` without a time."""
        if self.mjd_mid is None:
            return None
        lon = longitude_deg if longitude_deg is not None else (self.site_lon_deg or 0.0)
        local = self.mjd_mid + lon / 360.0 - 0.5
        return Time(math.floor(local), format="mjd", scale="utc").to_value("iso", subfmt="date")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_facts(header: fits.Header) -> HeaderFacts:
    """The facts of ``header`` (see the module doc). Never raises for a bad value."""
    f = HeaderFacts()
    _times(header, f)
    f.exptime_s = _first_number(header, "exptime_s", EXPTIME_KEYS, f, positive=True, allow_zero=True)
    f.filter = _first_text(header, "filter", FILTER_KEYS, f)
    f.object = _first_text(header, "object", OBJECT_KEYS, f)
    f.telescope = _first_text(header, "telescope", TELESCOPE_KEYS, f)
    f.instrument = _first_text(header, "instrument", INSTRUMENT_KEYS, f)
    f.gain_e_per_adu = _first_number(header, "gain", GAIN_KEYS, f, positive=True)
    f.observatory = _first_text(header, "observatory", OBSERVATORY_KEYS, f)
    f.site_lat_deg = _first_angle(header, "site_lat", LAT_KEYS, f, hours=False, limit=90.0)
    f.site_lon_deg = _first_angle(header, "site_lon", LON_KEYS, f, hours=False, limit=360.0)
    if f.site_lon_deg is not None and f.site_lon_deg > 180.0:
        f.site_lon_deg -= 360.0
    _pointing(header, f)
    if f.mjd_mid is not None and f.exptime_s is None and "mjd_mid" not in f.keywords:
        f.problems.append("no exposure time: the frame's time is the start of the exposure")
    return f


# ---------------------------------------------------------------------------- times

def _times(h: fits.Header, f: HeaderFacts) -> None:
    start = None
    for key in TIME_KEYS:
        if key not in h:
            continue
        v = h[key]
        try:
            if key == "DATE-OBS":
                start = _date_obs(h, str(v))
            elif key == "MJD-OBS":
                start = Time(_number(v), format="mjd", scale="utc")
            else:
                start = Time(_number(v), format="jd", scale="utc")
        except (ValueError, TypeError) as exc:
            f.problems.append(f"{key} = {v!r}: {exc}")
            start = None
            continue
        f.keywords["time"] = key
        break
    mid = None
    for key in MID_TIME_KEYS:
        if key in h:
            try:
                mid = (Time(str(h[key]).strip(), format="isot", scale="utc") if key == "DATE-AVG"
                       else Time(_number(h[key]), format="mjd", scale="utc"))
                f.keywords["mjd_mid"] = key
                break
            except (ValueError, TypeError) as exc:
                f.problems.append(f"{key} = {h[key]!r}: {exc}")
    if start is None and mid is None:
        f.missing["time"] = list(TIME_KEYS)
        return
    exp = _first_number(h, "exptime_s", EXPTIME_KEYS, HeaderFacts(), positive=True, allow_zero=True)
    if start is not None:
        f.date_obs = start.utc.isot
        f.mjd_start = float(start.utc.mjd)
    if mid is not None:
        f.mjd_mid = float(mid.utc.mjd)
        if start is None and exp is not None:
            f.mjd_start = f.mjd_mid - exp / 2 / 86400.0
            f.date_obs = Time(f.mjd_start, format="mjd", scale="utc").isot
    else:
        f.mjd_mid = f.mjd_start + (exp or 0.0) / 2 / 86400.0


_DMY = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{2})\s*$")


def _date_obs(h: fits.Header, text: str) -> Time:
    text = text.strip()
    m = _DMY.match(text)
    if m:  # the FITS standard's pre-2000 form dd/mm/yy (1900-1999)
        d, mo, y = (int(x) for x in m.groups())
        text = f"{1900 + y:04d}-{mo:02d}-{d:02d}"
    if "T" in text:
        return Time(text.replace("Z", ""), format="isot", scale="utc")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        for key in ("TIME-OBS", "UT", "UTSTART", "UT-START", "TIME"):
            if key in h and str(h[key]).strip():
                return Time(f"{text}T{str(h[key]).strip()}", format="isot", scale="utc")
        raise ValueError("a date without a time (no TIME-OBS, UT or UTSTART)")
    return Time(text, scale="utc")


# ---------------------------------------------------------------------------- positions

def _pointing(h: fits.Header, f: HeaderFacts) -> None:
    for rk, dk in zip(RA_KEYS, DEC_KEYS):
        if rk not in h or dk not in h:
            continue
        rv, dv = h[rk], h[dk]
        try:
            ra = _angle(rv, hours=isinstance(rv, str) and (rk in _SEXA_HOURS or _is_sexagesimal(rv)))
            dec = _angle(dv, hours=False)
        except ValueError as exc:
            f.problems.append(f"{rk}/{dk} = {rv!r}/{dv!r}: {exc}")
            continue
        if not -90.0 <= dec <= 90.0:
            f.problems.append(f"{dk} = {dv!r}: declination outside +-90")
            continue
        f.ra_deg, f.dec_deg = ra % 360.0, dec
        f.keywords["pointing"] = f"{rk}/{dk}"
        return
    f.missing["pointing"] = [f"{r}/{d}" for r, d in zip(RA_KEYS, DEC_KEYS)]


def _is_sexagesimal(text: str) -> bool:
    return bool(re.search(r"[:\sdhms]", text.strip()))


def _angle(v: Any, *, hours: bool) -> float:
    """Degrees from a number (degrees) or a sexagesimal string (hours when ``hours``)."""
    if isinstance(v, bool):
        raise ValueError("not an angle")
    if isinstance(v, (int, float)):
        x = float(v)
        if not math.isfinite(x):
            raise ValueError("not finite")
        return x
    text = str(v).strip()
    if not text:
        raise ValueError("empty")
    if not _is_sexagesimal(text):
        return _number(text)
    parts = re.sub(r"[:dhms°'\"]", " ", text).split()
    vals = [float(p) for p in parts]
    if not vals or len(vals) > 3:
        raise ValueError("not sexagesimal")
    sign = -1.0 if parts[0].startswith("-") else 1.0
    deg = abs(vals[0]) + sum(x / 60.0**i for i, x in enumerate(vals[1:], start=1))
    return sign * deg * (15.0 if hours else 1.0)


# ---------------------------------------------------------------------------- helpers

def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("a boolean, not a number")
    x = float(v)
    if not math.isfinite(x):
        raise ValueError("not finite")
    return x


def _first_number(h: fits.Header, fact: str, keys: tuple[str, ...], f: HeaderFacts, *, positive: bool = False,
                  allow_zero: bool = False) -> float | None:
    for key in keys:
        if key not in h:
            continue
        try:
            x = _number(h[key])
        except (ValueError, TypeError):
            f.problems.append(f"{key} = {h[key]!r}: not a number")
            continue
        if positive and (x < 0 or (x == 0 and not allow_zero)):
            f.problems.append(f"{key} = {h[key]!r}: not positive")
            continue
        f.keywords[fact] = key
        return x
    f.missing[fact] = list(keys)
    return None


def _first_text(h: fits.Header, fact: str, keys: tuple[str, ...], f: HeaderFacts) -> str | None:
    for key in keys:
        if key in h and str(h[key]).strip():
            f.keywords[fact] = key
            return str(h[key]).strip()
    f.missing[fact] = list(keys)
    return None


def _first_angle(h: fits.Header, fact: str, keys: tuple[str, ...], f: HeaderFacts, *, hours: bool,
                 limit: float) -> float | None:
    for key in keys:
        if key not in h:
            continue
        try:
            x = _angle(h[key], hours=hours)
        except (ValueError, TypeError):
            f.problems.append(f"{key} = {h[key]!r}: not an angle")
            continue
        if abs(x) > limit:
            f.problems.append(f"{key} = {h[key]!r}: out of range")
            continue
        f.keywords[fact] = key
        return x
    f.missing[fact] = list(keys)
    return None


__all__ = ["HeaderFacts", "read_facts"]
