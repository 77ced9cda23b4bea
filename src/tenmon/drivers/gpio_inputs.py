"""GPIO inputs through gpiozero: the rain sensor (a ``WeatherSensor``), the cover's limit switches.

Both use gpiozero's ``DigitalInputDevice`` (BCM numbering) and its pin factory: ``lgpio`` on a
Pi (the ``pi`` extra), ``MockFactory`` in tests. If no pin factory loads, or the pin is taken,
they raise ``DeviceNotFound`` naming the pin, never falling back to a simulator.

Rain sensor wiring must fail safe: an open circuit (cut cable, pulled plug, dead sensor) reads
wet. The pin floats to its pull, so that holds when ``wet_when_high == pull_up``; the config
refuses any other wiring unless a heartbeat tells a lost sensor. Two fail-safe wirings:

* a normally-closed contact (a sensor's relay contact that is closed only while the sensor is
  powered and dry) between ``pin`` and ground, ``pull_up = true``, ``wet_when_high = true``:
  dry closes the contact (low); rain, a cut cable or a dead sensor open it (high: wet);
* a comparator module that pulls its output low when wet (FC-37 / YL-83 type), with the Pi's
  pull-down: ``pull_up = false``, ``wet_when_high = false``: a cut signal wire floats low (wet).

Heartbeat (optional, ``heartbeat_pin``): a pin the sensor toggles while alive (``heartbeat =
"toggle"``; no edge for ``heartbeat_timeout_s`` = lost) or a "sensor OK" line (``"ok-high"`` /
``"ok-low"``; not OK for ``heartbeat_timeout_s`` = lost). With a heartbeat the reading's time is
the last sign of life, so staleness is judged from when the sensor last really reported; the
reading says so with ``stale_after_s = heartbeat_timeout_s``. Without one, every sample of the
(fail-safe) level is a report. docs/install.md draws both wirings.

Limit switch wiring: normally-open switches, made at the end of travel. With ``pull_up = true``
a switch connects its pin to ground; with ``false`` to 3V3.
"""

from __future__ import annotations

import logging

import gpiozero
from gpiozero import DigitalInputDevice

from tenmon.core.clock import Clock
from tenmon.config.models import CoverLimitSwitches, GpioRainConfig
from tenmon.drivers.base import WeatherReading
from tenmon.core.errors import DeviceError, DeviceNotFound

__all__ = ["GpioRainSensor", "LimitSwitchConflict", "LimitSwitches", "resolve_pin_factory"]

log = logging.getLogger(__name__)

_GPIO_ERRORS = (gpiozero.GPIOZeroError, OSError)


class LimitSwitchConflict(DeviceError):
    """Both limit switches of the cover say "here" at once: wiring or switch fault."""


def resolve_pin_factory(device: str, pin_factory: gpiozero.Factory | None) -> gpiozero.Factory:
    """``pin_factory``, or gpiozero's default one, loaded now.

    Raises:
        DeviceNotFound: no pin factory loads (not a Pi, lgpio missing, no access to gpiochip).
    """
    if pin_factory is not None:
        return pin_factory
    try:
        gpiozero.Device.ensure_pin_factory()
    except Exception as exc:  # noqa: BLE001 - factories raise their own types (lgpio.error ...)
        raise DeviceNotFound(device, f"no GPIO pin factory loads ({type(exc).__name__}: {exc}); "
                             "on a Raspberry Pi install lgpio (the 'pi' extra), elsewhere set "
                             "GPIOZERO_PIN_FACTORY=mock for a test") from exc
    return gpiozero.Device.pin_factory


def _input(device: str, pin: int, pull_up: bool, pin_factory) -> DigitalInputDevice:
    factory = resolve_pin_factory(device, pin_factory)
    try:
        return DigitalInputDevice(pin, pull_up=pull_up, pin_factory=factory)
    except _GPIO_ERRORS as exc:
        raise DeviceNotFound(device, f"cannot read GPIO pin {pin}: {type(exc).__name__}: "
                             f"{exc}") from exc


