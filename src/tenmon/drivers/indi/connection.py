"""One link to an indiserver: indipyclient's asyncio client on its own thread, read through a cache.

The control loop never waits on the wire. indipyclient (pure Python, the INDI protocol's XML
parsing, reconnection and BLOB decoding) runs in an asyncio loop on a daemon thread; every
property it learns or updates is copied, as plain values, into a cache guarded by a lock, and a
condition wakes whoever waits on a change (``connect()`` only: the control loop polls).
Commands (``send_number``, ``send_switch``, ``send_text``) are handed to the loop thread and
return at once.

BLOBs (images) are decoded on the loop thread and handed to ``on_blob`` there; the camera then
writes them on its own writer thread, so neither the wire nor the FITS writing stalls a tick.
The bytes are not kept in the client's property tree (a frame would otherwise stay in memory
until the next one).

indipyclient reconnects by itself (every ~5 s) after the server goes away; the cache is emptied
on a loss (``connected`` false, ``lost_at`` set, ``losses`` counted) and refilled as the server
defines its properties again. Devices built on this see the loss and go to ``error``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenmon.core.errors import DeviceDisconnected, DeviceNotFound

__all__ = ["IndiConnection", "Vector", "indi_float"]

log = logging.getLogger(__name__)
# indipyclient logs every reconnection attempt (every ~5 s while a server is down) as a warning;
# the devices report the loss once, as their error, instead
if logging.getLogger("indipyclient").level == logging.NOTSET:
    logging.getLogger("indipyclient").setLevel(logging.ERROR)


def indi_float(text: Any) -> float:
    """An INDI number (plain or sexagesimal ``"12:30:00"``) as a float; NaN when unreadable."""
    try:
        from indipyclient import getfloat

        return float(getfloat(str(text)))
    except Exception:  # noqa: BLE001 - an unreadable number is NaN, judged by the caller
        return math.nan


@dataclass(frozen=True)
class Vector:
    """A snapshot of one INDI property vector (plain values, safe to read from any thread).

    ``kind`` is ``Switch``, ``Number``, ``Text``, ``Light`` or ``BLOB``; ``state`` is INDI's
    ``Idle``/``Ok``/``Busy``/``Alert``; ``values`` maps member name to its text (``On``/``Off``
    for switches, the number's text for numbers); ``version`` grows with every update;
    ``received`` is the time.monotonic() of the update (wire time, for staleness of a sensor).
    """

    device: str
    name: str
    kind: str
    state: str
    values: dict[str, str]
    perm: str | None = None
    message: str = ""
    version: int = 0
    received: float = 0.0
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)

    def number(self, member: str) -> float:
        """The member as a float; NaN when missing or unreadable."""
        v = self.values.get(member)
        return math.nan if v is None else indi_float(v)

    def on(self) -> list[str]:
        """The members of a switch that are On."""
        return [k for k, v in self.values.items() if v == "On"]


class IndiConnection:
    """A client of one indiserver (``host:port``), on its own thread. Thread-safe.

    ``start()`` checks the server is there (a clear :class:`DeviceNotFound` naming
    ``host:port`` if not) and starts the thread; ``stop()`` ends it. ``blob_devices`` names the
    devices whose BLOBs this connection asks for (``enableBLOB Also``); other devices' BLOBs are
    never sent to it.
    """

    def __init__(self, host: str, port: int, *, name: str = "indi",
                 blob_devices: tuple[str, ...] = (),
                 on_blob: Callable[[str, str, str, bytes, str], None] | None = None):
        self.host = host
        self.port = int(port)
        self.name = name
        self.blob_devices = tuple(blob_devices)
        self.on_blob = on_blob
        self._lock = threading.Condition()
        self._vectors: dict[tuple[str, str], Vector] = {}
        self._messages: list[tuple[str | None, str]] = []
        self._connected = False
        self._version = 0
        self.losses = 0
        self.lost_at: float | None = None
        self.blobs_received = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect (waits at most ``timeout_s`` wall seconds). Raises DeviceNotFound naming
        the server when nothing answers there."""
        if self._thread is not None and self._thread.is_alive():
            return
        try:
            with socket.create_connection((self.host, self.port), timeout=min(timeout_s, 5.0)):
                pass
        except OSError as exc:
            raise DeviceNotFound(self.name, f"no indiserver at {self.address} "
                                 f"({exc.strerror or exc}); is indiserver running there?") from exc
        from indipyclient import IPyClient

        conn = self

        class _Client(IPyClient):
            async def rxevent(self, event):  # runs on the loop thread
                conn._on_event(self, event)

            async def hardware(self):
                # indipyclient 0.9 reads an orderly close (EOF) as "no data yet" and polls it
                # forever: the loss would never be seen. Watch for EOF and close the link, which
                # reports ConnectionLost and lets the client's own reconnection run.
                while not self._stop:
                    await asyncio.sleep(0.1)
                    reader = self._reader
                    if reader is not None and reader.at_eof() and self._writer is not None:
                        log.warning("indiserver %s closed the connection", conn.address)
                        await self._clear_connection()

        client = _Client(indihost=self.host, indiport=self.port)
        client.debug_verbosity(0)
        client.enable_reports = False
        # a long exposure is silent for minutes: indipyclient's own reply timers would drop a
        # healthy link (respond_timeout = 4 x max); liveness is judged by the devices instead
        client.set_vector_timeouts(timeout_enable=False)
        self._client = client
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            ready.set()
            try:
                loop.run_until_complete(client.asyncrun())
            except Exception:  # noqa: BLE001 - the thread reports through the cache
                log.exception("INDI client for %s stopped", self.address)
            finally:
                with self._lock:
                    self._connected = False
                    self._lock.notify_all()
                loop.close()

        self._thread = threading.Thread(target=run, name=f"indi-{self.address}", daemon=True)
        self._thread.start()
        ready.wait(5.0)
        if not self.wait(lambda: self._connected, timeout_s):
            self.stop()
            raise DeviceNotFound(self.name, f"indiserver at {self.address} accepted the "
                                 f"connection but the INDI client did not start in {timeout_s:g} s")

    def stop(self) -> None:
        """End the client thread (bounded wait). Never raises."""
        client, loop, thread = self._client, self._loop, self._thread
        if client is not None:
            client.shutdown()
        if loop is not None and thread is not None and thread.is_alive():
            try:  # close the socket: a read waiting for data would otherwise hold the thread
                asyncio.run_coroutine_threadsafe(client._clear_connection(), loop)
            except RuntimeError:
                pass
        if thread is not None:
            thread.join(timeout=5.0)
        self._thread = None
        with self._lock:
            self._connected = False
            self._vectors.clear()
            self._lock.notify_all()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ reading

    def vector(self, device: str, name: str) -> Vector | None:
        """The latest snapshot of ``device.name``, ``None`` when not (or no longer) defined."""
        with self._lock:
            return self._vectors.get((device, name))

    def devices(self) -> dict[str, dict[str, Vector]]:
        """Every device defined now and its vectors."""
        out: dict[str, dict[str, Vector]] = {}
        with self._lock:
            for (dev, name), v in self._vectors.items():
                out.setdefault(dev, {})[name] = v
        return out

    def messages(self, device: str | None = None) -> list[str]:
        """The last messages the server sent (about ``device``, or all), newest last."""
        with self._lock:
            return [m for d, m in self._messages if device is None or d == device]

    @property
    def version(self) -> int:
        """Grows with every change the cache sees (a cheap "anything new?" for pollers)."""
        return self._version

    def wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (wall time, at most ``timeout_s``) until ``predicate()`` holds; for connect-time
        use only, never from the control loop. Returns whether it held."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                if predicate():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.2))

    # ------------------------------------------------------------------ commands

    def _send(self, device: str, name: str, members: dict[str, Any]) -> None:
        if not self._connected or self._loop is None or self._client is None:
            raise DeviceDisconnected(self.name, f"indiserver {self.address} is not connected")
        v = self.vector(device, name)
        if v is None:
            raise DeviceDisconnected(self.name, f"{device!r} has no property {name} on "
                                     f"{self.address} (device not connected or not that kind)")
        with self._lock:  # the driver answers with the new state; until then it is Busy
            self._version += 1
            values = v.values
            if v.kind == "Switch":  # a switch shows what was asked (numbers keep the measured)
                values = {**v.values, **{k: str(x) for k, x in members.items() if k in values}}
            self._vectors[(device, name)] = Vector(
                v.device, v.name, v.kind, "Busy", values, v.perm, v.message, v.version + 1,
                v.received, v.limits)
        fut = asyncio.run_coroutine_threadsafe(
            self._client.send_newVector(device, name, members=members), self._loop)
        fut.add_done_callback(lambda f: f.exception() and log.warning(
            "INDI send %s.%s to %s failed: %s", device, name, self.address, f.exception()))

    def send_number(self, device: str, name: str, members: dict[str, float]) -> None:
        """Send a new number vector (members not given keep their values). Non-blocking.
        Raises DeviceDisconnected when the server or the property is not there."""
        self._send(device, name, {k: repr(float(v)) for k, v in members.items()})

    def send_switch(self, device: str, name: str, on: str | list[str],
                    off: list[str] | None = None) -> None:
        """Switch ``on`` (one member or several) On, and ``off`` (default: every other member of
        a one-of-many vector) Off. Non-blocking."""
        ons = [on] if isinstance(on, str) else list(on)
        v = self.vector(device, name)
        if v is not None and off is None:
            off = [k for k in v.values if k not in ons]
        members = {k: "Off" for k in (off or [])}
        members.update({k: "On" for k in ons})
        self._send(device, name, members)

    def send_text(self, device: str, name: str, members: dict[str, str]) -> None:
        self._send(device, name, dict(members))

    def enable_blobs(self, device: str) -> None:
        """Ask for ``device``'s BLOBs on this connection (it asks again after a reconnect)."""
        if device not in self.blob_devices:
            self.blob_devices = (*self.blob_devices, device)
        if self._loop is not None and self._client is not None and self._connected:
            asyncio.run_coroutine_threadsafe(
                self._client.send_enableBLOB("Also", device), self._loop)

    # ------------------------------------------------------------------ the loop thread

    def _on_event(self, client: Any, event: Any) -> None:
        et = event.eventtype
        now = time.monotonic()
        with self._lock:
            self._version += 1
            if et == "ConnectionMade":
                self._connected = True
            elif et == "ConnectionLost":
                if self._connected:
                    self.losses += 1
                    self.lost_at = now
                self._connected = False
                self._vectors.clear()
            elif et == "Message":
                msg = getattr(event, "message", "")
                if msg:
                    self._messages.append((event.devicename, msg))
                    del self._messages[:-50]
            elif et == "Delete":
                dev, name = event.devicename, event.vectorname
                for key in [k for k in self._vectors if k[0] == dev and (name is None
                                                                         or k[1] == name)]:
                    del self._vectors[key]
            elif et in ("Define", "DefineBLOB", "Set", "SetBLOB"):
                vec = event.vector if event.vector is not None else \
                    client.get(event.devicename, {}).get(event.vectorname)
                if vec is not None:
                    self._store(event, vec, now)
            self._lock.notify_all()
        if et == "DefineBLOB" and event.devicename in self.blob_devices:
            # indipyclient answers a definition with the default (Never); ask for this one
            asyncio.ensure_future(client.send_enableBLOB("Also", event.devicename))
        elif et == "SetBLOB" and self.on_blob is not None:
            for member, data in event.items():
                if data:
                    size_fmt = event.sizeformat.get(member, (len(data), ""))
                    self.blobs_received += 1
                    try:
                        self.on_blob(event.devicename, event.vectorname, member, data,
                                     size_fmt[1])
                    except Exception:  # noqa: BLE001 - a consumer's bug must not kill the link
                        log.exception("INDI BLOB consumer failed")
            for m in event.vector.data.values():  # do not keep a frame in the property tree
                m._membervalue = b""

    def _store(self, event: Any, vec: Any, now: float) -> None:
        kind = vec.vectortype.replace("Vector", "")
        if kind == "BLOB":
            values = {k: "" for k in vec.data}
        else:
            values = {k: str(m.membervalue) for k, m in vec.data.items()}
        limits: dict[str, tuple[float, float]] = {}
        if kind == "Number":
            for k, m in vec.data.items():
                limits[k] = (indi_float(m.min), indi_float(m.max))
        old = self._vectors.get((event.devicename, vec.name))
        self._vectors[(event.devicename, vec.name)] = Vector(
            event.devicename, vec.name, kind, vec.state, values, getattr(vec, "perm", None),
            getattr(event, "message", "") or "", (old.version + 1) if old else 1, now, limits)
