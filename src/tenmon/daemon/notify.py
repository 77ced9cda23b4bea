"""systemd notifications (READY, WATCHDOG, STOPPING, STATUS) over $NOTIFY_SOCKET.

The protocol is one datagram of ``KEY=VALUE`` lines to a Unix socket; the 20 lines here replace a
dependency (the `sdnotify` package is unmaintained). Without $NOTIFY_SOCKET every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, address: str | None = None):
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def watchdog_interval_s(self) -> float | None:
        """Half the watchdog period systemd asked for, or None when there is no watchdog."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *lines: str) -> None:
        if not self.address:
            return
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # the control loop never waits on systemd
                sock.connect(addr)
                sock.send("\n".join(lines).encode())
        except BlockingIOError:
            log.warning("systemd notify socket %s is full: %s dropped", self.address, lines[0])
        except OSError as exc:
            log.warning("systemd notify to %s failed: %s", self.address, exc)

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *( [f"STATUS={status}"] if status else []))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self, status: str = "") -> None:
        self.send("STOPPING=1", *( [f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")
