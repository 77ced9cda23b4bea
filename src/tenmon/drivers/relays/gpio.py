"""Relays on Raspberry Pi GPIO pins through gpiozero: one ``OutputDevice`` per channel.

Wiring: ``pins[i]`` (BCM numbering) drives channel ``i + 1``. ``active_high = false`` suits the
common opto-isolated relay modules that energize on a low input. Those modules pull their input
up to their own supply, so a released (input, floating) pin leaves the relay off; check that
yours does before trusting a stop of the daemon to release the motors.

gpiozero's lgpio pins claim an output at low level and then set the requested level, so on an
active-low board ``connect()`` puts a low pulse of some tens of microseconds on each pin: far
shorter than a relay's operate time (5-10 ms), so no contact closes.

The pin factory is gpiozero's: ``lgpio`` on a Pi (the ``pi`` extra), ``MockFactory`` in tests
(``GPIOZERO_PIN_FACTORY=mock``, or pass ``pin_factory=``). If no factory loads, :meth:`connect`
raises ``DeviceNotFound`` naming the problem.
"""

from __future__ import annotations

import logging

import gpiozero
from gpiozero import OutputDevice

from tenmon.core.clock import Clock
from tenmon.config.models import GpioRelayConfig
from tenmon.drivers.gpio_inputs import resolve_pin_factory
from tenmon.drivers.relays.base import RelayBankBase
from tenmon.core.errors import DeviceNotFound

__all__ = ["GpioRelayBank"]

log = logging.getLogger(__name__)


class GpioRelayBank(RelayBankBase):
    """GPIO relay channels (interlocks and limits from :class:`RelayBankBase`).

    Args:
        name: the bank's name in the config.
        config: its :class:`~tenmon.config.models.GpioRelayConfig` (pins, active_high, limits).
        clock: the injected clock.
        pin_factory: a gpiozero pin factory; ``None`` uses gpiozero's default.
    """

    _board_errors = (gpiozero.GPIOZeroError, OSError)
    _link_powered = False  # a GPIO failure says nothing about the relay module's supply

    def __init__(self, name: str, config: GpioRelayConfig, clock: Clock, *,
                 pin_factory: gpiozero.Factory | None = None, **kwargs):
        super().__init__(name, config, clock, **kwargs)
        self.pins = list(config.pins)
        self.active_high = config.active_high
        self._pin_factory = pin_factory
        self._devices: list[OutputDevice] = []

    def _open(self) -> None:
        self._close()
        factory = resolve_pin_factory(self.device, self._pin_factory)
        devices: list[OutputDevice] = []
        try:
            for pin in self.pins:
                devices.append(OutputDevice(pin, active_high=self.active_high,
                                            initial_value=False, pin_factory=factory))
        except (gpiozero.GPIOZeroError, OSError) as exc:
            for dev in devices:
                dev.close()
            raise DeviceNotFound(self.device, f"cannot drive GPIO pin {self.pins[len(devices)]}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        self._devices = devices

    def _close(self) -> None:
        devices, self._devices = self._devices, []
        for dev in devices:
            try:
                dev.close()
            except Exception as exc:  # noqa: BLE001 - releasing a pin must never raise
                log.debug("%s: closing %r: %s", self.device, dev, exc)

    def _write(self, channel: int, on: bool) -> None:
        if not self._devices:
            raise gpiozero.GPIODeviceClosed(f"{self.device}: GPIO pins are not open")
        dev = self._devices[channel - 1]
        if on:
            dev.on()
        else:
            dev.off()
