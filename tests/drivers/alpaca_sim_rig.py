"""Test rig for the Alpaca backends: the real alpaca-simulators server in a subprocess on a free
loopback port, an offline star catalogue for its camera, and a fault-injecting HTTP proxy.

The simulator's camera draws stars from Gaia over the network unless given a catalogue: here it
gets a SQLite catalogue (``gaia_sources``: ra, dec, phot_g_mean_mag) written from tenmon's own
seeded ``SimulatedSky``, so nothing leaves the machine and the plate solver's simulated
catalogue is the same sky.

The proxy sits between the client and the real server and, when told, answers a path with an
ASCOM error number, holds a request without answering, or drops the connection: the faults of a
real wire, on a real server's traffic.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any




def simulators_missing() -> str | None:
    """Why the alpaca-simulators server cannot run here (``None``: it can)."""
    try:
        import alpaca_simulators  # noqa: F401
    except ImportError:
        return "alpaca-simulators is not installed (pip install alpaca-simulators: dev extra)"
    try:
        import alpaca  # noqa: F401
    except ImportError:
        return "alpyca is not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_catalog(path: Path, fields: list[tuple[float, float]], *, radius_deg: float = 0.5,
                  seed: int = 0, density_per_deg2: float = 30000.0, sky_mag_faint: float = 21.0,
                  mag_faint: float = 17.0) -> Path:
    """A ``gaia_sources`` table of the seeded simulated sky around each (ra, dec) field, stars
    down to ``mag_faint``. The sky is ``SimulatedSky(seed, density_per_deg2, sky_mag_faint)``:
    with the defaults, the one tenmon's solver uses in a simulated night of seed 0."""
    from tenmon.vision.solve.catalogs import SimulatedSky

    sky = SimulatedSky(seed=seed, density_per_deg2=density_per_deg2, mag_faint=sky_mag_faint)
    rows: dict[tuple[float, float], float] = {}
    for ra, dec in fields:
        t = sky.cone(ra, dec, radius_deg, mag_limit=mag_faint)
        for r, d, m in zip(t["ra"], t["dec"], t["mag"]):
            rows[(round(float(r), 7), round(float(d), 7))] = float(m)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE gaia_sources (ra REAL, dec REAL, phot_g_mean_mag REAL, "
                "pmra REAL, pmdec REAL)")
    con.executemany("INSERT INTO gaia_sources VALUES (?, ?, ?, 0, 0)",
                    [(r, d, m) for (r, d), m in rows.items()])
    con.commit()
    con.close()
    return path


def sim_config(tmp: Path, *, catalog: Path | None = None, camera: dict | None = None,
               telescope: dict | None = None, top: dict | None = None) -> Path:
    """The simulator's YAML: its packaged template with our changes, in ``tmp``."""
    import yaml
    from alpaca_simulators.config import CONFIG_DIR

    cfg = yaml.safe_load((CONFIG_DIR / "template.yaml").read_text())
    dev = cfg["devices"]
    dev["camera"][0].update({"cameraxsize": 256, "cameraysize": 256, "numx": 256, "numy": 256,
                             "electronsperadu": 1.5, **(camera or {})})
    dev["telescope"][0].update({"focallength": 2.0, "aperturediameter": 0.6,
                                "sitelatitude": 35.0253, "sitelongitude": 134.3356,
                                **(telescope or {})})
    cfg["image_cache_entries"] = 2
    cfg["gaia_query_timeout"] = 30
    if catalog is not None:
        cfg["tap_source"] = str(catalog)
    cfg.update(top or {})
    path = tmp / "alpaca-sim.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class AlpacaServer:
    """The alpaca-simulators server as a subprocess (``start``/``kill``/``restart``)."""

    def __init__(self, config: Path, port: int | None = None, log_path: Path | None = None):
        self.config = config
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path or config.with_suffix(".log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> "AlpacaServer":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alpaca_simulators.run_simulator", "--host", "127.0.0.1",
             "--port", str(self.port), "--config", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alpaca-simulators exited ({self.proc.returncode}): "
                                   f"{self.log_path.read_text()[-2000:]}")
            if self.get("focuser/0/name", timeout=1.0) is not None:
                return self
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"alpaca-simulators did not answer within {timeout_s:g} s")

    def get(self, path: str, timeout: float = 5.0) -> Any:
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            c.request("GET", f"/api/v1/{path}")
            r = c.getresponse()
            body = r.read()
            c.close()
            return json.loads(body).get("Value") if r.status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def put(self, path: str, **form: Any) -> dict:
        from urllib.parse import urlencode

        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("PUT", f"/api/v1/{path}", body=urlencode(form),
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        out = json.loads(r.read())
        c.close()
        return out

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> "AlpacaServer":
        self.kill()
        return self.start()


class FaultProxy:
    """An HTTP proxy in front of an Alpaca server that can misbehave on purpose.

    ``error(substring, number, message)``: requests whose path contains ``substring`` get an
    Alpaca error reply; ``value(substring, v)``: a reply with that value; ``stall(substring)``:
    such requests wait until ``clear()`` (then go on to the server) or ``max_s`` (then the
    connection is closed); ``drop(substring)``: the connection is closed without a reply.
    """

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.rules: list[tuple[str, str, Any]] = []
        self.released = threading.Event()
        self.seen: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.seen.append(self.path)
                for sub, what, arg in list(proxy.rules):
                    if sub in self.path:
                        if what == "stall":
                            if proxy.released.wait(timeout=arg):
                                break  # released: the request goes on to the server
                            self.close_connection = True
                            return
                        if what == "drop":
                            self.close_connection = True
                            return
                        if what in ("error", "value"):
                            number, message, value = arg
                            out = json.dumps({"ErrorNumber": number, "ErrorMessage": message,
                                              "ClientTransactionID": 0,
                                              "ServerTransactionID": 0, "Value": value}).encode()
                            self.send_response(200)
                            self.send_header("Content-Type", "application/json")
                            self.send_header("Content-Length", str(len(out)))
                            self.end_headers()
                            self.wfile.write(out)
                            return
                try:
                    c = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("host", "connection")}
                    c.request(self.command, self.path, body=body or None, headers=headers)
                    r = c.getresponse()
                    data = r.read()
                    c.close()
                except OSError:
                    self.close_connection = True
                    return
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def error(self, substring: str, number: int, message: str) -> None:
        self.rules.append((substring, "error", (number, message, None)))

    def value(self, substring: str, value: Any) -> None:
        """Answer such requests with ``Value = value`` (no error), without asking the server."""
        self.rules.append((substring, "value", (0, "", value)))

    def stall(self, substring: str, max_s: float = 60.0) -> None:
        self.released.clear()
        self.rules.append((substring, "stall", max_s))

    def drop(self, substring: str) -> None:
        self.rules.append((substring, "drop", None))

    def clear(self) -> None:
        self.rules.clear()
        self.released.set()

    def close(self) -> None:
        self.clear()
        self.server.shutdown()
        self.server.server_close()


def wait_for(cond, timeout_s: float = 30.0, every_s: float = 0.05, what: str = "condition"):
    """Wait until ``cond()`` is truthy (returns its value); fail with ``what`` after the bound."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)
