"""The one place relay interlocks live: a base class every relay-bank backend derives from.

A backend (LCUS serial, GPIO, USB HID, simulated) implements only how to open the board, write
one relay, and close the board. Everything that keeps a dome from being left open in the rain is
here, once:

* **interlocks**: a channel is energized only while every interlock partner is commanded off
  and, where the board reads its contacts back (:meth:`readback`), physically off, and not
  suspected of being welded (:meth:`suspect`: the daemon's actuator watch saw the motion it
  drives with no command): a welded partner contact is never driven against
  (:class:`~tenmon.core.errors.InterlockError` names both channels otherwise);
* **maximum on-time**: every energized relay is switched off once it has been on for its limit
  (``max_on_s`` / ``max_on_s_per_channel``); checked on every call and by :meth:`service`, so a
  relay is never on longer than its limit plus one service period;
* **all off** on :meth:`connect`, :meth:`disconnect`, on reconnect, and at interpreter exit
  (an ``atexit`` hook walks a weak registry of every live bank, so a crash that unwinds the
  interpreter still switches the relays off);
* **board loss**: a write that fails marks the bank lost (commanded state all off: a USB-powered
  board that vanished has dropped its relays), records an event saying what happened and raises
  :class:`~tenmon.core.errors.DeviceDisconnected`; :meth:`service` then retries the board every
  ``reconnect_s`` and switches everything off when it is back;
* **history**: a bounded, timestamped record of every change of commanded state, so the daemon
  and tests can say "relay 2 was on for 3.0 s" (in the style of gpiozero's mock pin history).

Example (simulated)::

    from tenmon.core.clock import FakeClock
    from tenmon.config.models import SimulatedRelayConfig
    from tenmon.drivers.sim.relays import SimulatedRelayBank

    clock = FakeClock()
    bank = SimulatedRelayBank("main", SimulatedRelayConfig(type="simulated", channels=4,
                              max_on_s=60, interlocks=[(1, 2)]), clock)
    bank.connect()
    bank.set(1, True)
    bank.set(2, True)        # InterlockError: channel 1 is on
    clock.advance(61); bank.service()   # channel 1 switched off: maximum on-time
"""

from __future__ import annotations

import abc
import atexit
import logging
import numbers
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal

from tenmon.core.clock import Clock
from tenmon.config.models import _RelayBankBase
from tenmon.core.errors import DeviceDisconnected, DeviceNotFound, InterlockError

__all__ = [
    "DEFAULT_RECONNECT_S", "OnPeriod", "RelayBankBase", "RelayEvent", "RelaySwitch",
    "switch_off_all_banks",
]

log = logging.getLogger(__name__)

#: Retry period for a lost board when the bank's config has no ``reconnect_s`` (only the LCUS
#: config defines one today; see the report: the field belongs in the shared relay config).
DEFAULT_RECONNECT_S = 5.0

SwitchReason = Literal[
    "command", "all-off", "max-on-time", "connect", "disconnect", "board-lost", "exit"
]
EventKind = Literal[
    "connected", "disconnected", "board-lost", "reconnected", "max-on-time", "exit"
]


@dataclass(frozen=True)
class RelaySwitch:
    """One change of a relay's commanded state.

    ``monotonic_s`` is the injected clock's monotonic seconds; ``time`` its UTC wall time.
    """

    time: datetime
    monotonic_s: float
    channel: int
    on: bool
    reason: SwitchReason


@dataclass(frozen=True)
class OnPeriod:
    """One energized period of a relay; ``end_s`` is ``None`` while it is still on."""

    channel: int
    start_s: float
    end_s: float | None
    end_reason: SwitchReason | None

    @property
    def duration_s(self) -> float | None:
        """Seconds the relay was on, ``None`` while still on."""
        return None if self.end_s is None else self.end_s - self.start_s


@dataclass(frozen=True)
class RelayEvent:
    """Something the daemon should record: ``seq`` increases by one per event of a bank."""

    seq: int
    time: datetime
    bank: str
    kind: EventKind
    message: str


# Every live bank, so the exit hook can switch them all off. Weak: a bank that is garbage
# collected is not kept alive by this registry.
_LIVE_BANKS: weakref.WeakSet[RelayBankBase] = weakref.WeakSet()
_EXIT_LOCK_TIMEOUT_S = 1.0


