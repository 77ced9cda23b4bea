"""What every INDI device shares: its connection, connecting the INDI device, property access, faults.

A device owns one :class:`~tenmon.drivers.indi.connection.IndiConnection` (its own thread and
socket: a camera's BLOBs never delay a mount's position, and one device's fault stays its own).
``connect()`` blocks (bounded by ``connect_timeout_s``): server there, device defined, the
device's ``CONNECTION`` switched on, the properties this kind needs defined. Everything after
that reads the cache and never blocks. Faults are sticky: ``error`` holds the message until a
verb or ``connect()`` succeeds.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from tenmon.core.clock import Clock
from tenmon.drivers.indi.connection import IndiConnection, Vector
from tenmon.core.errors import DeviceDisconnected, DeviceError, DeviceNotFound

__all__ = ["IndiDevice"]

log = logging.getLogger(__name__)


class IndiDevice:
    """Base of the INDI backends. ``required`` lists the properties ``connect()`` waits for."""

    required: tuple[str, ...] = ()
    blobs = False

    def __init__(self, config: Any, clock: Clock, *, name: str):
        self.config = config
        self.clock = clock
        self.name = name
        self.device = config.device
        self._error: str | None = None
        self.conn = IndiConnection(config.host, config.port, name=name,
                                   blob_devices=(config.device,) if self.blobs else (),
                                   on_blob=self._on_blob if self.blobs else None)
        self._losses_seen = 0

    # ------------------------------------------------------------------ life cycle

    @property
    def address(self) -> str:
        return self.conn.address

    @property
    def error(self) -> str | None:
        return self._error

    def connect(self) -> None:
        """Reach the server, connect the INDI device, wait for its properties (bounded).

        Raises DeviceNotFound naming ``host:port`` and the device: no server there, no such
        device on it (the devices it has are listed), or the device would not connect.
        """
        t = self.config.connect_timeout_s
        self.conn.start(t)
        conn, dev = self.conn, self.device
        if not conn.wait(lambda: conn.vector(dev, "CONNECTION") is not None, t):
            have = sorted(conn.devices())
            self.conn.stop()
            raise DeviceNotFound(self.name, f"indiserver {self.address} has no device {dev!r}"
                                 f" (it has: {', '.join(have) or 'none'})")
        link = conn.vector(dev, "CONNECTION")
        if link is not None and "CONNECT" not in link.on():
            conn.send_switch(dev, "CONNECTION", "CONNECT")
        ok = conn.wait(lambda: self._device_connected()
                       and all(conn.vector(dev, p) is not None for p in self.required), t)
        if not ok:
            missing = [p for p in self.required if conn.vector(dev, p) is None]
            why = (f"lacks {', '.join(missing)} (is it a {self.name}?)"
                   if self._device_connected() else
                   f"did not connect ({self._last_message() or 'no message from the driver'})")
            self.conn.stop()
            raise DeviceNotFound(self.name, f"{dev!r} on {self.address} {why}")
        self._losses_seen = conn.losses
        self._error = None
        self._after_connect()
        log.info("%s: INDI %r on %s connected", self.name, dev, self.address)

    def _after_connect(self) -> None:
        """Settings sent once connected (subclasses)."""

    def disconnect(self) -> None:
        """Close the link; the INDI device itself stays connected (and never moves). Never raises."""
        try:
            self.conn.stop()
        except Exception:  # noqa: BLE001 - disconnect never raises
            log.exception("%s: closing the INDI link", self.name)

    # ------------------------------------------------------------------ helpers

    def _device_connected(self) -> bool:
        v = self.conn.vector(self.device, "CONNECTION")
        return v is not None and "CONNECT" in v.on() and v.state != "Alert"

    def _last_message(self) -> str:
        msgs = self.conn.messages(self.device)
        return msgs[-1] if msgs else ""

    def link_problem(self) -> str | None:
        """Why the device cannot be used now (server lost, device disconnected), or ``None``."""
        if not self.conn.running:
            return f"not connected to indiserver {self.address}"
        if not self.conn.connected or self.conn.losses != self._losses_seen:
            return f"indiserver {self.address} lost (connection closed)"
        if not self._device_connected():
            return f"INDI device {self.device!r} on {self.address} disconnected"
        return None

    def vec(self, name: str) -> Vector | None:
        return self.conn.vector(self.device, name)

    def num(self, vector: str, member: str) -> float:
        v = self.vec(vector)
        return math.nan if v is None else v.number(member)

    def _require_link(self) -> None:
        why = self.link_problem()
        if why is not None:
            raise DeviceDisconnected(self.name, why)

    def _send_number(self, vector: str, members: dict[str, float]) -> None:
        self._require_link()
        self.conn.send_number(self.device, vector, members)

    def _send_switch(self, vector: str, on: str | list[str], off: list[str] | None = None
                     ) -> None:
        self._require_link()
        self.conn.send_switch(self.device, vector, on, off)

    def _fail(self, message: str) -> None:
        if self._error != message:
            log.error("%s: %s", self.name, message)
        self._error = message

    def _refuse(self, message: str) -> DeviceError:
        return DeviceError(self.name, message)

    def _on_blob(self, device: str, vector: str, member: str, data: bytes, fmt: str) -> None:
        """A BLOB arrived (the connection's thread). Cameras override."""
