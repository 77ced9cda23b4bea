"""A real indiserver with Debian's INDI simulators on a free loopback port, for the INDI tests.

``IndiServer`` starts ``indiserver`` with the named drivers (HOME in a temporary directory, so
the drivers' saved configs never leak between runs), waits until each device is defined, and
can kill the server, stop/continue a driver process (an exposure that never ends) or switch a
device off from another client (``indi_setprop``), as the fault tests need.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

NEEDED = ("indiserver", "indi_getprop", "indi_setprop")

DRIVERS = {
    "indi_simulator_ccd": "CCD Simulator",
    "indi_simulator_telescope": "Telescope Simulator",
    "indi_simulator_focus": "Focuser Simulator",
    "indi_simulator_wheel": "Filter Simulator",
    "indi_simulator_weather": "Weather Simulator",
}


def require_indi(*drivers: str) -> None:
    """Skip (saying why) where indiserver or a simulator is not installed."""
    missing = [b for b in (*NEEDED, *drivers) if shutil.which(b) is None]
    if missing:
        pytest.skip(f"INDI not installed ({', '.join(missing)} missing): `make test-deps` "
                    "installs Debian's indi-bin as root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _PortTaken(Exception):
    pass


GSC_STUB = Path(__file__).resolve().parent / "gsc_stub.py"


class IndiServer:
    """``gsc_catalog``: a CSV star list (ra, dec, mag) that ``indi_simulator_ccd`` draws its
    stars from, through ``gsc_stub.py`` put on the drivers' PATH as ``gsc``."""

    def __init__(self, drivers: tuple[str, ...], home: Path, port: int | None = None,
                 gsc_catalog: Path | None = None):
        require_indi(*drivers)
        self.drivers = drivers
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.home / "indiserver.log"
        self.env = dict(os.environ, HOME=str(self.home))
        if gsc_catalog is not None:
            import sys

            bin_dir = self.home / "bin"
            bin_dir.mkdir(exist_ok=True)
            gsc = bin_dir / "gsc"
            gsc.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{GSC_STUB}" "$@"\n')
            gsc.chmod(0o755)
            self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
            self.env["TENMON_GSC_CATALOG"] = str(Path(gsc_catalog).resolve())

    def start(self) -> "IndiServer":
        for _ in range(5):  # a port free a moment ago can be taken (or in TIME_WAIT): next one
            try:
                return self._start()
            except _PortTaken:
                self.port = free_port()
        return self._start()

    def _start(self) -> "IndiServer":
        env = self.env
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["indiserver", "-p", str(self.port), "-r", "0",
                 # its local (abstract) socket is /tmp/indiserver unless named: one per server
                 "-u", f"/tmp/tenmon-indiserver-{os.getpid()}-{self.port}", *self.drivers],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.home,
                start_new_session=True)
        deadline = time.monotonic() + 20
        want = {DRIVERS[d] for d in self.drivers if d in DRIVERS}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "Address already in use" in self.log.read_text() and \
                        "Local server" not in self.log.read_text():
                    self.log.write_text("")
                    raise _PortTaken()
                raise RuntimeError(f"indiserver exited: {self.log.read_text()[-2000:]}")
            have = self.devices()
            if want <= have:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"indiserver on {self.port} did not define {want}: "
                           f"{self.log.read_text()[-2000:]}")

    def getprop(self, spec: str = "*.*.*", timeout: int = 2) -> str:
        r = subprocess.run(["indi_getprop", "-p", str(self.port), "-t", str(timeout), spec],
                           capture_output=True, text=True, timeout=timeout + 10)
        return r.stdout

    def devices(self) -> set[str]:
        return {line.split(".", 1)[0] for line in self.getprop("*.DRIVER_INFO.*", 1).splitlines()
                if "." in line}

    def setprop(self, spec: str) -> None:
        subprocess.run(["indi_setprop", "-p", str(self.port), spec], check=True, timeout=20,
                       capture_output=True)

    def driver_pid(self, driver: str) -> int:
        # by the whole command line: process names are cut to 15 characters, which every
        # indi_simulator_* shares
        r = subprocess.run(["pgrep", "-s", str(os.getsid(self.proc.pid)), "-f",
                            f"^(.*/)?{driver}( |$)"], capture_output=True, text=True)
        pids = [int(p) for p in r.stdout.split()]
        if not pids:
            raise RuntimeError(f"{driver} is not running under indiserver {self.proc.pid}")
        return pids[0]

    def kill(self) -> None:
        """SIGKILL the server and its drivers (its whole session)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None:
            return
        for pid_sig in (signal.SIGCONT,):  # a stopped driver would not die on TERM
            try:
                os.killpg(self.proc.pid, pid_sig)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill()
        self.proc = None


def wait_for(predicate, timeout_s: float = 30.0, step_s: float = 0.05, tick=None) -> bool:
    """Poll ``predicate`` (calling ``tick()`` first, as a control loop would) until true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        if predicate():
            return True
        time.sleep(step_s)
    if tick is not None:
        tick()
    return bool(predicate())
