"""INDI focuser and filter wheel: absolute moves through the standard properties, non-blocking.

Focuser: ``ABS_FOCUS_POSITION`` (``Busy`` while moving), ``FOCUS_MAX`` (or the position's own
maximum), ``FOCUS_ABORT_MOTION``, ``FOCUS_TEMPERATURE`` (when the focuser has a probe).
Filter wheel: ``FILTER_SLOT`` (1-based on the wire, 0-based at tenmon's interface; ``Busy`` while
turning) and ``FILTER_NAME`` (``FILTER_SLOT_NAME_1``...).
A move that does not end within ``move_timeout_s`` puts the device in ``error``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from tenmon.core.clock import Clock
from tenmon.drivers.indi.device import IndiDevice

__all__ = ["IndiFilterWheel", "IndiFocuser"]

log = logging.getLogger(__name__)


class _Mover(IndiDevice):
    """A device with one motion to follow (``_motion_vector`` Busy while it moves)."""

    _motion_vector = ""

    def __init__(self, config: Any, clock: Clock, *, name: str):
        super().__init__(config, clock, name=name)
        self._moving_since: float | None = None

    @property
    def moving(self) -> bool:
        v = self.vec(self._motion_vector)
        return v is not None and v.state == "Busy"

    def _started(self) -> None:
        self._moving_since = self.clock.monotonic()
        self._error = None

    def update(self) -> None:
        """Follow the move from the cache (non-blocking). Never raises."""
        try:
            why = self.link_problem()
            if why is not None:
                self._fail(why)
                self._moving_since = None
                return
            v = self.vec(self._motion_vector)
            if v is not None and v.state == "Alert" and self._moving_since is not None:
                self._fail(f"the driver failed the move ({self._last_message() or 'no message'})")
                self._moving_since = None
                return
            if self._moving_since is None:
                return
            if not self.moving:
                self._moving_since = None
            elif self.clock.monotonic() - self._moving_since > self.config.move_timeout_s:
                self._stop_motion()
                self._fail(f"move did not end within {self.config.move_timeout_s:g} s; halted")
                self._moving_since = None
        except Exception as exc:  # noqa: BLE001 - update never raises for a device fault
            self._fail(f"update failed: {exc}")

    def _stop_motion(self) -> None:
        """Best-effort stop (subclasses)."""


class IndiFocuser(_Mover):
    """An absolute focuser on an indiserver (``[focuser] type = "indi"``); implements
    :class:`~tenmon.drivers.focuser.Focuser`."""

    required = ("ABS_FOCUS_POSITION",)
    _motion_vector = "ABS_FOCUS_POSITION"

    def __init__(self, config: Any, clock: Clock, *, name: str = "focuser"):
        super().__init__(config, clock, name=name)

    @property
    def position(self) -> int | None:
        p = self.num("ABS_FOCUS_POSITION", "FOCUS_ABSOLUTE_POSITION")
        return int(round(p)) if math.isfinite(p) else None

    @property
    def max_position(self) -> int:
        m = self.num("FOCUS_MAX", "FOCUS_MAX_VALUE")
        if not math.isfinite(m):
            v = self.vec("ABS_FOCUS_POSITION")
            m = v.limits.get("FOCUS_ABSOLUTE_POSITION", (0.0, math.nan))[1] if v else math.nan
        return int(m) if math.isfinite(m) else 0

    @property
    def temperature_c(self) -> float | None:
        t = self.num("FOCUS_TEMPERATURE", "TEMPERATURE")
        return t if math.isfinite(t) else None

    def move_to(self, position: int) -> None:
        """Start an absolute move. Raises DeviceError outside 0..max_position,
        DeviceDisconnected when the server or device is gone."""
        if not isinstance(position, int) or isinstance(position, bool):
            raise self._refuse(f"position must be whole steps, not {position!r}")
        if not 0 <= position <= self.max_position:
            raise self._refuse(f"position {position} outside 0..{self.max_position}")
        self._send_number("ABS_FOCUS_POSITION", {"FOCUS_ABSOLUTE_POSITION": position})
        self._started()

    def halt(self) -> None:
        """Stop a move. Never raises."""
        self._stop_motion()
        self._moving_since = None

    def _stop_motion(self) -> None:
        try:
            if self.link_problem() is None and self.vec("FOCUS_ABORT_MOTION") is not None:
                self.conn.send_switch(self.device, "FOCUS_ABORT_MOTION", "ABORT", off=[])
        except Exception as exc:  # noqa: BLE001 - halt never raises
            log.warning("%s: halt not sent (%s)", self.name, exc)


class IndiFilterWheel(_Mover):
    """A filter wheel on an indiserver (``[filter_wheel] type = "indi"``); implements
    :class:`~tenmon.drivers.focuser.FilterWheel`."""

    required = ("FILTER_SLOT", "FILTER_NAME")
    _motion_vector = "FILTER_SLOT"

    def __init__(self, config: Any, clock: Clock, *, name: str = "filter_wheel"):
        super().__init__(config, clock, name=name)

    @property
    def names(self) -> list[str]:
        v = self.vec("FILTER_NAME")
        if v is None:
            return []

        def slot(member: str) -> int:
            digits = "".join(ch for ch in member.rsplit("_", 1)[-1] if ch.isdigit())
            return int(digits) if digits else 0
        return [v.values[k] for k in sorted(v.values, key=slot)]

    @property
    def position(self) -> int | None:
        if self.moving:
            return None
        p = self.num("FILTER_SLOT", "FILTER_SLOT_VALUE")
        return int(round(p)) - 1 if math.isfinite(p) else None

    @property
    def filter_name(self) -> str | None:
        pos, names = self.position, self.names
        return names[pos] if pos is not None and 0 <= pos < len(names) else None

    def select(self, filter_name: str) -> None:
        """Start turning to the slot named ``filter_name`` (case-insensitive). Raises DeviceError
        naming the known filters when there is none of that name."""
        names = self.names
        wanted = filter_name.strip().lower()
        for i, n in enumerate(names):
            if n.strip().lower() == wanted:
                self._send_number("FILTER_SLOT", {"FILTER_SLOT_VALUE": i + 1})
                self._started()
                return
        raise self._refuse(f"no filter {filter_name!r} in the wheel (it has: "
                           f"{', '.join(names) or 'no names'})")