class GpioRainSensor:
    """A rain sensor's digital output on a GPIO pin, as a ``WeatherSensor`` (rain only).

    ``update()`` samples the pin and makes a new reading. Wet is reported from the first wet
    sample (fail safe); dry only once the input has read dry for ``bounce_s`` seconds without a
    break, so a flickering sensor reads wet. (gpiozero's own ``bounce_time`` filters edge
    callbacks, not polled values, so the debounce is done here.)

    The reading's time is when the sensor last really reported: the sample's time without a
    heartbeat; with one, the last heartbeat edge (``toggle``, counted by gpiozero's edge
    callbacks so that pulses shorter than a tick are seen) or the last sample with the OK line
    active. ``error`` says "heartbeat lost" once that is older than ``heartbeat_timeout_s``.

    Args:
        config: the ``[weather]`` section, :class:`~tenmon.config.models.GpioRainConfig`.
        clock: the injected clock.
        pin_factory: a gpiozero pin factory; ``None`` uses gpiozero's default.
        device: the name errors carry.
    """

    def __init__(self, config: GpioRainConfig, clock: Clock, *,
                 pin_factory: gpiozero.Factory | None = None, device: str = "weather"):
        self.config = config
        self.device = device
        self._clock = clock
        self._pin_factory = pin_factory
        self._input: DigitalInputDevice | None = None
        self._beat: DigitalInputDevice | None = None
        self._reading: WeatherReading | None = None
        self._raining = False
        self._dry_since: float | None = None
        self._edges = 0           # heartbeat edges counted by gpiozero's callback thread
        self._edges_seen = 0
        self._alive_at = None     # (monotonic, utc) of the last sign of life
        self.error: str | None = None

    @property
    def connected(self) -> bool:
        return self._input is not None

    def connect(self) -> None:
        """Claim the pin.

        Raises:
            DeviceNotFound: no GPIO pin factory loads, or the pin cannot be used.
        """
        self.disconnect()
        cfg = self.config
        self._input = _input(self.device, cfg.pin, cfg.pull_up, self._pin_factory)
        if cfg.heartbeat_pin is not None:
            try:
                self._beat = _input(self.device, cfg.heartbeat_pin, cfg.heartbeat_pull_up,
                                    self._pin_factory)
            except DeviceNotFound:
                self.disconnect()
                raise
            if cfg.heartbeat == "toggle":
                self._beat.when_activated = self._edge
                self._beat.when_deactivated = self._edge
        # no sign of life yet: the first reading waits for one (a heartbeat sensor), so a dead
        # sensor never reads dry, not even at start-up
        self._alive_at = None
        self._edges = self._edges_seen = 0
        self.error = None

    def _edge(self) -> None:
        # gpiozero's callback thread: count only (an int increment); the loop thread stamps it
        self._edges += 1

    def disconnect(self) -> None:
        """Release the pins. Never raises."""
        for attr in ("_beat", "_input"):
            dev = getattr(self, attr)
            setattr(self, attr, None)
            if dev is not None:
                try:
                    dev.close()
                except Exception as exc:  # noqa: BLE001 - releasing a pin must never raise
                    log.debug("%s: closing %r: %s", self.device, dev, exc)

    def update(self) -> None:
        """Sample the pin and make a new reading (non-blocking). Never raises for a device
        fault: the reading then goes stale and ``error`` says why."""
        if self._input is None:
            self.error = "not connected"
            return
        cfg = self.config
        try:
            high = bool(self._input.pin.state)
            beat_high = bool(self._beat.pin.state) if self._beat is not None else None
        except _GPIO_ERRORS as exc:
            self.error = f"reading GPIO pin {cfg.pin}: {exc}"
            log.warning("%s: %s", self.device, self.error)
            return
        now = self._clock.monotonic()
        wet = high == cfg.wet_when_high
        if wet:
            self._raining = True
            self._dry_since = None
        elif self._raining:
            if self._dry_since is None:
                self._dry_since = now
            if now - self._dry_since >= cfg.bounce_s:
                self._raining = False
        if self._beat is None:
            self.error = None
            self._reading = WeatherReading(time=self._clock.now(), rain=self._raining)
            return
        if cfg.heartbeat == "toggle":
            edges = self._edges
            alive = edges != self._edges_seen
            self._edges_seen = edges
        else:
            alive = beat_high == (cfg.heartbeat == "ok-high")
        if alive:
            self._alive_at = (now, self._clock.now())
        if self._alive_at is None:
            self.error = "no heartbeat yet"
            return
        since = now - self._alive_at[0]
        if since > cfg.heartbeat_timeout_s:
            sign = "edge" if cfg.heartbeat == "toggle" else "OK level"
            self.error = (f"heartbeat lost: no {sign} on GPIO pin {cfg.heartbeat_pin} for "
                          f"{since:.0f} s")
        else:
            self.error = None
        # stamped with the last sign of life: the safety decision judges its age
        self._reading = WeatherReading(time=self._alive_at[1], rain=self._raining,
                                       stale_after_s=cfg.heartbeat_timeout_s)

    def reading(self) -> WeatherReading | None:
        """The latest reading, ``None`` before the first successful ``update()``."""
        return self._reading


class LimitSwitches:
    """The mirror cover's end-of-travel switches (claims both pins when built).

    Args:
        config: the cover's :class:`~tenmon.config.models.CoverLimitSwitches`.
        pin_factory: a gpiozero pin factory; ``None`` uses gpiozero's default.
        device: the name errors carry.

    Raises:
        DeviceNotFound: no GPIO pin factory loads, or a pin cannot be used.
    """

    def __init__(self, config: CoverLimitSwitches, *,
                 pin_factory: gpiozero.Factory | None = None,
                 device: str = "cover.limit_switches"):
        self.config = config
        self.device = device
        self._open = _input(device, config.open_pin, config.pull_up, pin_factory)
        try:
            self._closed = _input(device, config.closed_pin, config.pull_up, pin_factory)
        except DeviceNotFound:
            self._open.close()
            raise

    def _read(self) -> tuple[bool, bool]:
        try:
            at_open, at_closed = bool(self._open.is_active), bool(self._closed.is_active)
        except (*_GPIO_ERRORS,) as exc:
            raise DeviceError(self.device, f"cannot read the limit switches: {exc}") from exc
        if at_open and at_closed:
            raise LimitSwitchConflict(
                self.device, f"both limit switches are made at once (open pin "
                f"{self.config.open_pin}, closed pin {self.config.closed_pin}): a shorted or "
                "miswired switch; the cover position is unknown")
        return at_open, at_closed

    def is_open(self) -> bool:
        """True when the fully-open switch is made.

        Raises:
            LimitSwitchConflict: both switches are made.
            DeviceError: the pins cannot be read (released, GPIO failure).
        """
        return self._read()[0]

    def is_closed(self) -> bool:
        """True when the fully-closed switch is made.

        Raises:
            LimitSwitchConflict: both switches are made.
            DeviceError: the pins cannot be read (released, GPIO failure).
        """
        return self._read()[1]

    def disconnect(self) -> None:
        """Release both pins. Never raises."""
        for dev in (self._open, self._closed):
            try:
                dev.close()
            except Exception as exc:  # noqa: BLE001 - releasing a pin must never raise
                log.debug("%s: closing %r: %s", self.device, dev, exc)
