"""The simulated world as a driver: what a real site's hardware does by itself, in simulated time.

At a site, motors turn, the weather changes and things break in real time, without the daemon.
In simulated mode the world (``drivers.sim.world.SimWorld``) moves only when stepped: the
control loop (``daemon.control_loop``) ticks this driver with the simulated clock, before and
after the observatory's tick, and the observatory's code is the same as at a site. ``compose.py``
builds it for a simulated observatory (``obs.sim``; ``None`` at a site).

* :meth:`tick` (before the observatory's tick): the world steps to the clock's time.
* :meth:`after_tick`: what a real observatory would hear from its hardware (a motor driven both
  ways) becomes an alarm event; the world's state file (``<data_dir>/sim-world.json``, so a
  restarted simulated daemon resumes the world where it was) is written every simulated second.
* :meth:`set_weather`, :meth:`fault`: the ``sim`` commands (``POST /sim/weather``,
  ``POST /sim/fault``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from tenmon.core.clock import Clock
from tenmon.drivers.sim.world import SimWorld
from tenmon.core.errors import CommandRefused, DeviceError

log = logging.getLogger(__name__)

#: How often the world's state file is written (simulated seconds).
SAVE_EVERY_S = 1.0


def _log_event(level: str, kind: str, message: str, **data: Any) -> None:
    getattr(log, {"info": "info", "warning": "warning"}.get(level, "error"))("[%s] %s", kind,
                                                                           message)


class SimSite:
    """The simulated world's driver; see the module docstring.

    Args:
        world: the simulated world (wired to the simulated relay banks).
        clock: the simulated clock.
        path: the world's state file, or ``None`` (not saved).
        emit: the observatory's event recorder ``emit(level, kind, message, **data)`` (set by
            ``compose.py`` once the observatory exists; until then events are only logged).
    """

    def __init__(self, world: SimWorld, clock: Clock, path: Path | None,
                 emit: Callable[..., None] | None = None):
        self.world = world
        self.clock = clock
        self.path = path
        self.emit = emit or _log_event
        self._saved_at = -1e9
        self._save_failed = False

    # ------------------------------------------------------------------ the tick

    def tick(self) -> None:
        """Step the world to the clock's time (before the observatory reads its devices)."""
        self.world.step(self.clock.now())

    def after_tick(self) -> None:
        """Report the world's incidents as alarms; save its state every simulated second."""
        for text in self.world.incidents:
            self.emit("alarm", "device", f"simulated world: {text}")
        self.world.incidents.clear()
        now_m = self.clock.monotonic()
        if self.path is not None and now_m - self._saved_at >= SAVE_EVERY_S:
            self._saved_at = now_m
            self.save()

    def save(self) -> None:
        """Write the world's state file; a full or read-only disk is logged once, not fatal."""
        if self.path is None:
            return
        try:
            self.world.save(self.path)
        except OSError as exc:
            if not self._save_failed:
                self._save_failed = True
                log.error("cannot save the simulated world to %s: %s", self.path, exc)
            return
        if self._save_failed:
            self._save_failed = False
            log.info("the simulated world is saved again to %s", self.path)

    def close(self) -> None:
        """The daemon stops: the world's last state is written."""
        self.save()

    # ------------------------------------------------------------------ commands

    def set_weather(self, condition: str, wind_ms: float | None = None) -> None:
        """``POST /sim/weather``.

        Raises:
            CommandRefused: ``bad_request`` for an unknown condition.
        """
        try:
            self.world.set_weather(condition, wind_ms)
        except ValueError as exc:
            raise CommandRefused("bad_request", str(exc)) from None
        self.emit("info", "sim", f"simulated weather: {condition}"
                  + (f" {wind_ms:g} m/s" if wind_ms is not None else ""))

    def fault(self, name: str, clear: bool = False) -> None:
        """``POST /sim/fault``: inject a fault, or clear one (``""``/``"all"``: every one).

        Raises:
            CommandRefused: ``bad_request`` for an unknown fault or a channel no bank has.
        """
        try:
            if clear:
                self.world.clear_fault(None if name in ("", "all") else name)
            else:
                self.world.inject_fault(name)
        except (ValueError, DeviceError) as exc:
            raise CommandRefused("bad_request", str(exc)) from None
        self.emit("warning", "sim", f"simulated fault {'cleared' if clear else 'injected'}: "
                  f"{name or 'all'}")

    def active_faults(self) -> list[str]:
        return list(self.world.state.faults)

    def status(self) -> dict[str, Any]:
        """The ``sim`` section of the daemon's status."""
        return {"faults": list(self.world.state.faults), "seed": self.world.sim.seed}


__all__ = ["SimSite", "SAVE_EVERY_S"]
