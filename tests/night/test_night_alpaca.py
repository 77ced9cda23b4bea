"""A simulated night on the Alpaca stack (config/simulated-alpaca.toml): tenmon's simulated dome
and weather, alpaca-simulators' camera, mount, focuser and filter wheel. The sequencer slews,
turns the wheel, focuses, exposes; the frames carry full headers and go through the frame
service, which plate-solves them (the simulator draws the catalogue's stars where the mount
points). Then the server dies mid-block: the block fails with the server named, the loop keeps
ticking, and the night closes safely.

Skipped, with the reason, where alpaca-simulators is not installed (dev extra).
"""

from __future__ import annotations

from tenmon.daemon.control_loop import tick_once
import asyncio
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drivers"))
from alpaca_sim_rig import AlpacaServer, sim_config, simulators_missing, write_catalog  # noqa: E402

pytestmark = pytest.mark.skipif(simulators_missing() is not None,
                                reason=simulators_missing() or "")

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "config" / "simulated-alpaca.toml"
START = datetime(2026, 11, 21, 9, 40, tzinfo=timezone.utc)   # dark at Nishi-Harima


def _night_log(obs):
    assert obs.store.flush(10)
    return [(r["kind"], r["target"], json.loads(r["detail"]))
            for r in obs.store.db.execute("SELECT * FROM night_log ORDER BY id")]


def _field():
    from tenmon.core.astro import lst_deg

    return (round(lst_deg(START, 134.3356) % 360.0, 3), 40.0)   # on the meridian


@pytest.fixture
def night(tmp_path):
    from tenmon.config.loader import load_config
    from tenmon.daemon.compose import build_observatory
    from tenmon.daemon.services.night import install_night_operations

    field = _field()
    cat = write_catalog(tmp_path / "catalog.sqlite", [field], mag_faint=18.0)
    srv = AlpacaServer(sim_config(tmp_path, catalog=cat,
                                  camera={"cameraxsize": 512, "cameraysize": 512, "numx": 512,
                                          "numy": 512},
                                  telescope={"focallength": 4.0})).start()
    env = {"TENMON_PATHS__DATA_DIR": str(tmp_path / "data"),
           "TENMON_SIM__START_UTC": f'"{START.isoformat()}"', "TENMON_NIGHT__ENABLED": "true",
           **{f"TENMON_{k}__ADDRESS": f'"{srv.address}"'
              for k in ("MOUNT", "CCD", "FOCUSER", "FILTER_WHEEL")}}
    cfg = load_config(SITE, env=env)
    obs = build_observatory(cfg, fresh=True)
    obs.start()
    ticks: list[float] = []

    async def run(seconds_wall: float, until) -> bool:
        """Tick the daemon (0.1 s of its clock each, ~25 ms of wall time apart, inside the
        event loop the frame service's pool reports to) until ``until()`` or the wall bound;
        every tick's duration is kept."""
        end = time.monotonic() + seconds_wall
        while time.monotonic() < end:
            obs.clock.advance(0.1)
            t0 = time.perf_counter()
            tick_once(obs)
            ticks.append(time.perf_counter() - t0)
            if until():
                return True
            # about 4x real time: the simulator's exposures and slews run in wall time
            await asyncio.sleep(max(0.002, 0.025 - ticks[-1]))
        return False

    ops = install_night_operations(obs, cfg, executor=ThreadPoolExecutor(max_workers=1))
    yield obs, ops, srv, run, field, ticks
    obs.stop()
    obs.store.close(timeout_s=2.0)
    srv.kill()


def test_a_night_on_the_alpaca_stack(night):
    obs, ops, srv, run, field, ticks = night
    asyncio.run(_night_on_alpaca(obs, ops, run, field))


