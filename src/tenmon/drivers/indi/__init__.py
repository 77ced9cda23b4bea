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
