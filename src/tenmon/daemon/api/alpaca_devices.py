"""The four ASCOM Alpaca devices tenmon serves, as views of the :class:`Observatory`.

Dome (IDomeV3: the dome's rotation and the slit as its shutter), CoverCalibrator
(ICoverCalibratorV2: the mirror cover, no calibrator), SafetyMonitor (ISafetyMonitorV3: the
supervisor's verdict) and ObservingConditions (IObservingConditionsV2: the site's weather
readings). Every member of each interface is here: ``get_<member>`` answers a GET and
``put_<member>(ctx)`` a PUT (``daemon.alpaca`` routes them). A member the hardware cannot do
raises :class:`AlpacaError` with NotImplemented (0x400).

Commands go through the observatory's own methods (``obs.slit_open``, ``obs.dome_goto``...),
so the safety rules are the HTTP API's: an open while unsafe, in an emergency stop, while the
supervisor is closing or during the reopen hold-off is refused (InvalidOperation, 0x40B, with
the observatory's reason); a close is always taken. Everything here runs on the event loop's
thread, between control ticks, and returns at once.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from tenmon import __version__
from tenmon.core.errors import CommandRefused
from tenmon.core.timefmt import utc_iso
from tenmon.daemon.observatory import Observatory
from tenmon.drivers.base import DomeState, ShutterState

log = logging.getLogger(__name__)

# The standard's error numbers (Alpaca API reference, "ASCOM error numbers").
NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
VALUE_NOT_SET = 0x402
NOT_CONNECTED = 0x407
PARKED = 0x408
SLAVED = 0x409
INVALID_OPERATION = 0x40B
ACTION_NOT_IMPLEMENTED = 0x40C
DRIVER_ERROR = 0x500


class AlpacaError(Exception):
    """An ASCOM error answered as HTTP 200 with ``ErrorNumber``/``ErrorMessage``."""

    def __init__(self, number: int, message: str):
        super().__init__(message)
        self.number = number
        self.message = message


class BadRequest(Exception):
    """The request cannot be interpreted (a missing or unparseable parameter, an unknown
    device or member): HTTP 400 with a plain-text message, as the standard says."""


def refused(exc: CommandRefused) -> AlpacaError:
    """The observatory's refusal as an ASCOM error: a value out of range is InvalidValue, a
    device failure a driver error (0x500), every other refusal (unsafe, emergency, closing,
    hold-off, shutting down, actuator fault) InvalidOperation with the observatory's reason."""
    if exc.code == "bad_request":
        return AlpacaError(INVALID_VALUE, str(exc))
    if exc.code == "device_error":
        return AlpacaError(DRIVER_ERROR, str(exc))
    return AlpacaError(INVALID_OPERATION, str(exc))


def not_implemented(what: str) -> AlpacaError:
    return AlpacaError(NOT_IMPLEMENTED, f"{what} is not implemented by this device")


