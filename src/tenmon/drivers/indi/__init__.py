"""INDI backends (issue 14): camera, mount, focuser, filter wheel and weather through an indiserver.

Each device talks to its indiserver through indipyclient on its own thread
(:mod:`~tenmon.drivers.indi.connection`), so the control loop only ever reads a cache;
``discover_indi(host, port)`` lists a server's devices and their kinds (docs/devices_indi.md).
"""

from tenmon.drivers.indi.camera import IndiCamera, write_indi_frame
from tenmon.drivers.indi.connection import IndiConnection
from tenmon.drivers.indi.discover import IndiDeviceInfo, discover_indi
from tenmon.drivers.indi.focuser import IndiFilterWheel, IndiFocuser
from tenmon.drivers.indi.mount import IndiMount
from tenmon.drivers.indi.weather import IndiWeather

__all__ = ["IndiCamera", "IndiConnection", "IndiDeviceInfo", "IndiFilterWheel", "IndiFocuser",
           "IndiMount", "IndiWeather", "discover_indi", "write_indi_frame"]


def make_indi_device(kind: str, config, clock, **kwargs):
    """Build the INDI backend for ``kind`` (``camera``, ``mount``, ``focuser``, ``filter_wheel``,
    ``weather``) from its ``type = "indi"`` config section; not connected yet (``connect()``
    raises DeviceNotFound naming the server). ``kwargs`` go to the class: ``frames_dir`` (camera,
    required), ``pointing``/``site``/``focus``/``writer`` (camera), ``latitude_deg``/
    ``longitude_deg``/``elevation_m`` (mount). Raises ConfigError for an unknown kind."""
    from tenmon.errors import ConfigError

    classes = {"camera": IndiCamera, "mount": IndiMount, "focuser": IndiFocuser,
               "filter_wheel": IndiFilterWheel, "weather": IndiWeather}
    cls = classes.get(kind)
    if cls is None:
        raise ConfigError(f"no INDI backend for {kind!r}",
                          [(f"{kind}.type", None, "INDI drives " + ", ".join(classes))])
    if kind == "camera":
        frames_dir = kwargs.pop("frames_dir")
        return cls(config, clock, frames_dir, **kwargs)
    return cls(config, clock, **kwargs)


__all__.append("make_indi_device")
