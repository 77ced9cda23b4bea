"""INDI backends (issue 14): camera, mount, focuser, filter wheel and weather through an indiserver.

``type = "indi"`` in a device's section builds these (``daemon/device_factory.py``), with the
same five builders as every network backend. Each device talks to its indiserver through
indipyclient on its own thread (:mod:`~tenmon.drivers.indi.connection`), so the control loop only
ever reads a cache; ``discover_indi(host, port)`` lists a server's devices and their kinds
(docs/devices_indi.md). The builders return devices that are not connected yet: ``connect()``
raises DeviceNotFound naming the server (``host:port``) and the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenmon.drivers.indi.camera import IndiCamera
from tenmon.drivers.indi.connection import IndiConnection
from tenmon.drivers.indi.discover import IndiDeviceInfo, discover_indi
from tenmon.drivers.indi.focuser import IndiFilterWheel, IndiFocuser
from tenmon.drivers.indi.mount import IndiMount
from tenmon.drivers.indi.weather import IndiWeather

__all__ = ["IndiCamera", "IndiConnection", "IndiDeviceInfo", "IndiFilterWheel", "IndiFocuser",
           "IndiMount", "IndiWeather", "discover_indi", "make_camera", "make_filter_wheel",
           "make_focuser", "make_mount", "make_weather"]


def make_mount(config, clock, site: Any = None) -> IndiMount:
    """``[mount] type = "indi"``. ``site`` (anything with ``latitude_deg``, ``longitude_deg``,
    ``elevation_m``: the site file's ``[site]``) gives the limits their horizon and is sent to
    the mount at connect; without it the mount's own ``GEOGRAPHIC_COORD`` is used."""
    if site is None:
        return IndiMount(config, clock)
    return IndiMount(config, clock, latitude_deg=site.latitude_deg,
                     longitude_deg=site.longitude_deg,
                     elevation_m=getattr(site, "elevation_m", 0.0) or 0.0)


def make_weather(config, clock) -> IndiWeather:
    """``[weather] type = "indi"``."""
    return IndiWeather(config, clock)


def make_camera(config, settings, frames_dir: Path, clock, header_context) -> IndiCamera:
    """``[ccd] type = "indi"``: frames written into ``frames_dir`` with the header context's
    cards (see ``drivers/camera_fits.py``)."""
    return IndiCamera(config, settings, frames_dir, clock, header_context)


def make_focuser(config, clock) -> IndiFocuser:
    """``[focuser] type = "indi"``."""
    return IndiFocuser(config, clock)


def make_filter_wheel(config, clock) -> IndiFilterWheel:
    """``[filter_wheel] type = "indi"``."""
    return IndiFilterWheel(config, clock)
