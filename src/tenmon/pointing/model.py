"""TPOINT-style pointing model of an equatorial mount: read runs, fit terms with sigmas, apply to gotos.

Conventions (P. T. Wallace, *TPOINT: a telescope pointing analysis system*, section 2.1
"The pointing terms"; the same formulas and signs as gaker/celestial's ``celestial-pointing``,
``src/terms/equatorial.rs``, the project the shared runs come from):

* The model predicts where the mount's axes *read* when the telescope really points at a star:
  ``reading - true = sum_j c_j * J_j(h, dec, latitude)``, in arcsec, for hour angle (``dH``,
  an angle of the HA axis, not a distance on the sky) and declination (``dDec``).
* Each term's ``J_j`` is the standard TPOINT formula evaluated in *mechanical* coordinates. On a
  German equatorial mount the other side of the pier ("beyond the pole", TPOINT's convention of
  a mount declination above 90 deg) has mechanical ``h_m = h + 180``, ``dec_m = 180 - dec``; a
  shift of the mechanical declination is a shift of the sky declination with the opposite sign.
  That is why CH, NP, ID (and DAF) change sign with the pier side while IH, MA, ME, TF, FO do
  not: the model is the physical one, not two separate fits. (celestial-pointing keeps DAF's
  sign on both sides; evaluated mechanically it fits all three shared runs better: 9-term rms
  198/182/95" against 203/215/97".)
* Pier side: ``east`` (sign +1) is the normal position (ASCOM ``pierEast``: tube east of the pier,
  looking west, hour angle mostly positive); ``west`` (sign -1) is beyond the pole.
* The fit is a weighted linear least-squares fit of ``(dX, dDec)``, ``dX = dH cos(dec)`` (the
  on-sky east-west part), so every arcsec on the sky counts the same; each coefficient's sigma is
  from the covariance matrix scaled by the reduced chi-square. ``rms`` is the sky rms
  ``sqrt(mean(dX**2 + dDec**2))`` in arcsec, before (no model) and after the fit.

Everything here is pure: arrays in, results out. Reading a file or a SQLite database and writing
a model or a plot are the only I/O, and happen only in the functions that say so.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tenmon.core.atomicfile import atomic_write, atomic_write_bytes
from tenmon.core.errors import TenmonError
from tenmon.core.timefmt import parse_utc, utc_iso

log = logging.getLogger(__name__)

ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0

#: The terms fitted when none are named: the nine basic TPOINT terms of an equatorial mount.
DEFAULT_TERMS: tuple[str, ...] = ("IH", "ID", "CH", "NP", "MA", "ME", "TF", "FO", "DAF")


PierSide = Literal["east", "west"]


class PointingError(TenmonError):
    """A pointing run, model file or solve log that cannot be used (names the file and problem)."""


# --------------------------------------------------------------------------------------------
# Terms
# --------------------------------------------------------------------------------------------

TermFunc = Callable[[np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Term:
    """One TPOINT term: ``func(h, dec, lat)`` (radians, mechanical) -> ``(dH, dDec)`` per unit coefficient."""

    name: str
    description: str
    func: TermFunc


def _zeros(x: np.ndarray) -> np.ndarray:
    return np.zeros_like(x, dtype=float)


def _ih(h, d, lat):
    return -np.ones_like(h, dtype=float), _zeros(h)


def _id(h, d, lat):
    return _zeros(h), -np.ones_like(h, dtype=float)


def _ch(h, d, lat):
    return -1.0 / np.cos(d), _zeros(h)


def _np(h, d, lat):
    return -np.tan(d), _zeros(h)


def _ma(h, d, lat):
    return np.cos(h) * np.tan(d), -np.sin(h)


def _me(h, d, lat):
    return -np.sin(h) * np.tan(d), -np.cos(h)


def _tf(h, d, lat):
    return (
        -math.cos(lat) * np.sin(h) / np.cos(d),
        -(math.cos(lat) * np.cos(h) * np.sin(d) - math.sin(lat) * np.cos(d)),
    )


def _tx(h, d, lat):
    # TF divided by cos(zenith distance): tube flexure growing as tan(z).
    cz = math.sin(lat) * np.sin(d) + math.cos(lat) * np.cos(d) * np.cos(h)
    cz = np.where(np.abs(cz) < 0.05, np.copysign(0.05, cz), cz)
    th, td = _tf(h, d, lat)
    return th / cz, td / cz


def _fo(h, d, lat):
    return _zeros(h), np.cos(h)


def _daf(h, d, lat):
    return -(math.cos(lat) * np.cos(h) + math.sin(lat) * np.tan(d)), _zeros(h)


def _hces(h, d, lat):
    return np.sin(h), _zeros(h)


def _hcec(h, d, lat):
    return np.cos(h), _zeros(h)


def _dces(h, d, lat):
    return _zeros(h), np.sin(d)


def _dcec(h, d, lat):
    return _zeros(h), np.cos(d)


TERMS: dict[str, Term] = {
    t.name: t
    for t in (
        Term("IH", "hour-angle index (zero point) error", _ih),
        Term("ID", "declination index (zero point) error", _id),
        Term("CH", "east-west collimation error", _ch),
        Term("NP", "non-perpendicularity of the HA and Dec axes", _np),
        Term("MA", "polar axis misaligned in azimuth (+ = east of the pole)", _ma),
        Term("ME", "polar axis misaligned in elevation (+ = too high)", _me),
        Term("TF", "tube flexure, proportional to sin(zenith distance)", _tf),
        Term("TX", "tube flexure, proportional to tan(zenith distance)", _tx),
        Term("FO", "fork flexure (dDec proportional to cos h)", _fo),
        Term("DAF", "declination axis flexure", _daf),
        Term("HCES", "HA centring error, sin(h)", _hces),
        Term("HCEC", "HA centring error, cos(h)", _hcec),
        Term("DCES", "Dec centring error, sin(dec)", _dces),
        Term("DCEC", "Dec centring error, cos(dec)", _dcec),
    )
}


def parse_terms(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalise a term list (``"IH,ID,CH"`` or an iterable of names) to known upper-case names.

    ``None`` gives ``DEFAULT_TERMS``. Raises ``PointingError`` naming an unknown or repeated term.
    """
    if spec is None:
        return DEFAULT_TERMS
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in names:
        name = raw.strip().upper()
        if not name:
            continue
        if name not in TERMS:
            raise PointingError(f"unknown pointing term {raw!r}; known: {', '.join(TERMS)}")
        if name in out:
            raise PointingError(f"pointing term {name} named twice")
        out.append(name)
    if not out:
        raise PointingError("no pointing terms given")
    return tuple(out)


