"""Issue 12's worst findings, written against the parts of the code that existed before the fixes
(the simulated observatory, its store, ``build_app``), so that the same test runs on the code
before (ae6aa9d: it fails) and after (it passes). The other findings' tests (docs/bench/faults.md)
need parts that did not exist before (the token, the lock, the heartbeat, ...).

Each test is the issue's run in little: a full or locked database while the slit is open and it
starts to rain, a restart on a full disk, a cross-site open, an emergency stop in Shift-JIS.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tenmon.daemon.control_loop import tick_once
from tenmon.drivers.base import ShutterState


def _tmpfs(d: Path, size: str = "3m") -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a genuinely full disk) needs root")
    d.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


def _fill(d: Path) -> Path:
    filler = d / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for chunk in (65536, 512):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


def _open(rig) -> None:
    rig.obs.slit_open()
    rig.run(90, until=lambda: rig.obs.slit.state == ShutterState.OPEN)
    assert rig.obs.slit.state == ShutterState.OPEN


def _rain_closes(rig) -> None:
    rig.obs.sim.set_weather("rain")
    rig.run(120, until=lambda: rig.world.state.slit_fraction == 0.0
            and rig.obs.slit.state == ShutterState.CLOSED)
    assert rig.world.state.slit_fraction == 0.0
    assert rig.obs.slit.state == ShutterState.CLOSED


@pytest.fixture
def data_tmpfs(tmp_path):
    d = tmp_path / "data"
    _tmpfs(d)
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_before_after_full_disk_while_open_the_rain_still_closes_the_slit(sim_rig, data_tmpfs):
    """Before: the tick raised 'database or disk is full' and the loop died with the slit open."""
    rig = sim_rig(TENMON_PATHS__DATA_DIR=str(data_tmpfs), TENMON_STORAGE__WARN_FREE_MB="2",
                  TENMON_STORAGE__REFUSE_FREE_MB="1") if _has_storage_config() else \
        sim_rig(TENMON_PATHS__DATA_DIR=str(data_tmpfs))
    _open(rig)
    filler = _fill(data_tmpfs)
    try:
        _rain_closes(rig)
    finally:
        filler.unlink()


def test_before_after_locked_database_while_open_the_rain_still_closes_the_slit(sim_rig):
    """Before: with another connection holding BEGIN EXCLUSIVE every write waited out the busy
    timeout on the loop and then raised 'database is locked': the loop died."""
    env = {"TENMON_STORAGE__WRITE_BUSY_TIMEOUT_S": "0.2"} if _has_storage_config() else {}
    rig = sim_rig(**env)
    _open(rig)
    other = sqlite3.connect(rig.obs.config.paths.database, isolation_level=None, timeout=10)
    other.execute("BEGIN EXCLUSIVE")
    try:
        _rain_closes(rig)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_before_after_restart_on_a_full_disk_closes_the_slit(sim_rig, data_tmpfs):
    """Before: the restart died at its first event write, before the start-up reconcile that
    closes the slit, so the slit stayed open."""
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.compose import build_observatory

    env = {"TENMON_PATHS__DATA_DIR": str(data_tmpfs),
           "TENMON_SIM__START_UTC": '"2026-11-21T13:00:00Z"'}
    if _has_storage_config():
        env.update(TENMON_STORAGE__WARN_FREE_MB="2", TENMON_STORAGE__REFUSE_FREE_MB="1")
    rig = sim_rig(**{k: v for k, v in env.items() if k != "TENMON_SIM__START_UTC"})
    _open(rig)
    obs = rig.obs
    obs.sim.save()
    obs.stop(clean=False)  # the process dies; the "running" mark stays
    obs.store.close()
    filler = _fill(data_tmpfs)
    obs2 = None
    try:
        obs2 = build_observatory(load_config(simulated_config_path(), env=env))
        obs2.start()
        assert obs2.world.state.slit_fraction == 1.0
        for _ in range(1200):
            obs2.clock.advance(0.1)
            tick_once(obs2)
            if obs2.world.state.slit_fraction == 0.0 and obs2.slit.state == ShutterState.CLOSED:
                break
        assert obs2.world.state.slit_fraction == 0.0
    finally:
        filler.unlink()
        if obs2 is not None:
            obs2.stop()
            obs2.store.close()


def _has_storage_config() -> bool:
    try:
        from tenmon.config.models import StorageConfig  # noqa: F401
    except ImportError:
        return False
    return True


def _serve(rig, body):
    from tenmon.daemon.api.server import build_app

    async def go():
        async with TestClient(TestServer(build_app(rig.obs))) as client:
            return await body(client)
    return asyncio.run(go())


def _token_headers(rig) -> dict[str, str]:
    """The token the daemon made in its data directory (none before the fix: no header)."""
    token = Path(rig.obs.config.paths.data_dir) / "api.token"
    return {"Authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else {}


def test_before_after_a_cross_site_text_plain_post_does_not_open_the_slit(sim_rig):
    """Before: POST /slit/open with text/plain from Origin/Host evil.example got 200 and the slit
    opened (any web page in the operator's browser could open it)."""
    rig = sim_rig()

    async def body(c):
        r = await c.post("/api/v1/slit/open", data="{}",
                         headers={"Content-Type": "text/plain", "Origin": "http://evil.example",
                                  "Host": "evil.example"})
        return r.status

    status = _serve(rig, body)
    rig.run(10)
    assert status in (401, 403, 415), status
    assert rig.world.state.slit_fraction == 0.0


def test_before_after_an_emergency_stop_in_shift_jis_stops(sim_rig):
    """Before: an emergency stop whose body was not UTF-8 answered 500 and did not stop."""
    rig = sim_rig()
    rig.obs.slit_open()
    rig.run(15)
    assert rig.obs.slit.state == ShutterState.OPENING
    raw = json.dumps({"reason": "緊急停止: 雨"}, ensure_ascii=False).encode("shift_jis")

    async def body(c):
        r = await c.post("/api/v1/stop", data=raw,
                         headers={"Content-Type": "application/json", **_token_headers(rig)})
        return r.status

    status = _serve(rig, body)
    assert status == 200, status
    assert rig.obs.emergency
    rig.run(70)
    assert rig.world.state.slit_fraction == 0.0
