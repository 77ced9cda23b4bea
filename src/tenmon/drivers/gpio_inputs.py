"""GPIO inputs through gpiozero: the rain sensor (a ``WeatherSensor``), the cover's limit switches.

Both use gpiozero's ``DigitalInputDevice`` (BCM numbering) and its pin factory: ``lgpio`` on a
Pi (the ``pi`` extra), ``MockFactory`` in tests. If no pin factory loads, or the pin is taken,
they raise ``DeviceNotFound`` naming the pin, never falling back to a simulator.

Rain sensor wiring: the sensor's digital output to ``pin``. The common comparator modules
(FC-37 / YL-83 type) pull their output low when wet: ``wet_when_high = false`` (the default).
``pull_up`` enables the Pi's internal pull-up (``false``: pull-down).

Limit switch wiring: normally-open switches, made at the end of travel. With ``pull_up = true``
a switch connects its pin to ground; with ``false`` to 3V3.
"""

from __future__ import annotations

import logging

import gpiozero
from gpiozero import DigitalInputDevice

from tenmon.clock import Clock
from tenmon.config.models import CoverLimitSwitches, GpioRainConfig
from tenmon.drivers.base import WeatherReading
from tenmon.errors import DeviceError, DeviceNotFound

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

    ``update()`` samples the pin and makes a new reading stamped with the clock's time. Wet is
    reported from the first wet sample (fail safe); dry only once the input has read dry for
    ``bounce_s`` seconds without a break, so a flickering sensor reads wet. (gpiozero's own
    ``bounce_time`` filters edge callbacks, not polled values, so the debounce is done here.)

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
        self._reading: WeatherReading | None = None
        self._raining = False
        self._dry_since: float | None = None
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
        self._input = _input(self.device, self.config.pin, self.config.pull_up,
                             self._pin_factory)
        self.error = None

    def disconnect(self) -> None:
        """Release the pin. Never raises."""
        dev, self._input = self._input, None
        if dev is not None:
            try:
                dev.close()
            except Exception as exc:  # noqa: BLE001 - releasing a pin must never raise
                log.debug("%s: closing pin %d: %s", self.device, self.config.pin, exc)

    def update(self) -> None:
        """Sample the pin and make a new reading (non-blocking). Never raises for a device
        fault: the reading then goes stale and ``error`` says why."""
        if self._input is None:
            self.error = "not connected"
            return
        try:
            high = bool(self._input.pin.state)
        except _GPIO_ERRORS as exc:
            self.error = f"reading GPIO pin {self.config.pin}: {exc}"
            log.warning("%s: %s", self.device, self.error)
            return
        now = self._clock.monotonic()
        wet = high == self.config.wet_when_high
        if wet:
            self._raining = True
            self._dry_since = None
        elif self._raining:
            if self._dry_since is None:
                self._dry_since = now
            if now - self._dry_since >= self.config.bounce_s:
                self._raining = False
        self.error = None
        self._reading = WeatherReading(time=self._clock.now(), rain=self._raining)

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
