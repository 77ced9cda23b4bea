"""INDI telescope mount: INDI's standard telescope properties, non-blocking, with altitude and hour-angle limits.

Properties used (every INDI mount driver, ``indi_simulator_telescope`` included):
``EQUATORIAL_EOD_COORD`` (RA hours / Dec degrees of date: position; written after
``ON_COORD_SET`` = ``TRACK`` it slews then tracks, after ``SYNC`` it syncs; ``Busy`` while
slewing), ``TELESCOPE_ABORT_MOTION``, ``TELESCOPE_PARK`` (``Busy`` while parking),
``TELESCOPE_TRACK_STATE``, ``TELESCOPE_PIER_SIDE`` (when the mount reports it), and
``GEOGRAPHIC_COORD``/``TIME_UTC`` (set from the site and the injected clock at connect).

INDI's ``EQUATORIAL_EOD_COORD`` is of date (JNow); tenmon's interface is J2000 (ICRS, degrees)
like every tenmon mount: targets are precessed to the date (the injected clock's) before they are
sent, and the mount's position back to J2000 when read (IAU 1976 precession; nutation and
aberration, under 30", are left to the mount's pointing model and the plate solver).
Limits are tenmon's, checked before anything is sent: a goto below ``min_alt_deg`` (or further
than ``max_hour_angle_deg`` from the meridian) is refused with :class:`TargetBelowHorizon` /
:class:`MountRefused`; a mount tracking below ``min_alt_deg`` has its tracking stopped and goes to
``error``. A slew or park that lasts longer than ``slew_timeout_s`` is aborted (``error``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from tenmon.core.astro import lst_deg, radec_to_altaz
from tenmon.core.clock import Clock
from tenmon.drivers.base import MountState
from tenmon.drivers.indi.device import IndiDevice
from tenmon.drivers.mount.lx200 import MountRefused, TargetBelowHorizon

__all__ = ["IndiMount", "precess"]

log = logging.getLogger(__name__)


class IndiMount(IndiDevice):
    """A mount on an indiserver (``[mount] type = "indi"``); implements
    :class:`~tenmon.drivers.base.Mount`.

    ``latitude_deg``/``longitude_deg`` (east positive) are the site's, from the site file: the
    limits are computed with them, and they are sent to the mount at connect. Without them the
    mount's own ``GEOGRAPHIC_COORD`` is used.
    """

    required = ("EQUATORIAL_EOD_COORD", "TELESCOPE_ABORT_MOTION", "ON_COORD_SET")

    def __init__(self, config: Any, clock: Clock, *, name: str = "mount",
                 latitude_deg: float | None = None, longitude_deg: float | None = None,
                 elevation_m: float = 0.0):
        super().__init__(config, clock, name=name)
        self.latitude_deg = latitude_deg
        self.longitude_deg = longitude_deg
        self.elevation_m = elevation_m
        self._motion: str | None = None        # "slew" or "park" that we started
        self._motion_t0 = 0.0
        self._motion_seen_busy = False
        self._pos_cache: tuple[tuple[float, float, float], tuple[float, float]] | None = None

    def _after_connect(self) -> None:
        if self.latitude_deg is not None and self.longitude_deg is not None \
                and self.vec("GEOGRAPHIC_COORD") is not None:
            self.conn.send_number(self.device, "GEOGRAPHIC_COORD", {
                "LAT": self.latitude_deg, "LONG": self.longitude_deg % 360.0,
                "ELEV": self.elevation_m})
        if self.vec("TIME_UTC") is not None:
            now = self.clock.now()
            self.conn.send_text(self.device, "TIME_UTC", {
                "UTC": now.strftime("%Y-%m-%dT%H:%M:%S"), "OFFSET": "0"})
        self._motion = None

    # ------------------------------------------------------------------ readings

    def _j2000_position(self) -> tuple[float, float] | None:
        """The mount's position (of date) as J2000 degrees; cached per reading."""
        ra = self.num("EQUATORIAL_EOD_COORD", "RA")
        dec = self.num("EQUATORIAL_EOD_COORD", "DEC")
        if not (math.isfinite(ra) and math.isfinite(dec)):
            return None
        years = _years_since_j2000(self.clock.now())
        key = (ra, dec, round(years, 3))
        if self._pos_cache is None or self._pos_cache[0] != key:
            self._pos_cache = (key, precess(ra * 15.0, dec, years, to_date=False))
        return self._pos_cache[1]

    @property
    def ra_deg(self) -> float | None:
        """Right ascension, J2000 degrees (the mount's of-date position precessed back)."""
        p = self._j2000_position()
        return None if p is None else p[0]

    @property
    def dec_deg(self) -> float | None:
        """Declination, J2000 degrees."""
        p = self._j2000_position()
        return None if p is None else p[1]

    def _of_date(self, ra_deg: float, dec_deg: float) -> dict[str, float]:
        ra, dec = precess(ra_deg, dec_deg, _years_since_j2000(self.clock.now()), to_date=True)
        return {"RA": ra / 15.0, "DEC": dec}

    @property
    def tracking(self) -> bool:
        v = self.vec("TELESCOPE_TRACK_STATE")
        return v is not None and "TRACK_ON" in v.on()

    @property
    def parked(self) -> bool:
        v = self.vec("TELESCOPE_PARK")
        return v is not None and "PARK" in v.on() and v.state != "Busy"

    @property
    def pier_side(self) -> str | None:
        """``"east"``, ``"west"``, or ``None`` when the mount does not say."""
        v = self.vec("TELESCOPE_PIER_SIDE")
        if v is None:
            return None
        on = v.on()
        return "east" if "PIER_EAST" in on else "west" if "PIER_WEST" in on else None

    @property
    def site(self) -> tuple[float, float] | None:
        """(latitude, east longitude) in degrees used for the limits."""
        if self.latitude_deg is not None and self.longitude_deg is not None:
            return self.latitude_deg, self.longitude_deg
        lat, lon = self.num("GEOGRAPHIC_COORD", "LAT"), self.num("GEOGRAPHIC_COORD", "LONG")
        if math.isfinite(lat) and math.isfinite(lon):
            return lat, (lon + 180.0) % 360.0 - 180.0
        return None

    def altaz(self, ra_deg: float, dec_deg: float) -> tuple[float, float, float] | None:
        """(altitude, azimuth, hour angle in -180..180) of a position now, degrees."""
        site = self.site
        if site is None:
            return None
        lst = lst_deg(self.clock.now(), site[1])
        alt, az = radec_to_altaz(ra_deg, dec_deg, lst, site[0])
        ha = (lst - ra_deg + 180.0) % 360.0 - 180.0
        return alt, az, ha

    @property
    def state(self) -> MountState:
        if self._error is not None:
            return MountState.ERROR
        if not self.conn.running or self.vec("EQUATORIAL_EOD_COORD") is None:
            return MountState.UNKNOWN
        park = self.vec("TELESCOPE_PARK")
        if park is not None and park.state == "Busy" and "PARK" in park.on():
            return MountState.PARKING
        if park is not None and "PARK" in park.on():
            return MountState.PARKED
        if self.vec("EQUATORIAL_EOD_COORD").state == "Busy":
            return MountState.SLEWING
        return MountState.TRACKING if self.tracking else MountState.IDLE

    # ------------------------------------------------------------------ verbs

    def _check_target(self, ra_deg: float, dec_deg: float) -> None:
        if not (math.isfinite(ra_deg) and math.isfinite(dec_deg) and -90 <= dec_deg <= 90):
            raise ValueError(f"bad target RA {ra_deg!r} Dec {dec_deg!r}")
        pos = self.altaz(ra_deg, dec_deg)
        if pos is None:
            raise MountRefused("the site is unknown (no latitude/longitude): limits cannot be "
                               "checked", command="goto")
        alt, _az, ha = pos
        if alt < self.config.min_alt_deg:
            raise TargetBelowHorizon(f"target at altitude {alt:.1f} deg is below the limit "
                                     f"{self.config.min_alt_deg:g} deg", command="goto", code="1")
        lim = self.config.max_hour_angle_deg
        if lim is not None and abs(ha) > lim:
            raise MountRefused(f"target at hour angle {ha:+.1f} deg is beyond the limit "
                               f"{lim:g} deg", command="goto", code="6")

    def _verb_ready(self, verb: str) -> None:
        self._require_link()
        if self.parked and verb in ("goto", "sync"):
            raise MountRefused(f"the mount is parked: unpark() before a {verb}", command=verb)

    def goto(self, ra_deg: float, dec_deg: float) -> None:
        """Start a slew (then track). Raises ValueError for bad coordinates,
        TargetBelowHorizon / MountRefused for the limits or a parked mount, DeviceDisconnected."""
        self._check_target(ra_deg, dec_deg)
        self._verb_ready("goto")
        self._send_switch("ON_COORD_SET", "TRACK")
        self._send_number("EQUATORIAL_EOD_COORD", self._of_date(ra_deg, dec_deg))
        self._start_motion("slew")

    def sync(self, ra_deg: float, dec_deg: float) -> None:
        if not (math.isfinite(ra_deg) and math.isfinite(dec_deg) and -90 <= dec_deg <= 90):
            raise ValueError(f"bad sync position RA {ra_deg!r} Dec {dec_deg!r}")
        self._verb_ready("sync")
        if self.state in (MountState.SLEWING, MountState.PARKING):
            raise MountRefused("the mount is moving: wait or abort() before a sync",
                               command="sync")
        self._send_switch("ON_COORD_SET", "SYNC")
        self._send_number("EQUATORIAL_EOD_COORD", self._of_date(ra_deg, dec_deg))
        self._send_switch("ON_COORD_SET", "TRACK")
        self._error = None

    def abort(self) -> None:
        """Stop every motion. Raises DeviceDisconnected when the server is gone."""
        self._send_switch("TELESCOPE_ABORT_MOTION", "ABORT", off=[])
        self._motion = None
        self._error = None

    def park(self) -> None:
        if self.vec("TELESCOPE_PARK") is None:
            raise MountRefused("the mount has no TELESCOPE_PARK", command="park")
        self._require_link()
        if self.parked:
            return
        self._send_switch("TELESCOPE_PARK", "PARK")
        self._start_motion("park")

    def unpark(self) -> None:
        if self.vec("TELESCOPE_PARK") is None:
            raise MountRefused("the mount has no TELESCOPE_PARK", command="unpark")
        self._require_link()
        if not self.parked and self.state != MountState.PARKING:
            self._error = None
            return
        self._send_switch("TELESCOPE_PARK", "UNPARK")
        self._error = None

    def set_tracking(self, on: bool) -> None:
        if self.vec("TELESCOPE_TRACK_STATE") is None:
            raise MountRefused("the mount has no TELESCOPE_TRACK_STATE", command="tracking")
        self._require_link()
        if on and self.parked:
            raise MountRefused("the mount is parked: unpark() before tracking", command="tracking")
        if on and self.ra_deg is not None and self.dec_deg is not None:
            pos = self.altaz(self.ra_deg, self.dec_deg)
            if pos is not None and pos[0] < self.config.min_alt_deg:
                raise TargetBelowHorizon(f"the mount points at altitude {pos[0]:.1f} deg, below "
                                         f"the limit {self.config.min_alt_deg:g} deg",
                                         command="tracking")
        self._send_switch("TELESCOPE_TRACK_STATE", "TRACK_ON" if on else "TRACK_OFF")
        self._error = None

    def _start_motion(self, kind: str) -> None:
        self._motion = kind
        self._motion_t0 = self.clock.monotonic()
        self._motion_seen_busy = False
        self._error = None

    # ------------------------------------------------------------------ the tick

    def update(self) -> None:
        """Follow motions and limits from the cache (non-blocking). Never raises."""
        try:
            self._update()
        except Exception as exc:  # noqa: BLE001 - update never raises for a device fault
            self._fail(f"update failed: {exc}")

    def _update(self) -> None:
        why = self.link_problem()
        if why is not None:
            if self._error is None or "lost" not in self._error:
                self._fail(why)
            self._motion = None
            return
        eq = self.vec("EQUATORIAL_EOD_COORD")
        if eq is not None and eq.state == "Alert" and self._motion == "slew":
            self._fail(f"the driver failed the slew ({self._last_message() or 'no message'})")
            self._motion = None
            return
        park = self.vec("TELESCOPE_PARK")
        if park is not None and park.state == "Alert" and self._motion == "park":
            self._fail(f"the driver failed to park ({self._last_message() or 'no message'})")
            self._motion = None
            return
        if self._motion is not None:
            st = self.state
            moving = st in (MountState.SLEWING, MountState.PARKING)
            self._motion_seen_busy |= moving
            done = (self._motion == "park" and st == MountState.PARKED) or \
                   (self._motion == "slew" and self._motion_seen_busy and not moving)
            if done:
                self._motion = None
            elif self.clock.monotonic() - self._motion_t0 > self.config.slew_timeout_s:
                try:
                    self.conn.send_switch(self.device, "TELESCOPE_ABORT_MOTION", "ABORT", off=[])
                except Exception:  # noqa: BLE001 - the error says what matters
                    pass
                self._fail(f"{self._motion} did not end within {self.config.slew_timeout_s:g} s;"
                           " motion aborted")
                self._motion = None
                return
        if self.tracking and self.ra_deg is not None and self.dec_deg is not None \
                and self.state == MountState.TRACKING:
            pos = self.altaz(self.ra_deg, self.dec_deg)
            if pos is not None and pos[0] < self.config.min_alt_deg:
                try:
                    self.conn.send_switch(self.device, "TELESCOPE_TRACK_STATE", "TRACK_OFF")
                except Exception:  # noqa: BLE001
                    pass
                self._fail(f"tracked below the altitude limit ({pos[0]:.1f} < "
                           f"{self.config.min_alt_deg:g} deg): tracking stopped")


