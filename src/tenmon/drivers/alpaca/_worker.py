"""One worker thread per Alpaca device: the control loop never waits on HTTP.

The loop-facing methods of every Alpaca device read a snapshot the worker last published, and
verbs (goto, move, select, expose) go onto the worker's queue and return at once. The worker
runs them one at a time, polls the device every ``poll_s``, and when the server goes away it
marks the device offline (``error`` says why, naming the server) and tries to connect again
every ``reconnect_s``; commands given meanwhile fail at once with that reason.

Network deadlines are wall time (``time.monotonic``): they bound a real server. Times that go
into readings and headers come from the injected clock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

from tenmon.drivers.alpaca._wire import bounded, call, is_link_error
from tenmon.core.errors import DeviceDisconnected, DeviceError, DeviceNotFound

log = logging.getLogger(__name__)


class AlpacaDevice:
    """Base of the Alpaca devices (see the module docstring).

    Subclasses set ``kind`` (the config's name: ``camera``, ``mount``...), ``ascom_type``
    and ``api_class`` (the alpyca class), and implement ``_on_open()`` (read what does not
    change: names, limits, capabilities) and ``_poll()`` (read the state, publish a snapshot).
    Both run on the worker (and once in ``connect()``) and raise DeviceError.
    """

    kind = "device"
    ascom_type = "device"
    api_class: type = object

    def __init__(self, config: Any, clock: Any, *, download_timeout_s: float = 120.0):
        self.config = config
        self.clock = clock
        self.name = self.kind
        self.label = f"Alpaca {self.ascom_type} {config.device_number} at {config.address}"
        self.dev = bounded(self.api_class, config.address, config.device_number,
                           timeout_s=config.timeout_s, download_timeout_s=download_timeout_s)
        self.poll_s = float(config.poll_s)
        self.reconnect_s = max(2.0, float(config.poll_s))
        self._q: queue.Queue[tuple[str, Callable[[], None]] | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._online = False
        self._link_error: str | None = None
        self._command_error: str | None = None
        self._busy = 0           # commands queued or running
        self._lock = threading.Lock()
        self._last_ok_m: float | None = None
        self.polls = 0

    # ------------------------------------------------------------------ life cycle

    def connect(self) -> None:
        """Connect the device on its server and start the worker. Blocking, bounded by
        ``connect_timeout_s`` (each call by ``timeout_s``). Raises DeviceNotFound naming the
        server when it is not there, DeviceError when the device refuses."""
        if self._thread is not None:
            return
        deadline = time.monotonic() + float(self.config.connect_timeout_s)
        last: DeviceError | None = None
        while True:
            try:
                self._open(connecting=True)
                break
            except DeviceError as exc:
                last = exc
            if time.monotonic() + 0.5 > deadline:
                self._link_error = last.detail if last else "not connected"
                if isinstance(last, DeviceNotFound):
                    raise last
                raise DeviceNotFound(self.kind, last.detail if last else self.label) from last
            time.sleep(0.5)
        self._online = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"alpaca-{self.kind}",
                                        daemon=True)
        self._thread.start()

    def disconnect(self) -> None:
        """Stop the worker (a call in flight ends within ``timeout_s``; not waited for beyond
        2 s). Never moves the device and never says Connected = false: other clients of the
        server (a camera program, a planetarium) may be using it."""
        self._stop.set()
        t = self._thread
        self._thread = None
        if t is not None:
            self._q.put(None)
            t.join(timeout=2.0)
        self._online = False

    @property
    def connected(self) -> bool:
        """The worker runs and the server answered its last call."""
        return self._thread is not None and self._online

    @property
    def error(self) -> str | None:
        """Why the device cannot be used now (link lost, a refused command), else ``None``."""
        if self._thread is None and self._link_error is None:
            return "not connected"
        return self._command_error or self._link_error

    @property
    def position_age_s(self) -> float | None:
        """Wall seconds since the server last answered a poll."""
        return None if self._last_ok_m is None else time.monotonic() - self._last_ok_m

    def update(self) -> None:
        """Nothing to do on the loop thread: the worker polls."""

    def clear_error(self) -> None:
        """Forget the last refused command (a lost link stays until the server answers)."""
        self._command_error = None

    # ------------------------------------------------------------------ for subclasses

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        return call(self.kind, self.label, what, fn)

    def _open(self, *, connecting: bool = False) -> None:
        call(self.kind, self.label, "Connected = true",
             lambda: setattr(self.dev, "Connected", True), connecting=connecting)
        if not call(self.kind, self.label, "Connected", lambda: self.dev.Connected,
                    connecting=connecting):
            raise DeviceNotFound(self.kind, f"{self.label}: the server would not connect the "
                                 "device (Connected stays false)")
        self._on_open()
        self._poll()
        self._last_ok_m = time.monotonic()

    def _on_open(self) -> None:
        """Read what does not change (worker / connect)."""

    def _poll(self) -> None:
        """Read the state and publish it (worker)."""

    def _submit(self, what: str, fn: Callable[[], None]) -> None:
        """Queue ``fn`` for the worker. Raises DeviceError when it cannot run now."""
        if self._thread is None:
            raise DeviceError(self.kind, f"{self.label}: not connected")
        if not self._online:
            raise DeviceDisconnected(self.kind, self._link_error or f"{self.label}: offline")
        with self._lock:
            self._busy += 1
        self._command_error = None
        self._q.put((what, fn))

    @property
    def busy(self) -> bool:
        """A command is queued or running."""
        return self._busy > 0

    def _command_failed(self, what: str, exc: DeviceError) -> None:
        self._command_error = exc.detail
        log.error("%s: %s failed: %s", self.label, what, exc.detail)

    def _went_offline(self, exc: DeviceError) -> None:
        if self._online:
            log.error("%s: link lost: %s", self.label, exc.detail)
        self._online = False
        self._link_error = exc.detail

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        next_poll = time.monotonic() + self.poll_s
        while not self._stop.is_set():
            try:
                item = self._q.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                item = None
            if self._stop.is_set():
                break
            if item is not None:
                self._run_command(*item)
            if not self._online:
                try:
                    self._open()
                except DeviceError as exc:
                    self._link_error = exc.detail
                    next_poll = time.monotonic() + self.reconnect_s
                    continue
                except Exception as exc:  # noqa: BLE001 - a driver bug must not kill the worker
                    log.exception("%s: reconnect crashed", self.label)
                    self._link_error = f"{self.label}: internal error ({exc})"
                    next_poll = time.monotonic() + self.reconnect_s
                    continue
                log.info("%s: connected again", self.label)
                self._online = True
                self._link_error = None
                next_poll = time.monotonic() + self.poll_s
                continue
            if item is not None or time.monotonic() >= next_poll:
                self._poll_once()
                next_poll = time.monotonic() + self.poll_s

    def _run_command(self, what: str, fn: Callable[[], None]) -> None:
        try:
            if not self._online:
                raise DeviceDisconnected(self.kind, self._link_error or f"{self.label}: offline")
            fn()
        except DeviceError as exc:
            if is_link_error(exc):
                self._went_offline(exc)
            self._command_failed(what, exc)
        except Exception as exc:  # noqa: BLE001 - a driver bug must not kill the worker
            log.exception("%s: %s crashed", self.label, what)
            self._command_error = f"{self.label}: {what}: internal error ({exc})"
        finally:
            with self._lock:
                self._busy -= 1

    def _poll_once(self) -> None:
        try:
            self._poll()
        except DeviceError as exc:
            if is_link_error(exc):
                self._went_offline(exc)
            else:
                self._link_error = exc.detail
            return
        except Exception as exc:  # noqa: BLE001
            log.exception("%s: poll crashed", self.label)
            self._link_error = f"{self.label}: internal error while polling ({exc})"
            return
        self.polls += 1
        self._last_ok_m = time.monotonic()
        self._link_error = None
