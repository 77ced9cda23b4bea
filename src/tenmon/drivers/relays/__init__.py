"""Relay banks: one explicit registry from config type to backend, and :func:`make_relay_bank`.

=================  ==========================================  ================================
config ``type``    backend                                     library
=================  ==========================================  ================================
``lcus-serial``    :class:`.lcus.LcusRelayBank` (CH340 LCUS)   pyserial
``gpio``           :class:`.gpio.GpioRelayBank`                gpiozero (+ lgpio on a Pi)
``usb-hid``        :class:`.hid.HidRelayBank` (dcttech)        hidapi (cython-hidapi), optional
``simulated``      :class:`~tenmon.drivers.sim.relays.SimulatedRelayBank`  none
=================  ==========================================  ================================

Every backend shares :class:`.base.RelayBankBase`, where the interlocks, maximum on-times,
all-off and reconnect logic live. A backend whose library is missing is a ``DeviceNotFound``
naming the package, never a silent simulator.
"""

from __future__ import annotations

from collections.abc import Callable

from tenmon.clock import Clock
from tenmon.config.models import (
    GpioRelayConfig,
    HidRelayConfig,
    LcusSerialRelayConfig,
    SimulatedRelayConfig,
    _RelayBankBase,
)
from tenmon.drivers.relays.base import (
    OnPeriod,
    RelayBankBase,
    RelayEvent,
    RelaySwitch,
    switch_off_all_banks,
)
from tenmon.errors import ConfigError, DeviceNotFound

__all__ = [
    "OnPeriod", "RelayBankBase", "RelayEvent", "RelaySwitch", "make_relay_bank",
    "switch_off_all_banks",
]


def _lcus(name: str, config: LcusSerialRelayConfig, clock: Clock) -> RelayBankBase:
    from tenmon.drivers.relays.lcus import LcusRelayBank

    return LcusRelayBank(name, config, clock)


def _gpio(name: str, config: GpioRelayConfig, clock: Clock) -> RelayBankBase:
    from tenmon.drivers.relays.gpio import GpioRelayBank

    return GpioRelayBank(name, config, clock)


def _hid(name: str, config: HidRelayConfig, clock: Clock) -> RelayBankBase:
    from tenmon.drivers.relays.hid import HidRelayBank, import_hidapi

    try:
        module = import_hidapi()
    except ImportError as exc:
        raise DeviceNotFound(
            f"relays.{name}",
            "type 'usb-hid' needs the Python package 'hidapi' (cython-hidapi, import name 'hid'), "
            f"which is not usable here ({exc}); install it with: pip install hidapi") from exc
    return HidRelayBank(name, config, clock, hid_module=module)


def _simulated(name: str, config: SimulatedRelayConfig, clock: Clock) -> RelayBankBase:
    from tenmon.drivers.sim.relays import SimulatedRelayBank

    return SimulatedRelayBank(name, config, clock)


#: The one registry: config model class -> factory. Adding a backend means adding a line here.
REGISTRY: dict[type[_RelayBankBase], Callable[[str, _RelayBankBase, Clock], RelayBankBase]] = {
    LcusSerialRelayConfig: _lcus,
    GpioRelayConfig: _gpio,
    HidRelayConfig: _hid,
    SimulatedRelayConfig: _simulated,
}


def make_relay_bank(name: str, config: _RelayBankBase, clock: Clock) -> RelayBankBase:
    """Build (not connect) the relay bank ``[relays.<name>]`` described by ``config``.

    Call ``connect()`` on the result to open the board (all relays off), ``service()`` every
    control tick, and ``disconnect()`` on the way out.

    Raises:
        DeviceNotFound: the backend's library is not installed (the message names the package).
        ConfigError: ``config`` is not a relay-bank config model.
    """
    factory = REGISTRY.get(type(config))
    if factory is None:
        raise ConfigError(f"relays.{name}: no relay backend for {type(config).__name__} "
                          f"(known types: lcus-serial, gpio, usb-hid, simulated)",
                          [(f"relays.{name}.type", None, "unknown relay bank type")])
    return factory(name, config, clock)
