"""`tenmon daemon --simulate --alpaca-port N`: the real daemon process serves Alpaca on
127.0.0.1:N, answers real UDP discovery, and alpyca drives it; the HTTP API's status agrees."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request

import pytest

pytest.importorskip("alpaca", reason="alpyca is in the dev extra")

from alpaca import discovery, management  # noqa: E402
from alpaca.dome import Dome, ShutterState  # noqa: E402
from alpaca.exceptions import InvalidOperationException  # noqa: E402
from alpaca.safetymonitor import SafetyMonitor  # noqa: E402

from test_daemon_process import Daemon, free_port  # noqa: E402


def _wait(cond, what: str, wall_s: float = 120.0):
    deadline = time.monotonic() + wall_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_the_daemon_serves_alpaca_on_the_given_port(tmp_path):
    alpaca_port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        disc_port = s.getsockname()[1]
    d = Daemon(tmp_path / "data", free_port(), env={"TENMON_ALPACA__DISCOVERY_PORT":
                                                    str(disc_port)},
               extra_args=["--alpaca-port", str(alpaca_port)])
    try:
        address = f"127.0.0.1:{alpaca_port}"
        _wait(lambda: _answers(address), "the Alpaca port")
        assert management.apiversions(address) == [1]
        discovery.port = disc_port
        try:
            assert address in discovery.search_ipv4(numquery=1, timeout=1)
        finally:
            discovery.port = 32227
        dome, safety = Dome(address, 0), SafetyMonitor(address, 0)
        dome.Connect()
        safety.Connect()
        _wait(lambda: safety.IsSafe, "the verdict safe after start-up")
        dome.SlewToAzimuth(75)
        _wait(lambda: dome.Slewing, "the slew started", 30)
        _wait(lambda: not dome.Slewing, "the dome at 75")
        assert abs(dome.Azimuth - 75) <= 1.0
        with urllib.request.urlopen(f"{d.url}/api/v1/status", timeout=10) as resp:
            status = json.loads(resp.read())
        assert abs(status["dome"]["azimuth_deg"] - dome.Azimuth) <= 0.5
        dome.OpenShutter()
        _wait(lambda: dome.ShutterStatus == ShutterState.shutterOpen, "the shutter open")
        d.cli("sim", "weather", "rain")
        _wait(lambda: dome.ShutterStatus == ShutterState.shutterClosed, "rain closing it")
        assert safety.IsSafe is False
        with pytest.raises(InvalidOperationException, match="rain"):
            dome.OpenShutter()
        # the Alpaca commands are in the daemon's audit trail beside the CLI's
        audit = d.cli("audit", "--json", "--limit", "1000").stdout
        routes = [json.loads(line)["route"] for line in audit.splitlines() if line.strip()]
        assert any(r.startswith("alpaca /api/v1/dome/0/openshutter") for r in routes)
    finally:
        assert d.stop(signal.SIGTERM, timeout=120) == 0


def _answers(address: str) -> bool:
    try:
        management.apiversions(address)
        return True
    except Exception:  # noqa: BLE001 - not listening yet
        return False
