"""Runs a blocking mount driver (serial round-trips) on a worker thread, so the control loop never
waits on a serial port. Commands are queued and return at once; a command the mount refuses
shows up as the mount's ``error`` (and the daemon's event log), as with any non-blocking motion.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from tenmon.drivers.base import MountState
from tenmon.core.errors import DeviceError

log = logging.getLogger(__name__)


class ThreadedMount:
    """Wraps a :class:`~tenmon.drivers.base.Mount` whose calls may block."""

    def __init__(self, inner, poll_s: float = 0.5):
        self.inner = inner
        self.poll_s = poll_s
        self._q: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._command_error: str | None = None
        self._pending = 0
        self._lock = threading.Lock()

    def connect(self) -> None:
        self.inner.connect()  # blocking once, at start-up: a missing mount is a clear error
        self._thread = threading.Thread(target=self._work, name="mount", daemon=True)
        self._thread.start()

    def disconnect(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=5.0)
            self._thread = None
        self.inner.disconnect()

    def update(self) -> None:
        """Polling happens on the worker; nothing to do on the loop thread."""

    def _work(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=self.poll_s)
            except queue.Empty:
                item = ("update", ())
            if item is None:
                return
            verb, args = item
            try:
                getattr(self.inner, verb)(*args)
                if verb != "update":
                    self._command_error = None
            except DeviceError as exc:
                self._command_error = f"{verb} failed: {exc.detail}"
                log.error("mount %s failed: %s", verb, exc)
            except Exception:  # noqa: BLE001 - a driver bug must not kill the mount thread
                log.exception("mount %s crashed", verb)
                self._command_error = f"{verb} failed: internal error (see the log)"
            finally:
                if verb != "update":
                    with self._lock:
                        self._pending -= 1

    def _submit(self, verb: str, *args: Any) -> None:
        if self._thread is None:
            raise DeviceError("mount", "not connected")
        with self._lock:
            self._pending += 1
        self._q.put((verb, args))

    @property
    def state(self) -> MountState:
        if self._command_error:
            return MountState.ERROR
        return self.inner.state

    @property
    def ra_deg(self):
        return self.inner.ra_deg

    @property
    def dec_deg(self):
        return self.inner.dec_deg

    @property
    def tracking(self) -> bool:
        return self.inner.tracking

    @property
    def position_age_s(self) -> float | None:
        """Seconds since the worker last read the position (``None`` when unknown)."""
        return getattr(self.inner, "position_age_s", None)

    @property
    def error(self) -> str | None:
        return self._command_error or self.inner.error

    def goto(self, ra_deg: float, dec_deg: float) -> None:
        self._submit("goto", ra_deg, dec_deg)

    def sync(self, ra_deg: float, dec_deg: float) -> None:
        self._submit("sync", ra_deg, dec_deg)

    def abort(self) -> None:
        self._submit("abort")

    def park(self) -> None:
        self._submit("park")

    def unpark(self) -> None:
        self._submit("unpark")

    def set_tracking(self, on: bool) -> None:
        self._submit("set_tracking", on)
