"""`tenmon devices discover`: Alpaca discovery (UDP) answered on loopback, devices listed from
the real alpaca-simulators server (which has no management API: probed) and from a server
with one, and the printed config lines validate as site-file sections."""

from __future__ import annotations

import json
import socket
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tenmon.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drivers"))
from alpaca_sim_rig import AlpacaServer, sim_config, simulators_missing  # noqa: E402


class Responder:
    """An Alpaca discovery responder on a loopback UDP port (what an Alpaca server runs on
    32227), answering for ``alpaca_port``; a second, wrong answer is sent too (ignored)."""

    def __init__(self, alpaca_port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.alpaca_port = alpaca_port
        self.queries = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(1024)
            except OSError:
                return
            if data.startswith(b"alpacadiscovery1"):
                self.queries += 1
                self.sock.sendto(b"not json", addr)
                self.sock.sendto(json.dumps({"AlpacaPort": self.alpaca_port}).encode(), addr)

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    reason = simulators_missing()
    if reason:
        pytest.skip(reason)
    srv = AlpacaServer(sim_config(tmp_path_factory.mktemp("disc"))).start()
    yield srv
    srv.kill()


def test_discovery_lists_the_simulator_with_config_lines(sim, capsys):
    from tenmon.config.models import (AlpacaCcdConfig, AlpacaFilterWheelConfig,
                                      AlpacaFocuserConfig, AlpacaMountConfig,
                                      AlpacaWeatherConfig)

    responder = Responder(sim.port)
    try:
        code = main(["devices", "discover", "--target", "127.0.0.1", "--port",
                     str(responder.port), "--timeout", "1", "--json"])
    finally:
        responder.close()
    assert code == 0 and responder.queries >= 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = {(r["device_type"], r["device_number"]) for r in rows}
    assert {("camera", 0), ("telescope", 0), ("focuser", 0), ("filterwheel", 0),
            ("observingconditions", 0), ("safetymonitor", 0)} <= kinds
    assert all(r["address"] == f"127.0.0.1:{sim.port}" and r["source"] == "probe" for r in rows)
    models = {"ccd": AlpacaCcdConfig, "mount": AlpacaMountConfig, "focuser": AlpacaFocuserConfig,
              "filter_wheel": AlpacaFilterWheelConfig, "weather": AlpacaWeatherConfig}
    for r in rows:
        table = tomllib.loads(r["config"])
        (section, body), = table.items()
        assert section == r["section"]
        models[section].model_validate(body)   # the printed lines are a valid section
    cam = next(r for r in rows if r["device_type"] == "camera")
    assert cam["name"] == "Simulator Camera"


def test_human_output_and_a_server_named_directly(sim, capsys):
    assert main(["devices", "discover", "--server", f"127.0.0.1:{sim.port}"]) == 0
    out = capsys.readouterr().out
    assert f"Alpaca server 127.0.0.1:{sim.port}" in out and "no management API: probed" in out
    assert "telescope 0: Simulator Telescope" in out
    assert f'    [mount]\n    type = "alpaca"\n    address = "127.0.0.1:{sim.port}"' in out


def test_management_api_is_used_when_there_is_one(capsys):
    devices = [{"DeviceName": "QHY600", "DeviceType": "Camera", "DeviceNumber": 1,
                "UniqueID": "qhy-1"},
               {"DeviceName": "Dome", "DeviceType": "Dome", "DeviceNumber": 0, "UniqueID": "d"}]

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path.startswith("/management/v1/configureddevices"):
                body = {"Value": devices, "ErrorNumber": 0, "ErrorMessage": ""}
            elif self.path.startswith("/management/v1/description"):
                body = {"Value": {"ServerName": "ASCOM Remote"}, "ErrorNumber": 0}
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        addr = f"127.0.0.1:{server.server_address[1]}"
        assert main(["devices", "discover", "--server", addr]) == 0
        out = capsys.readouterr().out
        assert "(ASCOM Remote): 2 device(s) [management API]" in out
        assert "camera 1: QHY600" in out and "device_number = 1" in out
        assert "dome 0: Dome" in out and "(not used by tenmon)" in out
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_does_not_answer_is_named(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["devices", "discover", "--server", f"127.0.0.1:{port}", "--json",
                 "--timeout", "1"]) == 1
    row = json.loads(capsys.readouterr().out)
    assert row["address"] == f"127.0.0.1:{port}" and row["error"]


def test_indi_listing_without_the_indi_backend_says_so(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tenmon.drivers.indi" else real(name, *a))
    assert main(["devices", "discover", "--indi", "127.0.0.1:7624"]) == 1
    assert "INDI listing is not available" in capsys.readouterr().out
