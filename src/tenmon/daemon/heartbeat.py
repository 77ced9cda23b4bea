"""The heartbeat output for an external dead-man relay: a GPIO pin the control loop toggles.

The control loop calls :meth:`Heartbeat.beat` after every tick that completed; the pin changes
level every ``[heartbeat] period_s`` while that goes on. An external retriggerable timer (a
watchdog relay module, or a retriggerable monostable driving a relay) holds its contact while
edges keep coming and releases it when they stop for longer than its timeout, closing the slit
by itself (docs/install.md shows the wiring). The pulses stop when:

* the daemon is gone (crash, SIGKILL, a hung Pi, power to the Pi lost, the service stopped):
  nothing toggles the pin any more;
* the control loop hangs: the pin is toggled from the loop's own thread, never from a timer
  thread of its own, so a tick that does not return stops the pulses;
* (``stop_when_close_fails``, on by default) the supervisor has given up verifying the safe state
  ("SAFE STATE NOT REACHED" after its retries): then the external relay gets its chance, e.g.
  when the relay board that drives the close motor is dead. Pulses resume once the safe state is
  reached.

The pin is a gpiozero ``DigitalOutputDevice`` (BCM numbering): ``lgpio`` on a Pi, ``MockFactory``
in tests (``GPIOZERO_PIN_FACTORY=mock``) and in simulated mode.
"""

from __future__ import annotations

import logging
from typing import Any

import gpiozero

from tenmon.core.clock import Clock
from tenmon.config.models import HeartbeatConfig
from tenmon.drivers.gpio_inputs import resolve_pin_factory
from tenmon.core.errors import DeviceNotFound

log = logging.getLogger(__name__)

DEVICE = "heartbeat"


class Heartbeat:
    """Toggles ``config.pin`` every ``config.period_s`` while :meth:`beat` is called healthy.

    Args:
        config: the ``[heartbeat]`` section.
        clock: its ``monotonic()`` paces the toggles (the daemon passes the real clock: the
            external relay counts wall seconds, also in a simulated run at x10).
        pin_factory: a gpiozero pin factory; ``None`` uses gpiozero's default.
    """

    def __init__(self, config: HeartbeatConfig, clock: Clock, *,
                 pin_factory: gpiozero.Factory | None = None):
        self.config = config
        self.clock = clock
        self._factory = pin_factory
        self._device: gpiozero.DigitalOutputDevice | None = None
        self._last: float | None = None
        self.toggles = 0
        self.holding: str | None = None  # why the pulses are held, when they are

    def open(self) -> None:
        """Claim the pin (at its idle level).

        Raises:
            DeviceNotFound: no pin factory, or the pin cannot be driven (names the pin).
        """
        factory = resolve_pin_factory(DEVICE, self._factory)
        try:
            self._device = gpiozero.DigitalOutputDevice(
                self.config.pin, active_high=self.config.active_high, initial_value=False,
                pin_factory=factory)
        except (gpiozero.GPIOZeroError, OSError) as exc:
            raise DeviceNotFound(DEVICE, f"cannot drive GPIO pin {self.config.pin}: "
                                 f"{type(exc).__name__}: {exc}") from exc

    def beat(self, healthy: bool = True, why_not: str = "") -> None:
        """Called by the control loop after each completed tick: toggle the pin when a period has
        passed. ``healthy=False`` holds the pulses (``why_not`` says why, for status).
        Never raises: a pin that fails to toggle stops the pulses, which is the safe outcome."""
        if self._device is None:
            return
        if not healthy:
            if self.holding is None:
                log.warning("heartbeat held on GPIO %d: %s", self.config.pin, why_not)
            self.holding = why_not or "held"
            return
        if self.holding is not None:
            log.info("heartbeat resumed on GPIO %d", self.config.pin)
            self.holding = None
        now = self.clock.monotonic()
        if self._last is not None and now - self._last < self.config.period_s:
            return
        try:
            self._device.toggle()
        except Exception as exc:  # noqa: BLE001 - a dead pin must not stop the control loop
            log.error("heartbeat: cannot toggle GPIO %d: %s", self.config.pin, exc)
            return
        self._last = now
        self.toggles += 1

    def close(self) -> None:
        """Release the pin (the pulses stop)."""
        device, self._device = self._device, None
        if device is not None:
            try:
                device.off()
                device.close()
            except Exception as exc:  # noqa: BLE001 - releasing a pin must never raise
                log.debug("heartbeat: closing GPIO %d: %s", self.config.pin, exc)

    def status(self) -> dict[str, Any]:
        return {"pin": self.config.pin, "period_s": self.config.period_s,
                "pulsing": self._device is not None and self.holding is None,
                "held": self.holding, "toggles": self.toggles}


def close_failed(obs) -> str | None:
    """Why the heartbeat should hold when the safe state cannot be reached, else ``None``:
    the supervisor is closing and has raised its "SAFE STATE NOT REACHED" alarm."""
    sup = obs.supervisor
    if getattr(sup, "closing", False) and getattr(sup, "alarmed", False):
        return "safe state not reached: the external relay may close the slit"
    return None


def open_heartbeat(config: HeartbeatConfig, clock: Clock, *, simulated: bool) -> Heartbeat:
    """The daemon's heartbeat: gpiozero's default pins at a site, mock pins in simulated mode.

    Raises:
        DeviceNotFound: see :meth:`Heartbeat.open`.
    """
    factory = None
    if simulated:
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
    hb = Heartbeat(config, clock, pin_factory=factory)
    hb.open()
    return hb
