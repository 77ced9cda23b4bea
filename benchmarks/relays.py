"""Relay-bank interlock soak: seeded random command sequences on every backend, checked at the wire.

Prints a Markdown report: per backend, how many sequences/ops ran, how often the interesting
things happened (refused interlocks, maximum on-time trips, board losses, reconnects), the worst
on-time past a relay's limit seen on the wire, and the number of violations (must be 0). Also the
LCUS frame pacing cost and the driver's per-command overhead.

Rerun: ``.venv/bin/python benchmarks/relays.py > docs/bench/relays.md`` (about a minute).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "drivers"))

from fake_serial import FakeWire  # noqa: E402
from relay_rigs import BUILDERS, lcus_rig, wire_violations  # noqa: E402

from tenmon.core.clock import FakeClock, RealClock  # noqa: E402
from tenmon.config.models import LcusSerialRelayConfig, SimulatedRelayConfig  # noqa: E402
from tenmon.drivers.relays.lcus import LcusRelayBank  # noqa: E402
from tenmon.drivers.sim.relays import SimulatedRelayBank  # noqa: E402
from tenmon.core.errors import DeviceDisconnected, DeviceNotFound, InterlockError  # noqa: E402

CHANNELS = 6
PAIRS = [(1, 2), (3, 4), (5, 6)]
MAX_ON_S = 3.0
PER_CHANNEL = {1: 5.0, 3: 1.5}
LIMITS = {ch: PER_CHANNEL.get(ch, MAX_ON_S) for ch in range(1, CHANNELS + 1)}
TICK_S = 0.5
GAP_S = 0.05
SEQUENCES = 400
OPS = 120
KINDS = ["lcus", "lcus-paced", "gpio", "gpio-active-low", "hid", "sim"]
UNPLUGGABLE = {"lcus", "lcus-paced", "hid", "sim"}


def build(kind: str):
    clock = FakeClock()
    kw = dict(channels=CHANNELS, interlocks=PAIRS, max_on_s=MAX_ON_S, per_channel=PER_CHANNEL)
    if kind == "lcus-paced":
        return lcus_rig(clock, frame_gap_s=GAP_S, paced=True, reconnect_s=2.0, **kw)
    if kind == "lcus":
        return lcus_rig(clock, reconnect_s=2.0, **kw)
    return BUILDERS[kind](clock, **kw)


def random_op(rng: random.Random, unplug: bool):
    r = rng.random()
    if r < 0.45:
        return ("set", rng.randint(1, CHANNELS), rng.random() < 0.6)
    if r < 0.65:
        return ("tick", rng.uniform(0, TICK_S))
    if r < 0.80:
        return ("run", rng.randint(1, 20))
    if r < 0.85:
        return ("all_off",)
    if r < 0.90:
        return ("is_on", rng.randint(1, CHANNELS))
    rare = ["connect", "disconnect", "cycle"] + (["unplug", "replug", "pull", "pull"]
                                                 if unplug else [])
    name = rng.choice(rare)
    return (name, rng.randint(0, 16)) if name == "pull" else (name,)


def soak(kind: str, seed: int) -> dict:
    rng = random.Random(seed)
    stats = dict(ops=0, transitions=0, refused=0, tripped=0, lost=0, reconnected=0,
                 worst_over_s=float("-inf"), violations=0)
    slack = TICK_S + ((2 * CHANNELS + 1) * GAP_S if kind == "lcus-paced" else 0.0)
    for _ in range(SEQUENCES):
        rig = build(kind)
        bank, clock = rig.bank, rig.clock

        def tick(dt, clock=clock, bank=bank):
            clock.advance(dt)
            bank.service()

        bank.connect()
        for _ in range(OPS):
            op = random_op(rng, kind in UNPLUGGABLE)
            stats["ops"] += 1
            try:
                if op[0] == "set":
                    bank.set(op[1], op[2])
                elif op[0] == "tick":
                    tick(op[1])
                elif op[0] == "run":
                    for _ in range(op[1]):
                        tick(TICK_S)
                elif op[0] == "all_off":
                    bank.all_off()
                elif op[0] == "is_on":
                    bank.is_on(op[1])
                elif op[0] == "connect":
                    bank.connect()
                elif op[0] == "disconnect":
                    bank.disconnect()
                elif op[0] == "cycle":
                    bank.disconnect()
                    bank.connect()
                elif op[0] == "unplug":
                    rig.unplug()
                elif op[0] == "replug":
                    rig.replug()
                elif op[0] == "pull":
                    rig.unplug()
                    for _ in range(op[1]):
                        tick(TICK_S)
                    rig.replug()
            except InterlockError:
                stats["refused"] += 1
            except (DeviceDisconnected, DeviceNotFound):
                pass
            phys, cmd = rig.physical_all(), bank.commanded()
            if any(phys[c] and not cmd[c] for c in phys):
                stats["violations"] += 1
        trans = rig.transitions()
        stats["transitions"] += len(trans)
        stats["violations"] += len(wire_violations(trans, channels=CHANNELS, pairs=PAIRS,
                                                   limits=LIMITS, slack_s=slack,
                                                   end_t=clock.monotonic()))
        since: dict[int, float] = {}
        for t, ch, on in trans + [(clock.monotonic(), c, False) for c in range(1, CHANNELS + 1)]:
            if on and ch not in since:
                since[ch] = t
            elif not on and ch in since:
                stats["worst_over_s"] = max(stats["worst_over_s"],
                                            t - since.pop(ch) - LIMITS[ch])
        kinds = [e.kind for e in bank.events()]
        stats["tripped"] += kinds.count("max-on-time")
        stats["lost"] += kinds.count("board-lost")
        stats["reconnected"] += kinds.count("reconnected")
        bank.disconnect()
    return stats


def main() -> None:
    print("# Relay banks: interlock and on-time soak at the wire\n")
    print(f"{SEQUENCES} seeded random sequences of {OPS} operations per backend ({CHANNELS} "
          f"channels, interlocks {PAIRS}, limits {LIMITS} s, control tick <= {TICK_S} s). "
          "The relays' states are decoded from the wire (LCUS frames, gpiozero mock pin levels, "
          "HID board mask, simulated coils) with the fake clock's time. 'worst past limit' is "
          "the longest any relay stayed on beyond its limit (negative: never reached it); the "
          f"allowed slack is one tick ({TICK_S} s), plus the frame gaps for paced LCUS.\n")
    print("Rerun: `.venv/bin/python benchmarks/relays.py > docs/bench/relays.md`. The same "
          "property runs in CI as a hypothesis test (200 shrinking examples per backend): "
          "`.venv/bin/python -m pytest tests/drivers/test_relays_property.py -q`.\n")
    print("| backend | ops | wire changes | interlock refusals | limit trips | board losses | "
          "reconnects | worst past limit (s) | violations | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, kind in enumerate(KINDS):
        t0 = time.perf_counter()
        s = soak(kind, seed=1000 + i)
        dt = time.perf_counter() - t0
        print(f"| {kind} | {s['ops']} | {s['transitions']} | {s['refused']} | {s['tripped']} | "
              f"{s['lost']} | {s['reconnected']} | {s['worst_over_s']:.3f} | "
              f"**{s['violations']}** | {dt:.1f} |", flush=True)

    print("\n## Costs\n")
    url = "fake://bench-lcus"
    FakeWire.register(url, RealClock())
    bank = LcusRelayBank("b", LcusSerialRelayConfig(type="lcus-serial", port=url, channels=8),
                         RealClock())
    t0 = time.perf_counter()
    bank.connect()
    t_connect = time.perf_counter() - t0
    t0 = time.perf_counter()
    bank.all_off()
    t_off = time.perf_counter() - t0
    bank.disconnect()
    print(f"- LCUS, 8 channels, default frame gap {bank.frame_gap_s} s (real clock): connect "
          f"{t_connect * 1000:.0f} ms, all_off {t_off * 1000:.0f} ms (7 gaps between 8 frames).")
    sim = SimulatedRelayBank("s", SimulatedRelayConfig(type="simulated", channels=8,
                                                       interlocks=[(1, 2)]), RealClock())
    sim.connect()
    n = 20000
    t0 = time.perf_counter()
    for i in range(n):
        sim.set(1 + (i % 2) * 2, i % 4 < 2)
        sim.service()
    per = (time.perf_counter() - t0) / n
    print(f"- Driver overhead (simulated board, set + service): {per * 1e6:.1f} us per pair.")


if __name__ == "__main__":
    main()