class Call:
    """One request's parameters, looked up case-insensitively (the standard's rule)."""

    def __init__(self, params: dict[str, str], client: tuple[str, int]):
        self.params = {k.lower(): v for k, v in params.items()}
        self.client = client

    def text(self, name: str) -> str:
        value = self.params.get(name.lower())
        if value is None:
            raise BadRequest(f"missing parameter {name}")
        return value

    def number(self, name: str) -> float:
        text = self.text(name)
        try:
            value = float(text)
        except ValueError:
            raise BadRequest(f"parameter {name}={text[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise AlpacaError(INVALID_VALUE, f"{name}={text[:40]} is not a finite number")
        return value

    def boolean(self, name: str) -> bool:
        text = self.text(name).strip().lower()
        if text not in ("true", "false"):
            raise BadRequest(f"parameter {name}={self.text(name)[:40]!r} is not True or False")
        return text == "true"


#: Members every device answers without being connected (the rest say NotConnected).
NO_CONNECTION_NEEDED = frozenset({
    "connected", "connect", "disconnect", "connecting", "description", "driverinfo",
    "driverversion", "interfaceversion", "name", "supportedactions", "action", "commandblind",
    "commandbool", "commandstring"})
#: PUT members that any client may send (they move nothing): the rest need the command rules.
OPEN_PUTS = frozenset({"connected", "connect", "disconnect"})


class AlpacaDevice:
    """Members common to every device (``ICommon``), and the per-client connection state.

    Connection is kept per client (its address and ClientID): one client's Disconnect does not
    disconnect another, and neither touches hardware (the daemon keeps controlling the
    observatory whatever Alpaca clients do). At most :data:`MAX_CLIENTS` clients are
    remembered; the oldest is forgotten first.
    """

    device_type = ""
    type_name = ""
    interface_version = 1
    MAX_CLIENTS = 1000

    def __init__(self, obs: Observatory, number: int, unique_id: str):
        self.obs = obs
        self.number = number
        self.unique_id = unique_id
        self._connected: dict[tuple[str, int], bool] = {}

    # --------------------------------------------------------------- connection

    def connected(self, client: tuple[str, int]) -> bool:
        return self._connected.get(client, False)

    def _set_connected(self, client: tuple[str, int], on: bool) -> None:
        self._connected.pop(client, None)
        if on:
            self._connected[client] = True
            while len(self._connected) > self.MAX_CLIENTS:
                self._connected.pop(next(iter(self._connected)))

    def get_connected(self, c: Call) -> bool:
        return self.connected(c.client)

    def put_connected(self, c: Call) -> None:
        self._set_connected(c.client, c.boolean("Connected"))

    def put_connect(self, c: Call) -> None:
        self._set_connected(c.client, True)  # done at once: Connecting is already false

    def put_disconnect(self, c: Call) -> None:
        self._set_connected(c.client, False)

    def get_connecting(self, c: Call) -> bool:
        return False

    # --------------------------------------------------------------- information

    @property
    def device_name(self) -> str:
        return f"tenmon {self.type_name}"

    def get_name(self, c: Call) -> str:
        return self.device_name

    def get_description(self, c: Call) -> str:
        return f"{self.description} ({self.obs.config.site.name})"[:64]

    description = ""

    def get_driverinfo(self, c: Call) -> str:
        return (f"tenmon {__version__} Alpaca server: {self.type_name} over the tenmon daemon "
                "(safety stays in charge: opens refused while unsafe, closes always taken)")

    def get_driverversion(self, c: Call) -> str:
        parts = (__version__.split(".") + ["0"])[:2]
        return ".".join(p if p.isdigit() else "0" for p in parts)

    def get_interfaceversion(self, c: Call) -> int:
        return self.interface_version

    def get_supportedactions(self, c: Call) -> list[str]:
        return []

    def put_action(self, c: Call) -> None:
        raise not_implemented("Action (no device-specific actions)")

    def put_commandblind(self, c: Call) -> None:
        raise not_implemented("CommandBlind")

    def put_commandbool(self, c: Call) -> None:
        raise not_implemented("CommandBool")

    def put_commandstring(self, c: Call) -> None:
        raise not_implemented("CommandString")

    # --------------------------------------------------------------- DeviceState

    def state_items(self) -> list[tuple[str, Any]]:
        """The operational properties of DeviceState (those that would raise are left out)."""
        return []

    def get_devicestate(self, c: Call) -> list[dict[str, Any]]:
        items = self.state_items()
        items.append(("TimeStamp", utc_iso(self.obs.clock.now())))
        return [{"Name": k, "Value": v} for k, v in items]

    # --------------------------------------------------------------- helpers

    def tick(self) -> None:
        """Called after every control tick (slaving); nothing by default."""

    def _do(self, fn, *args) -> None:
        try:
            fn(*args)
        except CommandRefused as exc:
            raise refused(exc) from None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ============================================================================ Dome


class AlpacaDome(AlpacaDevice):
    """IDomeV3 over the dome's rotation and the slit (the shutter).

    Altitude, SetPark, SlewToAltitude and SyncToAzimuth are not implemented: the slit has no
    altitude control, the park azimuth is ``[dome] park_azimuth_deg``, and the azimuth is the
    optical encoder's absolute reading (nothing to synchronise). Slaving follows the mount
    with ``[dome_geometry]`` (the sequencer's geometry) through ``obs.dome_goto``.
    AbortSlew stops the rotation (and slaving); it never stops a closing shutter.
    """

    device_type = "dome"
    type_name = "Dome"
    interface_version = 3
    description = "60 cm dome: rotation and slit"
    #: Slaving re-checks the dome's target this often (simulated or real seconds).
    SLAVE_CHECK_S = 2.0

    def __init__(self, obs: Observatory, number: int, unique_id: str):
        super().__init__(obs, number, unique_id)
        self.slaved = False
        self._slave_now = False
        from tenmon.config.sections import section
        from tenmon.config.services import DomeGeometry
        from tenmon.daemon.slaving import DomeSlaver

        self.geometry = section(obs.config, "dome_geometry", DomeGeometry)
        #: the same slaving as the sequencer's and centring's, following the mount
        self.slaver = DomeSlaver(obs, clock=obs.clock, site=obs.config.site,
                                 geometry=self.geometry, period_s=self.SLAVE_CHECK_S,
                                 name="Alpaca dome slaving")

    # properties
    def get_altitude(self, c: Call) -> float:
        raise not_implemented("Altitude (the slit has no altitude control)")

    def get_athome(self, c: Call) -> bool:
        return bool(self.obs.dome.at_home)

    def get_atpark(self, c: Call) -> bool:
        return bool(self.obs.dome.at_park)

    def get_azimuth(self, c: Call) -> float:
        az = self.obs.dome.azimuth_deg
        if not _finite(az):
            raise AlpacaError(DRIVER_ERROR, "no trusted azimuth: the optical encoder has lost "
                              "the slit (see `tenmon status`)")
        return round(float(az) % 360.0, 3)

    def get_canfindhome(self, c: Call) -> bool:
        return True

    def get_canpark(self, c: Call) -> bool:
        return True

    def get_cansetaltitude(self, c: Call) -> bool:
        return False

    def get_cansetazimuth(self, c: Call) -> bool:
        return True

    def get_cansetpark(self, c: Call) -> bool:
        return False

    def get_cansetshutter(self, c: Call) -> bool:
        return True

    def get_canslave(self, c: Call) -> bool:
        return True

    def get_cansyncazimuth(self, c: Call) -> bool:
        return False

    def shutter_status(self) -> int:
        obs = self.obs
        if obs.watch.fault_of("slit") is not None or obs.watch.relay_device_moving("slit"):
            return 4  # moving with nothing commanded: an actuator fault
        return obs.slit.state.ascom

    def get_shutterstatus(self, c: Call) -> int:
        return self.shutter_status()

    def get_slaved(self, c: Call) -> bool:
        return self.slaved

    def slewing(self) -> bool:
        d, s = self.obs.dome, self.obs.slit
        return bool(d.slewing or d.state in (DomeState.SLEWING, DomeState.COASTING)
                    or s.state in (ShutterState.OPENING, ShutterState.CLOSING))

    def get_slewing(self, c: Call) -> bool:
        return self.slewing()

    # methods
    def put_slaved(self, c: Call) -> None:
        on = c.boolean("Slaved")
        if on and not self.slaved:
            self.obs.emit("info", "alpaca", "dome slaved to the mount (Alpaca)")
            self._slave_now = True
        elif not on and self.slaved:
            self.obs.emit("info", "alpaca", "dome slaving off (Alpaca)")
        self.slaved = on

    def put_abortslew(self, c: Call) -> None:
        self.slaved = False
        self._do(self.obs.dome_abort)

    def put_closeshutter(self, c: Call) -> None:
        self._do(self.obs.slit_close)

    def put_openshutter(self, c: Call) -> None:
        self._do(self.obs.slit_open)

    def _not_slaved(self, what: str) -> None:
        if self.slaved:
            raise AlpacaError(INVALID_OPERATION, f"{what} refused: the dome is slaved to the "
                              "telescope (set Slaved false first)")

    def put_findhome(self, c: Call) -> None:
        self._not_slaved("FindHome")
        self._do(self.obs.dome_home)

    def put_park(self, c: Call) -> None:
        self._not_slaved("Park")
        self._do(self.obs.dome_park)

    def put_setpark(self, c: Call) -> None:
        raise not_implemented("SetPark (the park azimuth is [dome] park_azimuth_deg in the "
                              "site file)")

    def put_slewtoaltitude(self, c: Call) -> None:
        raise not_implemented("SlewToAltitude (the slit has no altitude control)")

    def put_slewtoazimuth(self, c: Call) -> None:
        az = c.number("Azimuth")
        if not 0.0 <= az < 360.0:
            raise AlpacaError(INVALID_VALUE, f"Azimuth {az:g} is outside 0 to 360 degrees")
        self._not_slaved("SlewToAzimuth")
        self._do(self.obs.dome_goto, az)

    def put_synctoazimuth(self, c: Call) -> None:
        raise not_implemented("SyncToAzimuth (the optical encoder reads the absolute azimuth)")

    def state_items(self) -> list[tuple[str, Any]]:
        d = self.obs.dome
        items: list[tuple[str, Any]] = [("AtHome", bool(d.at_home)), ("AtPark", bool(d.at_park))]
        if _finite(d.azimuth_deg):
            items.append(("Azimuth", round(float(d.azimuth_deg) % 360.0, 3)))
        items += [("ShutterStatus", self.shutter_status()), ("Slewing", self.slewing())]
        return items

    # slaving
    def tick(self) -> None:
        if not self.slaved:
            return
        ra, dec = self.obs.mount.ra_deg, self.obs.mount.dec_deg
        if not (_finite(ra) and _finite(dec)):
            return
        now, self._slave_now = self._slave_now, False
        self.slaver.slave(ra, dec, self.obs.clock.monotonic(), now=now)


# ============================================================================ CoverCalibrator


#: The cover's states as ASCOM CoverStatus numbers (0 NotPresent, 1 Closed, 2 Moving, 3 Open,
#: 4 Unknown, 5 Error). Partly open (stopped half-way) is Unknown.
COVER_STATUS = {ShutterState.CLOSED: 1, ShutterState.OPENING: 2, ShutterState.CLOSING: 2,
                ShutterState.OPEN: 3, ShutterState.PARTIAL: 4, ShutterState.UNKNOWN: 4,
                ShutterState.ERROR: 5}


class AlpacaCover(AlpacaDevice):
    """ICoverCalibratorV2 over the mirror cover; no calibrator (CalibratorState NotPresent).

    HaltCover stops an opening cover; a closing one is never halted (a close is never
    delayed): that is refused with InvalidOperation.
    """

    device_type = "covercalibrator"
    type_name = "CoverCalibrator"
    interface_version = 2
    description = "60 cm telescope mirror cover"

    def cover_status(self) -> int:
        obs = self.obs
        if obs.watch.fault_of("cover") is not None or obs.watch.relay_device_moving("cover"):
            return 5
        return COVER_STATUS.get(obs.cover.state, 4)

    def get_brightness(self, c: Call) -> int:
        raise not_implemented("Brightness (no calibrator)")

    def get_maxbrightness(self, c: Call) -> int:
        raise not_implemented("MaxBrightness (no calibrator)")

    def get_calibratorstate(self, c: Call) -> int:
        return 0  # NotPresent

    def get_calibratorchanging(self, c: Call) -> bool:
        return False

    def get_coverstate(self, c: Call) -> int:
        return self.cover_status()

    def get_covermoving(self, c: Call) -> bool:
        return self.obs.cover.state in (ShutterState.OPENING, ShutterState.CLOSING)

    def put_calibratoron(self, c: Call) -> None:
        raise not_implemented("CalibratorOn (no calibrator)")

    def put_calibratoroff(self, c: Call) -> None:
        raise not_implemented("CalibratorOff (no calibrator)")

    def put_opencover(self, c: Call) -> None:
        self._do(self.obs.cover_open)

    def put_closecover(self, c: Call) -> None:
        self._do(self.obs.cover_close)

    def put_haltcover(self, c: Call) -> None:
        self._do(self.obs.cover_halt)

    def state_items(self) -> list[tuple[str, Any]]:
        return [("CalibratorChanging", False), ("CalibratorState", 0),
                ("CoverMoving", self.get_covermoving(None)),  # type: ignore[arg-type]
                ("CoverState", self.cover_status())]


# ============================================================================ SafetyMonitor


class AlpacaSafety(AlpacaDevice):
    """ISafetyMonitorV3: ``IsSafe`` is the supervisor's verdict (weather, sun, sensors, faults,
    emergency stop); false while the client is not connected, as the standard asks."""

    device_type = "safetymonitor"
    type_name = "SafetyMonitor"
    interface_version = 3
    description = "tenmon safety supervisor's verdict"

    def is_safe(self) -> bool:
        return bool(self.obs.verdict.safe) and not self.obs.emergency

    def get_issafe(self, c: Call) -> bool:
        return self.connected(c.client) and self.is_safe()

    def state_items(self) -> list[tuple[str, Any]]:
        return [("IsSafe", self.is_safe())]


# ============================================================================ ObservingConditions


#: ObservingConditions sensors: ASCOM name -> (the WeatherReading field, description).
SENSORS: dict[str, tuple[str, str]] = {
    "Humidity": ("humidity_pct", "relative humidity, %"),
    "RainRate": ("rain", "rain detector (wet or dry, not a gauge): 0 when dry, 1.0 when wet"),
    "WindSpeed": ("wind_ms", "wind speed, m/s"),
}
#: Every sensor the interface names (those tenmon has no reading of are NotImplemented).
ALL_SENSORS = ("CloudCover", "DewPoint", "Humidity", "Pressure", "RainRate", "SkyBrightness",
               "SkyQuality", "SkyTemperature", "StarFWHM", "Temperature", "WindDirection",
               "WindGust", "WindSpeed")
#: What each kind of weather sensor measures (by ``[weather] type``).
MEASURED_BY_TYPE = {"gpio-rain": ("RainRate",), "simulated": ("Humidity", "RainRate",
                                                              "WindSpeed")}


class AlpacaWeather(AlpacaDevice):
    """IObservingConditionsV2 over the site's weather sensor: what it measures, the rest
    NotImplemented. Values are the sensor's latest report; ``TimeSinceLastUpdate`` is the age of
    that report (when the sensor really reported, not when the daemon last looked), so a
    sensor that stopped reporting shows it. AveragePeriod is 0 (instantaneous) only."""

    device_type = "observingconditions"
    type_name = "ObservingConditions"
    interface_version = 2
    description = "observatory weather sensors"

    def measured(self) -> tuple[str, ...]:
        kind = getattr(self.obs.config.weather, "type", "")
        if kind in MEASURED_BY_TYPE:
            return MEASURED_BY_TYPE[kind]
        w = self.obs.weather.reading()
        return tuple(n for n, (f, _) in SENSORS.items() if w is not None
                     and getattr(w, f, None) is not None)

    def _sensor(self, name: str) -> str:
        """The standard spelling of a sensor name given in any case; InvalidValue if unknown."""
        for n in ALL_SENSORS:
            if n.lower() == name.strip().lower():
                return n
        raise AlpacaError(INVALID_VALUE, f"no sensor named {name[:40]!r} in ObservingConditions "
                          "(" + ", ".join(ALL_SENSORS) + ")")

    def value(self, name: str) -> float:
        if name not in self.measured():
            raise not_implemented(f"{name} (the site has no such sensor)")
        w = self.obs.weather.reading()
        if w is None:
            raise AlpacaError(VALUE_NOT_SET, f"{name}: no weather reading yet")
        raw = getattr(w, SENSORS[name][0])
        if name == "RainRate":
            if raw is None:
                raise AlpacaError(DRIVER_ERROR, "RainRate: the rain sensor's last report has "
                                  "no value")
            return 1.0 if raw else 0.0
        if not _finite(raw):
            raise AlpacaError(DRIVER_ERROR, f"{name}: the sensor reports an invalid value "
                              f"({raw!r}); the safety supervisor treats it as unsafe")
        return round(float(raw), 3)

    def age_s(self) -> float:
        w = self.obs.weather.reading()
        if w is None:
            raise AlpacaError(VALUE_NOT_SET, "no weather reading yet")
        return round(max(0.0, (self.obs.clock.now() - w.time).total_seconds()), 3)

    def get_averageperiod(self, c: Call) -> float:
        return 0.0

    def put_averageperiod(self, c: Call) -> None:
        hours = c.number("AveragePeriod")
        if hours < 0:
            raise AlpacaError(INVALID_VALUE, f"AveragePeriod {hours:g} h is negative")
        if hours != 0:
            raise AlpacaError(INVALID_VALUE, f"AveragePeriod {hours:g} h: only 0 "
                              "(instantaneous readings) is supported")

    def put_refresh(self, c: Call) -> None:
        """Readings are taken every control tick already: nothing to do."""

    def get_sensordescription(self, c: Call) -> str:
        name = self._sensor(c.text("SensorName"))
        if name not in self.measured():
            raise not_implemented(f"{name} (the site has no such sensor)")
        kind = getattr(self.obs.config.weather, "type", "weather")
        return f"{SENSORS[name][1]} ({kind} sensor)"

    def get_timesincelastupdate(self, c: Call) -> float:
        name = c.params.get("sensorname", "")
        if name.strip():
            sensor = self._sensor(name)
            if sensor not in self.measured():
                raise not_implemented(f"{sensor} (the site has no such sensor)")
        return self.age_s()

    def state_items(self) -> list[tuple[str, Any]]:
        items: list[tuple[str, Any]] = []
        for name in ALL_SENSORS:
            if name in self.measured():
                try:
                    items.append((name, self.value(name)))
                except AlpacaError:
                    pass
        return items


def _sensor_getter(name: str):
    def get(self: AlpacaWeather, c: Call) -> float:
        return self.value(name)
    get.__name__ = f"get_{name.lower()}"
    return get


for _name in ALL_SENSORS:
    setattr(AlpacaWeather, f"get_{_name.lower()}", _sensor_getter(_name))

DEVICE_CLASSES = (AlpacaDome, AlpacaCover, AlpacaSafety, AlpacaWeather)

__all__ = ["AlpacaDevice", "AlpacaDome", "AlpacaCover", "AlpacaSafety", "AlpacaWeather",
           "AlpacaError", "BadRequest", "Call", "DEVICE_CLASSES", "NO_CONNECTION_NEEDED",
           "OPEN_PUTS", "NOT_IMPLEMENTED", "INVALID_VALUE", "VALUE_NOT_SET", "NOT_CONNECTED",
           "INVALID_OPERATION", "DRIVER_ERROR", "refused"]
