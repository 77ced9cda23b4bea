"""The IR-camera encoder in the simulated loop: dome landing error against the TRUE azimuth, tick latency.

The simulated observatory of ``config/simulated.toml`` with the encoder replaced by the IR
encoder on the simulated IR camera (relays -> world -> rendered frame -> model -> tracker ->
dome controller), ticked paced at ``--speed`` x real time as ``tenmon daemon --simulate`` does.
Random dome gotos; for each: landing error (world's true azimuth - target), time to land.
Tick latency: wall time of ``Observatory.tick()`` (the control loop's own cost, with the worker
thread rendering and inferring beside it; it includes the simulated encoder's holds, reported
separately as ``encoder_held_s``).

Run: .venv/bin/python benchmarks/ir_encoder_loop.py [--gotos 20] [--speed 10] [--max-lag-s 1.0]
``--max-lag-s``: the simulated encoder's hold (update() waits while the camera lags more than
this many simulated seconds); 0 disables it (then the camera's wall-time lag at x10 loses the
encoder on a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time

from tenmon.core import offline
from tenmon.core.astro import wrap180
from tenmon.config.loader import load_config, simulated_config_path
from tenmon.drivers.sim.ir_camera import SimulatedIrEncoderConfig
from tenmon.daemon.control_loop import tick_once

offline.configure()


def build(encoder_config: SimulatedIrEncoderConfig, seed: int):
    """The simulated observatory of ``config/simulated.toml`` with the IR encoder in the loop."""
    from tenmon.daemon.compose import build_observatory

    env = {"TENMON_PATHS__DATA_DIR": tempfile.mkdtemp(), "TENMON_SIM__SEED": str(seed),
           "TENMON_SIM__START_UTC": '"2026-11-21T13:00:00Z"'}
    config = load_config(simulated_config_path(), env=env)
    return build_observatory(config.model_copy(update={"encoder": encoder_config}), fresh=True)


class Paced:
    def __init__(self, obs, speed: float, max_lag_s: float):
        self.obs, self.speed, self.max_lag_s = obs, speed, max_lag_s
        self.tick_s = obs.config.daemon.tick_s
        self.tick_ms: list[float] = []
        self.late_ms: list[float] = []

    def run(self, seconds: float, until=None) -> float:
        next_wall = time.monotonic()
        n = int(round(seconds / self.tick_s))
        for i in range(n):
            self.late_ms.append(max(0.0, time.monotonic() - next_wall) * 1000.0)
            self.obs.clock.advance(self.tick_s)
            t0 = time.perf_counter()
            tick_once(self.obs)
            self.tick_ms.append((time.perf_counter() - t0) * 1000.0)
            if until is not None and until():
                return (i + 1) * self.tick_s
            next_wall += self.tick_s / self.speed
            delay = next_wall - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:
                next_wall = time.monotonic()
        return n * self.tick_s


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gotos", type=int, default=20)
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-lag-s", type=float, default=1.0)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    args = ap.parse_args()

    cfg = SimulatedIrEncoderConfig(type="simulated-ir", width_px=args.width, height_px=args.height,
                                   max_lag_s=args.max_lag_s)
    obs = build(cfg, args.seed)
    obs.start()
    rig = Paced(obs, args.speed, args.max_lag_s)
    rng = random.Random(args.seed)
    t_wall = time.monotonic()
    rig.run(4.0)
    results = []
    for _ in range(args.gotos):
        target = round(rng.uniform(0.0, 360.0), 1)
        start_az = obs.world.state.dome_az_deg
        try:
            obs.dome_goto(target)
        except Exception as exc:  # noqa: BLE001 - a refused goto is a result, recorded
            results.append({"target": target, "error": str(exc), "landed": False})
            rig.run(5.0)
            continue
        took = rig.run(240.0, until=lambda: not obs.dome.slewing)
        rig.run(3.0)  # the dome at rest: what it settles at
        true_az = obs.world.state.dome_az_deg
        results.append({"target": target, "from": round(start_az, 1), "landed": obs.dome.state.value == "idle",
                        "error_deg": round(wrap180(true_az - target), 3), "seconds": round(took, 1),
                        "encoder_error_deg": (None if obs.dome.azimuth_deg is None
                                              else round(wrap180(obs.dome.azimuth_deg - true_az), 3)),
                        "dome_error": obs.dome.error})
        if obs.dome.state.value == "error":
            obs.dome.abort()
            rig.run(5.0)
    wall = time.monotonic() - t_wall
    stats = obs.encoder.stats()
    held_s = obs.encoder.held_s
    obs.stop()

    errs = [abs(r["error_deg"]) for r in results if "error_deg" in r]
    enc = [abs(r["encoder_error_deg"]) for r in results if r.get("encoder_error_deg") is not None]
    summary = {
        "gotos": args.gotos, "speed": args.speed, "frame": f"{args.width}x{args.height}",
        "max_lag_s": args.max_lag_s, "landed": sum(r["landed"] for r in results),
        "within_1deg": sum(e <= 1.0 for e in errs),
        "landing_error_deg": {"median": round(statistics.median(errs), 3), "p95": round(pct(errs, 95), 3),
                              "max": round(max(errs), 3)} if errs else None,
        "encoder_vs_true_at_rest_deg": {"median": round(statistics.median(enc), 3),
                                        "max": round(max(enc), 3)} if enc else None,
        "tick_ms": {"p50": round(pct(rig.tick_ms, 50), 3), "p99": round(pct(rig.tick_ms, 99), 3),
                    "max": round(max(rig.tick_ms), 3)},
        "tick_start_late_ms": {"p50": round(pct(rig.late_ms, 50), 2), "p99": round(pct(rig.late_ms, 99), 2)},
        "encoder_held_s": round(held_s, 1),
        "frames_processed": stats["frames_processed"],
        "processing_ms_median": round(stats["processing_ms_median"], 1),
        "wall_s": round(wall, 1), "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "runs": results,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    le = summary["landing_error_deg"]
    print(f"{summary['landed']}/{args.gotos} gotos landed, {summary['within_1deg']} within 1.0 deg of the true azimuth "
          f"(speed x{args.speed:g}, {summary['frame']} frames, encoder held the loop {summary['encoder_held_s']} s of wall time)")
    if le:
        print(f"landing error vs true azimuth: median {le['median']} deg, p95 {le['p95']} deg, max {le['max']} deg")
    print(f"tick latency: p50 {summary['tick_ms']['p50']} ms, p99 {summary['tick_ms']['p99']} ms "
          f"(max {summary['tick_ms']['max']} ms); frames processed {summary['frames_processed']}, "
          f"detector+tracker median {summary['processing_ms_median']} ms; wall {summary['wall_s']} s")
    for r in results:
        print("  ", json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
