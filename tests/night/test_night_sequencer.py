"""The sequencer and the night's actions in the simulated daemon, one behaviour at a time:
open only when safe, a restart after dawn opens nothing, a failing mount ends its block and the
rest is re-planned, a site's frames are awaited and attributed, twilight actions are idempotent."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tenmon.daemon.control_loop import tick_once
from tenmon.config.loader import load_config, simulated_config_path
from tenmon.daemon.compose import build_observatory
from tenmon.daemon.services.night import install_night_operations
from tenmon.daemon.services.sequencer import Phase
from tenmon.scheduler.targets import Target

START = datetime(2026, 11, 21, 8, 40, tzinfo=timezone.utc)  # 12 min before nautical dusk
#: the simulated site file leaves the daemon's automatic nights off; these tests are about them
NIGHTS_ON = {"TENMON_NIGHT__ENABLED": "true"}
RAIN_THEN_CLEAR = '[{after_s = 0, condition = "rain"}, {after_s = 1800, condition = "clear"}]'


def _night_log(obs):
    assert obs.store.flush(10)  # the rows are written by the store's writer thread
    return [(r["time_utc"], r["kind"], r["target"], json.loads(r["detail"]))
            for r in obs.store.db.execute("SELECT * FROM night_log ORDER BY id")]


def _commands(rig, text):
    return [e["time_utc"] for e in rig.events() if e["kind"] == "command" and text in e["message"]]


def _install(rig, **sections):
    ops = install_night_operations(rig.obs, rig.obs.config, sections=sections,
                                   executor=ThreadPoolExecutor(max_workers=1))
    ops.camera.render_in = "thread"
    ops.camera.disconnect()
    ops.camera.connect()
    return ops


def test_opens_after_dusk_only_when_safe(sim_rig):
    rig = sim_rig(**NIGHTS_ON, TENMON_SIM__START_UTC=START.isoformat(),
                  TENMON_SIM__WEATHER_SCRIPT=RAIN_THEN_CLEAR)
    ops = _install(rig)
    rig.run(60 * 60, until=lambda: ops.sequencer.phase == Phase.READY)
    log = _night_log(rig.obs)
    dusk = [d for t, k, _, d in log if k == "dusk"]
    assert dusk and dusk[0]["safe"] is False and "rain" in dusk[0]["reasons"]
    opens = _commands(rig, "slit: opening")
    assert opens, rig.messages()[-20:]
    assert datetime.fromisoformat(opens[0]) >= START + timedelta(seconds=1800)  # not in the rain
    opened = [t for t, k, _, _ in log if k == "opened"]
    assert opened and datetime.fromisoformat(opened[0]) > datetime.fromisoformat(opens[0])
    assert ops.sequencer.phase == Phase.READY


def test_a_restart_after_dawn_opens_nothing(sim_rig, tmp_path):
    rig = sim_rig(**NIGHTS_ON, TENMON_SIM__START_UTC=START.isoformat())
    ops = _install(rig)
    rig.run(120)  # the jobs' next runs are computed and stored
    assert ops.jobs.next_run("night.open") is not None
    data_dir = Path(rig.obs.config.paths.data_dir)
    rig.obs.stop(clean=False)  # killed before dusk ...
    world = json.loads((data_dir / "sim-world.json").read_text())
    world["time_utc"] = datetime(2026, 11, 21, 21, 30, tzinfo=timezone.utc).isoformat()
    (data_dir / "sim-world.json").write_text(json.dumps(world))  # ... and back after dawn
    cfg = load_config(simulated_config_path(), env={"TENMON_PATHS__DATA_DIR": str(data_dir),
                                                        **NIGHTS_ON})
    obs = build_observatory(cfg)
    obs.start()
    try:
        ops2 = install_night_operations(obs, cfg, executor=ThreadPoolExecutor(max_workers=1))
        for _ in range(int(600 / 0.1)):
            obs.clock.advance(0.1)
            tick_once(obs)
        kinds = [k for _, k, _, _ in _night_log(obs)]
        assert "opened" not in kinds and "dusk" not in kinds and "planned" not in kinds
        assert kinds.count("dawn") == 1  # the missed close runs once (closing is always safe)
        missed = [e["message"] for e in obs.store.events(limit=10000) if e["kind"] == "jobs"]
        assert any("night.open missed" in m for m in missed)
        assert any("night.plan missed" in m for m in missed)
        assert not [e for e in obs.store.events(limit=10000)
                    if e["kind"] == "command" and "opening" in e["message"]
                    and e["time_utc"] >= "2026-11-21T21"]
        assert ops2.sequencer.phase in (Phase.IDLE, Phase.DONE)
    finally:
        obs.stop()


def test_a_mount_fault_fails_the_block_and_the_rest_is_replanned(sim_rig):
    rig = sim_rig(**NIGHTS_ON, TENMON_SIM__START_UTC=(START + timedelta(minutes=40)).isoformat())
    ops = _install(rig)
    t0 = rig.clock.now()
    ops.queue.add_many([Target(name=n, ra_deg=ra, dec_deg=dec, priority=1, exposure_s=60,
                               count=2) for n, ra, dec in (("A", 336.0, 30.0),
                                                           ("B", 345.0, 40.0))], now=t0)
    # a night already under way: armed and planned now (the jobs fired before this test)
    ops._do("open_if_safe")
    ops._do("run_plan")
    rig.run(40 * 60, until=lambda: ops.sequencer.phase == Phase.SLEWING)
    assert ops.sequencer.phase == Phase.SLEWING
    first = ops.sequencer.run.block.name
    rig.world.inject_fault("mount-disconnect")
    rig.run(60, until=lambda: any(k == "block_failed" for _, k, _, _ in _night_log(rig.obs)))
    rig.world.clear_fault("mount-disconnect")
    rig.run(30 * 60, until=lambda: any(k == "planned" and d.get("why") == "target failed"
                                       for _, k, _, d in _night_log(rig.obs)))
    log = _night_log(rig.obs)
    failed = [(tg, d) for _, k, tg, d in log if k == "block_failed"]
    assert failed and failed[0][0] == first and "mount" in failed[0][1]["reason"]
    assert ops.queue.get(first).status == "failed"
    assert ops.sequencer.plan is not None
    assert any(f"target {first} failed" in e for e in ops.sequencer.plan.events)
    assert all(b.name != first or b.end <= rig.clock.now() for b in ops.sequencer.plan.scheduled)


def test_site_frames_are_awaited_and_attributed(sim_rig):
    rig = sim_rig(**NIGHTS_ON, TENMON_SIM__START_UTC=(START + timedelta(minutes=40)).isoformat(),
                  TENMON_CCD__TYPE="directory")
    ops = install_night_operations(rig.obs, rig.obs.config,
                                   executor=ThreadPoolExecutor(max_workers=1))
    assert ops.camera is None  # a site's CCD program writes the frames
    ops.queue.add(Target(name="C", ra_deg=336.0, dec_deg=35.0, priority=1, exposure_s=30,
                         count=2), now=rig.clock.now())
    ops._do("open_if_safe")
    ops._do("run_plan")
    rig.run(40 * 60, until=lambda: ops.sequencer.phase == Phase.EXPOSING)
    assert ops.sequencer.phase == Phase.EXPOSING
    key = ops.sequencer.run.key
    frames = ops.frames.frames_dir
    for i in range(2):
        (frames / f"ccdprog_{i}.fits").write_bytes(_tiny_fits())
        rig.run(10)
    rig.run(60, until=lambda: ops.sequencer.phase != Phase.EXPOSING)
    assert rig.obs.store.flush(10)
    rows = rig.obs.store.db.execute("SELECT path, target, block FROM frames").fetchall()
    assert {Path(r["path"]).name for r in rows} == {"ccdprog_0.fits", "ccdprog_1.fits"}
    assert all(r["target"] == "C" and r["block"] == key for r in rows)
    done = [d for _, k, tg, d in _night_log(rig.obs) if k == "block_done" and tg == "C"]
    assert done and done[0]["outcome"] == "observed" and done[0]["frames"] == 2


def test_twilight_actions_are_idempotent_within_an_hour(sim_rig):
    rig = sim_rig(**NIGHTS_ON, TENMON_SIM__START_UTC=(START + timedelta(minutes=40)).isoformat())
    ops = _install(rig)
    ops._do("close")
    rig.run(10)
    ops._do("close")  # the trigger found "the same" dawn again seconds later
    assert [k for _, k, _, _ in _night_log(rig.obs)].count("dawn") == 1
    rig.clock.advance(3700)
    ops._do("close")
    assert [k for _, k, _, _ in _night_log(rig.obs)].count("dawn") == 2


def _tiny_fits() -> bytes:
    import io

    import numpy as np
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.zeros((16, 16), dtype=np.uint16)).writeto(buf)
    return buf.getvalue()
