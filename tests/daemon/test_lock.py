"""One daemon per site: the lock on DATA_DIR/tenmon.lock, in-process and between real daemons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from test_daemon_process import Daemon, free_port

from tenmon.daemon.lock import DaemonLock, DaemonLocked


def test_second_lock_is_refused_with_the_holders_pid(tmp_path):
    first = DaemonLock(tmp_path / "data")
    first.acquire()
    try:
        assert (tmp_path / "data" / "tenmon.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(DaemonLocked) as info:
            DaemonLock(tmp_path / "data").acquire()  # another open file: flock conflicts
        assert info.value.pid == os.getpid()
        assert f"PID {os.getpid()}" in str(info.value)
    finally:
        first.release()
    with DaemonLock(tmp_path / "data") as again:  # free once released
        assert again.held


def test_lock_of_a_killed_holder_is_free(tmp_path):
    """flock belongs to the open file: a SIGKILLed daemon leaves no stale lock."""
    code = ("import sys, time; from tenmon.daemon.lock import DaemonLock; "
            "DaemonLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DaemonLocked, match=f"PID {proc.pid}"):
            DaemonLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    lock = DaemonLock(tmp_path)
    lock.acquire()
    lock.release()


@pytest.mark.slow
def test_second_daemon_refuses_before_touching_anything(tmp_path):
    """Finding: a second `tenmon daemon` opened the same state and relay board ("all relays off",
    "previous run ended uncleanly" in the running daemon's log) before failing on the port."""
    data = tmp_path / "data"
    d1 = Daemon(data, free_port())
    try:
        d1.cli("slit", "open")
        deadline = time.monotonic() + 10
        while d1.status()["slit"]["state"] != "opening" and time.monotonic() < deadline:
            time.sleep(0.1)
        before = d1.status()
        open_ch = 3  # config/simulated.toml: slit open_channel
        assert before["slit"]["state"] == "opening"
        assert open_ch in before["relays"]["main"]["on"]
        n_events = len(d1.events())
        r = subprocess.run([sys.executable, "-m", "tenmon.cli.main", "daemon", "--simulate",
                            "--speed", "10", "--port", str(free_port()), "--data-dir", str(data)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert f"another tenmon daemon (PID {d1.proc.pid}) is running" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        # the running daemon saw nothing of it: its relay still on, its slit still opening
        after = d1.status()
        assert after["slit"]["state"] in ("opening", "open")
        if after["slit"]["state"] == "opening":
            assert open_ch in after["relays"]["main"]["on"]
        deadline = time.monotonic() + 20
        while d1.status()["slit"]["state"] != "open" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert d1.status()["slit"]["state"] == "open"
        time.sleep(0.5)  # the world is saved every simulated second
        world = json.loads((data / "sim-world.json").read_text())
        assert world["slit_fraction"] == pytest.approx(1.0, abs=0.02)  # nobody stopped it
        new = [e["message"] for e in d1.events()[n_events:]]
        assert not any("all relays off" in m or "uncleanly" in m or "starting" in m
                       or "stopped" in m for m in new), new
        msgs = [e["message"] for e in d1.events()]
        assert sum("connected, all relays off" in m for m in msgs) == 1
        # the first daemon wrote its device map at start (for relays_off)
        dmap = json.loads((data / "device-map.json").read_text())
        assert dmap["relays"]["main"]["type"] == "simulated"
        assert (data / "tenmon.lock").read_text().strip() == str(d1.proc.pid)
    finally:
        assert d1.stop() == 0
