"""Small, fast astronomy helpers for the control loop: sidereal time, alt/az, the sun's altitude,
and tenmon's one angular separation (:func:`separation_deg`, :func:`separation_arcsec`).

The control loop runs ten times a second; astropy's full transforms cost milliseconds each, so
these use the standard low-precision formulas (GMST from the IAU 1982 expression, no refraction,
no precession: errors of a few arcminutes, far below a dome slit's width). Anything that needs
precision (planning, plate solving) uses astropy.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, overload

import numpy as np

_J2000 = datetime(2000, 1, 1, 12, 0, tzinfo=timezone.utc)


def julian_days_since_j2000(when: datetime) -> float:
    return (when - _J2000).total_seconds() / 86400.0


def lst_deg(when: datetime, longitude_deg: float) -> float:
    """Local mean sidereal time in degrees (0..360) at east longitude ``longitude_deg``."""
    d = julian_days_since_j2000(when)
    t = d / 36525.0
    gmst = 280.46061837 + 360.98564736629 * d + 0.000387933 * t * t - t ** 3 / 38710000.0
    return (gmst + longitude_deg) % 360.0


def radec_to_altaz(ra_deg: float, dec_deg: float, lst: float, latitude_deg: float
                   ) -> tuple[float, float]:
    """Apparent-enough (alt, az) in degrees for a position, azimuth north 0 east 90."""
    ha = math.radians((lst - ra_deg) % 360.0)
    dec = math.radians(dec_deg)
    lat = math.radians(latitude_deg)
    sin_alt = math.sin(dec) * math.sin(lat) + math.cos(dec) * math.cos(lat) * math.cos(ha)
    alt = math.asin(max(-1.0, min(1.0, sin_alt)))
    y = -math.cos(dec) * math.sin(ha)
    x = math.sin(dec) * math.cos(lat) - math.cos(dec) * math.sin(lat) * math.cos(ha)
    az = math.degrees(math.atan2(y, x)) % 360.0
    return math.degrees(alt), az


def altaz_to_radec(alt_deg: float, az_deg: float, lst: float, latitude_deg: float
                   ) -> tuple[float, float]:
    """Inverse of :func:`radec_to_altaz`: (ra, dec) in degrees."""
    alt = math.radians(alt_deg)
    az = math.radians(az_deg)
    lat = math.radians(latitude_deg)
    sin_dec = math.sin(alt) * math.sin(lat) + math.cos(alt) * math.cos(lat) * math.cos(az)
    dec = math.asin(max(-1.0, min(1.0, sin_dec)))
    y = -math.sin(az) * math.cos(alt)
    x = math.cos(lat) * math.sin(alt) - math.sin(lat) * math.cos(alt) * math.cos(az)
    ha = math.degrees(math.atan2(y, x))
    return (lst - ha) % 360.0, math.degrees(dec)


def sun_radec(when: datetime) -> tuple[float, float]:
    """The sun's (ra, dec) in degrees, low precision (~0.01 deg; Astronomical Almanac formula)."""
    n = julian_days_since_j2000(when)
    mean_lon = (280.460 + 0.9856474 * n) % 360.0
    g = math.radians((357.528 + 0.9856003 * n) % 360.0)
    lam = math.radians(mean_lon + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
    eps = math.radians(23.439 - 0.0000004 * n)
    ra = math.degrees(math.atan2(math.cos(eps) * math.sin(lam), math.cos(lam))) % 360.0
    dec = math.degrees(math.asin(math.sin(eps) * math.sin(lam)))
    return ra, dec


def sun_altitude_deg(when: datetime, latitude_deg: float, longitude_deg: float) -> float:
    """The sun's altitude in degrees (no refraction), for the safety rule and the simulator."""
    ra, dec = sun_radec(when)
    return radec_to_altaz(ra, dec, lst_deg(when, longitude_deg), latitude_deg)[0]


@overload
def separation_deg(lon1: float, lat1: float, lon2: float, lat2: float) -> float: ...
@overload
def separation_deg(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any: ...


def separation_deg(lon1, lat1, lon2, lat2):  # type: ignore[no-untyped-def]
    """Great-circle angle in degrees between ``(lon1, lat1)`` and ``(lon2, lat2)`` (degrees):
    (ra, dec) pairs, or (az, alt) pairs (azimuth first).

    Vincenty's formula, as astropy's ``SkyCoord.separation``: exact at every angle (haversine
    loses precision near 180 deg, the arccos form near 0). Four scalars give a ``float`` (the
    control loop's case, computed with :mod:`math`); arrays broadcast and give an array.
    """
    if np.ndim(lon1) == 0 and np.ndim(lat1) == 0 and np.ndim(lon2) == 0 and np.ndim(lat2) == 0:
        b1, b2 = math.radians(float(lat1)), math.radians(float(lat2))
        dl = math.radians(float(lon2) - float(lon1))
        s1, c1, s2, c2 = math.sin(b1), math.cos(b1), math.sin(b2), math.cos(b2)
        sdl, cdl = math.sin(dl), math.cos(dl)
        return math.degrees(math.atan2(math.hypot(c2 * sdl, c1 * s2 - s1 * c2 * cdl),
                                       s1 * s2 + c1 * c2 * cdl))
    b1, b2 = np.radians(np.asarray(lat1, float)), np.radians(np.asarray(lat2, float))
    dl = np.radians(np.asarray(lon2, float) - np.asarray(lon1, float))
    s1, c1, s2, c2 = np.sin(b1), np.cos(b1), np.sin(b2), np.cos(b2)
    sdl, cdl = np.sin(dl), np.cos(dl)
    return np.degrees(np.arctan2(np.hypot(c2 * sdl, c1 * s2 - s1 * c2 * cdl),
                                 s1 * s2 + c1 * c2 * cdl))


@overload
def separation_arcsec(lon1: float, lat1: float, lon2: float, lat2: float) -> float: ...
@overload
def separation_arcsec(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any: ...


def separation_arcsec(lon1, lat1, lon2, lat2):  # type: ignore[no-untyped-def]
    """:func:`separation_deg` in arcsec."""
    return separation_deg(lon1, lat1, lon2, lat2) * 3600.0


def wrap180(angle_deg: float) -> float:
    """Angle folded into [-180, 180)."""
    return (angle_deg + 180.0) % 360.0 - 180.0
