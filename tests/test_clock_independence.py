"""No test depends on the hour or the date it runs: the suite's time-sensitive tests, under faked
wall clocks.

Each instant runs those tests in a child pytest with tests/faketime_plugin.py, which moves the
wall clock (``time.time``, ``datetime.now``, astropy's ``Time.now``, in every thread) to the
instant at the start of each test (time-machine, ticking). The instants are the hours that broke
CI before (08:2x UTC: between civil and nautical dusk at the site in December, when the next
civil dusk is already tomorrow's), midnight UTC and JST from both sides, a year's end and the
other season (short June nights).

The tests are those that read the wall clock or call code that does: the night jobs on
APScheduler's real clock, the twilight triggers, the queue (added/failed times default to now),
the config's simulated start (13:00 UTC *today* by default), the planner CLI and the simulated
night jobs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TIME_SENSITIVE = [
    "scheduler/test_sched_jobs.py",
    "scheduler/test_sched_night.py",
    "scheduler/test_sched_queue.py",
    "config/test_config.py",
    "cli/test_plan_cli.py",
    "night/test_night_jobs.py",
]
INSTANTS = [
    "2026-12-06T08:25:00Z",  # between civil and nautical dusk at the site (the old daily failure)
    "2026-12-31T23:59:40Z",  # just before midnight UTC, and the year's end
    "2027-03-01T00:00:20Z",  # just after midnight UTC (a month's first day)
    "2026-11-20T14:59:40Z",  # just before midnight JST (the local date changes)
    "2027-06-21T15:00:20Z",  # just after midnight JST, at the summer solstice (shortest nights)
]


def _pythonpath() -> str:
    """The plugin's directory, then this process's own path entries made absolute (the child
    runs elsewhere, and must import the same tenmon)."""
    own = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join([str(TESTS), *own])


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.slow
@pytest.mark.parametrize("instant", INSTANTS)
def test_time_sensitive_tests_pass_at(instant, tmp_path):
    seen = tmp_path / "seen.txt"
    env = {**os.environ, "TENMON_TEST_FAKE_NOW": instant, "TENMON_TEST_FAKE_SEEN": str(seen),
           "PYTHONPATH": _pythonpath()}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "faketime_plugin", "-o", "addopts=", *TIME_SENSITIVE],
                       cwd=TESTS, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"at {instant}:\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}"
    # The faking took: every test started within a few seconds of the instant (a child that
    # ignored the plugin would have read today's date).
    starts = [line.split(" ", 1) for line in seen.read_text().splitlines()]
    assert len(starts) >= 40, f"only {len(starts)} tests ran"
    for node, when in starts:
        assert abs(_utc(when) - _utc(instant)) < timedelta(seconds=5), (node, when)


def test_the_plugin_moves_the_wall_clock_and_lets_it_tick(tmp_path):
    """The check above relies on the plugin: a one-test child sees the instant, threads too."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import threading, time\n"
        "from datetime import datetime, timezone\n"
        "from astropy.time import Time\n"
        "def test_probe():\n"
        "    seen = []\n"
        "    t = threading.Thread(target=lambda: seen.append(datetime.now(timezone.utc)))\n"
        "    t.start(); t.join()\n"
        "    t0 = time.time()\n"
        "    assert datetime.now(timezone.utc).isoformat().startswith('2027-06-21T15:00')\n"
        "    assert seen[0].isoformat().startswith('2027-06-21T15:00')\n"
        "    assert Time.now().isot.startswith('2027-06-21T15:00')\n"
        "    time.sleep(0.05)\n"
        "    assert time.time() > t0  # ticking: real waits still end\n")
    env = {**os.environ, "TENMON_TEST_FAKE_NOW": "2027-06-21T15:00:20Z",
           "PYTHONPATH": _pythonpath()}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "faketime_plugin", "-o", "addopts=", str(probe)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
