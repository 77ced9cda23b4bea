"""relays_off (systemd's ExecStopPost): switches the relays off from the config and from the last
good device map, also when the config cannot be read. Real LCUS frames on a real pseudo-tty."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tenmon.config.loader import parse_config
from tenmon.drivers.relays.lcus import parse_lcus_frames
from tenmon.lastgood import DEVICE_MAP, load_device_map, save_device_map

SITE = """
mode = "site"
[site]
name = "Test site"
latitude_deg = 35.0
longitude_deg = 134.3
elevation_m = 449
[paths]
data_dir = "{data_dir}"
[relays.main]
type = "lcus-serial"
port = "{port}"
channels = 6
max_on_s = 300
interlocks = [[1, 2], [3, 4], [5, 6]]
{extra_bank}
[dome]
relays = "main"
cw_channel = 1
ccw_channel = 2
[slit]
relays = "main"
open_channel = 3
close_channel = 4
[cover]
relays = "{cover_bank}"
open_channel = {cover_open}
close_channel = {cover_close}
[mount]
type = "lx200"
port = "/dev/null"
[encoder]
type = "ir-camera"
[weather]
type = "gpio-rain"
wet_when_high = true
pin = 17
"""


class Tty:
    """A pseudo-terminal: relays_off opens the slave as its LCUS board; the test reads the
    master side (the board's end of the wire)."""

    def __init__(self):
        self.master, self.slave = pty.openpty()
        self.path = os.ttyname(self.slave)

    def received(self) -> bytes:
        data = b""
        while select.select([self.master], [], [], 0.3)[0]:
            chunk = os.read(self.master, 4096)
            if not chunk:
                break
            data += chunk
        return data

    def close(self):
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def ttys():
    made = []

    def make():
        t = Tty()
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def site_text(data_dir: Path, port: str, second_port: str | None = None) -> str:
    extra = ""
    cover = dict(cover_bank="main", cover_open=5, cover_close=6)
    if second_port:
        extra = (f'[relays.aux]\ntype = "lcus-serial"\nport = "{second_port}"\nchannels = 2\n'
                 "max_on_s = 300\ninterlocks = [[1, 2]]\n")
        cover = dict(cover_bank="aux", cover_open=1, cover_close=2)
    return SITE.format(data_dir=data_dir, port=port, extra_bank=extra, **cover)


def run_relays_off(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tenmon.relays_off", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_device_map_round_trip(tmp_path, ttys):
    cfg = parse_config(site_text(tmp_path, "/dev/ttyUSB7"))
    path = save_device_map(cfg, tmp_path, "/etc/tenmon/tenmon.toml")
    assert path == tmp_path / DEVICE_MAP
    assert path.stat().st_mode & 0o777 == 0o640
    banks, header = load_device_map(tmp_path)
    assert banks["main"].type == "lcus-serial" and banks["main"].port == "/dev/ttyUSB7"
    assert banks["main"].channels == 6 and header["config"] == "/etc/tenmon/tenmon.toml"
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


def test_broken_config_falls_back_to_the_device_map(tmp_path, ttys):
    """Finding: "relays_off does nothing with an unreadable config"."""
    board = ttys()
    good = site_text(tmp_path, board.path)
    save_device_map(parse_config(good), tmp_path, "site.toml")
    cfg = tmp_path / "site.toml"
    cfg.write_text(good.replace('type = "lcus-serial"', 'type = "lcus-serial"\nbogus = [', 1))
    r = run_relays_off("--config", str(cfg), "--data-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "falling back to the last good device map" in r.stderr
    assert "relays.main: all relays off (device map)" in r.stderr
    assert parse_lcus_frames(board.received()) == [(ch, False) for ch in range(1, 7)] * 2


def test_unreadable_config_uses_state_directory(tmp_path, ttys):
    """Under systemd the device map is found through $STATE_DIRECTORY (StateDirectory=tenmon)."""
    board = ttys()
    save_device_map(parse_config(site_text(tmp_path, board.path)), tmp_path)
    r = run_relays_off("--config", str(tmp_path / "missing.toml"),
                       env={"STATE_DIRECTORY": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "no such config file" in r.stderr
    assert parse_lcus_frames(board.received())[-6:] == [(ch, False) for ch in range(1, 7)]


def test_config_and_device_map_both_switched_when_they_differ(tmp_path, ttys):
    """The config was edited since the daemon started (another port): the board the daemon drove
    (device map) and the one the config names are both switched off."""
    old_board, new_board, aux = ttys(), ttys(), ttys()
    save_device_map(parse_config(site_text(tmp_path, old_board.path)), tmp_path)
    cfg = tmp_path / "site.toml"
    cfg.write_text(site_text(tmp_path, new_board.path, second_port=aux.path))
    r = run_relays_off("--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert parse_lcus_frames(old_board.received())  # from the device map
    assert parse_lcus_frames(new_board.received())  # from the config
    assert parse_lcus_frames(aux.received()) == [(1, False), (2, False)] * 2


def test_same_bank_in_config_and_map_is_switched_once(tmp_path, ttys):
    board = ttys()
    text = site_text(tmp_path, board.path)
    save_device_map(parse_config(text), tmp_path)
    cfg = tmp_path / "site.toml"
    cfg.write_text(text)
    r = run_relays_off("--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("all relays off") == 1
    # connect() all-off, then disconnect() all-off: one open of the board
    assert parse_lcus_frames(board.received()) == [(ch, False) for ch in range(1, 7)] * 2


def test_no_config_and_no_device_map_says_so(tmp_path):
    r = run_relays_off("--config", str(tmp_path / "missing.toml"), "--data-dir", str(tmp_path))
    assert r.returncode == 1
    assert "NO RELAYS SWITCHED OFF" in r.stderr


def test_corrupt_device_map_is_refused(tmp_path):
    (tmp_path / DEVICE_MAP).write_text(json.dumps({"version": 1, "relays": {"main": {
        "type": "lcus-serial"}}}))  # no port
    r = run_relays_off("--config", str(tmp_path / "missing.toml"), "--data-dir", str(tmp_path))
    assert r.returncode == 1 and "not a valid device map" in r.stderr
