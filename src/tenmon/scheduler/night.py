"""Night boundaries at a site: dusk and dawn at a chosen twilight, computed offline with astropy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np

from tenmon.core import offline
from tenmon.scheduler.errors import NoNightError
from tenmon.scheduler.settings import TWILIGHT_SUN_ALT_DEG
from tenmon.core.timefmt import utc_iso

offline.configure()

import astropy.units as u  # noqa: E402
from astropy.coordinates import AltAz, EarthLocation, get_sun  # noqa: E402
from astropy.time import Time  # noqa: E402

log = logging.getLogger(__name__)

_COARSE_S = 600.0  # sun altitude changes < 2.5 deg in 10 min: one crossing per step at most
_FINE_STEPS = 61  # 10 s sampling inside the bracketing step, then linear interpolation


@dataclass(frozen=True)
class Night:
    """One night at a site: ``start`` (dusk) and ``end`` (dawn) as UTC datetimes.

    ``date`` is the local calendar date of the evening; ``twilight`` names the sun altitude
    (``sun_alt_deg``) that bounds it.
    """

    date: date
    start: datetime
    end: datetime
    twilight: str
    sun_alt_deg: float

    @property
    def duration_s(self) -> float:
        """Length of the night in seconds."""
        return (self.end - self.start).total_seconds()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description."""
        return {
            "date": self.date.isoformat(),
            "start_utc": utc_iso(self.start, timespec="auto"),
            "end_utc": utc_iso(self.end, timespec="auto"),
            "twilight": self.twilight,
            "sun_alt_deg": self.sun_alt_deg,
        }


def twilight_altitude(twilight: str | float) -> float:
    """Sun altitude in degrees for a twilight name (``civil`` -6 ...) or a number of degrees.

    Raises:
        ValueError: unknown twilight name.
    """
    if isinstance(twilight, (int, float)):
        return float(twilight)
    try:
        return TWILIGHT_SUN_ALT_DEG[twilight]
    except KeyError:
        raise ValueError(
            f"unknown twilight {twilight!r}; expected one of {', '.join(TWILIGHT_SUN_ALT_DEG)}"
        ) from None


def sun_altitude(times: Time, site: EarthLocation) -> np.ndarray:
    """Airless altitude (degrees) of the sun's centre at ``times`` seen from ``site``."""
    times = Time(times)
    frame = AltAz(obstime=times, location=site)
    return np.atleast_1d(get_sun(times).transform_to(frame).alt.deg)


def local_night_date(when: datetime, site: EarthLocation) -> date:
    """The evening date (local mean solar time at ``site``) of the night that contains or
    follows ``when``: before local noon it is the previous evening's night."""
    when = _aware(when)
    local = when + timedelta(hours=float(site.lon.deg) / 15.0) - timedelta(hours=12)
    return local.date()


def next_sun_crossing(
    after: datetime,
    site: EarthLocation,
    altitude_deg: float,
    *,
    rising: bool,
    within_s: float = 36 * 3600.0,
) -> datetime | None:
    """First time after ``after`` when the sun's centre crosses ``altitude_deg`` going up
    (``rising``) or down; ``None`` if it does not within ``within_s`` (polar day or night).

    Accurate to about a second (10 min bracketing, 10 s sampling, linear interpolation).
    """
    after = _aware(after)
    t0 = Time(after)
    n = int(np.ceil(within_s / _COARSE_S)) + 1
    offsets = np.arange(n) * _COARSE_S
    alt = sun_altitude(t0 + offsets * u.s, site) - altitude_deg
    if rising:
        idx = np.nonzero((alt[:-1] < 0) & (alt[1:] >= 0))[0]
    else:
        idx = np.nonzero((alt[:-1] > 0) & (alt[1:] <= 0))[0]
    if idx.size == 0:
        return None
    i = int(idx[0])
    fine = offsets[i] + np.linspace(0.0, _COARSE_S, _FINE_STEPS)
    falt = sun_altitude(t0 + fine * u.s, site) - altitude_deg
    if rising:
        j = np.nonzero((falt[:-1] < 0) & (falt[1:] >= 0))[0]
    else:
        j = np.nonzero((falt[:-1] > 0) & (falt[1:] <= 0))[0]
    if j.size == 0:  # the crossing sits exactly on a coarse sample
        k = int(np.argmin(np.abs(falt)))
        return after + timedelta(seconds=float(fine[k]))
    k = int(j[0])
    a, b = falt[k], falt[k + 1]
    frac = 0.0 if b == a else float(-a / (b - a))
    seconds = fine[k] + frac * (fine[k + 1] - fine[k])
    return after + timedelta(seconds=float(seconds))


def night_for_date(
    night_date: date, site: EarthLocation, twilight: str | float = "astronomical"
) -> Night:
    """The night that starts on the evening of ``night_date`` (local date at ``site``).

    Args:
        night_date: the evening's local calendar date.
        site: the observatory.
        twilight: ``"sunset"``, ``"civil"``, ``"nautical"``, ``"astronomical"`` or a sun altitude
            in degrees.

    Raises:
        NoNightError: the sun does not set below that altitude that night.
        ValueError: unknown twilight name.
    """
    alt = twilight_altitude(twilight)
    noon = datetime(night_date.year, night_date.month, night_date.day, 12, tzinfo=timezone.utc)
    noon -= timedelta(hours=float(site.lon.deg) / 15.0)
    dusk = next_sun_crossing(noon, site, alt, rising=False, within_s=24 * 3600.0)
    if dusk is None:
        raise NoNightError(
            f"the sun does not go below {alt:g} deg on the evening of {night_date.isoformat()} "
            f"at latitude {site.lat.deg:.3f} deg"
        )
    dawn = next_sun_crossing(dusk, site, alt, rising=True, within_s=24 * 3600.0)
    if dawn is None:
        raise NoNightError(
            f"the sun does not rise above {alt:g} deg after dusk on {night_date.isoformat()}"
        )
    name = twilight if isinstance(twilight, str) else f"{alt:g} deg"
    return Night(date=night_date, start=dusk, end=dawn, twilight=name, sun_alt_deg=alt)


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"time {when.isoformat()} has no timezone; tenmon uses UTC-aware times")
    return when.astimezone(timezone.utc)
