"""Simulated devices: views of the simulated world behind the same interfaces as real hardware."""

from __future__ import annotations

import random
from datetime import datetime

from tenmon.core.clock import Clock
from tenmon.config.models import SimulatedEncoderConfig, SimulatedMountConfig, SlitConfig
from tenmon.drivers.base import MountState, SlitReading, WeatherReading
from tenmon.drivers.sim.world import SimWorld
from tenmon.core.errors import DeviceDisconnected, DeviceError


def slit_state_of(fraction: float, cfg: SlitConfig) -> str:
    """Static slit state from an open fraction, with the configured thresholds."""
    if fraction >= cfg.open_threshold:
        return "open"
    if fraction <= cfg.closed_threshold:
        return "closed"
    return "partial"


class SimulatedEncoder:
    """Reads the world's dome azimuth and shutter fraction with noise and dropouts.

    Stands where the IR camera + slit detector stands at a site. ``encoder-dropout`` (a fault) and
    ``dropout_probability`` (random, seeded) give ``unknown`` readings with zero confidence.
    ``slit-state-hidden`` reads the azimuth and carries the opening last seen, with its age in
    ``details["state_age_s"]``, as the optical encoder's tracker does when the telescope hides
    the part of the slit that tells its state.
    """

    def __init__(self, config: SimulatedEncoderConfig, slit: SlitConfig, world: SimWorld,
                 clock: Clock, seed: int = 0):
        self.config = config
        self.slit = slit
        self.world = world
        self.clock = clock
        self.rng = random.Random(seed * 104729 + 3)
        self._reading = SlitReading.unknown(clock.now())
        self._next = 0.0
        self._told: tuple[datetime, float] | None = None  # when the state was last seen, and the fraction

    def connect(self) -> None:
        self._next = self.clock.monotonic()
        self.update()

    def disconnect(self) -> None:
        pass

    def update(self) -> None:
        t = self.clock.monotonic()
        if t < self._next:
            return
        self._next = t + 1.0 / self.config.rate_hz
        now = self.clock.now()
        st = self.world.state
        if self.world.has_fault("encoder-dropout") or (
                self.config.dropout_probability and self.rng.random() < self.config.dropout_probability):
            self._reading = SlitReading.unknown(now)
            return
        az = (st.dome_az_deg + self.rng.gauss(0.0, self.config.azimuth_noise_deg)) % 360.0
        frac = min(1.0, max(0.0, st.slit_fraction + self.rng.gauss(0.0, self.config.fraction_noise)))
        details = {}
        if self.world.has_fault("slit-state-hidden") and self._told is not None:
            details["state_age_s"] = (now - self._told[0]).total_seconds()
            frac = self._told[1]
        else:
            self._told = (now, frac)
        self._reading = SlitReading(time=now, azimuth_deg=az, open_fraction=frac,
                                    state=slit_state_of(frac, self.slit), confidence=0.95,
                                    details=details)

    def reading(self) -> SlitReading:
        return self._reading


class SimulatedWeather:
    """The world's weather as a station would report it.

    Faults: ``weather-stale`` freezes the reports; ``weather-nan`` reports the wind as NaN (a
    sensor fault, which the safety decision must judge unsafe); ``rain-cable-cut`` reads wet
    whatever the sky does, as a rain sensor wired to fail safe (normally closed) does when its
    cable is cut.
    """

    def __init__(self, world: SimWorld, clock: Clock):
        self.world = world
        self.clock = clock
        self._reading: WeatherReading | None = None

    def connect(self) -> None:
        self.update()

    def disconnect(self) -> None:
        pass

    def update(self) -> None:
        if self.world.has_fault("weather-stale"):
            return
        st = self.world.state
        wind = float("nan") if self.world.has_fault("weather-nan") else st.wind_ms
        rain = True if self.world.has_fault("rain-cable-cut") else st.rain
        self._reading = WeatherReading(time=self.clock.now(), rain=rain, wind_ms=wind,
                                       humidity_pct=st.humidity_pct)

    def reading(self) -> WeatherReading | None:
        return self._reading