def _pier_sign(pier: np.ndarray | Sequence[str] | str) -> np.ndarray:
    if isinstance(pier, str):
        pier = [pier]
    arr = np.asarray(pier)
    if arr.dtype.kind in "iuf":
        return np.where(arr < 0, -1.0, 1.0)
    low = np.char.lower(arr.astype(str))
    bad = ~np.isin(low, ["east", "west"])
    if bad.any():
        raise PointingError(f"pier side must be 'east' or 'west', got {arr[bad][0]!r}")
    return np.where(low == "west", -1.0, 1.0)


def design_matrix(
    ha_deg: np.ndarray,
    dec_deg: np.ndarray,
    pier_sign: np.ndarray,
    latitude_deg: float,
    terms: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-term sky partials ``(A_h, A_d)``, each ``(n, n_terms)``: dH and dDec per arcsec of coefficient.

    ``ha_deg``/``dec_deg`` are the true (catalogue) hour angle and declination, ``pier_sign`` +1
    for east (normal), -1 for west (beyond the pole). The TPOINT formulas are evaluated in
    mechanical coordinates and the declination part mapped back to the sky (see module docstring).
    """
    h = np.radians(np.asarray(ha_deg, dtype=float))
    d = np.radians(np.asarray(dec_deg, dtype=float))
    s = np.asarray(pier_sign, dtype=float)
    flipped = s < 0
    hm = np.where(flipped, h + math.pi, h)
    dm = np.where(flipped, math.pi - d, d)
    lat = math.radians(latitude_deg)
    a_h = np.empty((h.size, len(terms)))
    a_d = np.empty((h.size, len(terms)))
    for j, name in enumerate(terms):
        jh, jd = TERMS[name].func(hm, dm, lat)
        a_h[:, j] = jh
        a_d[:, j] = s * jd
    return a_h, a_d


_GEOMETRIC = ("IH", "ID", "CH", "NP", "MA", "ME")
_AS = math.pi / 180.0 / 3600.0


def predict_offsets(
    coefficients_arcsec: dict[str, float],
    ha_deg: np.ndarray,
    dec_deg: np.ndarray,
    pier_sign: np.ndarray,
    latitude_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Mount reading - true ``(dH, dDec)`` in arcsec for a model, at true HA/Dec (deg) and pier sign.

    The six geometric terms (IH, ID, CH, NP, MA, ME) are applied rigorously as rotations: the
    true direction is rotated into the frame of the mount's polar axis (MA, ME), the mechanical
    angles that put a telescope with collimation error CH on axes non-perpendicular by NP there
    are solved exactly (the branch beyond the pole for pier sign -1), and the index errors
    subtracted. The other terms (flexures, centring) are added with their TPOINT formulas in
    mechanical coordinates. To first order this is exactly ``design_matrix @ c``; it differs from
    it by 57-1100" near the pole (dec 80-88) with the coefficients of the shared real runs (large
    polar misalignment and collimation), which is why the linear formulas are only the fit's
    starting point.
    """
    g = {k: float(coefficients_arcsec.get(k, 0.0)) * _AS for k in _GEOMETRIC}
    h = np.radians(np.asarray(ha_deg, dtype=float))
    d = np.radians(np.asarray(dec_deg, dtype=float))
    s = np.asarray(pier_sign, dtype=float)
    v = np.stack([np.cos(d) * np.cos(h), -np.cos(d) * np.sin(h), np.sin(d)])
    # Polar axis misalignment: rotation vector (MA, ME, 0) (x to the meridian on the equator,
    # y to the east point, z to the pole); Rodrigues' formula.
    w = np.array([g["MA"], g["ME"], 0.0])
    theta = float(np.linalg.norm(w))
    if theta > 0.0:
        k = (w / theta)[:, None]
        kxv = np.cross(k, v, axis=0)
        v = v * math.cos(theta) + kxv * math.sin(theta) + k * (k * v).sum(axis=0) * (1.0 - math.cos(theta))
    c, n = -g["CH"], g["NP"]
    sin_d = (v[2] - math.sin(c) * math.sin(n)) / (math.cos(c) * math.cos(n))
    dmech = np.arcsin(np.clip(sin_d, -1.0, 1.0))
    dmech = np.where(s < 0, math.pi - dmech, dmech)
    tx = math.cos(c) * np.cos(dmech)
    ty = -math.cos(c) * np.sin(dmech) * math.sin(n) + math.sin(c) * math.cos(n)
    hmech = np.arctan2(ty, tx) - np.arctan2(v[1], v[0])
    hm = np.where(s < 0, h + math.pi, h)
    dm = np.where(s < 0, math.pi - d, d)
    d_h = (hmech - hm + math.pi) % (2.0 * math.pi) - math.pi
    d_d = dmech - dm
    lat = math.radians(latitude_deg)
    for name, value in coefficients_arcsec.items():
        if name in _GEOMETRIC or value == 0.0:
            continue
        jh, jd = TERMS[name].func(hm, dm, lat)
        d_h = d_h + value * _AS * jh
        d_d = d_d + value * _AS * jd
    d_h = d_h - g["IH"]
    d_d = d_d - g["ID"]
    return d_h / _AS, s * d_d / _AS


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _wrap180(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=float) + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class PointingData:
    """A pointing run: for each star its true position, where the mount read, LST and pier side.

    All angles in degrees. ``mount_dec_deg`` is on the sky (-90..90) with the pier side in
    ``pier_sign`` (+1 east/normal, -1 west/beyond the pole); ``mount_ra_deg`` is the sky RA the
    mount reported (for a beyond-the-pole TPOINT record, its RA + 180). ``latitude_deg`` is the
    site's. ``temperature_c``/``pressure_mbar`` come from a TPOINT run line (NaN if unknown).
    """

    cat_ra_deg: np.ndarray
    cat_dec_deg: np.ndarray
    mount_ra_deg: np.ndarray
    mount_dec_deg: np.ndarray
    lst_deg: np.ndarray
    pier_sign: np.ndarray
    latitude_deg: float
    source: str = ""
    obs_date: date | None = None
    temperature_c: float = float("nan")
    pressure_mbar: float = float("nan")

    def __post_init__(self) -> None:
        n = len(self.cat_ra_deg)
        for name in ("cat_dec_deg", "mount_ra_deg", "mount_dec_deg", "lst_deg", "pier_sign"):
            if len(getattr(self, name)) != n:
                raise PointingError(f"{self.source or 'pointing data'}: column {name} has a different length")
        if not -90.0 <= self.latitude_deg <= 90.0:
            raise PointingError(f"{self.source or 'pointing data'}: latitude {self.latitude_deg} out of range")

    def __len__(self) -> int:
        return len(self.cat_ra_deg)

    @property
    def ha_deg(self) -> np.ndarray:
        """True hour angle (LST - catalogue RA), -180..180 deg."""
        return _wrap180(self.lst_deg - self.cat_ra_deg)

    def offsets_arcsec(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured ``(dH, dDec)`` = mount reading - true, arcsec (dH is an HA-axis angle)."""
        dh = _wrap180(self.cat_ra_deg - self.mount_ra_deg) * 3600.0
        dd = (self.mount_dec_deg - self.cat_dec_deg) * 3600.0
        return dh, dd

    def subset(self, index: np.ndarray | slice | Sequence[int]) -> PointingData:
        """The observations selected by ``index`` (boolean mask, indices or slice), same site."""
        return replace(
            self,
            cat_ra_deg=self.cat_ra_deg[index],
            cat_dec_deg=self.cat_dec_deg[index],
            mount_ra_deg=self.mount_ra_deg[index],
            mount_dec_deg=self.mount_dec_deg[index],
            lst_deg=self.lst_deg[index],
            pier_sign=self.pier_sign[index],
        )

    def halves(self, how: Literal["time", "alternate"] = "time") -> tuple[PointingData, PointingData]:
        """Split in two: ``time`` = first and second half in file order; ``alternate`` = even/odd rows."""
        n = len(self)
        if how == "time":
            return self.subset(slice(0, n // 2)), self.subset(slice(n // 2, n))
        if how == "alternate":
            return self.subset(slice(0, n, 2)), self.subset(slice(1, n, 2))
        raise PointingError(f"unknown split {how!r}: use 'time' or 'alternate'")


def _sexagesimal(parts: Sequence[str], what: str, where: str) -> float:
    try:
        vals = [float(p) for p in parts]
    except ValueError as exc:
        raise PointingError(f"{where}: bad {what} {' '.join(parts)!r}") from exc
    sign = -1.0 if parts[0].strip().startswith("-") else 1.0
    out = abs(vals[0])
    for k, v in enumerate(vals[1:], start=1):
        if not 0.0 <= v < 60.0:
            raise PointingError(f"{where}: bad {what} {' '.join(parts)!r}")
        out += v / 60.0**k
    return sign * out


def decode_tpoint_dec(raw_dec_deg: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mount declination as TPOINT writes it -> (sky declination, pier sign).

    Above +90 (or below -90) means the mount is beyond the pole (pier ``west``, sign -1): the sky
    declination is ``180 - dec`` (``-180 - dec``) and the RA is 12 h from what the mount reads.
    """
    raw = np.asarray(raw_dec_deg, dtype=float)
    beyond = np.abs(raw) > 90.0
    sky = np.where(beyond, np.sign(raw) * 180.0 - raw, raw)
    return sky, np.where(beyond, -1.0, 1.0)


def parse_tpoint(text: str, *, source: str = "<text>") -> PointingData:
    """Parse a TPOINT input file (INDAT format) as exported by TheSkyX and others.

    Layout: ``!`` caption and other text lines, option records (``:NODA``, ``:EQUAT``, ...), the
    run line (latitude d m s, date y m d, temperature C, pressure mbar, elevation m, humidity,
    wavelength um, lapse rate), then one observation per line: catalogue RA h m s, catalogue Dec
    d m s, mount RA h m s, mount Dec d m s (above 90: beyond the pole), sidereal time h m.
    Text after ``END`` is ignored. Raises ``PointingError`` naming the line for anything else.
    """
    lat: float | None = None
    obs_date: date | None = None
    temp = press = float("nan")
    rows: list[tuple[float, float, float, float, float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        where = f"{source}:{lineno}"
        if not stripped or stripped.startswith("!"):
            continue
        if stripped.upper() == "END":
            break
        if stripped.startswith(":"):
            opt = stripped[1:].split()[0].upper() if stripped[1:].split() else ""
            if opt in ("ALTAZ", "GIMBAL"):
                raise PointingError(f"{where}: option :{opt}: only equatorial mounts are supported")
            continue
        p = stripped.split()
        if lat is None:
            if not (stripped[0] in "+-" or stripped[0].isdigit()):
                continue  # free text line of the header (e.g. the mount's name)
            if len(p) < 6:
                raise PointingError(f"{where}: run line needs latitude and date, got {stripped!r}")
            lat = _sexagesimal(p[0:3], "latitude", where)
            try:
                obs_date = date(int(p[3]), int(p[4]), int(p[5]))
            except ValueError as exc:
                raise PointingError(f"{where}: bad date in run line {stripped!r}") from exc
            if len(p) >= 8:
                temp, press = float(p[6]), float(p[7])
            continue
        if len(p) < 14:
            raise PointingError(f"{where}: observation needs 14 fields, got {len(p)}: {stripped!r}")
        ra = _sexagesimal(p[0:3], "catalogue RA", where) * 15.0
        dec = _sexagesimal(p[3:6], "catalogue Dec", where)
        mra = _sexagesimal(p[6:9], "mount RA", where) * 15.0
        mdec = _sexagesimal(p[9:12], "mount Dec", where)
        lst = _sexagesimal(p[12:14], "sidereal time", where) * 15.0
        if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0 and -270.0 <= mdec <= 270.0):
            raise PointingError(f"{where}: coordinates out of range: {stripped!r}")
        rows.append((ra, dec, mra, mdec, lst))
    if lat is None:
        raise PointingError(f"{source}: no run line (latitude, date, ...) found: not a TPOINT file")
    if not rows:
        raise PointingError(f"{source}: no observations")
    arr = np.array(rows)
    sky_dec, sign = decode_tpoint_dec(arr[:, 3])
    mount_ra = np.where(sign < 0, (arr[:, 2] + 180.0) % 360.0, arr[:, 2])
    return PointingData(
        cat_ra_deg=arr[:, 0],
        cat_dec_deg=arr[:, 1],
        mount_ra_deg=mount_ra,
        mount_dec_deg=sky_dec,
        lst_deg=arr[:, 4],
        pier_sign=sign,
        latitude_deg=lat,
        source=source,
        obs_date=obs_date,
        temperature_c=temp,
        pressure_mbar=press,
    )


def read_tpoint(path: str | os.PathLike[str]) -> PointingData:
    """Read a TPOINT input file (see ``parse_tpoint``). Raises ``PointingError`` if unreadable."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise PointingError(f"{p}: cannot read pointing run: {exc.strerror or exc}") from exc
    return parse_tpoint(text, source=str(p))


def read_solve_log(
    db_path: str | os.PathLike[str],
    *,
    latitude_deg: float,
    since: datetime | None = None,
    until: datetime | None = None,
    mount_frame: Literal["icrs", "apparent"] = "icrs",
) -> PointingData:
    """Pointing observations from the daemon's ``solves`` table, read-only (its schema:
    ``tenmon.daemon.schema.SOLVES_SCHEMA``; times with ``Z``, or ``+00:00`` in older databases).

    Uses solved rows that have the mount position, LST and pier side; ``since``/``until``
    (timezone-aware) bound ``time_utc``. The solved positions are ICRS; ``mount_frame`` says
    what the mount's coordinates are: ``icrs`` (J2000-like, used as they are) or ``apparent``
    (JNow, as most mounts and an LST-based hour angle are): then each solved position is
    converted to apparent place (astropy TETE at the row's time) first, so that precession and
    nutation, which vary over the sky, do not end up in the residuals. Raises ``PointingError``
    if the database or table is missing or holds no usable rows.
    """
    p = Path(db_path)
    if not p.is_file():
        raise PointingError(f"{p}: solve database not found")
    sql = (
        "SELECT ra_deg, dec_deg, mount_ra_deg, mount_dec_deg, lst_deg, pier_side, time_utc "
        "FROM solves WHERE solved = 1 AND ra_deg IS NOT NULL AND dec_deg IS NOT NULL "
        "AND mount_ra_deg IS NOT NULL AND mount_dec_deg IS NOT NULL AND lst_deg IS NOT NULL"
    )
    args: list[str] = []
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            if bound.tzinfo is None:
                raise PointingError("since/until must be timezone-aware datetimes")
            # julianday: rows written before times ended in Z end in +00:00 (text order would mix)
            sql += f" AND julianday(time_utc) {op} julianday(?)"
            args.append(utc_iso(bound, timespec="microseconds"))
    sql += " ORDER BY julianday(time_utc), id"
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = con.execute(sql, args).fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise PointingError(f"{p}: cannot read table 'solves': {exc}") from exc
    if not rows:
        raise PointingError(f"{p}: no solved frames with mount position, LST and pier side in 'solves'")
    ra, dec, mra, mdec, lst, pier, times = zip(*rows, strict=True)
    pier_sign = _pier_sign([s if s is not None else "east" for s in pier])
    if mount_frame == "apparent":
        ra, dec = _icrs_to_apparent(np.asarray(ra, float), np.asarray(dec, float), times, str(p))
    elif mount_frame != "icrs":
        raise PointingError(f"mount_frame must be 'icrs' or 'apparent', got {mount_frame!r}")
    first = rows[0][6]
    try:
        obs_date = parse_utc(first).date()
    except (TypeError, ValueError):
        obs_date = None
    return PointingData(
        cat_ra_deg=np.asarray(ra, float) % 360.0,
        cat_dec_deg=np.asarray(dec, float),
        mount_ra_deg=np.asarray(mra, float) % 360.0,
        mount_dec_deg=np.asarray(mdec, float),
        lst_deg=np.asarray(lst, float) % 360.0,
        pier_sign=pier_sign,
        latitude_deg=float(latitude_deg),
        source=f"{p} (solves)",
        obs_date=obs_date,
    )


def _icrs_to_apparent(ra: np.ndarray, dec: np.ndarray, times: Sequence[str], source: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """ICRS -> apparent (true equator and equinox of date, geocentric) at each ISO time."""
    from tenmon.core import offline

    offline.configure()
    import astropy.units as u
    from astropy.coordinates import TETE, SkyCoord
    from astropy.time import Time

    try:
        t = Time([parse_utc(x).replace(tzinfo=None) for x in times],
                 scale="utc")
    except (TypeError, ValueError) as exc:
        raise PointingError(f"{source}: bad time_utc in solves: {exc}") from exc
    app = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").transform_to(TETE(obstime=t))
    return np.asarray(app.ra.deg) % 360.0, np.asarray(app.dec.deg)


# --------------------------------------------------------------------------------------------
# Model, fit, evaluation
# --------------------------------------------------------------------------------------------


def sky_rms_arcsec(dh_arcsec: np.ndarray, dd_arcsec: np.ndarray, dec_deg: np.ndarray) -> float:
    """Sky rms ``sqrt(mean((dH cos dec)**2 + dDec**2))`` in arcsec; NaN for no points."""
    if len(dh_arcsec) == 0:
        return float("nan")
    dx = np.asarray(dh_arcsec) * np.cos(np.radians(dec_deg))
    return float(np.sqrt(np.mean(dx**2 + np.asarray(dd_arcsec) ** 2)))


@dataclass(frozen=True)
class Residuals:
    """Per-observation residuals (arcsec) of a model on a run, with what to plot them against."""

    ha_deg: np.ndarray
    dec_deg: np.ndarray
    pier_sign: np.ndarray
    dx_before: np.ndarray
    dd_before: np.ndarray
    dx_after: np.ndarray
    dd_after: np.ndarray
    used: np.ndarray  # bool: observation kept in the fit (not clipped)

    @property
    def rms_before_arcsec(self) -> float:
        return float(np.sqrt(np.mean(self.dx_before[self.used] ** 2 + self.dd_before[self.used] ** 2)))

    @property
    def rms_after_arcsec(self) -> float:
        return float(np.sqrt(np.mean(self.dx_after[self.used] ** 2 + self.dd_after[self.used] ** 2)))


@dataclass(frozen=True)
class PointingModel:
    """Fitted terms: ``coefficients_arcsec[name]`` with ``sigmas_arcsec[name]``, for a site latitude."""

    terms: tuple[str, ...]
    coefficients_arcsec: dict[str, float]
    sigmas_arcsec: dict[str, float]
    latitude_deg: float
    rms_before_arcsec: float = float("nan")
    rms_after_arcsec: float = float("nan")
    n: int = 0
    source: str = ""
    created_utc: str = ""

    def offsets_arcsec(
        self, ha_deg: np.ndarray | float, dec_deg: np.ndarray | float, pier: np.ndarray | str | float = "east"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ``(dH, dDec)`` = mount reading - true, arcsec, at true hour angle/declination (deg)."""
        ha = np.atleast_1d(np.asarray(ha_deg, dtype=float))
        dec = np.atleast_1d(np.asarray(dec_deg, dtype=float))
        sign = np.broadcast_to(_pier_sign(pier), ha.shape)
        coeffs = {t: self.coefficients_arcsec[t] for t in self.terms}
        return predict_offsets(coeffs, ha, dec, sign, self.latitude_deg)

    def apply(
        self, ra_deg: float, dec_deg: float, lst_deg: float, pier_side: PierSide | None = None
    ) -> tuple[float, float]:
        """Target (apparent RA/Dec, deg) -> the RA/Dec to command the mount so that it lands on it.

        ``lst_deg`` is the local apparent sidereal time of the slew. ``pier_side`` is where the
        mount will be after the goto; ``None`` takes the usual German-mount choice (``east`` for a
        target west of the meridian, hour angle >= 0, else ``west``). Returns ``(ra, dec)`` in
        degrees, RA in 0..360.
        """
        ha = float(_wrap180(lst_deg - ra_deg))
        if pier_side is None:
            pier_side = "east" if ha >= 0.0 else "west"
        dh, dd = self.offsets_arcsec(ha, dec_deg, pier_side)
        cmd_ha = ha + float(dh[0]) / 3600.0
        cmd_dec = dec_deg + float(dd[0]) / 3600.0
        # A correction that carries the command past a pole keeps the same mechanical position.
        cmd_ra = lst_deg - cmd_ha
        if cmd_dec > 90.0:
            cmd_dec, cmd_ra = 180.0 - cmd_dec, cmd_ra + 180.0
        elif cmd_dec < -90.0:
            cmd_dec, cmd_ra = -180.0 - cmd_dec, cmd_ra + 180.0
        return cmd_ra % 360.0, cmd_dec

    def residuals(self, data: PointingData) -> Residuals:
        """Residuals of this model on ``data`` (which may be another run of the same mount)."""
        dh, dd = data.offsets_arcsec()
        ph, pd = self.offsets_arcsec(data.ha_deg, data.cat_dec_deg, data.pier_sign)
        cosd = np.cos(np.radians(data.cat_dec_deg))
        return Residuals(
            ha_deg=data.ha_deg,
            dec_deg=data.cat_dec_deg,
            pier_sign=data.pier_sign,
            dx_before=dh * cosd,
            dd_before=dd,
            dx_after=_wrap180((dh - ph) / 3600.0) * 3600.0 * cosd,
            dd_after=dd - pd,
            used=np.ones(len(data), dtype=bool),
        )

    def to_json(self) -> dict:
        """A JSON-ready dict (the model file's content; stable keys)."""
        return {
            "kind": "tenmon.pointing_model",
            "version": 1,
            "mount": "equatorial",
            "latitude_deg": self.latitude_deg,
            "terms": [
                {
                    "name": t,
                    "value_arcsec": self.coefficients_arcsec[t],
                    "sigma_arcsec": self.sigmas_arcsec.get(t, float("nan")),
                    "description": TERMS[t].description,
                }
                for t in self.terms
            ],
            "rms_before_arcsec": self.rms_before_arcsec,
            "rms_after_arcsec": self.rms_after_arcsec,
            "n": self.n,
            "source": self.source,
            "created_utc": self.created_utc,
        }

    @classmethod
    def from_json(cls, obj: dict, *, source: str = "<json>") -> PointingModel:
        """Build from ``to_json()`` output. Raises ``PointingError`` naming the bad key."""
        try:
            if obj.get("kind") != "tenmon.pointing_model":
                raise PointingError(f"{source}: not a tenmon pointing model (kind={obj.get('kind')!r})")
            terms = parse_terms([t["name"] for t in obj["terms"]])
            coeffs = {t["name"].upper(): float(t["value_arcsec"]) for t in obj["terms"]}
            sigmas = {t["name"].upper(): float(t.get("sigma_arcsec", float("nan"))) for t in obj["terms"]}
            return cls(
                terms=terms,
                coefficients_arcsec=coeffs,
                sigmas_arcsec=sigmas,
                latitude_deg=float(obj["latitude_deg"]),
                rms_before_arcsec=float(obj.get("rms_before_arcsec", float("nan"))),
                rms_after_arcsec=float(obj.get("rms_after_arcsec", float("nan"))),
                n=int(obj.get("n", 0)),
                source=str(obj.get("source", "")),
                created_utc=str(obj.get("created_utc", "")),
            )
        except PointingError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PointingError(f"{source}: bad pointing model: {exc!r}") from exc

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as JSON atomically (temporary file + rename). Returns the path."""
        p = Path(path)
        text = json.dumps(self.to_json(), indent=2, allow_nan=True) + "\n"
        _atomic_write_bytes(p, text.encode("utf-8"))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PointingModel:
        """Read a model written by ``save``. Raises ``PointingError`` if missing or malformed."""
        p = Path(path)
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PointingError(f"{p}: cannot read pointing model: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise PointingError(f"{p}: pointing model is not JSON: {exc}") from exc
        return cls.from_json(obj, source=str(p))


@dataclass(frozen=True)
class PointingFit:
    """A fit: the model, residuals on the fitted run, and the covariance of the coefficients."""

    model: PointingModel
    residuals: Residuals
    covariance: np.ndarray = field(repr=False)
    n_clipped: int = 0

    @property
    def rms_before_arcsec(self) -> float:
        return self.model.rms_before_arcsec

    @property
    def rms_after_arcsec(self) -> float:
        return self.model.rms_after_arcsec

    @property
    def n(self) -> int:
        return self.model.n

    def correlation(self) -> np.ndarray:
        """Correlation matrix of the coefficients (terms in ``model.terms`` order)."""
        s = np.sqrt(np.diag(self.covariance))
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.covariance / np.outer(s, s)


def _linear_solve(a: np.ndarray, b: np.ndarray, names: Sequence[str], source: str) -> np.ndarray:
    # Column scaling keeps the problem well conditioned (tan/sec terms near the pole).
    scale = np.linalg.norm(a, axis=0)
    if np.any(scale == 0):
        bad = [names[j] for j in np.flatnonzero(scale == 0)]
        raise PointingError(f"{source}: terms {', '.join(bad)} have no effect on this data")
    u, sv, vt = np.linalg.svd(a / scale, full_matrices=False)
    if sv[-1] < 1e-9 * sv[0]:
        worst = names[int(np.argmax(np.abs(vt[-1])))]
        raise PointingError(
            f"{source}: terms are degenerate on this data (e.g. {worst}); drop one with --terms"
        )
    return (vt.T @ ((u.T @ b) / sv)) / scale


def fit(
    data: PointingData,
    terms: str | Iterable[str] | None = None,
    *,
    weights: np.ndarray | None = None,
    clip_sigma: float | None = None,
    max_clip_iterations: int = 5,
    rigorous: bool = True,
) -> PointingFit:
    """Weighted least-squares fit of TPOINT terms to a pointing run.

    Minimises ``sum(w * (dX - model_x)**2 + w * (dDec - model_d)**2)`` with ``dX = dH cos dec``,
    arcsec. The linear TPOINT formulas (``design_matrix``) give the first solution; with
    ``rigorous`` (default) it is refined by non-linear least squares on ``predict_offsets``
    (exact geometry for IH, ID, CH, NP, MA, ME), which matters for a badly aligned mount near the
    pole. ``weights`` are per observation (default 1). ``clip_sigma``, if given, drops
    observations whose sky residual exceeds ``clip_sigma`` x rms and refits (at most
    ``max_clip_iterations`` times); clipped observations are flagged in ``residuals.used`` and
    counted in ``n_clipped``, and are not in ``n`` nor in the rms figures. Sigmas are the square
    roots of the covariance diagonal scaled by the reduced chi-square (``2n - m`` degrees of
    freedom).

    Raises ``PointingError`` if there are too few observations for the terms or the terms are
    degenerate on this data (e.g. DAF with both NP and HCEC; CH and NP need a spread of
    declinations).
    """
    from scipy.optimize import least_squares

    names = parse_terms(terms)
    m = len(names)
    n_all = len(data)
    if 2 * n_all <= m:
        raise PointingError(f"{data.source}: {n_all} observations cannot fit {m} terms")
    w = np.ones(n_all) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n_all,) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise PointingError("weights must be one finite non-negative number per observation")
    dh, dd = data.offsets_arcsec()
    ha, dec, sign = data.ha_deg, data.cat_dec_deg, data.pier_sign
    a_h, a_d = design_matrix(ha, dec, sign, data.latitude_deg, names)
    cosd = np.cos(np.radians(dec))
    nonlinear = rigorous and any(t in _GEOMETRIC[2:] for t in names)

    def sky_residuals(coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if nonlinear:
            ph, pd = predict_offsets(dict(zip(names, coef, strict=True)), ha, dec, sign, data.latitude_deg)
        else:
            ph, pd = a_h @ coef, a_d @ coef
        return _wrap180((dh - ph) / 3600.0) * 3600.0 * cosd, dd - pd

    used = w > 0
    for _ in range(max(1, max_clip_iterations + 1)):
        sw = np.sqrt(w[used])
        a = np.vstack([a_h[used] * (cosd[used] * sw)[:, None], a_d[used] * sw[:, None]])
        b = np.concatenate([dh[used] * cosd[used] * sw, dd[used] * sw])
        coef = _linear_solve(a, b, names, data.source)
        jac = a
        if nonlinear:

            def fun(c: np.ndarray, sel: np.ndarray = used, sw: np.ndarray = sw) -> np.ndarray:
                rx, rd = sky_residuals(c)
                return np.concatenate([rx[sel] * sw, rd[sel] * sw])

            sol = least_squares(fun, coef, x_scale=np.maximum(np.abs(coef), 1.0), xtol=1e-10, ftol=1e-10)
            coef, jac = sol.x, -sol.jac
        rx, rd = sky_residuals(coef)
        if clip_sigma is None:
            break
        rr = np.hypot(rx, rd)
        rms = float(np.sqrt(np.mean(rr[used] ** 2)))
        new_used = (w > 0) & (rr <= clip_sigma * rms)
        if np.array_equal(new_used, used) or 2 * int(new_used.sum()) <= m:
            break
        used = new_used
    n_used = int(used.sum())
    dof = 2 * n_used - m
    sw = np.sqrt(w[used])
    resid = np.concatenate([rx[used] * sw, rd[used] * sw])
    red_chi2 = float(resid @ resid) / dof if dof > 0 else float("nan")
    cov = np.linalg.pinv(jac.T @ jac) * red_chi2
    n_clipped = int(((w > 0) & ~used).sum())
    residuals = Residuals(
        ha_deg=ha,
        dec_deg=dec,
        pier_sign=sign,
        dx_before=_wrap180(dh / 3600.0) * 3600.0 * cosd,
        dd_before=dd,
        dx_after=rx,
        dd_after=rd,
        used=used,
    )
    sig = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    model = PointingModel(
        terms=names,
        coefficients_arcsec={t: float(c) for t, c in zip(names, coef, strict=True)},
        sigmas_arcsec={t: float(s) for t, s in zip(names, sig, strict=True)},
        latitude_deg=data.latitude_deg,
        rms_before_arcsec=residuals.rms_before_arcsec,
        rms_after_arcsec=residuals.rms_after_arcsec,
        n=n_used,
        source=data.source,
        created_utc=utc_iso(datetime.now(timezone.utc), timespec="seconds"),
    )
    log.info(
        "pointing fit of %d terms to %d observations (%s): rms %.1f\" -> %.1f\"",
        m, model.n, data.source, model.rms_before_arcsec, model.rms_after_arcsec,
    )
    return PointingFit(model=model, residuals=residuals, covariance=cov, n_clipped=n_clipped)


@dataclass(frozen=True)
class PointingEvaluation:
    """A model applied to another run: the same rms fields as a fit."""

    rms_before_arcsec: float
    rms_after_arcsec: float
    n: int
    residuals: Residuals
    source: str = ""

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "n": self.n,
            "rms_before_arcsec": self.rms_before_arcsec,
            "rms_after_arcsec": self.rms_after_arcsec,
        }


def evaluate(model: PointingModel, data: PointingData) -> PointingEvaluation:
    """Apply ``model`` to ``data`` (e.g. the other half of a run): rms before and after, arcsec.

    The run's own latitude is not used: the model carries the site latitude it was fitted for; a
    run from a site more than 0.1 deg away raises ``PointingError``.
    """
    if abs(model.latitude_deg - data.latitude_deg) > 0.1:
        raise PointingError(
            f"{data.source}: latitude {data.latitude_deg:.3f} differs from the model's {model.latitude_deg:.3f}"
        )
    if len(data) == 0:
        raise PointingError(f"{data.source}: no observations to evaluate")
    res = model.residuals(data)
    return PointingEvaluation(
        rms_before_arcsec=res.rms_before_arcsec,
        rms_after_arcsec=res.rms_after_arcsec,
        n=len(data),
        residuals=res,
        source=data.source,
    )


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


def plot_residuals(residuals: Residuals, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Write a residual plot PNG (matplotlib Agg): dX/dDec scatter and against HA and Dec.

    Four panels: sky scatter of residuals after the model (before, faint), and dX, dDec against
    hour angle and declination; east/west pier sides in different colours. Written atomically.
    """
    # A bare Figure renders with Agg without touching pyplot's global backend state.
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    p = Path(path)
    fig = Figure(figsize=(10, 8), dpi=100)
    axes = fig.subplots(2, 2)
    east = residuals.pier_sign > 0
    used = residuals.used
    colours = {True: ("tab:blue", "east (normal)"), False: ("tab:orange", "west (beyond pole)")}
    ax = axes[0, 0]
    for side in (True, False):
        sel = (east == side) & used
        c, label = colours[side]
        ax.scatter(residuals.dx_after[sel], residuals.dd_after[sel], s=8, color=c, label=label)
    if (~used).any():
        ax.scatter(residuals.dx_after[~used], residuals.dd_after[~used], s=14, marker="x", color="red", label="clipped")
    r = residuals.rms_after_arcsec
    ax.add_patch(Circle((0, 0), r, fill=False, ls="--", color="grey"))
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("dX = dH cos(dec) [arcsec]")
    ax.set_ylabel("dDec [arcsec]")
    ax.set_title(f"after: rms {r:.1f}\" (before {residuals.rms_before_arcsec:.0f}\")")
    ax.legend(fontsize=8)
    for ax, x, xl in (
        (axes[0, 1], residuals.ha_deg / 15.0, "hour angle [h]"),
        (axes[1, 0], residuals.dec_deg, "declination [deg]"),
    ):
        ax.scatter(x[used], residuals.dx_after[used], s=8, color="tab:green", label="dX")
        ax.scatter(x[used], residuals.dd_after[used], s=8, color="tab:purple", label="dDec")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel(xl)
        ax.set_ylabel("residual [arcsec]")
        ax.legend(fontsize=8)
    ax = axes[1, 1]
    sel = used
    q = ax.quiver(
        residuals.ha_deg[sel] / 15.0,
        residuals.dec_deg[sel],
        residuals.dx_after[sel],
        residuals.dd_after[sel],
        angles="xy",
        color=np.where(east[sel], "tab:blue", "tab:orange"),
    )
    ax.set_xlabel("hour angle [h]")
    ax.set_ylabel("declination [deg]")
    ref = float(max(10.0, round(r, -1) if r >= 10 else 10.0))
    ax.quiverkey(q, 0.85, 1.03, ref, f'{ref:.0f}"', labelpos="E")
    ax.set_title("residual vectors (after)", loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    # a product is readable like any other file (0644)
    atomic_write(p, lambda tmp: fig.savefig(tmp, format="png"), mode=0o644)
    return p


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data, mode=0o644, fsync=True)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


class PointingSettings(BaseModel):
    """Site settings of the pointing model (``[pointing]`` in the site TOML)."""

    model_config = ConfigDict(extra="forbid")

    apply_to_gotos: bool = Field(False, description="correct every goto with the model at model_path")
    model_path: Path | None = Field(None, description="model JSON written by `tenmon pointing fit --out`")
    terms: list[str] = Field(list(DEFAULT_TERMS), description="terms fitted by default")
    clip_sigma: float | None = Field(None, gt=0, description="drop observations beyond this many rms, refit")
    min_observations: int = Field(20, ge=3, description="fewer solved frames than this: no fit")

    @field_validator("terms")
    @classmethod
    def _known_terms(cls, v: list[str]) -> list[str]:
        try:
            return list(parse_terms(v))
        except PointingError as exc:
            raise ValueError(str(exc)) from exc