def switch_off_all_banks() -> None:
    """Switch off every relay of every live bank (best effort, never raises).

    Registered with :mod:`atexit`; the daemon's signal handlers may call it too.
    """
    for bank in list(_LIVE_BANKS):
        try:
            bank._exit_off()
        except Exception:  # noqa: BLE001 - at exit every bank must get its turn
            log.exception("relays.%s: could not switch relays off at exit", bank.name)


atexit.register(switch_off_all_banks)


class RelayBankBase(abc.ABC):
    """Interlocks, maximum on-times, all-off, loss and reconnect, history: for every backend.

    Channels are numbered from 1. Thread-safe: every public method holds the bank's lock, so
    the control loop, the HTTP API and the exit hook never interleave writes.

    Subclasses implement :meth:`_open`, :meth:`_close` and :meth:`_write`, and may override
    :meth:`_write_all_off` (one broadcast command) and :meth:`_probe` (a cheap liveness check).
    A backend signals a board failure by raising one of ``_board_errors`` (default ``OSError``,
    which includes ``serial.SerialException``); the base class turns it into
    :class:`~tenmon.core.errors.DeviceDisconnected`. Any other exception is a bug and propagates.

    Args:
        name: the bank's name in the config (``[relays.<name>]``); errors name ``relays.<name>``.
        config: the bank's config model (channels, max on-times, interlock pairs).
        clock: the injected clock (monotonic seconds for on-times, UTC for history and events).
        history_len: how many switch records to keep (older ones are dropped).
        events_len: how many events to keep.
    """

    _board_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)
    #: True when the board is powered by the link that failed (USB boards): relays drop with it.
    _link_powered: ClassVar[bool] = True

    def __init__(self, name: str, config: _RelayBankBase, clock: Clock, *,
                 history_len: int = 2048, events_len: int = 256):
        self.name = name
        self.channels = config.channels
        self.device = f"relays.{name}"
        self._config = config
        self._clock = clock
        self._lock = threading.RLock()
        self._partners: dict[int, set[int]] = {ch: set() for ch in range(1, config.channels + 1)}
        for a, b in config.interlocks:
            self._partners[a].add(b)
            self._partners[b].add(a)
        self._limits = {ch: config.max_on_for(ch) for ch in range(1, config.channels + 1)}
        self._reconnect_s = float(getattr(config, "reconnect_s", DEFAULT_RECONNECT_S))
        self._commanded = {ch: False for ch in range(1, config.channels + 1)}
        self._suspects: dict[int, str] = {}
        self._on_since: dict[int, float] = {}
        self._connected = False
        self._lost = False  # connected once, board gone, service() retries
        self._error: str | None = None
        self._last_attempt_s = 0.0
        self._history: deque[RelaySwitch] = deque(maxlen=history_len)
        self._events: deque[RelayEvent] = deque(maxlen=events_len)
        self._event_seq = 0
        _LIVE_BANKS.add(self)

    # ------------------------------------------------------------------ backend hooks

    @abc.abstractmethod
    def _open(self) -> None:
        """Open the board. Raise DeviceNotFound (naming what is missing) if it is not there."""
        raise NotImplementedError

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the board. Must not raise."""
        raise NotImplementedError

    @abc.abstractmethod
    def _write(self, channel: int, on: bool) -> None:
        """Drive one relay. Raise one of ``_board_errors`` if the board does not take it."""
        raise NotImplementedError

    def _write_all_off(self) -> None:
        """Drive every relay off (default: one write per channel, in channel order)."""
        for ch in range(1, self.channels + 1):
            self._write(ch, False)

    def _probe(self) -> None:  # noqa: B027 - an optional hook: no check by default
        """Cheap liveness check called by :meth:`service`; raise a board error if gone."""

    def _read_back(self) -> dict[int, bool] | None:
        """The contacts' physical state, channel -> closed, or ``None`` when this board cannot
        tell (the default: write-only boards). Raise a board error if the board is gone."""
        return None

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """True while the board is open and answering writes."""
        return self._connected

    @property
    def lost(self) -> bool:
        """True when the board failed after ``connect()``; :meth:`service` is retrying it."""
        return self._lost

    @property
    def error(self) -> str | None:
        """What went wrong with the board last (``None`` once it is connected again)."""
        return self._error

    @property
    def interlocks(self) -> dict[int, frozenset[int]]:
        """Each channel's interlock partners."""
        return {ch: frozenset(p) for ch, p in self._partners.items()}

    def commanded(self) -> dict[int, bool]:
        """Every channel's commanded state, as it stands (no limit check, no board access)."""
        with self._lock:
            return dict(self._commanded)

    def readback(self) -> dict[int, bool] | None:
        """Every contact's physical state as the board reports it (channel -> closed), or
        ``None`` when the board cannot read back or is not connected. Never raises: a board
        that fails here is marked lost (as any failed board access)."""
        with self._lock:
            if not self._connected:
                return None
            try:
                return self._read_back()
            except self._board_errors as exc:
                self._mark_lost(exc, "reading the relays back")
                return None

    def suspect(self, channel: int, why: str | None) -> None:
        """Treat ``channel`` as welded on (``why``) for the interlock, or no longer (``None``):
        its partners are then never energized. For boards that cannot read back, where only
        the motion a contact drives tells it is stuck.

        Raises:
            InterlockError: ``channel`` is outside ``1..channels``.
        """
        with self._lock:
            self._check_channel(channel)
            if why is None:
                self._suspects.pop(channel, None)
            else:
                self._suspects[channel] = why

    def suspects(self) -> dict[int, str]:
        """Channels treated as welded on, with why."""
        with self._lock:
            return dict(self._suspects)

    def max_on_s(self, channel: int) -> float:
        """The maximum on-time of ``channel`` in seconds."""
        self._check_channel(channel)
        return self._limits[channel]

    # ------------------------------------------------------------------ the RelayBank protocol

    def connect(self) -> None:
        """Open the board and switch every relay off (blocking: one write per channel).

        Calling it on a connected bank switches everything off and reopens the board.

        Raises:
            DeviceNotFound: the board is not there, or does not take the all-off command.
        """
        with self._lock:
            if self._connected:
                self._best_effort_off("connect")
                self._close()
                self._connected = False
                self._forget_all("disconnect")
            try:
                self._open()
            except self._board_errors as exc:
                raise DeviceNotFound(self.device, f"cannot open the board: {exc}") from exc
            try:
                self._write_all_off()
            except self._board_errors as exc:
                self._close()
                raise DeviceNotFound(self.device,
                                     f"board opened but did not take all-off: {exc}") from exc
            self._connected = True
            self._lost = False
            self._error = None
            self._forget_all("connect")
            self._event("connected", f"{self.channels} relays, all switched off")

    def disconnect(self) -> None:
        """Switch every relay off (best effort) and release the board. Never raises.

        After ``disconnect()`` the bank does not try to reconnect on its own.
        """
        with self._lock:
            was = self._connected
            if was:
                self._best_effort_off("disconnect")
            self._close()
            self._connected = False
            self._lost = False
            self._forget_all("disconnect")
            if was:
                self._event("disconnected", "all relays switched off, board released")

    def set(self, channel: int, on: bool) -> None:
        """Energize (``on=True``) or release one relay (blocking for one write).

        Energizing a relay that is already on re-sends the command but does not restart its
        maximum on-time.

        Raises:
            InterlockError: ``channel`` is outside ``1..channels``, or ``on`` while an interlock
                partner is on (the message names both channels).
            DeviceDisconnected: the bank is not connected, or the board failed now (the bank is
                then lost: every relay is assumed off and :meth:`service` retries the board).
        """
        with self._lock:
            self._check_channel(channel)
            self._require_connected(f"switch channel {channel} {'on' if on else 'off'}")
            self._enforce_limits(raise_on_loss=True)
            if on:
                for partner in sorted(self._partners[channel]):
                    if self._commanded[partner]:
                        raise InterlockError(
                            self.device,
                            f"refused to switch channel {channel} on: its interlock partner "
                            f"channel {partner} is on (switch channel {partner} off first)")
                physical = self.readback() if self._partners[channel] else None
                if physical is None and not self._connected:
                    raise DeviceDisconnected(self.device, self._error or "board lost")
                for partner in sorted(self._partners[channel]):
                    if partner in self._suspects:
                        raise InterlockError(
                            self.device,
                            f"refused to switch channel {channel} on: its interlock partner "
                            f"channel {partner} is suspected welded on ({self._suspects[partner]})"
                            "; never energized against it")
                    if physical is not None and physical.get(partner):
                        raise InterlockError(
                            self.device,
                            f"refused to switch channel {channel} on: its interlock partner "
                            f"channel {partner} reads back ON although commanded off (a welded "
                            "contact?); never energized against it")
            try:
                self._write(channel, on)
            except self._board_errors as exc:
                self._mark_lost(exc, f"switching channel {channel} {'on' if on else 'off'}")
                raise DeviceDisconnected(self.device, self._error or str(exc)) from exc
            self._record(channel, on, "command")

    def is_on(self, channel: int) -> bool:
        """What the driver last commanded for ``channel`` (after enforcing maximum on-times).

        Raises:
            InterlockError: ``channel`` is outside ``1..channels``.
        """
        with self._lock:
            self._check_channel(channel)
            if self._connected:
                self._enforce_limits(raise_on_loss=False)
            return self._commanded[channel]

    def all_off(self) -> None:
        """Switch every relay off, whatever the driver thinks is on (blocking).

        Raises:
            DeviceDisconnected: the bank is not connected or the board failed now.
        """
        with self._lock:
            self._require_connected("switch all relays off")
            try:
                self._write_all_off()
            except self._board_errors as exc:
                self._mark_lost(exc, "switching all relays off")
                raise DeviceDisconnected(self.device, self._error or str(exc)) from exc
            self._forget_all("all-off")

    def service(self) -> None:
        """Enforce maximum on-times, check the board, retry a lost board. Call every tick.

        Never raises for a board fault: a lost board shows as ``connected == False``,
        ``lost == True``, ``error`` and a ``board-lost`` event. A lost board is retried every
        ``reconnect_s`` seconds; when it answers again every relay is switched off first.
        """
        with self._lock:
            if self._connected:
                if not self._enforce_limits(raise_on_loss=False):
                    return
                try:
                    self._probe()
                except self._board_errors as exc:
                    self._mark_lost(exc, "checking the board")
                return
            if self._lost and self._now_s() - self._last_attempt_s >= self._reconnect_s:
                self._try_reconnect()

    # ------------------------------------------------------------------ history and events

    def history(self, channel: int | None = None) -> list[RelaySwitch]:
        """Commanded changes, oldest first (bounded), optionally of one channel."""
        with self._lock:
            return [s for s in self._history if channel is None or s.channel == channel]

    def on_periods(self, channel: int) -> list[OnPeriod]:
        """Energized periods of ``channel`` from the kept history, oldest first."""
        periods: list[OnPeriod] = []
        start: float | None = None
        for s in self.history(channel):
            if s.on and start is None:
                start = s.monotonic_s
            elif not s.on and start is not None:
                periods.append(OnPeriod(channel, start, s.monotonic_s, s.reason))
                start = None
        if start is not None:
            periods.append(OnPeriod(channel, start, None, None))
        return periods

    def on_for_s(self, channel: int) -> float:
        """Seconds ``channel`` has been on now (0 when off)."""
        with self._lock:
            self._check_channel(channel)
            since = self._on_since.get(channel)
            return 0.0 if since is None else self._now_s() - since

    def events(self, since: int = 0) -> list[RelayEvent]:
        """Events with ``seq > since``, oldest first (bounded; keep the last ``seq`` you saw)."""
        with self._lock:
            return [e for e in self._events if e.seq > since]

    # ------------------------------------------------------------------ internals

    def _now_s(self) -> float:
        return self._clock.monotonic()

    def _check_channel(self, channel: int) -> None:
        if not isinstance(channel, numbers.Integral) or isinstance(channel, bool) \
                or not 1 <= channel <= self.channels:
            raise InterlockError(self.device,
                                 f"channel {channel!r} is outside 1..{self.channels}")

    def _require_connected(self, what: str) -> None:
        if self._connected:
            return
        if self._lost:
            raise DeviceDisconnected(
                self.device, f"cannot {what}: board lost ({self._error}); relays are assumed "
                f"off, retrying every {self._reconnect_s:g} s")
        raise DeviceDisconnected(self.device, f"cannot {what}: not connected")

    def _record(self, channel: int, on: bool, reason: SwitchReason) -> None:
        was = self._commanded[channel]
        self._commanded[channel] = on
        if on and not was:
            self._on_since[channel] = self._now_s()
        elif not on:
            self._on_since.pop(channel, None)
        if on != was:
            self._history.append(RelaySwitch(self._clock.now(), self._now_s(), channel, on, reason))

    def _forget_all(self, reason: SwitchReason) -> None:
        """Every relay is (now, or assumed) off: commanded state and history follow."""
        for ch in range(1, self.channels + 1):
            self._record(ch, False, reason)

    def _event(self, kind: EventKind, message: str) -> None:
        self._event_seq += 1
        self._events.append(RelayEvent(self._event_seq, self._clock.now(), self.name, kind,
                                       message))
        level = logging.INFO if kind in ("connected", "disconnected", "reconnected") \
            else logging.WARNING
        log.log(level, "%s %s: %s", self.device, kind, message)

    def _enforce_limits(self, *, raise_on_loss: bool) -> bool:
        """Switch off every relay past its maximum on-time. False if the board was lost."""
        now = self._now_s()
        for ch, since in sorted(self._on_since.items()):
            on_s = now - since
            if on_s < self._limits[ch]:
                continue
            try:
                self._write(ch, False)
            except self._board_errors as exc:
                self._mark_lost(exc, f"switching channel {ch} off at its maximum on-time")
                if raise_on_loss:
                    raise DeviceDisconnected(self.device, self._error or str(exc)) from exc
                return False
            self._record(ch, False, "max-on-time")
            self._event("max-on-time", f"channel {ch} switched off: on {on_s:.1f} s, its maximum "
                        f"is {self._limits[ch]:g} s")
        return True

    def _best_effort_off(self, reason: SwitchReason) -> None:
        """Try to switch every relay off, channel by channel; never raises a board error."""
        for ch in range(1, self.channels + 1):
            try:
                self._write(ch, False)
            except self._board_errors as exc:
                log.log(logging.DEBUG if reason == "board-lost" else logging.WARNING,
                        "%s: could not switch channel %d off (%s): %s", self.device, ch, reason,
                        exc)
                break

    def _mark_lost(self, exc: BaseException, during: str) -> None:
        was_on = [ch for ch, on in self._commanded.items() if on]
        self._connected = False
        self._lost = True
        self._error = f"board failed while {during}: {exc}"
        self._last_attempt_s = self._now_s()
        # The board may only have hiccupped (a write timeout): try to leave it all off anyway.
        self._best_effort_off("board-lost")
        self._close()
        self._forget_all("board-lost")
        which = (f"relay {was_on[0]} was" if len(was_on) == 1
                 else f"relays {', '.join(map(str, was_on))} were")
        if not was_on:
            on_text = "no relay was on"
        elif self._link_powered:
            on_text = (f"{which} on and now assumed off (this board is powered by its USB link "
                       "and drops its relays without it)")
        else:
            on_text = f"{which} on and may still be on: check the hardware"
        self._event("board-lost", f"{self._error}; {on_text}; retrying every "
                    f"{self._reconnect_s:g} s")

    def _try_reconnect(self) -> None:
        self._last_attempt_s = self._now_s()
        try:
            self._open()
            self._write_all_off()
        except (DeviceNotFound, *self._board_errors) as exc:
            self._close()
            log.debug("%s: reconnect failed: %s", self.device, exc)
            return
        self._connected = True
        self._lost = False
        lost_for = self._error
        self._error = None
        self._forget_all("connect")
        self._event("reconnected", f"board answers again; all relays switched off (was: "
                    f"{lost_for})")

    def _exit_off(self) -> None:
        """The exit hook: all off and release, even if another thread is stuck holding the lock."""
        got = self._lock.acquire(timeout=_EXIT_LOCK_TIMEOUT_S)
        try:
            if not self._connected:
                return
            self._best_effort_off("exit")
            self._close()
            self._connected = False
            self._forget_all("exit")
            self._event("exit", "interpreter exiting: all relays switched off")
        finally:
            if got:
                self._lock.release()

    def __repr__(self) -> str:
        on = [ch for ch, v in self._commanded.items() if v]
        state = "connected" if self._connected else ("lost" if self._lost else "closed")
        return f"<{type(self).__name__} {self.device} {state} on={on}>"