class SimulatedLimitSwitches:
    """The cover's end switches, read from the world's cover position."""

    def __init__(self, world: SimWorld):
        self.world = world

    def is_open(self) -> bool:
        return self.world.state.cover_fraction >= 0.999

    def is_closed(self) -> bool:
        return self.world.state.cover_fraction <= 0.001

    def close(self) -> None:
        pass


class SimulatedMount:
    """A mount that slews at a fixed rate and carries the world's pointing-error model.

    It reports the mount's own idea of its position; ``SimWorld.true_pointing()`` is where it
    really points (the simulated CCD renders that). ``mount-disconnect`` makes it behave as a
    lost serial link: commands raise :class:`DeviceDisconnected`, ``update`` sets ERROR.
    """

    name = "mount"

    def __init__(self, config: SimulatedMountConfig, world: SimWorld, clock: Clock):
        self.config = config
        self.world = world
        self.clock = clock
        self._error: str | None = None
        self._slew_started: float | None = None
        self._connected = False

    def _link(self) -> None:
        if self.world.has_fault("mount-disconnect"):
            self._error = "serial link lost (simulated)"
            raise DeviceDisconnected("mount", "no reply: serial link lost")

    def connect(self) -> None:
        self._link()
        self._connected = True
        self._error = None

    def disconnect(self) -> None:
        self._connected = False

    def update(self) -> None:
        if self.world.has_fault("mount-disconnect"):
            self._error = "serial link lost (simulated)"
            return
        if self._error == "serial link lost (simulated)":
            self._error = None
        if self.world.mount_slewing and self._slew_started is not None:
            if self.clock.monotonic() - self._slew_started > self.config.slew_timeout_s:
                self.world.mount_abort()
                self._error = f"slew did not finish within {self.config.slew_timeout_s:g} s"
        if not self.world.mount_slewing:
            self._slew_started = None

    @property
    def state(self) -> MountState:
        if self._error:
            return MountState.ERROR
        st = self.world.state
        if st.mount_park_target is not None:
            return MountState.PARKING
        if st.mount_target is not None:
            return MountState.SLEWING
        if st.mount_parked:
            return MountState.PARKED
        return MountState.TRACKING if st.mount_tracking else MountState.IDLE

    @property
    def ra_deg(self) -> float | None:
        return None if self._error else self.world.mount_ra_deg

    @property
    def dec_deg(self) -> float | None:
        return None if self._error else self.world.state.mount_dec_deg

    @property
    def tracking(self) -> bool:
        return self.world.state.mount_tracking

    @property
    def position_age_s(self) -> float | None:
        """The position is the world's own: always current (``None`` while the link is lost)."""
        return None if self._error else 0.0

    @property
    def error(self) -> str | None:
        return self._error

    def goto(self, ra_deg: float, dec_deg: float) -> None:
        self._link()
        if not -90.0 <= dec_deg <= 90.0:
            raise DeviceError("mount", f"declination {dec_deg} is outside -90..90")
        from tenmon.core.astro import radec_to_altaz

        alt, _ = radec_to_altaz(ra_deg, dec_deg, self.world.lst(), self.world.site.latitude_deg)
        if alt < 0:
            raise DeviceError("mount", f"target below the horizon (altitude {alt:.1f} deg)")
        self._error = None
        self.world.mount_goto(ra_deg, dec_deg)
        self._slew_started = self.clock.monotonic()

    def sync(self, ra_deg: float, dec_deg: float) -> None:
        self._link()
        self.world.mount_sync(ra_deg, dec_deg)

    def abort(self) -> None:
        self._link()
        self.world.mount_abort()

    def park(self) -> None:
        self._link()
        self._error = None
        self.world.mount_park()
        self._slew_started = self.clock.monotonic()

    def unpark(self) -> None:
        self._link()
        self.world.state.mount_parked = False

    def set_tracking(self, on: bool) -> None:
        self._link()
        if self.world.state.mount_parked and on:
            raise DeviceError("mount", "parked: unpark before tracking")
        self.world.state.mount_tracking = on
