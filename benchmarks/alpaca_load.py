"""Alpaca server under load: requests per second, and the control tick's lateness while polled.

The simulated observatory runs as the daemon runs it (``daemon.runner``'s control loop, real
time, tick 0.1 s) with the Alpaca server on 127.0.0.1; alpyca clients in separate processes
(as NINA, a weather display and a scheduler would be) poll a client's usual mix: dome azimuth,
shutter status, slewing, IsSafe, cover state, wind speed, DeviceState. Phases: no clients, then
1, 4 and 8 clients polling as fast as they can, then 8 clients at 2 Hz each (what programs
actually do). For each: requests/s answered, client round-trip p50/p99, and how late control
ticks started (p50, p99, max; the daemon's own LoopStats measure).

Rerun: ``nice -n 19 .venv/bin/python benchmarks/alpaca_load.py > docs/bench/alpaca.md``
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PHASE_S = float(os.environ.get("ALPACA_BENCH_PHASE_S", "15"))
PHASES = [(0, None), (1, None), (4, None), (8, None), (8, 2.0)]  # (clients, Hz each or flat out)


def client(address: str, seconds: float, rate_hz: float | None, out) -> None:
    """One client process: poll the mix for ``seconds``; put (count, errors, latencies)."""
    from alpaca.covercalibrator import CoverCalibrator
    from alpaca.dome import Dome
    from alpaca.observingconditions import ObservingConditions
    from alpaca.safetymonitor import SafetyMonitor

    dome, cover = Dome(address, 0), CoverCalibrator(address, 0)
    safety, weather = SafetyMonitor(address, 0), ObservingConditions(address, 0)
    for d in (dome, cover, safety, weather):
        d.Connect()
    reads = [lambda: dome.Azimuth, lambda: dome.ShutterStatus, lambda: dome.Slewing,
             lambda: safety.IsSafe, lambda: cover.CoverState, lambda: weather.WindSpeed,
             lambda: dome.DeviceState]
    lat: list[float] = []
    errors = 0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            reads[i % len(reads)]()
        except Exception:  # noqa: BLE001 - counted
            errors += 1
        lat.append(time.monotonic() - t0)
        i += 1
        if rate_hz:
            time.sleep(max(0.0, 1.0 / rate_hz - (time.monotonic() - t0)))
    out.put((len(lat), errors, lat))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


async def main() -> None:
    from tenmon.core import offline
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.api.alpaca import AlpacaService
    from tenmon.daemon.compose import build_observatory
    from tenmon.daemon.notify import SystemdNotifier
    from tenmon.daemon.observatory import LoopStats
    from tenmon.daemon.runner import _loop

    offline.configure()
    data = Path(tempfile.mkdtemp(prefix="alpaca-bench-"))
    cfg = load_config(simulated_config_path(), env={
        "TENMON_PATHS__DATA_DIR": str(data), "TENMON_SIM__START_UTC": '"2026-11-21T13:00:00Z"',
        "TENMON_ALPACA__ENABLED": "true", "TENMON_ALPACA__DISCOVERY": "false"})
    obs = build_observatory(cfg, fresh=True)
    obs.start()
    service = AlpacaService(obs, cfg.alpaca.model_copy(update={"port": free_port()}))
    await service.start()
    address = f"127.0.0.1:{service.port}"
    loop_task = asyncio.create_task(_loop(obs, cfg, 1.0, SystemdNotifier(), lambda: 0))
    await asyncio.sleep(5.0)  # first readings, the start-up reconcile
    ctx = mp.get_context("spawn")
    rows = []
    t_all = time.monotonic()
    for n, rate in PHASES:
        obs.loop_stats = LoopStats()
        q = ctx.Queue()
        procs = [ctx.Process(target=client, args=(address, PHASE_S, rate, q)) for _ in range(n)]
        for p in procs:
            p.start()
        t0 = time.monotonic()
        await asyncio.sleep(PHASE_S + (4.0 if n else 0.0))  # the clients' start-up too
        results = []
        while len(results) < n:
            results.append(await asyncio.to_thread(q.get, True, 120))
        for p in procs:
            p.join(30)
        count = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        lat = [x for r in results for x in r[2]]
        stats = obs.loop_stats.values
        rows.append((n, rate, count / PHASE_S if n else 0.0, errors, pct(lat, 0.5) * 1e3,
                     pct(lat, 0.99) * 1e3, len(stats), pct(stats, 0.5) * 1e3,
                     pct(stats, 0.99) * 1e3, max(stats) * 1e3 if stats else float("nan"),
                     time.monotonic() - t0))
    loop_task.cancel()
    try:
        await loop_task
    except asyncio.CancelledError:
        pass
    await service.stop()
    obs.stop()
    obs.store.close()
    took = time.monotonic() - t_all

    print("# Alpaca server under load\n")
    print(f"Measured {time.strftime('%Y-%m-%d')} on the 2-core development machine (shared with "
          "other jobs; the clients run on the same two cores as the daemon). Rerun: "
          "`nice -n 19 .venv/bin/python benchmarks/alpaca_load.py > docs/bench/alpaca.md` "
          f"({PHASE_S:g} s per phase; `ALPACA_BENCH_PHASE_S` changes it).\n")
    print("The simulated observatory runs the daemon's own control loop in real time (tick "
          "0.1 s) with the Alpaca server on 127.0.0.1; each client is an alpyca process "
          "polling dome Azimuth, ShutterStatus, Slewing, IsSafe, CoverState, WindSpeed and "
          "DeviceState in turn. Tick lateness: how late each control tick started against its "
          "schedule (the daemon's LoopStats).\n")
    print("| clients | each polls | requests/s | errors | round trip p50 | p99 | ticks | "
          "tick late p50 | p99 | max |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, rate, rps, errors, l50, l99, ticks, t50, t99, tmax, _ in rows:
        each = "-" if n == 0 else ("flat out" if rate is None else f"{rate:g} Hz")
        lat = ("-", "-") if n == 0 else (f"{l50:.1f} ms", f"{l99:.1f} ms")
        print(f"| {n} | {each} | {rps:.0f} | {errors} | {lat[0]} | {lat[1]} | {ticks} | "
              f"{t50:.1f} ms | {t99:.1f} ms | {tmax:.1f} ms |")
    print(f"\nTook {took:.0f} s.")


if __name__ == "__main__":
    asyncio.run(main())
