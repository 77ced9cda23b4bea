"""A whole simulated night at 60x: wall time, speed reached, the night's report, tick latency.

Runs ``tenmon simulate`` in-process (the same code as the CLI): the simulated observatory with
the night's jobs, planner, sequencer, simulated CCD (512 x 512, 4x4 binned 11' field) and the
frame service (one worker process: calibration, LA Cosmic, sources, plate solving, clusters,
products for every frame). A rain shower and a daemon crash + restart are scripted in the
middle of the night. Prints the report (JSON with --json) and the figures docs/bench/night.md
quotes.

    .venv/bin/python benchmarks/night.py                 # ~13 min wall
    .venv/bin/python benchmarks/night.py --speed 120 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

from tenmon.core import offline

offline.configure()


def main() -> int:
    from tenmon.cli.simulate import SimulationOptions, WeatherStep, run_simulated_night

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--night", default="2026-11-21")
    p.add_argument("--speed", type=float, default=60.0)
    p.add_argument("--frame-px", type=int, default=512)
    p.add_argument("--n-targets", type=int, default=30)
    p.add_argument("--exposure-s", type=float, default=300.0)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--no-rain", action="store_true")
    p.add_argument("--no-restart", action="store_true")
    p.add_argument("--json", type=Path, help="also write the whole report here")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    night = date.fromisoformat(a.night)
    def at(h: int, m: int) -> datetime:
        return datetime(night.year, night.month, night.day, h, m, tzinfo=timezone.utc)

    weather = [] if a.no_rain else [WeatherStep("rain", at_utc=at(13, 0)),
                                    WeatherStep("clear", at_utc=at(13, 40))]
    restart = [] if a.no_restart else [at(16, 30)]
    opts = SimulationOptions(night=night, speed=a.speed, frame_px=a.frame_px,
                             n_targets=a.n_targets, exposure_s=a.exposure_s, count=a.count,
                             weather=weather, restart_at=restart, progress=sys.stderr.isatty())
    t0 = time.time()
    r = run_simulated_night(opts)
    wall = time.time() - t0
    if a.json:
        a.json.write_text(json.dumps(r, indent=1, default=str))
    sim, lat = r["simulation"], r["tick_latency"]
    print(f"night {sim['night']} ({sim['start_utc'][11:16]}-{sim['end_utc'][11:16]} UTC, "
          f"{sim['sim_s'] / 3600:.2f} h simulated) at x{a.speed:g}: wall {wall:.0f} s "
          f"(loop {sim['wall_s']:.0f} s), speed reached x{sim['speed_reached']}, "
          f"{sim['ticks']} ticks of {sim['tick_s']} s, {sim['restarts']} restart(s)")
    for k in ("opened_utc", "closed_utc", "targets_observed", "frames", "frames_processed",
              "frames_solved", "frames_unprocessed", "safety_closes", "slit_closed_after_s",
              "reopens", "weather_lost_s"):
        print(f"  {k}: {r[k]}")
    print(f"  errors: {len(r['errors'])}")
    for e in r["errors"]:
        print(f"    {e['time_utc']} {e['level']} {e['kind']}: {e['message']}")
    for name, f in lat.items():
        print(f"  tick {name}: {f}")
    off = [t["offsets_arcsec"] for t in r["targets"] if len(t["offsets_arcsec"]) >= 2]
    if off:
        first = sorted(c[0] for c in off)
        last = sorted(c[-1] for c in off)
        print(f"  distance from the target: first frame median {first[len(first) // 2]:.1f}\" "
              f"(max {first[-1]:.1f}\"), last frame median {last[len(last) // 2]:.1f}\" "
              f"(max {last[-1]:.1f}\") over {len(off)} targets")
    blocks = [o for t in r["targets"] for o in t["outcomes"]]
    print("  blocks: " + ", ".join(f"{k} {blocks.count(k)}" for k in sorted(set(blocks))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
