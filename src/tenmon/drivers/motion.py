"""Shared pieces of the relay-driven motion controllers: notices, encoder trust, relay switching."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from tenmon.core.clock import Clock
from tenmon.drivers.base import Encoder, RelayBank, SlitReading
from tenmon.core.errors import DeviceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """Something a device wants the operator's log to say (the daemon turns it into an event)."""

    device: str
    level: str  # info | warning | error | alarm
    message: str
    data: dict = field(default_factory=dict)


class NoticeBoard:
    """Collects notices; the daemon drains them every tick into the event log."""

    def __init__(self, device: str):
        self.device = device
        self._notices: list[Notice] = []

    def notice(self, level: str, message: str, **data) -> None:
        getattr(log, "warning" if level in ("warning", "error", "alarm") else "info")(
            "%s: %s", self.device, message)
        self._notices.append(Notice(self.device, level, message, data))

    def drain_notices(self) -> list[Notice]:
        out, self._notices = self._notices, []
        return out


class EncoderView:
    """The last trustworthy encoder reading and how old it is.

    A reading is trusted when its state is not ``unknown`` and its confidence reaches
    ``min_confidence``. ``lost(grace_s)`` is true when no trusted reading arrived for longer than
    ``grace_s`` (a single dropped frame is not a loss).
    """

    def __init__(self, encoder: Encoder, clock: Clock, min_confidence: float = 0.3):
        self.encoder = encoder
        self.clock = clock
        self.min_confidence = min_confidence
        self.good: SlitReading | None = None
        self.good_at: float | None = None  # clock.monotonic() when it was taken
        self.history: list[tuple[float, float]] = []  # (monotonic, unwrapped azimuth)
        self._last_time: datetime | None = None

    def refresh(self) -> None:
        r = self.encoder.reading()
        if r.time == self._last_time:
            return
        self._last_time = r.time
        if r.state == "unknown" or r.confidence < self.min_confidence or r.azimuth_deg is None:
            return
        t = self.clock.monotonic() - max(0.0, (self.clock.now() - r.time).total_seconds())
        if self.history:
            prev = self.history[-1][1]
            az = prev + ((r.azimuth_deg - prev + 180.0) % 360.0 - 180.0)
        else:
            az = r.azimuth_deg
        self.history.append((t, az))
        while self.history and self.history[0][0] < t - 1.5:
            self.history.pop(0)
        self.good, self.good_at = r, t

    def age(self) -> float:
        return float("inf") if self.good_at is None else self.clock.monotonic() - self.good_at

    def lost(self, grace_s: float) -> bool:
        return self.age() > grace_s

    def velocity(self) -> float:
        """Azimuth rate in deg/s: least-squares slope over the last ~1.5 s of readings."""
        h = self.history
        if len(h) < 3:
            return 0.0
        n = len(h)
        mt = sum(t for t, _ in h) / n
        ma = sum(a for _, a in h) / n
        den = sum((t - mt) ** 2 for t, _ in h)
        if den <= 0:
            return 0.0
        return sum((t - mt) * (a - ma) for t, a in h) / den

    def mean_recent(self, window_s: float) -> float | None:
        """Mean azimuth of the readings of the last ``window_s`` seconds (for a dome at rest)."""
        if not self.history:
            return None
        t_last = self.history[-1][0]
        pts = [a for t, a in self.history if t >= t_last - window_s]
        return (sum(pts) / len(pts)) % 360.0

    def azimuth_now(self) -> float | None:
        """The latest azimuth extrapolated to now with the measured rate (the camera lags)."""
        if not self.history:
            return None
        t, az = self.history[-1]
        return (az + self.velocity() * (self.clock.monotonic() - t)) % 360.0


class RelayPair:
    """Two interlocked relays driving one motor: forward / reverse, never both."""

    def __init__(self, bank: RelayBank, forward: int, reverse: int, device: str):
        self.bank = bank
        self.forward = forward
        self.reverse = reverse
        self.device = device

    def drive(self, direction: int) -> None:
        """+1 forward, -1 reverse, 0 stop. Switches the other direction off first."""
        if direction == 0:
            self.stop()
            return
        on, off = (self.forward, self.reverse) if direction > 0 else (self.reverse, self.forward)
        if self.bank.is_on(off):
            self.bank.set(off, False)
        if not self.bank.is_on(on):
            self.bank.set(on, True)

    def stop(self) -> None:
        """Both relays off. Raises DeviceError if the board is gone (motors are then unpowered)."""
        errors = []
        for ch in (self.forward, self.reverse):
            try:
                self.bank.set(ch, False)
            except DeviceError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def stop_quietly(self) -> str | None:
        """Both off; returns the error text instead of raising (for failure paths)."""
        try:
            self.stop()
            return None
        except DeviceError as exc:
            return str(exc)

    def direction(self) -> int:
        if self.bank.is_on(self.forward):
            return 1
        if self.bank.is_on(self.reverse):
            return -1
        return 0
