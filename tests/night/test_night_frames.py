"""The frame service: directory intake -> process pool (pipeline + plate solving) -> one row per
frame and one per solve in SQLite, events and listeners; a restart loses no frame."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tenmon.daemon.control_loop import tick_once
from tenmon.daemon.services.frames import FrameJob, FrameService
from tenmon.config.services import FrameWorkerSettings
from tenmon.config.vision import (CatalogSettings, CosmicSettings, PipelineSettings,
                                  ProductSettings, SolverSettings)
from tenmon.pointing.model import read_solve_log
from tenmon.vision.render.sky import render_star_field, simple_wcs, write_frame_fits
from tenmon.vision.solve.catalogs import SimulatedSky
from tenmon.core.astro import separation_arcsec

SCALE = 1.28  # 512 px over the 11' field
JOB = FrameJob(
    pipeline=PipelineSettings(cosmics=CosmicSettings(enabled=False),
                              products=ProductSettings(clean_fits=False, mask_fits=False,
                                                       preview=False, regions=False)),
    solver=SolverSettings(order=["hinted"], pixel_scale_arcsec=SCALE, pointing_error_deg=0.1,
                          catalog=CatalogSettings(provider="simulated", sim_seed=5)),
    longitude_deg=134.3356)
SKY = SimulatedSky(seed=5)


def _write(frames_dir, i, when, truth=(60.0, 40.0), mount_off_deg=0.04):
    ra, dec = truth[0] + 0.7 * i, truth[1]
    wcs = simple_wcs((ra, dec), shape=(512, 512), pixel_scale_arcsec=SCALE)
    frame = render_star_field(wcs=wcs, stars=SKY.stars_for_wcs(wcs, (512, 512)), shape=(512, 512),
                              fwhm_px=1.6, sky_adu=200.0, exposure_s=30.0, seed=100 + i)
    path = frames_dir / f"f{i:02d}.fits"
    write_frame_fits(frame, path, date_obs=when, mount_ra_deg=ra + mount_off_deg,
                     mount_dec_deg=dec - mount_off_deg, extra={"PIXSCALE": SCALE})
    return path, (ra, dec)


async def _until(rig, service, done, wall_s=120.0):
    t0 = time.monotonic()
    while not done():
        rig.clock.advance(rig.tick_s)
        tick_once(rig.obs)
        service.tick()
        await asyncio.sleep(0.002)
        if time.monotonic() - t0 > wall_s:
            raise AssertionError(f"timed out: {service.status()}")


def _service(rig, tmp_path, **kw):
    return FrameService(rig.obs, frames_dir=tmp_path / "frames", products_dir=tmp_path / "prod",
                        job=JOB, **kw)


def test_frames_are_processed_solved_and_recorded(sim_rig, tmp_path):
    rig = sim_rig()
    fs = _service(rig, tmp_path)
    seen = []
    fs.listeners.append(seen.append)
    fs.context_for = lambda p: {"target": "T", "block": "T#1"}
    fs.pier_side_for = lambda ra, dec, lst: "east"
    truths = {}
    for i in range(3):
        p, t = _write(fs.frames_dir, i, rig.clock.now())
        truths[str(p)] = t

    async def go():
        await fs.start()
        try:
            await _until(rig, fs, lambda: fs.counts["done"] + fs.counts["failed"] >= 3)
        finally:
            await fs.stop()

    asyncio.run(go())
    assert fs.counts == {"received": 3, "done": 3, "solved": 3, "failed": 0, "dropped": 0}
    assert rig.obs.store.flush(10)  # rows are written by the store's writer thread
    db = rig.obs.store.db
    rows = db.execute("SELECT * FROM frames ORDER BY path").fetchall()
    assert [r["status"] for r in rows] == ["done"] * 3
    for r in rows:
        assert r["target"] == "T" and r["solved"] == 1 and r["n_sources"] > 50
        assert separation_arcsec(r["ra_deg"], r["dec_deg"], *truths[r["path"]]) < 1.0
        s = db.execute("SELECT * FROM solves WHERE id = ?", (r["solve_id"],)).fetchone()
        assert s["frame"] == r["path"] and s["solver"] == "hinted" and s["solved"] == 1
        # the hint was the header's (the mount's) position; the row keeps what the mount said
        assert s["hint_ra_deg"] == pytest.approx(truths[r["path"]][0] + 0.04)
        assert s["mount_dec_deg"] == pytest.approx(truths[r["path"]][1] - 0.04)
        assert s["hint_radius_deg"] == 0.1 and s["pier_side"] == "east"
        assert 0 <= s["lst_deg"] < 360 and s["rms_arcsec"] < 1.0 and s["elapsed_ms"] > 0
        assert s["wcs_json"] and "CRVAL1" in s["wcs_json"]
    assert sorted(x.path for x in seen) == sorted(truths) and all(x.solved for x in seen)
    msgs = [e["message"] for e in rig.events() if e["kind"] == "frame"]
    assert sum("solved by hinted" in m for m in msgs) == 3
    # the pointing module reads these rows as a pointing run
    data = read_solve_log(rig.obs.config.paths.database,
                          latitude_deg=rig.obs.config.site.latitude_deg)
    assert len(data) == 3
    # a new intake remembers what was processed
    fs2 = _service(rig, tmp_path)
    assert all(fs2.intake.is_processed(p) for p in truths)


def test_a_restart_loses_no_frame(sim_rig, tmp_path):
    rig = sim_rig()
    fs = _service(rig, tmp_path)
    paths = [_write(fs.frames_dir, i, rig.clock.now())[0] for i in range(2)]
    # delivered and queued, then the daemon dies before any result
    for _ in range(60):
        rig.clock.advance(0.1)
        fs.tick()
    assert fs.counts["received"] == 2
    fs.stop_now()
    assert rig.obs.store.flush(10)  # rows are written by the store's writer thread
    db = rig.obs.store.db
    assert [r[0] for r in db.execute("SELECT status FROM frames")] == ["queued", "queued"]
    fs2 = _service(rig, tmp_path, executor=ThreadPoolExecutor(max_workers=1))

    async def go():
        await fs2.start()
        try:
            await _until(rig, fs2, lambda: fs2.counts["done"] >= 2)
        finally:
            await fs2.stop()

    asyncio.run(go())
    assert rig.obs.store.flush(10)
    rows = db.execute("SELECT path, status, solved FROM frames").fetchall()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in paths)  # no duplicates
    assert all(r["status"] == "done" and r["solved"] == 1 for r in rows)
    assert db.execute("SELECT COUNT(*) FROM solves").fetchone()[0] == 2


def test_a_full_queue_drops_visibly(sim_rig, tmp_path):
    rig = sim_rig()
    fs = _service(rig, tmp_path, executor=ThreadPoolExecutor(max_workers=1),
                  worker_settings=FrameWorkerSettings(queue_size=1, newest_first=True))
    for i in range(4):
        _write(fs.frames_dir, i, rig.clock.now() + timedelta(seconds=i))

    async def go():
        await fs.start()
        try:
            await _until(rig, fs, lambda: fs.counts["done"] + fs.counts["dropped"] >= 4)
        finally:
            await fs.stop()

    asyncio.run(go())
    assert rig.obs.store.flush(10)
    st = dict(rig.obs.store.db.execute("SELECT status, COUNT(*) FROM frames GROUP BY status"
                                       ).fetchall())
    assert st.get("dropped", 0) >= 1 and st["done"] + st["dropped"] == 4
    assert fs.counts["dropped"] == st["dropped"]
    warn = [e for e in rig.events() if e["kind"] == "frame" and "dropped" in e["message"]]
    assert len(warn) == st["dropped"] and all(e["level"] == "warning" for e in warn)
    summary = fs.summary()
    assert summary["dropped"] == st["dropped"] and summary["done"] == st["done"]


def test_frames_recorded_while_the_database_is_locked_are_all_written(sim_rig, tmp_path):
    """Frames on disk = frame rows after a storage fault clears: another process holds the
    database's write lock while frames arrive and are processed."""
    import subprocess
    import sys

    rig = sim_rig(TENMON_STORAGE__RETRY_MAX_S="0.5", TENMON_STORAGE__WRITE_BUSY_TIMEOUT_S="0.5")
    fs = _service(rig, tmp_path, executor=ThreadPoolExecutor(max_workers=1))
    locker = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(6)",
         str(rig.obs.config.paths.database)], stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    try:
        paths = [_write(fs.frames_dir, i, rig.clock.now() + timedelta(seconds=i))[0]
                 for i in range(3)]

        async def go():
            await fs.start()
            try:
                await _until(rig, fs, lambda: fs.counts["done"] >= 3)
            finally:
                await fs.stop()

        asyncio.run(go())
        assert rig.obs.store.health()["buffered_rows"] > 0   # the rows wait in memory
    finally:
        locker.wait(30)
    assert rig.obs.store.flush(15)
    db = rig.obs.store.db
    rows = db.execute("SELECT path, status, solved, solve_id FROM frames").fetchall()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in paths)
    assert all(r["status"] == "done" and r["solved"] == 1 for r in rows)
    solves = {r["id"]: r["frame"] for r in db.execute("SELECT id, frame FROM solves")}
    assert all(solves[r["solve_id"]] == r["path"] for r in rows)
