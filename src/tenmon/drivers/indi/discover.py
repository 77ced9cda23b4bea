"""``discover_indi(host, port)``: the devices an indiserver serves, their kinds, and config lines that use them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tenmon.drivers.indi.connection import IndiConnection, Vector

__all__ = ["IndiDeviceInfo", "KIND_SECTIONS", "discover_indi"]

#: INDI's DRIVER_INTERFACE bits (libindi basedevice.h) -> tenmon's kind
_INTERFACE_BITS = ((1, "mount"), (2, "camera"), (8, "focuser"), (16, "filter_wheel"),
                   (32, "dome"), (128, "weather"))
#: a property that tells the kind when a driver does not publish DRIVER_INFO
_PROPERTY_KINDS = (("EQUATORIAL_EOD_COORD", "mount"), ("CCD_EXPOSURE", "camera"),
                   ("ABS_FOCUS_POSITION", "focuser"), ("FILTER_SLOT", "filter_wheel"),
                   ("DOME_MOTION", "dome"), ("WEATHER_STATUS", "weather"))
#: tenmon's site-file section for each kind it drives through INDI
KIND_SECTIONS = {"camera": "camera", "mount": "mount", "focuser": "focuser",
                 "filter_wheel": "filter_wheel", "weather": "weather"}


@dataclass(frozen=True)
class IndiDeviceInfo:
    """One device of an indiserver. ``kinds``: what it is (a CCD with a built-in wheel is
    ``camera`` and ``filter_wheel``); ``driver``: its executable; ``connected``: whether its
    CONNECTION is on now."""

    host: str
    port: int
    name: str
    kinds: tuple[str, ...]
    driver: str | None
    interface: int | None
    connected: bool

    def config_lines(self) -> list[str]:
        """Site-file sections that would use this device, one per kind tenmon drives."""
        out = []
        for kind in self.kinds:
            section = KIND_SECTIONS.get(kind)
            if section is None:
                continue
            out.append(f'[{section}]\ntype = "indi"\nhost = "{self.host}"\nport = {self.port}\n'
                       f'device = "{self.name}"')
        return out

    def to_json(self) -> dict:
        return {"source": "indi", "host": self.host, "port": self.port, "device": self.name,
                "kinds": list(self.kinds), "driver": self.driver, "interface": self.interface,
                "connected": self.connected, "config": self.config_lines()}


def _kinds(vectors: dict[str, Vector]) -> tuple[tuple[str, ...], int | None, str | None]:
    info = vectors.get("DRIVER_INFO")
    iface: int | None = None
    driver = None
    if info is not None:
        driver = info.values.get("DRIVER_EXEC") or None
        try:
            iface = int(float(info.values.get("DRIVER_INTERFACE", "")))
        except ValueError:
            iface = None
    kinds: list[str] = []
    if iface is not None:
        kinds = [k for bit, k in _INTERFACE_BITS if iface & bit]
    for prop, kind in _PROPERTY_KINDS:
        if prop in vectors and kind not in kinds:
            kinds.append(kind)
    return tuple(kinds), iface, driver


def discover_indi(host: str = "127.0.0.1", port: int = 7624, *, timeout_s: float = 5.0,
                  settle_s: float = 0.5) -> list[IndiDeviceInfo]:
    """List the devices of the indiserver at ``host:port`` (blocks at most ``timeout_s``).

    Waits until the server has defined its devices (nothing new for ``settle_s``). Devices are
    not connected or changed. Raises DeviceNotFound naming ``host:port`` when nothing answers.
    """
    conn = IndiConnection(host, port, name=f"indiserver {host}:{port}")
    conn.start(timeout_s)
    try:
        deadline = time.monotonic() + timeout_s
        # settled: no new device or property for settle_s (values keep changing: a tracking
        # mount's position, a weather station's readings)
        last: set = set()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            v = {(d, p) for d, props in conn.devices().items() for p in props}
            now = time.monotonic()
            if v != last:
                last, quiet_since = v, now
            elif conn.devices() and now - quiet_since >= settle_s:
                break
            time.sleep(0.05)
        found = conn.devices()
    finally:
        conn.stop()
    out = []
    for name in sorted(found):
        vectors = found[name]
        kinds, iface, driver = _kinds(vectors)
        link = vectors.get("CONNECTION")
        out.append(IndiDeviceInfo(host, int(port), name, kinds, driver, iface,
                                  link is not None and "CONNECT" in link.on()))
    return out