async def _night_on_alpaca(obs, ops, run, field):
    from astropy.io import fits

    from tenmon.daemon.services.sequencer import Phase
    from tenmon.scheduler.targets import Target

    await run(10, lambda: False)  # first readings, the start-up reconcile
    assert ops.camera is not None and type(ops.camera).__name__ == "AlpacaCamera"
    assert ops.autofocus is not None and ops.sequencer.filter_wheel is ops.filter_wheel
    ops.focuser.move_to(10230)   # out of focus: the night must focus first
    assert await run(30, lambda: ops.focuser.position == 10230)
    ops.queue.add_many([Target(name="F1", ra_deg=field[0], dec_deg=field[1], priority=1,
                               exposure_s=2, count=2, filter="Blue")], now=obs.clock.now())
    ops._do("open_if_safe")
    ops._do("run_plan")
    done = await run(400, lambda: any(k in ("block_done", "block_failed")
                                for k, _, _ in _night_log(obs)))
    log = _night_log(obs)
    assert done, [k for k, _, _ in log]
    af = [d for k, _, d in log if k == "autofocus"]
    assert af and af[0]["ok"], af
    assert abs(af[0]["best_position"] - 10000) <= 60
    block = [d for k, _, d in log if k == "block_done"]
    assert block and block[0]["frames"] == 2, log[-5:]
    frames = sorted(Path(obs.config.paths.data_dir, "frames").glob("F1-*.fits"))
    assert len(frames) == 2
    for path in frames:
        h = fits.getheader(path)
        assert h["FILTER"] == "Blue" and h["IMAGETYP"] == "Light Frame" and h["EXPTIME"] == 2.0
        assert h["OBJECT"] == "F1" and abs(h["FOCUSPOS"] - 10000) <= 60
        assert abs(h["RA"] - field[0]) < 0.05 and abs(h["DEC"] - field[1]) < 0.05
        assert h["SITELAT"] == pytest.approx(35.0253) and h["CCD-TEMP"] == pytest.approx(-20.0)
    assert ops.filter_wheel.current == "Blue"
    # the frame service took them as every frame: rows, processed
    assert await run(120, lambda: obs.store.flush(1) and obs.store.db.execute(
        "SELECT COUNT(*) FROM frames WHERE path LIKE '%F1-%' AND status = 'done'"
    ).fetchone()[0] == 2)
    # and solved them: the simulator draws the catalogue's stars (the seeded sky tenmon's
    # simulated solver catalogue holds) at the mount's position, 0.516"/px
    rows = obs.store.db.execute("SELECT path, solved, ra_deg, dec_deg, rms_arcsec FROM frames "
                                "WHERE path LIKE '%F1-%'").fetchall()
    for row in rows:
        assert row["solved"] == 1, [dict(r) for r in rows]
        off = math.hypot((row["ra_deg"] - field[0]) * math.cos(math.radians(field[1])),
                         row["dec_deg"] - field[1]) * 3600.0
        print(f"{Path(row['path']).name}: solved {row['ra_deg']:.5f} {row['dec_deg']:.5f}, "
              f"{off:.1f}\" from the mount's position, rms {row['rms_arcsec']}\"")
        assert off < 10.0
    assert ops.sequencer.phase in (Phase.READY, Phase.CLOSING, Phase.DONE)


def test_the_server_dies_mid_block_and_the_night_goes_on_safely(night):
    obs, ops, srv, run, field, ticks = night
    asyncio.run(_server_dies(obs, ops, srv, run, field, ticks))


async def _server_dies(obs, ops, srv, run, field, ticks):
    from tenmon.daemon.services.sequencer import Phase
    from tenmon.scheduler.targets import Target

    await run(10, lambda: False)  # first readings, the start-up reconcile
    ops.autofocus.s = ops.autofocus.s.model_copy(update={"enabled": False})
    ops.queue.add_many([Target(name="K1", ra_deg=field[0], dec_deg=field[1], priority=1,
                               exposure_s=20, count=3)], now=obs.clock.now())
    ops._do("open_if_safe")
    ops._do("run_plan")
    assert await run(300, lambda: ops.sequencer.phase == Phase.EXPOSING
               and srv.get("camera/0/camerastate") == 2), ops.sequencer.phase
    srv.kill()
    n0 = len(ticks)
    failed = await run(120, lambda: any(k == "block_failed" for k, _, _ in _night_log(obs)))
    assert failed, [k for k, _, _ in _night_log(obs)]
    reason = [d for k, _, d in _night_log(obs) if k == "block_failed"][0]["reason"]
    assert srv.address in reason or "camera" in reason
    errors = [e["message"] for e in obs.store.events(limit=10000) if e["level"] == "error"]
    assert any(srv.address in m and "not reachable" in m for m in errors), errors[-5:]
    # the loop kept ticking while the server was gone: no tick waited on the network
    await run(5, lambda: False)
    during = sorted(ticks[n0:])
    assert len(during) > 100 and during[int(0.99 * (len(during) - 1))] < 1.0
    # dawn: the night closes and parks even with the mount's server gone (the mount is in
    # error; the slit and cover close on the observatory's own relays)
    ops._do("close")
    assert await run(300, lambda: obs.supervisor.describe().startswith("slit closed") or
               ops.sequencer.phase == Phase.DONE), obs.supervisor.describe()
    assert obs.slit.state.value == "closed"
