"""Relay banks: :func:`make_relay_bank` builds the backend of a config ``type``, resolved through
the drivers registry (:mod:`tenmon.drivers.registry`).

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

from tenmon.core.clock import Clock
from tenmon.config.models import _RelayBankBase
from tenmon.drivers import registry
from tenmon.drivers.relays.base import (
    OnPeriod,
    RelayBankBase,
    RelayEvent,
    RelaySwitch,
    switch_off_all_banks,
)
from tenmon.core.errors import ConfigError, DeviceNotFound

__all__ = [
    "OnPeriod", "RelayBankBase", "RelayEvent", "RelaySwitch", "make_relay_bank",
    "switch_off_all_banks",
]


def make_relay_bank(name: str, config: _RelayBankBase, clock: Clock) -> RelayBankBase:
    """Build (not connect) the relay bank ``[relays.<name>]`` described by ``config``.

    Call ``connect()`` on the result to open the board (all relays off), ``service()`` every
    control tick, and ``disconnect()`` on the way out.

    Raises:
        DeviceNotFound: the backend's library is not installed (the message names the package).
        ConfigError: ``config`` is not a relay-bank config model.
    """
    kind = getattr(config, "type", None)
    if not isinstance(config, _RelayBankBase) or ("relays", kind) not in registry.DRIVERS:
        raise ConfigError(f"relays.{name}: no relay backend for {type(config).__name__} "
                          f"(known types: {', '.join(registry.types('relays'))})",
                          [(f"relays.{name}.type", None, "unknown relay bank type")])
    try:
        cls = registry.load("relays", kind)
    except DeviceNotFound as exc:  # the backend's library is missing: name the bank
        raise DeviceNotFound(f"relays.{name}", exc.detail) from None
    if kind == "usb-hid":
        from tenmon.drivers.relays.hid import import_hidapi

        try:
            module = import_hidapi()
        except ImportError as exc:
            raise DeviceNotFound(
                f"relays.{name}",
                "type 'usb-hid' needs the Python package 'hidapi' (cython-hidapi, import name "
                f"'hid'), which is not usable here ({exc}); install it with: pip install hidapi"
            ) from exc
        return cls(name, config, clock, hid_module=module)
    return cls(name, config, clock)
