"""The daemon's own frames go into the archive as they are processed ([archive] enabled): the frame
service's records reach the archive through the hook's queue and writer thread, off the control loop;
with [archive] off (the default) nothing is installed."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from tenmon.daemon.control_loop import tick_once
from tenmon.archive import queries
from tenmon.daemon.services.night import install_night_operations
from tenmon.vision.render.sky import render_star_field, simple_wcs, write_frame_fits
from tenmon.vision.solve.catalogs import SimulatedSky


def _frames(ops, n):
    scale = ops.frames.job.solver.pixel_scale_arcsec
    sky = SimulatedSky(seed=ops.frames.job.solver.catalog.sim_seed)
    truths = []
    for i in range(n):
        ra, dec = 60.0 + 0.3 * i, 40.0
        wcs = simple_wcs((ra, dec), shape=(256, 256), pixel_scale_arcsec=scale)
        frame = render_star_field(wcs=wcs, stars=sky.stars_for_wcs(wcs, (256, 256)), shape=(256, 256), fwhm_px=2.2,
                                  sky_adu=200.0, exposure_s=30.0, seed=50 + i)
        p = ops.frames.frames_dir / f"own{i}.fits"
        write_frame_fits(frame, p, date_obs=ops.obs.clock.now() + timedelta(minutes=i), mount_ra_deg=ra + 0.01,
                         mount_dec_deg=dec - 0.01)
        truths.append((str(p.resolve()), ra, dec))
    return truths


def test_processed_frames_reach_the_archive(sim_rig, tmp_path):
    rig = sim_rig()
    archive = tmp_path / "archive"
    ops = install_night_operations(rig.obs, rig.obs.config, executor=ThreadPoolExecutor(max_workers=1),
                                   sections={"archive": {"enabled": True, "path": str(archive), "batch_s": 0.5}})
    assert ops.archive_sink is not None and ops.archive_sink.on_frame in ops.frames.listeners
    truths = _frames(ops, 2)

    async def go():
        await ops.frames.start()
        t0 = time.monotonic()
        while ops.frames.counts["done"] + ops.frames.counts["failed"] < len(truths):
            rig.clock.advance(rig.tick_s)
            tick_once(rig.obs)
            await asyncio.sleep(0.002)
            assert time.monotonic() - t0 < 120, ops.frames.status()

    asyncio.run(go())
    assert ops.frames.counts["solved"] == len(truths)
    rig.obs.stop()                                  # the stop hooks: frames first, then the archive
    assert ops.archive_sink.status()["written"] == len(truths)
    c = sqlite3.connect(archive / "index.sqlite")
    rows = {r[0]: r[1:] for r in c.execute("SELECT path, status, wcs_source, n_detections, ra_deg, dec_deg FROM frames")}
    runs = c.execute("SELECT kind, status, n_ok FROM runs").fetchall()
    c.close()
    assert runs == [("daemon", "finished", len(truths))]
    for path, ra, dec in truths:
        status, wcs_source, n, fra, fdec = rows[path]
        assert status == "ok" and wcs_source == "solver" and n > 10
        assert abs(fra - ra) < 0.01 and abs(fdec - dec) < 0.01
        assert any(c_["path"] == path for c_ in queries.coverage(archive, ra, dec))
    assert queries.check_integrity(archive)["ok"]


def test_the_hook_is_off_by_default(sim_rig):
    rig = sim_rig()
    ops = install_night_operations(rig.obs, rig.obs.config, executor=ThreadPoolExecutor(max_workers=1))
    assert ops.archive_sink is None and "archive" not in rig.obs.status_hooks


def test_an_unusable_archive_is_counted_in_status_and_the_daemon_runs_on(sim_rig, tmp_path):
    rig = sim_rig()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ops = install_night_operations(rig.obs, rig.obs.config, executor=ThreadPoolExecutor(max_workers=1),
                                   sections={"archive": {"enabled": True, "path": str(blocker / "archive")}})
    ops.archive_sink.close(timeout_s=5)
    assert ops.archive_sink.status()["errors"] == 1 and rig.obs.status_hooks["archive"]()["errors"] == 1
    rig.run(2.0)  # the control loop goes on
