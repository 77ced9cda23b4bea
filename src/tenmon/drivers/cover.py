"""The mirror cover: open/close relays, end-of-travel from limit switches when fitted, else timed.

With limit switches the cover is open or closed when its switch says so, and a motion that does
not reach its switch within travel time plus margin is an ERROR. Without them the relay runs for
the travel time plus margin and the state is reported as reached but ``verified = False``: a
timed close is the most such a cover can give, and it is what the safe state requires of it
(``has_switches`` tells the supervisor which rule applies). At start-up a timed cover's state is
``unknown``. Normally-open switches fail safe: a cut wire reads "not at this end", never
"closed".
"""

from __future__ import annotations

from typing import Protocol

from tenmon.core.clock import Clock
from tenmon.config.models import CoverConfig
from tenmon.drivers.base import RelayBank, ShutterState
from tenmon.drivers.motion import NoticeBoard, RelayPair
from tenmon.core.errors import DeviceError


class EndSwitches(Protocol):
    def is_open(self) -> bool: ...

    def is_closed(self) -> bool: ...


class RelayCover(NoticeBoard):
    """Mirror cover driver. Non-blocking: ``open_cover()``/``close_cover()``, then ``update()``."""

    def __init__(self, config: CoverConfig, bank: RelayBank, clock: Clock,
                 switches: EndSwitches | None = None):
        super().__init__("cover")
        self.config = config
        self.clock = clock
        self.switches = switches
        self.motor = RelayPair(bank, config.open_channel, config.close_channel, "cover")
        self.state = ShutterState.UNKNOWN
        self.error: str | None = None
        self.verified = switches is not None
        self._phase = "idle"
        self._t0 = 0.0
        if switches is not None:
            self.state = self._switch_state()
            if self.state == ShutterState.ERROR:
                self.error = "limit switches disagree (both made) or cannot be read"

    @property
    def moving(self) -> bool:
        return self._phase != "idle"

    @property
    def has_switches(self) -> bool:
        """True when limit switches verify the cover's ends."""
        return self.switches is not None

    def _switch_state(self) -> ShutterState:
        try:
            is_open, is_closed = self.switches.is_open(), self.switches.is_closed()
        except DeviceError:  # both switches made at once (LimitSwitchConflict) or unreadable
            return ShutterState.ERROR
        if is_open and is_closed:
            return ShutterState.ERROR
        if is_open:
            return ShutterState.OPEN
        if is_closed:
            return ShutterState.CLOSED
        return ShutterState.PARTIAL

    def _limit(self) -> float:
        return self.config.travel_time_s + self.config.margin_s

    def open_cover(self) -> None:
        """Start opening. Raises DeviceError if the relays cannot be driven."""
        self._begin(+1)

    def close_cover(self) -> None:
        """Start closing (always allowed). Raises DeviceError if the relays cannot be driven."""
        if self._phase == "closing":
            return
        self._begin(-1)

    def _begin(self, direction: int) -> None:
        target = ShutterState.OPEN if direction > 0 else ShutterState.CLOSED
        if self.switches is not None and self._switch_state() == target:
            self.motor.stop()
            self._phase = "idle"
            self.state = target
            return
        self.motor.drive(direction)
        self._phase = "opening" if direction > 0 else "closing"
        self._t0 = self.clock.monotonic()
        self.error = None
        self.state = ShutterState.OPENING if direction > 0 else ShutterState.CLOSING

    def stop(self) -> None:
        """Stop the motor where it is: a cover stopped mid-travel is ``partial`` (its switches,
        when fitted, tell the end it may still be at). Never raises."""
        err = self.motor.stop_quietly()
        if self._phase != "idle":
            self.state = ShutterState.PARTIAL
            self.verified = self.switches is not None
        self._phase = "idle"
        if err:
            self._fail(f"stop failed: {err}")

    def disconnect(self) -> None:
        self.motor.stop_quietly()
        self._phase = "idle"

    def fail(self, message: str) -> None:
        """An outside watch found a fault (a welded relay, motion nobody commanded): motor off,
        state ERROR with ``message``. Never raises."""
        err = self.motor.stop_quietly()
        self._phase = "idle"
        self._fail(message + (f"; and stopping failed: {err}" if err else ""))

    def _fail(self, message: str) -> None:
        self.state = ShutterState.ERROR
        self.error = message
        self.notice("error", message)

    def update(self) -> None:
        try:
            self._step()
        except DeviceError as exc:
            err = self.motor.stop_quietly()
            self._phase = "idle"
            self._fail(f"relay board: {exc.detail}" + (f" ({err})" if err else ""))

    def _step(self) -> None:
        if self._phase == "idle":
            if self.switches is not None and self.state != ShutterState.ERROR:
                s = self._switch_state()
                if s == ShutterState.ERROR:
                    self._fail("both limit switches report at once: check the switches' wiring")
                else:
                    self.state = s
            return
        direction = 1 if self._phase == "opening" else -1
        target = ShutterState.OPEN if direction > 0 else ShutterState.CLOSED
        elapsed = self.clock.monotonic() - self._t0
        if self.switches is not None:
            s = self._switch_state()
            if s == ShutterState.ERROR:
                self.motor.stop()
                self._phase = "idle"
                self._fail("both limit switches report at once: motor stopped")
                return
            if s == target:
                self.motor.stop()
                self._phase = "idle"
                self.state = target
                self.verified = True
                self.notice("info", f"cover {target.value} after {elapsed:.0f} s")
                return
        if self.motor.direction() != direction:
            self._phase = "idle"
            self._fail(f"{self._phase or 'cover'} relay switched off under the controller "
                       "(maximum on-time or board reset?)")
            return
        if elapsed >= self._limit():
            self.motor.stop()
            self._phase = "idle"
            if self.switches is None:
                self.state = target
                self.verified = False
                self.notice("info", f"cover {target.value} (timed {elapsed:.0f} s; no limit "
                            "switches to verify)")
            else:
                self._fail(f"cover did not reach {target.value} within {self._limit():g} s")
