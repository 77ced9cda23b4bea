"""pytest plugin: every test runs as if the wall clock read ``TENMON_TEST_FAKE_NOW`` (ISO 8601).

Loaded by tests/test_clock_independence.py into a child pytest (``-p faketime_plugin``), never by
default. time-machine moves ``time.time``, ``datetime.now``, ``date.today`` and astropy's
``Time.now`` (threads included) to the instant at the start of each test and lets it tick from
there, so real waits still end. If ``TENMON_TEST_FAKE_SEEN`` names a file, the wall clock each
test saw when it started is appended to it, so the caller can check that the faking took.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
import time_machine


def _instant() -> datetime:
    return datetime.fromisoformat(os.environ["TENMON_TEST_FAKE_NOW"].replace("Z", "+00:00"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    with time_machine.travel(_instant(), tick=True):
        seen = os.environ.get("TENMON_TEST_FAKE_SEEN")
        if seen:
            with open(seen, "a", encoding="utf-8") as f:
                f.write(f"{item.nodeid} {datetime.now(timezone.utc).isoformat()}\n")
        yield
