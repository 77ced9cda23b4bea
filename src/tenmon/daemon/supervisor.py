"""The safety supervisor: acts on the safety verdict. Unsafe means slit closed, cover closed, mount
parked, each verified, retried, and an alarm event when it cannot be verified.

Called once per control tick with the verdict. It is the first thing the tick does after reading
sensors, and it acts before any command or sequencer step may move anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tenmon.clock import Clock
from tenmon.config.models import SafetyConfig
from tenmon.daemon.safety import SafetyVerdict
from tenmon.drivers.base import MountState, ShutterState
from tenmon.errors import DeviceError

Emit = Callable[..., None]  # emit(level, kind, message, **data)

#: A bound on how long parking may take when the mount gives no better figure.
PARK_BOUND_S = 120.0
#: After the retries are used up, try again this often while still unsafe.
RETRY_EVERY_S = 60.0


@dataclass
class Devices:
    slit: object
    cover: object
    mount: object
    dome: object


class SafetySupervisor:
    """Brings the observatory to its safe state whenever the verdict is unsafe."""

    def __init__(self, limits: SafetyConfig, devices: Devices, clock: Clock, emit: Emit,
                 *, slit_limit_s: float, cover_limit_s: float, park_limit_s: float = PARK_BOUND_S):
        self.limits = limits
        self.d = devices
        self.clock = clock
        self.emit = emit
        self.bound_s = max(slit_limit_s, cover_limit_s, park_limit_s) + limits.verify_margin_s
        self.verdict: SafetyVerdict | None = None
        self.closing = False
        self.attempt = 0
        self.deadline = 0.0
        self.started = 0.0
        self.alarmed = False
        self.reached_at: float | None = None
        self.last_act = 0.0
        #: during an operator emergency stop the safe state is "slit closed, nothing moving":
        #: the mount and cover are stopped where they are, not moved.
        self.emergency = False

    # ------------------------------------------------------------------ state

    def parts(self) -> dict[str, bool]:
        """Which parts of the safe state hold now."""
        if self.emergency:
            return {
                "slit": self.d.slit.state == ShutterState.CLOSED and not self.d.slit.moving,
                "cover": True,
                "mount": self.d.mount.state not in (MountState.SLEWING, MountState.PARKING),
            }
        return {
            "slit": self.d.slit.state == ShutterState.CLOSED and not self.d.slit.moving,
            "cover": self.d.cover.state == ShutterState.CLOSED and not self.d.cover.moving,
            "mount": self.d.mount.state == MountState.PARKED,
        }

    def in_safe_state(self) -> bool:
        return all(self.parts().values())

    def describe(self) -> str:
        slit = self.d.slit
        frac = slit.open_fraction
        return (f"slit {slit.state.value}"
                + (f" ({frac:.0%} open)" if frac is not None else "")
                + f", cover {self.d.cover.state.value}, mount {self.d.mount.state.value}")

    # ------------------------------------------------------------------ the tick

    def update(self, verdict: SafetyVerdict) -> None:
        previous = self.verdict
        self.verdict = verdict
        if previous is None or previous.reasons != verdict.reasons:
            if not verdict.safe:
                self.emit("warning", "safety", "unsafe: " + "; ".join(verdict.reasons),
                          reasons=list(verdict.reasons))
            elif previous is not None:
                self.emit("info", "safety", "safe: all safety conditions clear")
        now = self.clock.monotonic()
        if not verdict.safe and not self.closing and not self.in_safe_state():
            self._start(now, "; ".join(verdict.reasons))
        if self.closing:
            self._follow(now)

    def force(self, reason: str) -> None:
        """Start the safe-state sequence now (shutdown, emergency), whatever the verdict."""
        self._start(self.clock.monotonic(), reason)

    def _start(self, now: float, why: str) -> None:
        self.closing = True
        self.attempt = 0
        self.alarmed = False
        self.started = now
        self.reached_at = None
        self.emit("warning", "safety", f"going to the safe state ({why}): closing slit, "
                  "closing cover, parking mount", state=self.describe())
        self._act(now)

    def _act(self, now: float) -> None:
        """Issue (or re-issue) every action the safe state still needs."""
        self.deadline = now + self.bound_s
        self.last_act = now
        parts = self.parts()
        failures = []
        if not parts["slit"]:
            try:
                self.d.slit.close_slit()
            except DeviceError as exc:
                failures.append(f"cannot close slit: {exc}")
        if not parts["cover"] and not self.emergency:
            try:
                self.d.cover.close_cover()
            except DeviceError as exc:
                failures.append(f"cannot close cover: {exc}")
        if not parts["mount"] and self.d.mount.state != MountState.PARKING and not self.emergency:
            try:
                self.d.mount.park()
            except DeviceError as exc:
                failures.append(f"cannot park mount: {exc}")
        for f in failures:
            self.emit("alarm", "safety", f + " (will retry)")

    def _follow(self, now: float) -> None:
        if self.in_safe_state():
            self.closing = False
            self.reached_at = now
            self.emit("info", "safety", f"safe state reached in {now - self.started:.0f} s: "
                      + self.describe())
            return
        # A device already in ERROR will not get there by waiting: retry it early, but at most
        # once every 5 s.
        errored = any(getattr(dev, "state", None) in (ShutterState.ERROR, MountState.ERROR)
                      for dev in (self.d.slit, self.d.cover, self.d.mount))
        if now < self.deadline and not (errored and now - self.last_act >= 5.0):
            return
        self.attempt += 1
        if self.attempt <= self.limits.close_retries:
            self.emit("warning", "safety", f"safe state not verified ({self.describe()}): "
                      f"retry {self.attempt} of {self.limits.close_retries}")
            self._act(now)
            return
        if not self.alarmed:
            self.alarmed = True
            self.emit("alarm", "safety", "SAFE STATE NOT REACHED after "
                      f"{self.limits.close_retries} retries: {self.describe()}; "
                      f"retrying every {RETRY_EVERY_S:g} s; check the dome now")
        self._act(now)
        self.deadline = now + RETRY_EVERY_S
