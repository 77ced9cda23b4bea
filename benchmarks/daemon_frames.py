"""Control-loop tick latency while the daemon processes full-size CCD frames back to back.

The simulated daemon (the same composition and frame service as ``tenmon daemon --simulate``:
the frame intake watching ``paths.frames_dir``, one worker process running calibration, LA
Cosmic, sources, clusters, products and plate solving) runs its paced control loop at ``--speed``
while ``--frames`` synthetic 2048 x 2048 frames (the 60 cm's unbinned 11' field, stars of the
simulated sky, cosmic rays, a seeing PSF) are dropped into the intake directory at once, so the
worker is never idle until the last one is done. Meanwhile the dome is slewed back and forth so
the loop has real control work. Prints the tick lateness (how late each tick starts against its
schedule, as ``daemon.runner`` measures it) and the tick's own duration, over the ticks while a
frame was being processed, and the frames' processing time.

    .venv/bin/python benchmarks/daemon_frames.py                  # 12 frames at x10, ~3 min
    .venv/bin/python benchmarks/daemon_frames.py --frames 20 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tenmon.core import offline

offline.configure()


def render_frames(n: int, size: int, out: Path, *, ra: float, dec: float, seed: int) -> list[Path]:
    """``n`` frames of the simulated sky around (ra, dec), written as the CCD program would."""
    import numpy as np

    from tenmon.vision.render import sky as skyrender
    from tenmon.vision.solve.catalogs import SimulatedSky

    sky = SimulatedSky(seed=0)
    paths = []
    scale = 11.0 * 60 / size
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        r0, d0 = ra + rng.uniform(-0.5, 0.5), dec + rng.uniform(-0.5, 0.5)
        wcs = skyrender.simple_wcs((r0, d0), shape=(size, size), pixel_scale_arcsec=scale,
                                   rotation_deg=float(rng.uniform(0, 360)))
        stars = sky.cone(r0, d0, size * scale / 3600 * 0.75)
        frame = skyrender.render_star_field(
            wcs=wcs, stars=stars, shape=(size, size), fwhm_px=2.0 / scale, psf="moffat",
            moffat_beta=3.5, sky_adu=800.0, exposure_s=120.0, gain=1.5, read_noise_e=8.0,
            zero_point_mag=22.5, n_cosmic_rays=int(rng.integers(150, 400)), n_hot_pixels=50,
            bias_adu=1000.0, overscan_px=32, seed=seed + 1000 + i)
        path = out / f"b2b_{i:03d}.fits"
        skyrender.write_frame_fits(frame, path, date_obs=datetime(2026, 11, 21, 13, 0,
                                                                  tzinfo=timezone.utc),
                                   mount_ra_deg=r0 + 0.01, mount_dec_deg=d0 - 0.01,
                                   include_wcs=False)
        paths.append(path)
    return paths


async def run(args) -> dict:
    from array import array
    from types import SimpleNamespace

    from tenmon.cli.simulate import latency_figures
    from tenmon.daemon.control_loop import tick_once
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.compose import build_observatory
    from tenmon.daemon.services.night import NightSettings, install_night_operations
    from tenmon.vision.solve.chain import SolverSettings

    work = Path(tempfile.mkdtemp(prefix="tenmon-b2b-"))
    try:
        staging = work / "staging"
        staging.mkdir()
        t0 = time.perf_counter()
        frames = render_frames(args.frames, args.size, staging, ra=60.0, dec=35.0, seed=args.seed)
        render_s = time.perf_counter() - t0
        env = {"TENMON_PATHS__DATA_DIR": str(work / "state"),
               "TENMON_PATHS__FRAMES_DIR": str(work / "frames"),
               "TENMON_PATHS__PRODUCTS_DIR": str(work / "products"),
               "TENMON_SIM__START_UTC": '"2026-11-21T13:00:00Z"'}
        cfg = load_config(simulated_config_path(), env=env)
        obs = build_observatory(cfg, fresh=True)
        obs.start()
        scale = 11.0 * 60 / args.size
        ops = install_night_operations(obs, cfg, sections={
            "night": NightSettings(enabled=False),
            "solver": SolverSettings(order=["hinted"], pixel_scale_arcsec=scale)})
        await ops.start()
        # the figures latency_figures reads (as ControlLoop(record=True) keeps them)
        loop = SimpleNamespace(late_s=array("d"), duration_s=array("d"), busy_flags=array("b"),
                               sim_s=0.0, wall_s=0.0)
        tick_s = cfg.daemon.tick_s
        (work / "frames").mkdir(parents=True, exist_ok=True)
        for p in frames:  # the CCD program's files, all at once: a backlog to work through
            shutil.copy(p, work / "frames" / p.name)
        wall0 = time.monotonic()
        next_wall = wall0
        az = [40.0, 220.0]
        k = 0
        while True:
            c = ops.frames.counts
            if c["done"] + c.get("failed", 0) >= len(frames) and not ops.frames.busy:
                break
            if time.monotonic() - wall0 > args.timeout_s:
                print("timed out waiting for the frames", file=sys.stderr)
                break
            if not obs.dome.slewing and obs.dome.state.value != "error":
                obs.dome_goto(az[k % 2])
                k += 1
            late = max(0.0, time.monotonic() - next_wall)
            obs.loop_stats.add(late)
            t1 = time.perf_counter()
            obs.clock.advance(tick_s)
            tick_once(obs)
            loop.late_s.append(late)
            loop.duration_s.append(time.perf_counter() - t1)
            loop.busy_flags.append(1 if ops.frames.worker.stats.running else 0)
            loop.sim_s += tick_s
            next_wall += tick_s / args.speed
            await asyncio.sleep(max(0.0, next_wall - time.monotonic()))
        loop.wall_s = time.monotonic() - wall0
        rows = obs.store.db.execute(
            "SELECT status, solved, elapsed_ms FROM frames").fetchall()
        await ops.aclose()
        obs.stop()
        lat = latency_figures(loop)
        ms = sorted(r["elapsed_ms"] for r in rows if r["elapsed_ms"] is not None)
        return {
            "frames": len(frames), "size_px": args.size, "speed": args.speed,
            "frames_processed": sum(1 for r in rows if r["status"] == "done"),
            "frames_solved": sum(1 for r in rows if r["solved"] == 1),
            "frame_ms_median": ms[len(ms) // 2] if ms else None,
            "wall_s": round(loop.wall_s, 1), "render_s": round(render_s, 1),
            "dome_gotos": k, "ticks": len(loop.late_s),
            "busy_share": round(sum(loop.busy) / max(1, len(loop.busy)), 3),
            "tick_latency": lat, "cpus": os.cpu_count(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--speed", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=77000)
    p.add_argument("--timeout-s", type=float, default=1200.0)
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = p.parse_args()
    r = asyncio.run(run(args))
    print(json.dumps(r, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    lp = r["tick_latency"]
    print(f"\n{r['frames_processed']}/{r['frames']} frames of {r['size_px']} px processed "
          f"({r['frames_solved']} solved) back to back in {r['wall_s']} s at x{r['speed']:g}; "
          f"worker busy {100 * r['busy_share']:.0f} % of ticks; tick lateness while processing: "
          f"p50 {lp['late_while_processing']['p50_ms']} ms, p99 "
          f"{lp['late_while_processing']['p99_ms']} ms, max {lp['late_while_processing']['max_ms']} ms")
    return 0 if r["frames_processed"] == r["frames"] else 1


if __name__ == "__main__":
    sys.exit(main())
