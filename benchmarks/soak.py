"""The soak of issue 12: a simulated week of the observatory at full speed, in-process on its
FakeClock, with seeded random weather (clear, rain, wind, humid), random simulator faults (each
cleared after 1 to 30 minutes) and an operator who opens the slit and cover whenever allowed.

Reports what ``tests/daemon/test_fault_campaign.py::test_soak`` asserts over one night: no missed
close (every unsafe period with the slit open ends with the slit verified closed or an alarm
within the campaign's bound), never "safe state" with the slit open, RSS and database size per
day (retention: events and device history kept 6 hours, pruned daily), the wall time.

Rerun: ``.venv/bin/python benchmarks/soak.py > docs/bench/soak.md`` (about 20 minutes on a
loaded 2-core box; ``--days 1`` for a shorter run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "daemon"))
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")

from tenmon.core import offline  # noqa: E402

offline.configure()


def main() -> int:
    import logging

    import fault_campaign as fc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        r = fc.soak(args.days, args.seed, work,
                    progress=lambda res, t: print(f"day {t / 86400:.0f}: RSS {res.rss_daily_mb[-1]}"
                                                  f" MB, database {res.db_mb_daily[-1]} MB",
                                                  file=sys.stderr, flush=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    days = len(r.rss_daily_mb)
    print(f"""# Soak: a simulated week with random weather and faults

Rerun: `.venv/bin/python benchmarks/soak.py --days {args.days:g} --seed {args.seed} > docs/bench/soak.md`

The simulated observatory in-process on its FakeClock at full speed (control tick 0.5 s; the
fault campaign uses the configured 0.1 s), real SQLite store and writer thread, real alert path
(apprise to a local HTTP receiver, rate limit off). Seeded random weather every 10-120 min
(clear 70 %, rain 15 %, wind 16-25 m/s 10 %, humid 5 %), a random simulator fault every
30-180 min ({', '.join(fc.SOAK_FAULTS)}) cleared after 1-30 min, an operator who opens the slit
and cover (and half the time turns the dome) whenever the daemon allows it, every 5 min.
Retention: events and device history kept 6 h (`events_keep_days = history_keep_days = 0.25`),
pruned once a simulated day. A *missed close* is an unsafe period with the slit not verified
closed that lasts over {fc.BOUND_S:g} s with no alarm.

| figure | value |
|---|---|
| simulated days | {args.days:g} ({r.ticks} ticks) |
| wall time | {r.wall_s:.0f} s |
| weather changes / faults injected / opens | {r.weather_changes} / {r.faults} / {r.opens} |
| unsafe periods with the slit not closed | {r.unsafe_periods} |
| ... ended verified closed | {r.closes} |
| ... with an alarm | {r.alarmed} |
| **missed closes** | **{len(r.missed)}** |
| **ticks saying "safe state" with the slit open** | **{r.false_safe}** |
| alarm events / alerts delivered | {r.alarms} / {r.alerts_posted} |
| RSS after the first simulated hour -> end | {r.rss_start_mb:.1f} MB -> {r.rss_end_mb:.1f} MB |
| RSS at the end of each day (MB) | {', '.join(f'{v:g}' for v in r.rss_daily_mb)} |
| database + WAL at the end of each day (MB) | {', '.join(f'{v:g}' for v in r.db_mb_daily)} |
| database + WAL at the end | {r.db_mb_end:g} MB |
| events / device-history rows in the database at the end | {r.events_in_db} / {r.history_rows} |
| oldest event in the database | {r.oldest_event_age_h:g} h old |
| slit open fraction at the end (simulated truth) | {r.open_at_end:g} |
""")
    if r.missed:
        print("Missed closes:\n")
        for m in r.missed:
            print(f"- {m}")
    print(f"\n{days} simulated days measured.")
    return 1 if (r.missed or r.false_safe) else 0


if __name__ == "__main__":
    sys.exit(main())
