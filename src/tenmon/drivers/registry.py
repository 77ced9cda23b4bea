"""Every device driver tenmon has, by config section and ``type``: the one registry.

A device section of the site file (``[relays.<name>]``, ``[dome]``, ``[mount]``, ...) names its
driver with ``type``; this table says which class (or builder) that is. The factories resolve
through it (``drivers.relays.make_relay_bank``, ``drivers.mount.make_mount``, the site and
simulated builds in ``daemon/compose.py``), and ``daemon/device_factory.py`` takes its network
backends from :data:`BACKENDS`. A test checks that every ``type`` the config models accept has an
entry here.

================  ===============  ==========================================================
kind              type             driver
================  ===============  ==========================================================
relays            lcus-serial      ``drivers.relays.lcus.LcusRelayBank`` (pyserial)
relays            gpio             ``drivers.relays.gpio.GpioRelayBank`` (gpiozero)
relays            usb-hid          ``drivers.relays.hid.HidRelayBank`` (hidapi)
relays            simulated        ``drivers.sim.relays.SimulatedRelayBank``
dome              relay            ``drivers.dome.RelayDome``
slit              relay            ``drivers.slit.RelaySlit``
cover             relay            ``drivers.cover.RelayCover``
mount             lx200            ``drivers.mount.lx200.Lx200Mount`` (pyserial)
mount             simulated        ``drivers.sim.devices.SimulatedMount``
encoder           ir-camera        ``drivers.ir_encoder.IrCameraEncoder``
encoder           simulated        ``drivers.sim.devices.SimulatedEncoder``
encoder           simulated-ir     ``drivers.sim.ir_camera.simulated_ir_encoder`` (a builder)
weather           gpio-rain        ``drivers.gpio_inputs.GpioRainSensor`` (gpiozero)
weather           simulated        ``drivers.sim.devices.SimulatedWeather``
ccd               directory        ``drivers.ccd_directory.FrameDirectory`` (frames a CCD
                                   program writes)
ccd               simulated        ``drivers.sim.ccd.SimulatedCcd``
mount, weather,   alpaca, indi     the network backend's builder (:data:`BACKENDS`,
ccd, focuser,                      :data:`NETWORK_BUILDERS`), e.g. ``drivers.alpaca.make_mount``
filter_wheel
================  ===============  ==========================================================

Drivers are imported when asked for (:meth:`Driver.load`), not here: most need a library only a
site has (pyserial, gpiozero, hidapi, alpyca, indipyclient). A driver that cannot be imported is
a :class:`~tenmon.core.errors.DeviceNotFound` naming the module, never a silent simulator.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from tenmon.core.errors import ConfigError, DeviceNotFound

#: Network backends: ``type`` -> the package implementing every network device kind.
BACKENDS: dict[str, str] = {"alpaca": "tenmon.drivers.alpaca", "indi": "tenmon.drivers.indi"}

#: Device kind -> the builder each network backend package offers for it.
NETWORK_BUILDERS: dict[str, str] = {"mount": "make_mount", "weather": "make_weather",
                                    "ccd": "make_camera", "focuser": "make_focuser",
                                    "filter_wheel": "make_filter_wheel"}


@dataclass(frozen=True)
class Driver:
    """One entry: the section ``kind``, its ``type`` and the driver as ``module:attribute``.

    ``simulated``: the driver is a view of the simulated world (needs ``mode = "simulated"``);
    ``network``: a builder of a network backend (``alpaca``, ``indi``).
    """

    kind: str
    type: str
    target: str
    simulated: bool = False
    network: bool = False

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def load(self) -> Any:
        """The driver class (or builder).

        Raises:
            DeviceNotFound: its module (or a library it needs) cannot be imported here.
        """
        module, _, attr = self.target.partition(":")
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise DeviceNotFound(self.kind, f"type = {self.type!r} needs {module}, which cannot "
                                 f"be imported here ({exc})") from None
        found = getattr(mod, attr, None)
        if found is None:
            raise DeviceNotFound(self.kind, f"type = {self.type!r}: {module} has no {attr}")
        return found


_LOCAL: tuple[Driver, ...] = (
    Driver("relays", "lcus-serial", "tenmon.drivers.relays.lcus:LcusRelayBank"),
    Driver("relays", "gpio", "tenmon.drivers.relays.gpio:GpioRelayBank"),
    Driver("relays", "usb-hid", "tenmon.drivers.relays.hid:HidRelayBank"),
    Driver("relays", "simulated", "tenmon.drivers.sim.relays:SimulatedRelayBank", simulated=True),
    Driver("dome", "relay", "tenmon.drivers.dome:RelayDome"),
    Driver("slit", "relay", "tenmon.drivers.slit:RelaySlit"),
    Driver("cover", "relay", "tenmon.drivers.cover:RelayCover"),
    Driver("mount", "lx200", "tenmon.drivers.mount.lx200:Lx200Mount"),
    Driver("mount", "simulated", "tenmon.drivers.sim.devices:SimulatedMount", simulated=True),
    Driver("encoder", "ir-camera", "tenmon.drivers.ir_encoder:IrCameraEncoder"),
    Driver("encoder", "simulated", "tenmon.drivers.sim.devices:SimulatedEncoder", simulated=True),
    Driver("encoder", "simulated-ir", "tenmon.drivers.sim.ir_camera:simulated_ir_encoder",
           simulated=True),
    Driver("weather", "gpio-rain", "tenmon.drivers.gpio_inputs:GpioRainSensor"),
    Driver("weather", "simulated", "tenmon.drivers.sim.devices:SimulatedWeather", simulated=True),
    Driver("ccd", "directory", "tenmon.drivers.ccd_directory:FrameDirectory"),
    Driver("ccd", "simulated", "tenmon.drivers.sim.ccd:SimulatedCcd", simulated=True),
)

#: (kind, type) -> driver, for every device tenmon can build.
DRIVERS: dict[tuple[str, str], Driver] = {
    **{(d.kind, d.type): d for d in _LOCAL},
    **{(kind, t): Driver(kind, t, f"{package}:{builder}", network=True)
       for t, package in BACKENDS.items() for kind, builder in NETWORK_BUILDERS.items()},
}


def types(kind: str) -> tuple[str, ...]:
    """The ``type`` values the registry knows for ``kind``, in table order."""
    return tuple(t for k, t in DRIVERS if k == kind)


def driver(kind: str, type_: str | None) -> Driver:
    """The entry for ``[kind]``'s ``type``.

    Raises:
        ConfigError: no driver of that type for that kind (the message lists the known types).
    """
    found = DRIVERS.get((kind, str(type_)))
    if found is None:
        known = ", ".join(types(kind)) or "none"
        raise ConfigError(f"{kind}: no driver for type {type_!r} (known types: {known})",
                          [(f"{kind}.type", None, f"unknown: {type_!r}")])
    return found


def load(kind: str, type_: str | None) -> Any:
    """The driver class (or builder) of ``[kind]``'s ``type``.

    Raises:
        ConfigError: an unknown type for this kind.
        DeviceNotFound: the driver's module cannot be imported here.
    """
    return driver(kind, type_).load()


__all__ = ["BACKENDS", "DRIVERS", "Driver", "NETWORK_BUILDERS", "driver", "load", "types"]
