"""A wire-level fake serial port for driver tests, reachable through ``serial.serial_for_url``.

A :class:`FakeWire` is the device at the far end of the cable: it records every byte the driver
writes, stamped with the injected clock's monotonic time, can answer with scripted bytes, and can
be unplugged and plugged back like a USB-serial adapter:

* unplugged, every write / ``in_waiting`` on an open port raises ``serial.SerialException``
  (as Linux does once the tty vanishes: EIO), and opening the URL fails;
* plugged back, ports opened *before* the unplug stay dead (their file descriptor is gone), and a
  new ``serial_for_url`` opens again.

Usage::

    wire = FakeWire.register("fake://relay", clock)   # a fresh wire for this URL
    port = serial.serial_for_url("fake://relay", baudrate=9600)
    port.write(b"\\xa0\\x01\\x01\\xa2")
    wire.chunks          # [(t, b"\\xa0\\x01\\x01\\xa2")]

The URL scheme ``fake://`` is registered with pyserial's ``protocol_handler_packages`` on import
(a small in-memory package), so drivers open it exactly as they open ``/dev/ttyUSB0``.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import serial


@dataclass
class WireEvent:
    """One thing that happened on the wire: ``kind`` is ``write``, ``unplug`` or ``replug``."""

    t: float
    kind: str
    data: bytes = b""


@dataclass
class FakeWire:
    """The far end of a fake serial cable (see the module docstring)."""

    clock: object
    reply: Callable[[bytes], bytes] | None = None
    events: list[WireEvent] = field(default_factory=list)
    plugged: bool = True
    stalled: bool = False  # writes time out (a wedged USB link) while the cable stays in
    generation: int = 0
    opens: int = 0
    settings: dict = field(default_factory=dict)
    _inbox: bytearray = field(default_factory=bytearray)

    _registry: ClassVar[dict[str, FakeWire]] = {}

    @classmethod
    def register(cls, url: str, clock, reply: Callable[[bytes], bytes] | None = None) -> FakeWire:
        """Attach a fresh wire to ``url`` (``fake://<name>``) and return it."""
        wire = cls(clock=clock, reply=reply)
        cls._registry[url] = wire
        return wire

    @classmethod
    def lookup(cls, url: str) -> FakeWire | None:
        return cls._registry.get(url)

    # -------------------------------------------------------------- what the tests look at

    @property
    def chunks(self) -> list[tuple[float, bytes]]:
        """Every write, as ``(monotonic time, bytes)``, in order."""
        return [(e.t, e.data) for e in self.events if e.kind == "write"]

    @property
    def written(self) -> bytes:
        """Every byte ever written, concatenated."""
        return b"".join(d for _, d in self.chunks)

    def unplug(self) -> None:
        """Pull the cable: open ports die, opening fails until :meth:`replug`."""
        self.plugged = False
        self.generation += 1
        self.events.append(WireEvent(self.clock.monotonic(), "unplug"))

    def replug(self) -> None:
        """Plug the cable back; the device powers up again (no-op if it is plugged in)."""
        if self.plugged:
            return
        self.plugged = True
        self.events.append(WireEvent(self.clock.monotonic(), "replug"))

    def feed(self, data: bytes) -> None:
        """Queue bytes for the driver to read."""
        self._inbox.extend(data)


class FakeSerial(serial.SerialBase):
    """pyserial port class for ``fake://`` URLs (pyserial instantiates it via serial_for_url)."""

    def open(self) -> None:
        if self._port is None:
            raise serial.SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise serial.SerialException("Port is already open.")
        wire = FakeWire.lookup(self._port)
        if wire is None or not wire.plugged:
            raise serial.SerialException(
                f"[Errno 2] could not open port {self._port}: No such file or directory")
        self._wire = wire
        self._generation = wire.generation
        wire.opens += 1
        wire.settings = {"baudrate": self._baudrate, "bytesize": self._bytesize,
                         "parity": self._parity, "stopbits": self._stopbits,
                         "write_timeout": self._write_timeout, "exclusive": self._exclusive}
        self.is_open = True

    def _reconfigure_port(self, force_update: bool = False) -> None:
        pass

    def close(self) -> None:
        self.is_open = False

    def _alive(self) -> FakeWire:
        if not self.is_open:
            raise serial.PortNotOpenError()
        wire = self._wire
        if not wire.plugged or wire.generation != self._generation:
            raise serial.SerialException("write failed: [Errno 5] Input/output error")
        return wire

    def write(self, data) -> int:
        wire = self._alive()
        if wire.stalled:
            raise serial.SerialTimeoutException("Write timeout")
        data = bytes(data)
        wire.events.append(WireEvent(wire.clock.monotonic(), "write", data))
        if wire.reply is not None:
            wire.feed(wire.reply(data))
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self._alive()._inbox)

    def read(self, size: int = 1) -> bytes:
        wire = self._alive()
        out = bytes(wire._inbox[:size])
        del wire._inbox[:size]
        return out

    def reset_input_buffer(self) -> None:
        self._alive()._inbox.clear()

    def reset_output_buffer(self) -> None:
        self._alive()

    def flush(self) -> None:
        self._alive()


def _register_url_handler() -> None:
    """Make ``serial_for_url('fake://...')`` find :class:`FakeSerial`."""
    package = "tenmon_test_serial_handlers"
    if package not in sys.modules:
        pkg = types.ModuleType(package)
        pkg.__path__ = []  # a namespace for importlib
        sys.modules[package] = pkg
        mod = types.ModuleType(f"{package}.protocol_fake")
        mod.Serial = FakeSerial
        sys.modules[mod.__name__] = mod
    if package not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(package)


_register_url_handler()
