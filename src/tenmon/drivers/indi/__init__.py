"""INDI backends (issue 14): camera, mount, focuser, filter wheel and weather through an indiserver.

Each device talks to its indiserver through indipyclient on its own thread
(:mod:`~tenmon.drivers.indi.connection`); ``discover_indi(host, port)`` lists a server's devices.
"""

from tenmon.drivers.indi.camera import IndiCamera
from tenmon.drivers.indi.connection import IndiConnection

__all__ = ["IndiCamera", "IndiConnection"]
