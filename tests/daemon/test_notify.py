"""systemd notify never blocks the control loop, even when nobody reads the socket."""

from __future__ import annotations

import socket
import time

from tenmon.daemon.notify import SystemdNotifier


def test_messages_arrive(tmp_path):
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(path))
        n = SystemdNotifier(str(path))
        n.ready("up")
        assert rx.recv(1024).decode() == "READY=1\nSTATUS=up"


def test_full_socket_does_not_block(tmp_path):
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(path))
        n = SystemdNotifier(str(path))
        t0 = time.monotonic()
        for _ in range(200):  # far beyond the kernel's datagram queue (10 by default)
            n.watchdog()
        assert time.monotonic() - t0 < 2.0


def test_no_socket_is_a_no_op():
    n = SystemdNotifier("")
    assert not n.enabled
    n.ready()
