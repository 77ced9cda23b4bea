"""ASCOM Alpaca Focuser and FilterWheel as tenmon's :class:`~tenmon.drivers.focuser.Focuser`
and :class:`~tenmon.drivers.focuser.FilterWheel`.

Both are absolute and non-blocking: ``move_to`` / ``select`` check the request, queue it for the
worker and return; ``moving`` is true from that moment until the device reports the move done
(a stale "idle" is never taken for "arrived"). A move that has not ended within
``move_timeout_s`` is halted (focuser) and is an error.
"""

from __future__ import annotations

import logging
import math
import time

from alpaca.filterwheel import FilterWheel
from alpaca.focuser import Focuser

from tenmon.drivers.alpaca._wire import optional
from tenmon.drivers.alpaca._worker import AlpacaDevice
from tenmon.core.errors import DeviceError

log = logging.getLogger(__name__)


class AlpacaFocuser(AlpacaDevice):
    """See the module docstring. ``config``: ``AlpacaFocuserConfig``."""

    kind = "focuser"
    ascom_type = "focuser"
    api_class = Focuser

    def __init__(self, config, clock):
        super().__init__(config, clock)
        self._position: int | None = None
        self._moving_dev = False
        self._temperature: float | None = None
        self._max = 0
        self._target: int | None = None
        self._move_since: float | None = None
        self._motion_error: str | None = None
        self.moves = 0

    def _on_open(self) -> None:
        if not self._call("Absolute", lambda: self.dev.Absolute):
            raise DeviceError("focuser", f"{self.label} is a relative focuser; tenmon needs "
                              "an absolute one")
        self._max = int(self._call("MaxStep", lambda: self.dev.MaxStep))

    def _poll(self) -> None:
        pos = int(self._call("Position", lambda: self.dev.Position))
        moving = bool(self._call("IsMoving", lambda: self.dev.IsMoving))
        temp = optional(self.kind, self.label, "Temperature", lambda: self.dev.Temperature)
        self._position, self._moving_dev = pos, moving
        try:
            t = float(temp) if temp is not None else None
        except (TypeError, ValueError):
            t = None
        self._temperature = t if t is not None and math.isfinite(t) else None
        if self._move_since is not None:
            if not moving:
                self._move_since = None
                self._target = None
            elif time.monotonic() - self._move_since > self.config.move_timeout_s:
                self._move_since = None
                self._motion_error = (f"{self.label}: move to {self._target} not finished "
                                      f"after {self.config.move_timeout_s:g} s: halted")
                log.error(self._motion_error)
                self._target = None
                try:
                    self._call("Halt", self.dev.Halt)
                except DeviceError as exc:
                    log.error("%s: halt failed: %s", self.label, exc.detail)

    def _do_move(self, position: int) -> None:
        try:
            self._call(f"Move({position})", lambda: self.dev.Move(position))
            self._move_since = time.monotonic()
            self.moves += 1
            self._poll()
        except DeviceError as exc:
            self._motion_error = exc.detail
            self._target = None
            raise

    # ------------------------------------------------------------------ loop side

    @property
    def position(self) -> int | None:
        return self._position

    @property
    def max_position(self) -> int:
        return self._max

    @property
    def moving(self) -> bool:
        return self._target is not None or self._moving_dev

    @property
    def temperature_c(self) -> float | None:
        return self._temperature

    @property
    def error(self) -> str | None:
        return self._motion_error or super().error

    def clear_error(self) -> None:
        super().clear_error()
        self._motion_error = None

    def move_to(self, position: int) -> None:
        p = int(position)
        if not 0 <= p <= self._max:
            raise DeviceError("focuser", f"position {p} is outside 0..{self._max}")
        self._motion_error = None
        self._target = p
        try:
            self._submit(f"move to {p}", lambda: self._do_move(p))
        except DeviceError:
            self._target = None
            raise

    def halt(self) -> None:
        try:
            self._submit("halt", lambda: self._call("Halt", self.dev.Halt))
        except DeviceError as exc:
            log.error("focuser halt: %s", exc.detail)


class AlpacaFilterWheel(AlpacaDevice):
    """See the module docstring. ``config``: ``AlpacaFilterWheelConfig``."""

    kind = "filter_wheel"
    ascom_type = "filterwheel"
    api_class = FilterWheel

    def __init__(self, config, clock):
        super().__init__(config, clock)
        self._names: list[str] = []
        self._position: int | None = None
        self._target: int | None = None
        self._move_since: float | None = None
        self._motion_error: str | None = None

    def _on_open(self) -> None:
        names = self._call("Names", lambda: self.dev.Names)
        self._names = [str(n) for n in (names or [])]
        if not self._names:
            raise DeviceError("filter_wheel", f"{self.label} names no filters")

    def _poll(self) -> None:
        pos = int(self._call("Position", lambda: self.dev.Position))
        self._position = pos if 0 <= pos < len(self._names) else None  # -1: moving
        if self._move_since is not None:
            if self._position is not None and (self._target is None
                                               or self._position == self._target):
                self._move_since = None
                self._target = None
            elif time.monotonic() - self._move_since > self.config.move_timeout_s:
                self._move_since = None
                self._motion_error = (f"{self.label}: not at slot {self._target} after "
                                      f"{self.config.move_timeout_s:g} s")
                self._target = None
                log.error(self._motion_error)

    def _do_select(self, slot: int) -> None:
        try:
            self._call(f"Position = {slot}", lambda: setattr(self.dev, "Position", slot))
            self._move_since = time.monotonic()
            self._poll()
        except DeviceError as exc:
            self._motion_error = exc.detail
            self._target = None
            raise

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def position(self) -> int | None:
        return None if self.moving else self._position

    @property
    def moving(self) -> bool:
        return self._target is not None or self._position is None and self._move_since is not None

    @property
    def current(self) -> str | None:
        """The name of the filter in the light path (``None`` while moving or unknown)."""
        p = self.position
        return None if p is None else self._names[p]

    @property
    def error(self) -> str | None:
        return self._motion_error or super().error

    def clear_error(self) -> None:
        super().clear_error()
        self._motion_error = None

    def slot_of(self, filter_name: str) -> int:
        """The slot named ``filter_name`` (case-insensitive). Raises DeviceError naming the
        filters there are."""
        want = filter_name.strip().lower()
        for i, n in enumerate(self._names):
            if n.strip().lower() == want:
                return i
        raise DeviceError("filter_wheel", f"no filter {filter_name!r} in {self.label} "
                          f"(it has {', '.join(self._names) or 'none'})")

    def select(self, filter_name: str) -> None:
        slot = self.slot_of(filter_name)
        self._motion_error = None
        self._target = slot
        try:
            self._submit(f"select {filter_name}", lambda: self._do_select(slot))
        except DeviceError:
            self._target = None
            raise
