"""Benchmark: `tenmon center` and Nayuta sync in the simulated daemon (in-process, fast clock).

N centring jobs, each from a fresh random pointing error of 5' (the simulated mount's error
model, seeded terms scaled to 5' at the target) on random targets above 30 deg altitude: the
tries histogram and the final separation by TRUE pointing (``world.true_pointing()``); then M
Nayuta syncs on random simulated Nayuta targets: the final true separation and the magnitudes.

    .venv/bin/python benchmarks/centring.py [--n 20] [--m 5] [--px 512] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tenmon.daemon.control_loop import tick_once


def build(tmp: Path, px: int):
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.services.centring import CentringServiceSettings
    from tenmon.daemon.compose import build_observatory, install_centring
    from tenmon.daemon.services.night import NightSettings, install_night_operations
    from tenmon.drivers.camera import CameraSettings
    from tenmon.vision.frames.cosmics import CosmicSettings
    from tenmon.vision.frames.pipeline import PipelineSettings
    from tenmon.vision.frames.products import ProductSettings
    from tenmon.vision.solve.chain import CatalogSettings, SolverSettings

    cfg = load_config(simulated_config_path(), env={
        "TENMON_PATHS__DATA_DIR": str(tmp), "TENMON_SIM__START_UTC": '"2026-11-21T12:00:00Z"'})
    obs = build_observatory(cfg, fresh=True)
    obs.start()
    binning = max(1, round(2048 / px))
    ops = install_night_operations(obs, cfg, sections={
        "night": NightSettings(enabled=False),
        "camera": CameraSettings(width_px=px, height_px=px, binning=binning),
        "pipeline": PipelineSettings(cosmics=CosmicSettings(enabled=False),
                                     products=ProductSettings(clean_fits=False, mask_fits=False,
                                                              preview=False, regions=False)),
        "solver": SolverSettings(order=["hinted"], pointing_error_deg=0.15,
                                 catalog=CatalogSettings(provider="simulated"))},
        executor=ThreadPoolExecutor(max_workers=1))
    ops.camera.render_in = "thread"
    ops.camera.disconnect()
    ops.camera.connect()
    svc = install_centring(obs, ops, settings=CentringServiceSettings(exposure_s=20.0,
                                                                      settle_s=5.0))
    return obs, ops, svc


async def run_until(obs, ops, svc, done, wall_s=300.0):
    t0 = time.monotonic()
    while not done():
        busy = (ops.frames.started and ops.frames.processing) or ops.camera.rendering or \
            svc.nayuta.computing
        if busy:
            await asyncio.sleep(0.01)
        else:
            obs.clock.advance(obs.config.daemon.tick_s)
        tick_once(obs)
        await asyncio.sleep(0)
        if time.monotonic() - t0 > wall_s:
            raise RuntimeError("timed out")


def set_error(world, ra, dec, arcmin, rng):
    terms = {"IH": rng.uniform(-0.6, 0.6), "ID": rng.uniform(-0.6, 0.6),
             "CH": rng.uniform(-0.3, 0.3), "NP": rng.uniform(-0.2, 0.2),
             "MA": rng.uniform(-0.2, 0.2), "ME": rng.uniform(-0.2, 0.2)}
    world.state.pointing_terms_arcmin = dict(terms)
    ha = (world.lst() - ra + 180.0) % 360.0 - 180.0
    dh, dd = world.pointing_model().offsets_arcsec(ha, dec, "east")
    err = math.hypot(float(dh[0]) * math.cos(math.radians(dec)), float(dd[0]))
    world.state.pointing_terms_arcmin = {k: v * arcmin * 60.0 / err for k, v in terms.items()}


def random_target(world, lat, rng):
    from tenmon.core.astro import radec_to_altaz

    while True:
        ha, dec = rng.uniform(-60, 60), rng.uniform(-20, 80)
        ra = (world.lst() - ha) % 360.0
        if radec_to_altaz(ra, dec, world.lst(), lat)[0] > 30.0:
            return ra, dec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="centring jobs")
    ap.add_argument("--m", type=int, default=5, help="Nayuta syncs")
    ap.add_argument("--px", type=int, default=512, help="frame size (binned px over 11')")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    from tenmon.drivers.base import ShutterState
    from tenmon.vision.solve.centering import separation_arcsec

    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as d:
        obs, ops, svc = build(Path(d), a.px)
        w = obs.world
        lat = obs.config.site.latitude_deg
        for _ in range(40):  # first readings and the start-up reconcile
            obs.clock.advance(obs.config.daemon.tick_s)
            tick_once(obs)
        obs.slit_open()
        obs.cover_open()
        asyncio.run(run_until(obs, ops, svc, lambda: obs.slit.state == ShutterState.OPEN
                              and obs.cover.state == ShutterState.OPEN))
        tries, seps, first, states, walls, sims = Counter(), [], [], Counter(), [], []
        for i in range(a.n):
            ra, dec = random_target(w, lat, rng)
            set_error(w, ra, dec, 5.0, rng)
            t0, s0 = time.monotonic(), obs.clock.monotonic()
            job = svc.start(ra, dec, max_tries=3)
            asyncio.run(run_until(obs, ops, svc, lambda: job.finished))
            walls.append(time.monotonic() - t0)
            sims.append(obs.clock.monotonic() - s0)
            states[job.state] += 1
            tries[len(job.tries)] += 1
            first.append(job.tries[0].separation_arcsec or float("nan"))
            seps.append(separation_arcsec(ra, dec, *w.true_pointing()))
            print(f"centre {i + 1:2d}: RA {ra:7.3f} Dec {dec:+6.2f}: {job.state}, "
                  f"{len(job.tries)} tries, first {first[-1]:6.1f}\", final (true) "
                  f"{seps[-1]:5.2f}\"", flush=True)
        print(f"\ncentring: {a.n} jobs from 5' errors, {a.px} px frames, 20 s exposures")
        print(f"  states: {dict(states)}; tries histogram: {dict(sorted(tries.items()))}")
        print(f"  first-frame separation: median {statistics.median(first):.0f}\"")
        print(f"  final separation by true pointing: median {statistics.median(seps):.2f}\", "
              f"max {max(seps):.2f}\"; within 10\": {sum(s < 10 for s in seps)}/{a.n}")
        print(f"  per job: median {statistics.median(sims):.0f} s simulated, "
              f"{statistics.median(walls):.1f} s wall (clock waits for rendering and solving)")
        nay = svc.nayuta
        nseps, dmag60, dmagsv, ok = [], [], [], 0
        for i in range(a.m):
            ra, dec = random_target(w, lat, rng)
            star = nay.set_sim_target(ra, dec)
            set_error(w, star["ra_deg"], star["dec_deg"], 5.0, rng)
            run = nay.sync(once=True)
            asyncio.run(run_until(obs, ops, svc, lambda: run.finished))
            res = nay.result(run)
            ok += bool(res["ok"])
            nseps.append(separation_arcsec(star["ra_deg"], star["dec_deg"], *w.true_pointing()))
            if res["mag_60cm_calibrated"] is not None:
                dmag60.append(res["mag_60cm_calibrated"] - star["mag"])
            if res["mag_slit_viewer_model_calibrated"] is not None:
                dmagsv.append(res["mag_slit_viewer_model_calibrated"] - star["mag"])
            print(f"nayuta {i + 1}: mag {star['mag']:.2f}: ok={res['ok']} route {res['route']} "
                  f"tries {[t['separation_arcsec'] for t in res['tries']]} final (true) "
                  f"{nseps[-1]:.2f}\" mag60 {res['mag_60cm_calibrated']} sv(model) "
                  f"{res['mag_slit_viewer_model_calibrated']} sv(wings, limit) "
                  f"{res['mag_slit_viewer_calibrated']}; {res['elapsed_s']} s simulated",
                  flush=True)
        if a.m:
            print(f"\nnayuta: {ok}/{a.m} ok; final separation by true pointing: max "
                  f"{max(nseps):.2f}\"; 60 cm mag - catalogue: "
                  f"{', '.join(f'{x:+.3f}' for x in dmag60)}; slit viewer (slit-loss model) - "
                  f"catalogue: {', '.join(f'{x:+.2f}' for x in dmagsv)}")
        obs.stop()


if __name__ == "__main__":
    main()
