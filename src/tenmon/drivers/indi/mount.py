"""INDI telescope mount: INDI's standard telescope properties, non-blocking, with altitude and hour-angle limits.

Properties used (every INDI mount driver, ``indi_simulator_telescope`` included):
``EQUATORIAL_EOD_COORD`` (RA hours / Dec degrees of date: position; written after
``ON_COORD_SET`` = ``TRACK`` it slews then tracks, after ``SYNC`` it syncs; ``Busy`` while
slewing), ``TELESCOPE_ABORT_MOTION``, ``TELESCOPE_PARK`` (``Busy`` while parking),
``TELESCOPE_TRACK_STATE``, ``TELESCOPE_PIER_SIDE`` (when the mount reports it), and
``GEOGRAPHIC_COORD``/``TIME_UTC`` (set from the site and the injected clock at connect).

Coordinates are the mount's own (of date), in degrees at the interface like every tenmon mount.
Limits are tenmon's, checked before anything is sent: a goto below ``min_alt_deg`` (or further
than ``max_hour_angle_deg`` from the meridian) is refused with :class:`TargetBelowHorizon` /
:class:`MountRefused`; a mount tracking below ``min_alt_deg`` has its tracking stopped and goes to
``error``. A slew or park that lasts longer than ``slew_timeout_s`` is aborted (``error``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from tenmon.astro import lst_deg, radec_to_altaz
from tenmon.clock import Clock
from tenmon.drivers.base import MountState
from tenmon.drivers.indi.device import IndiDevice
from tenmon.drivers.mount.lx200 import MountRefused, TargetBelowHorizon

__all__ = ["IndiMount"]

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

    @property
    def ra_deg(self) -> float | None:
        ra = self.num("EQUATORIAL_EOD_COORD", "RA")
        return (ra * 15.0) % 360.0 if math.isfinite(ra) else None

    @property
    def dec_deg(self) -> float | None:
        dec = self.num("EQUATORIAL_EOD_COORD", "DEC")
        return dec if math.isfinite(dec) else None

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
        self._send_number("EQUATORIAL_EOD_COORD", {"RA": (ra_deg % 360.0) / 15.0,
                                                   "DEC": dec_deg})
        self._start_motion("slew")

    def sync(self, ra_deg: float, dec_deg: float) -> None:
        if not (math.isfinite(ra_deg) and math.isfinite(dec_deg) and -90 <= dec_deg <= 90):
            raise ValueError(f"bad sync position RA {ra_deg!r} Dec {dec_deg!r}")
        self._verb_ready("sync")
        if self.state in (MountState.SLEWING, MountState.PARKING):
            raise MountRefused("the mount is moving: wait or abort() before a sync",
                               command="sync")
        self._send_switch("ON_COORD_SET", "SYNC")
        self._send_number("EQUATORIAL_EOD_COORD", {"RA": (ra_deg % 360.0) / 15.0,
                                                   "DEC": dec_deg})
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
