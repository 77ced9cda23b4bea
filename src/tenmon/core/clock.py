"""Injected clocks: the real one for a site, a fake one for tests and accelerated simulated nights."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    """What tenmon asks of time. ``now()`` is timezone-aware UTC; ``monotonic()`` is seconds."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class RealClock:
    """Wall-clock time, for a real site."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to.

    Tests advance it by hand; the simulated daemon advances it one control tick at a time and
    paces ticks against the wall clock (``--speed N``), so a seeded simulation is deterministic
    however loaded the machine is.
    """

    def __init__(self, start: datetime | None = None):
        start = start or datetime(2026, 11, 21, 13, 0, tzinfo=timezone.utc)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._start = start.astimezone(timezone.utc)
        self._elapsed = 0.0

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never runs backwards")
        self._elapsed += seconds

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (must not be earlier than now)."""
        self.advance((when - self.now()).total_seconds())
