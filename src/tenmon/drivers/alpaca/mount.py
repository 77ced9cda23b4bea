"""An ASCOM Alpaca Telescope as a tenmon :class:`~tenmon.drivers.base.Mount`.

Non-blocking like every mount: ``goto`` checks the limits, queues unpark / tracking on /
``SlewToCoordinatesAsync`` for the worker and returns; the state is ``slewing`` from that moment
until the mount reports the slew done (``tracking``), so nobody takes a stale "tracking" for
"arrived". A slew longer than ``slew_timeout_s`` is aborted and is an error; so is a park that
does not reach ``AtPark`` within ``park_timeout_s``.

Coordinates at the interface are degrees (RA 0..360), the mount's own idea of where it points;
Alpaca speaks hours of RA. A mount whose ``EquatorialSystem`` is topocentric (JNow) gets J2000
positions precessed to the date and back (astropy, on the worker).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from alpaca.telescope import Telescope

from tenmon.core.astro import lst_deg, radec_to_altaz
from tenmon.drivers.alpaca._worker import AlpacaDevice
from tenmon.drivers.base import MountState
from tenmon.core.errors import DeviceError

log = logging.getLogger(__name__)

#: ASCOM PierSide
PIER_SIDES = {0: "east", 1: "west", -1: "unknown"}


@dataclass(frozen=True)
class _MountSnap:
    ra_deg: float | None
    dec_deg: float | None
    slewing: bool
    tracking: bool
    at_park: bool
    pier_side: str
    alt_deg: float | None


class AlpacaMount(AlpacaDevice):
    """See the module docstring. ``config``: :class:`~tenmon.config.models.AlpacaMountConfig`."""

    kind = "mount"
    ascom_type = "telescope"
    api_class = Telescope

    def __init__(self, config, clock):
        super().__init__(config, clock)
        self._snap: _MountSnap | None = None
        self._pending: str | None = None   # "slew" / "park" queued, not yet seen by a poll
        self._slew_since: float | None = None
        self._park_since: float | None = None
        self._motion_error: str | None = None
        self.site_lat_deg: float | None = None
        self.site_lon_deg: float | None = None
        self.can_park = True
        self.can_set_tracking = True
        self.topocentric = False

    # ------------------------------------------------------------------ worker side

    def _on_open(self) -> None:
        dev = self.dev
        self.site_lat_deg = _num(self._optional("SiteLatitude", lambda: dev.SiteLatitude))
        self.site_lon_deg = _num(self._optional("SiteLongitude", lambda: dev.SiteLongitude))
        self.can_park = bool(self._optional("CanPark", lambda: dev.CanPark) or False)
        self.can_set_tracking = bool(self._optional("CanSetTracking",
                                                    lambda: dev.CanSetTracking) or False)
        system = self._optional("EquatorialSystem", lambda: dev.EquatorialSystem)
        self.topocentric = int(getattr(system, "value", system) or 0) == 1

    def _optional(self, what, fn):
        from tenmon.drivers.alpaca._wire import optional

        return optional(self.kind, self.label, what, fn)

    def _poll(self) -> None:
        dev = self.dev
        ra_h = self._call("RightAscension", lambda: dev.RightAscension)
        dec = self._call("Declination", lambda: dev.Declination)
        slewing = bool(self._call("Slewing", lambda: dev.Slewing))
        tracking = bool(self._call("Tracking", lambda: dev.Tracking))
        at_park = bool(self._optional("AtPark", lambda: dev.AtPark) or False)
        side = self._optional("SideOfPier", lambda: dev.SideOfPier)
        alt = _num(self._optional("Altitude", lambda: dev.Altitude))
        ra_deg, dec_deg = _num(ra_h), _num(dec)
        if ra_deg is not None and dec_deg is not None:
            ra_deg, dec_deg = self._from_mount(ra_deg * 15.0, dec_deg)
        self._snap = _MountSnap(ra_deg=ra_deg, dec_deg=dec_deg, slewing=slewing,
                                tracking=tracking, at_park=at_park,
                                pier_side=PIER_SIDES.get(int(getattr(side, "value", side))
                                                         if side is not None else -1, "unknown"),
                                alt_deg=alt)
        now = time.monotonic()
        if slewing:
            if self._slew_since is None:
                self._slew_since = now
            elif now - self._slew_since > self.config.slew_timeout_s:
                self._slew_since = None
                self._motion_error = (f"{self.label}: slew not finished after "
                                      f"{self.config.slew_timeout_s:g} s: aborted")
                log.error(self._motion_error)
                try:
                    self._call("AbortSlew", dev.AbortSlew)
                except DeviceError as exc:
                    log.error("%s: abort failed: %s", self.label, exc.detail)
        else:
            self._slew_since = None
        if self._park_since is not None:
            if at_park:
                self._park_since = None
            elif now - self._park_since > self.config.park_timeout_s:
                self._park_since = None
                self._motion_error = (f"{self.label}: not parked after "
                                      f"{self.config.park_timeout_s:g} s")
                log.error(self._motion_error)

    def _to_mount(self, ra_deg: float, dec_deg: float) -> tuple[float, float]:
        if not self.topocentric:
            return ra_deg % 360.0, dec_deg
        return _precess(ra_deg, dec_deg, self.clock.now(), to_date=True)

    def _from_mount(self, ra_deg: float, dec_deg: float) -> tuple[float, float]:
        if not self.topocentric:
            return ra_deg % 360.0, dec_deg
        return _precess(ra_deg, dec_deg, self.clock.now(), to_date=False)

    def _do_goto(self, ra_deg: float, dec_deg: float) -> None:
        dev = self.dev
        try:
            if self._call("AtPark", lambda: dev.AtPark):
                self._call("Unpark", dev.Unpark)
            if self.can_set_tracking and not self._call("Tracking", lambda: dev.Tracking):
                self._call("Tracking = true", lambda: setattr(dev, "Tracking", True))
            ra, dec = self._to_mount(ra_deg, dec_deg)
            self._call(f"SlewToCoordinatesAsync({ra / 15.0:.5f} h, {dec:+.4f})",
                       lambda: dev.SlewToCoordinatesAsync(ra / 15.0, dec))
            self._slew_since = time.monotonic()
            self._poll()  # the state after the command, before "pending" ends
        except DeviceError as exc:
            self._motion_error = exc.detail  # before pending ends: never a stale "tracking"
            raise
        finally:
            self._pending = None

    def _do_park(self) -> None:
        try:
            self._call("Park", self.dev.Park)
            self._park_since = time.monotonic()
            self._poll()
        except DeviceError as exc:
            self._motion_error = exc.detail
            raise
        finally:
            self._pending = None

    # ------------------------------------------------------------------ loop side

    @property
    def state(self) -> MountState:
        if self._thread is None or not self._online or self._command_error \
                or self._motion_error:
            return MountState.ERROR if (self._link_error or self._command_error
                                        or self._motion_error) else MountState.UNKNOWN
        if self._pending == "slew":
            return MountState.SLEWING
        if self._pending == "park" or self._park_since is not None:
            return MountState.PARKED if self._snap and self._snap.at_park \
                and self._pending is None else MountState.PARKING
        s = self._snap
        if s is None:
            return MountState.UNKNOWN
        if s.slewing:
            return MountState.SLEWING
        if s.at_park:
            return MountState.PARKED
        return MountState.TRACKING if s.tracking else MountState.IDLE

    @property
    def error(self) -> str | None:
        return self._motion_error or super().error

    def clear_error(self) -> None:
        super().clear_error()
        self._motion_error = None

    @property
    def ra_deg(self) -> float | None:
        return None if self._snap is None else self._snap.ra_deg

    @property
    def dec_deg(self) -> float | None:
        return None if self._snap is None else self._snap.dec_deg

    @property
    def tracking(self) -> bool:
        return bool(self._snap and self._snap.tracking)

    @property
    def pier_side(self) -> str:
        """``east``, ``west`` or ``unknown`` (ASCOM SideOfPier)."""
        return "unknown" if self._snap is None else self._snap.pier_side

    def altitude_of(self, ra_deg: float, dec_deg: float) -> float | None:
        """Altitude (deg) of a position now at the mount's site (``None`` if it has none)."""
        lat = self.site_lat_deg
        lon = self.site_lon_deg
        if lat is None or lon is None:
            return None
        alt, _ = radec_to_altaz(ra_deg, dec_deg, lst_deg(self.clock.now(), lon), lat)
        return alt

    def goto(self, ra_deg: float, dec_deg: float) -> None:
        """Start a slew (non-blocking). Raises DeviceError for a position outside the limits
        (below ``min_altitude_deg``, not a position) or when the mount is offline."""
        if not (math.isfinite(ra_deg) and math.isfinite(dec_deg) and -90 <= dec_deg <= 90):
            raise DeviceError("mount", f"({ra_deg}, {dec_deg}) is not a sky position")
        alt = self.altitude_of(ra_deg, dec_deg)
        if alt is not None and alt < self.config.min_altitude_deg:
            raise DeviceError("mount", f"target at altitude {alt:.1f} deg is below the limit "
                              f"({self.config.min_altitude_deg:g} deg)")
        self._motion_error = None
        self._pending = "slew"
        try:
            self._submit("goto", lambda: self._do_goto(ra_deg, dec_deg))
        except DeviceError:
            self._pending = None
            raise

    def sync(self, ra_deg: float, dec_deg: float) -> None:
        def do() -> None:
            ra, dec = self._to_mount(ra_deg, dec_deg)
            self._call("SyncToCoordinates", lambda: self.dev.SyncToCoordinates(ra / 15.0, dec))
        self._submit("sync", do)

    def abort(self) -> None:
        """Stop a slew. Never raises (an offline mount cannot be stopped from here: logged)."""
        def do() -> None:
            try:
                self._call("AbortSlew", self.dev.AbortSlew)
            except DeviceError as exc:
                if "Parked" not in exc.detail:
                    raise
        self._pending = None
        try:
            self._submit("abort", do)
        except DeviceError as exc:
            log.error("mount abort: %s", exc.detail)

    def park(self) -> None:
        if not self.can_park:
            raise DeviceError("mount", f"{self.label} cannot park (CanPark false)")
        self._motion_error = None
        self._pending = "park"
        try:
            self._submit("park", self._do_park)
        except DeviceError:
            self._pending = None
            raise

    def unpark(self) -> None:
        self._submit("unpark", lambda: self._call("Unpark", self.dev.Unpark))

    def set_tracking(self, on: bool) -> None:
        self._submit("set_tracking", lambda: self._call(
            f"Tracking = {str(bool(on)).lower()}", lambda: setattr(self.dev, "Tracking", bool(on))))


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _precess(ra_deg: float, dec_deg: float, when, *, to_date: bool) -> tuple[float, float]:
    import astropy.units as u
    from astropy.coordinates import FK5, SkyCoord
    from astropy.time import Time

    now = FK5(equinox=Time(when))
    if to_date:
        c = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs").transform_to(now)
    else:
        c = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame=now).transform_to("icrs")
    return float(c.ra.deg) % 360.0, float(c.dec.deg)