def _years_since_j2000(when) -> float:
    from tenmon.core.astro import julian_days_since_j2000

    return julian_days_since_j2000(when) / 365.25


def precess(ra_deg: float, dec_deg: float, years: float, *, to_date: bool
            ) -> tuple[float, float]:
    """J2000 -> mean equinox of J2000 + ``years`` (``to_date``), or back: IAU 1976 precession
    (Lieske 1977), good to well under an arcsecond over a century."""
    t = years / 100.0
    arc = math.pi / (180.0 * 3600.0)
    zeta = (2306.2181 * t + 0.30188 * t * t + 0.017998 * t ** 3) * arc
    z = (2306.2181 * t + 1.09468 * t * t + 0.018203 * t ** 3) * arc
    theta = (2004.3109 * t - 0.42665 * t * t - 0.041833 * t ** 3) * arc
    cz, sz, cZ, sZ = math.cos(zeta), math.sin(zeta), math.cos(z), math.sin(z)
    ct, st = math.cos(theta), math.sin(theta)
    m = ((cZ * ct * cz - sZ * sz, -cZ * ct * sz - sZ * cz, -cZ * st),
         (sZ * ct * cz + cZ * sz, -sZ * ct * sz + cZ * cz, -sZ * st),
         (st * cz, -st * sz, ct))
    a, d = math.radians(ra_deg), math.radians(dec_deg)
    v = (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))
    if to_date:
        w = tuple(sum(m[i][j] * v[j] for j in range(3)) for i in range(3))
    else:  # the inverse of a rotation is its transpose
        w = tuple(sum(m[j][i] * v[j] for j in range(3)) for i in range(3))
    ra = math.degrees(math.atan2(w[1], w[0])) % 360.0
    dec = math.degrees(math.asin(max(-1.0, min(1.0, w[2]))))
    return ra, dec
