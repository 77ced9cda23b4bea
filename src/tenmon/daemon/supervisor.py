"""The safety supervisor: acts on the safety verdict. Unsafe means slit closed, cover closed, mount
parked, each verified, retried, and an alarm event when it cannot be verified.

Called once per control tick with the verdict. It is the first thing the tick does after reading
sensors, and it acts before any command or sequencer step may move anything.

Verified means verified: only the encoder (a trusted reading) makes the slit ``closed`` for the
safe state. A blind close, or one whose end the encoder could not see, ends *closed, not
verified*: that is an alarm, it is retried by the policy (``safety.close_retries`` quick retries,
then one every ``safety.retry_every_s``) and it is never the safe state. The mirror cover is
verified by its limit switches where it has them; a cover without switches can only be closed by
time (its relay ran the full travel time plus margin), and that timed close is what its safe
state requires (docs/install.md says so).

Events: a safety condition is identified by its reasons' *codes*, so a reading that keeps ageing
is one event, not one a second; a condition that comes back within :data:`REPEAT_WINDOW_S` of its
last event is counted, and the count goes out with the next event (at the latest one window
later). A lost, stale or invalid sensor is an ``alarm`` (kind ``sensor``), as is a close that
cannot be verified (kind ``slit``) and a safe state not reached (kind ``safety``).

The reopen hold-off (:class:`ReopenHoldOff`) lives here too: after any unsafe condition (daylight
aside) every open waits until it has been safe for ``safety.reopen_after_s``, kept across
restarts through the store's daemon state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from tenmon.core.clock import Clock
from tenmon.config.models import SafetyConfig
from tenmon.daemon.safety import HOLD_OFF_EXEMPT, SENSOR_CODES, SafetyVerdict
from tenmon.drivers.base import MountState, ShutterState
from tenmon.core.errors import DeviceError
from tenmon.core.timefmt import utc_iso

Emit = Callable[..., None]  # emit(level, kind, message, **data)

#: A bound on how long parking may take when the mount gives no better figure.
PARK_BOUND_S = 120.0
#: A safety condition (or sensor alarm) repeated within this window is counted, not re-logged.
REPEAT_WINDOW_S = 60.0
#: A device in ERROR will not get there by waiting: it is retried early, at most this often.
ERROR_RETRY_S = 5.0

#: The daemon-state key the hold-off is kept under.
HOLD_OFF_KEY = "safety_hold_off"
#: A return to safe is written once it has held this long.
SAVE_SAFE_AFTER_S = 5.0


@dataclass
class Devices:
    slit: object
    cover: object
    mount: object
    dome: object


class ReopenHoldOff:
    """After an unsafe condition, opening waits until it has been safe for ``after_s``.

    ``observe(verdict)`` every tick; ``remaining_s()`` is what an open must still wait (the full
    ``after_s`` while unsafe, 0 when it may open). Only the transitions are written (``save``):
    becoming unsafe at once, becoming safe once it has held for :data:`SAVE_SAFE_AFTER_S` (a
    flapping sensor does not write twice a second; a restart in between finds "unsafe", which
    only makes the wait longer),
    as ``{"unsafe": bool, "safe_since_utc": iso | None, "codes": [...], "reasons": [...]}``;
    :meth:`restore` takes up the last record at start-up, so a restart does not cut the wait
    short. Time
    is the clock's UTC time (a restart has no monotonic clock to carry); a clock that steps back
    never makes the wait longer than ``after_s``. Codes in :data:`HOLD_OFF_EXEMPT` (daylight)
    do not start it.
    """

    def __init__(self, after_s: float, clock: Clock,
                 save: Callable[[dict], None] = lambda _state: None):
        self.after_s = after_s
        self.clock = clock
        self._save = save
        self.unsafe = False
        self.safe_since: datetime | None = None
        self.codes: tuple[str, ...] = ()
        self.reasons: list[str] = []
        self._written: tuple | None = None  # (unsafe, codes) of the last record written

    def restore(self, record: Any) -> None:
        """Take up the record the last run saved (``None``: there is none)."""
        state = _dict(record)
        self.unsafe = bool(state.get("unsafe", False))
        self.safe_since = _time(state.get("safe_since_utc"))
        codes = state.get("codes")
        self.codes = tuple(str(c) for c in codes) if isinstance(codes, list) else ()
        reasons = state.get("reasons")
        self.reasons = [str(r) for r in reasons] if isinstance(reasons, list) else []
        if record is not None and not self.unsafe and self.safe_since is None:
            self.unsafe = True  # a record that says neither: assume the worst
        self._written = (self.unsafe, self.codes)

    def observe(self, verdict: SafetyVerdict) -> None:
        pairs = [(c, r) for c, r in zip(verdict.codes, verdict.reasons)
                 if c not in HOLD_OFF_EXEMPT]
        if pairs:
            codes = tuple(sorted({c for c, _ in pairs}))
            if not self.unsafe or codes != self.codes:
                self.unsafe, self.safe_since = True, None
                self.codes, self.reasons = codes, [r for _, r in pairs][:8]
                if self._written != (True, codes):
                    self._write()
        elif self.unsafe:
            self.unsafe, self.safe_since = False, self.clock.now()
        elif self._written is not None and self._written[0] and self.safe_since is not None \
                and (self.clock.now() - self.safe_since).total_seconds() >= SAVE_SAFE_AFTER_S:
            self._write()

    def remaining_s(self) -> float:
        if self.unsafe:
            return self.after_s
        if self.safe_since is None:
            return 0.0
        safe_for = (self.clock.now() - self.safe_since).total_seconds()
        return min(self.after_s, max(0.0, self.after_s - safe_for))

    def to_json(self) -> dict[str, Any]:
        return {"remaining_s": round(self.remaining_s(), 1), "reopen_after_s": self.after_s,
                "unsafe_now": self.unsafe,
                "safe_since_utc": utc_iso(self.safe_since) if self.safe_since else None,
                "after": self.reasons}

    def _write(self) -> None:
        self._written = (self.unsafe, self.codes)
        self._save({"unsafe": self.unsafe,
                    "safe_since_utc": utc_iso(self.safe_since) if self.safe_since else None,
                    "codes": list(self.codes), "reasons": self.reasons})


class SafetySupervisor:
    """Brings the observatory to its safe state whenever the verdict is unsafe."""

    def __init__(self, limits: SafetyConfig, devices: Devices, clock: Clock, emit: Emit,
                 *, slit_limit_s: float, cover_limit_s: float, park_limit_s: float = PARK_BOUND_S,
                 hold_off: ReopenHoldOff | None = None):
        self.limits = limits
        self.d = devices
        self.clock = clock
        self.emit = emit
        self.bound_s = max(slit_limit_s, cover_limit_s, park_limit_s) + limits.verify_margin_s
        self.hold_off = hold_off or ReopenHoldOff(limits.reopen_after_s, clock)
        self.verdict: SafetyVerdict | None = None
        self.closing = False
        self.forced: str | None = None  # why, when the safe state is wanted whatever the verdict
        self.attempt = 0
        self.deadline = 0.0
        self.started = 0.0
        self.alarmed = False
        self.unverified_alarmed = False
        self.reached_at: float | None = None
        self.last_act = 0.0
        #: during an operator emergency stop the safe state is "slit closed, nothing moving":
        #: the mount and cover are stopped where they are, not moved.
        self.emergency = False
        #: False until the start-up reconcile: first readings may be missing for a moment, which
        #: neither raises sensor alarms nor starts the reopen hold-off.
        self.armed = False
        self._event_key: tuple[str, ...] | None = None
        self._logged_at: dict[tuple[str, ...], float] = {}
        self._last_event_at = float("-inf")
        self._suppressed = 0
        self._behind = False
        self._sensor_alarmed: set[str] = set()
        self._sensor_at: dict[str, float] = {}
        self._sensor_repeats: dict[str, int] = {}
        self._sensor_logged: set[str] = set()

    # ------------------------------------------------------------------ state

    def slit_closed(self) -> bool:
        """The slit is closed *and verified* (by the encoder) and not moving."""
        s = self.d.slit
        return (s.state == ShutterState.CLOSED and bool(getattr(s, "verified", True))
                and not s.moving)

    def cover_closed(self) -> bool:
        """The cover is closed and not moving; verified by its limit switches where it has them
        (a cover without switches: closed by time, the most it can be)."""
        c = self.d.cover
        if c.state != ShutterState.CLOSED or c.moving:
            return False
        return bool(getattr(c, "verified", True)) or not getattr(c, "has_switches", False)

    def parts(self) -> dict[str, bool]:
        """Which parts of the safe state hold now."""
        if self.emergency:
            return {
                "slit": self.slit_closed(),
                "cover": True,
                "mount": self.d.mount.state not in (MountState.SLEWING, MountState.PARKING),
            }
        return {
            "slit": self.slit_closed(),
            "cover": self.cover_closed(),
            "mount": self.d.mount.state == MountState.PARKED,
        }

    def in_safe_state(self) -> bool:
        return all(self.parts().values())

    def describe(self) -> str:
        slit = self.d.slit
        frac = slit.open_fraction
        unverified = slit.state == ShutterState.CLOSED and not getattr(slit, "verified", True)
        return (f"slit {slit.state.value}" + (" (NOT VERIFIED)" if unverified else "")
                + (f" ({frac:.0%} open)" if frac is not None else "")
                + f", cover {self.d.cover.state.value}, mount {self.d.mount.state.value}")

    # ------------------------------------------------------------------ the tick

    def update(self, verdict: SafetyVerdict) -> None:
        now = self.clock.monotonic()
        self.verdict = verdict
        self._log_verdict(verdict, now)
        if self.armed:
            self._sensor_alarms(verdict, now)
            self.hold_off.observe(verdict)
        if not verdict.safe and not self.closing and not self.in_safe_state():
            self._start(now, "; ".join(verdict.reasons), forced=None)
        if self.closing:
            self._follow(now)

    def force(self, reason: str) -> None:
        """Start the safe-state sequence now (shutdown, emergency), whatever the verdict."""
        self._start(self.clock.monotonic(), reason, forced=reason)

    def resume_now(self, why: str) -> None:
        """A device came back (relay board reconnected, mount answering, encoder seeing again):
        re-issue what the safe state still needs at once instead of at the next retry."""
        if not self.closing:
            return
        self.emit("info", "safety", f"{why}: resuming the close now ({self.describe()})")
        self._act(self.clock.monotonic())

    def _start(self, now: float, why: str, *, forced: str | None) -> None:
        self.closing = True
        self.forced = forced
        self.attempt = 0
        self.alarmed = False
        self.unverified_alarmed = False
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
            self.forced = None
            self.reached_at = now
            self.emit("info", "safety", f"safe state reached in {now - self.started:.0f} s: "
                      + self.describe())
            return
        slit = self.d.slit
        if (slit.state == ShutterState.CLOSED and not getattr(slit, "verified", True)
                and not slit.moving and not self.unverified_alarmed):
            self.unverified_alarmed = True
            self.emit("alarm", "slit", "slit closed but NOT VERIFIED (a blind close, or one whose "
                      "end the encoder could not see): not the safe state; retrying "
                      f"({self.limits.close_retries} retries, then every "
                      f"{self.limits.retry_every_s:g} s); check the slit now",
                      state=self.describe())
        # A device already in ERROR will not get there by waiting: retry it early, but at most
        # once every ERROR_RETRY_S.
        errored = any(getattr(dev, "state", None) in (ShutterState.ERROR, MountState.ERROR)
                      for dev in (self.d.slit, self.d.cover, self.d.mount))
        if now < self.deadline and not (errored and now - self.last_act >= ERROR_RETRY_S):
            return
        if self.forced is None and self.verdict is not None and self.verdict.safe:
            # safe again: finish nothing more by force (the operator or the sequencer decides)
            self.closing = False
            self.emit("warning", "safety", "safe again before the safe state was reached ("
                      f"{self.describe()}): no more retries")
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
                      f"retrying every {self.limits.retry_every_s:g} s; check the dome now")
        self._act(now)
        self.deadline = now + self.limits.retry_every_s

    # ------------------------------------------------------------------ events

    def _log_verdict(self, verdict: SafetyVerdict, now: float) -> None:
        key = verdict.codes
        if key != self._event_key:
            first = self._event_key is None
            self._event_key = key
            if first and verdict.safe:
                return
            if now - self._logged_at.get(key, float("-inf")) >= REPEAT_WINDOW_S:
                self._emit_verdict(verdict, now)
            else:
                self._suppressed += 1
                self._behind = True
        elif self._behind and now - self._last_event_at >= REPEAT_WINDOW_S:
            self._emit_verdict(verdict, now)

    def _emit_verdict(self, verdict: SafetyVerdict, now: float) -> None:
        n, self._suppressed, self._behind = self._suppressed, 0, False
        self._last_event_at = now
        self._logged_at = {k: t for k, t in self._logged_at.items()
                           if now - t < REPEAT_WINDOW_S}
        self._logged_at[verdict.codes] = now
        more = (f" (the safety conditions changed {n} more time{'s' * (n != 1)} in the last "
                f"{REPEAT_WINDOW_S:g} s)") if n else ""
        if not verdict.safe:
            self.emit("warning", "safety", "unsafe: " + "; ".join(verdict.reasons) + more,
                      reasons=list(verdict.reasons), codes=list(verdict.codes), count=n + 1)
        else:
            self.emit("info", "safety", "safe: all safety conditions clear" + more,
                      count=n + 1)

    def _sensor_alarms(self, verdict: SafetyVerdict, now: float) -> None:
        present = {c: r for c, r in zip(verdict.codes, verdict.reasons) if c in SENSOR_CODES}
        for code, reason in present.items():
            if code in self._sensor_alarmed:
                continue
            self._sensor_alarmed.add(code)
            if now - self._sensor_at.get(code, float("-inf")) < REPEAT_WINDOW_S:
                # lost again soon after the last alarm: counted, told with the next one
                self._sensor_repeats[code] = self._sensor_repeats.get(code, 0) + 1
                continue
            self._sensor_at[code] = now
            self._sensor_logged.add(code)
            n = self._sensor_repeats.pop(code, 0)
            self.emit("alarm", "sensor", f"SENSOR LOST: {reason}: unsafe until it reports again"
                      + (f" (it was lost {n} more time{'s' * (n != 1)} since the last alarm)"
                         if n else ""),
                      code=code, count=n + 1)
        for code in list(self._sensor_alarmed):
            if code not in present:
                self._sensor_alarmed.discard(code)
                if code in self._sensor_logged:
                    self._sensor_logged.discard(code)
                    self.emit("info", "sensor", f"sensor back: {code.replace('_', ' ')} "
                              "cleared", code=code)


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _time(v: Any) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None
