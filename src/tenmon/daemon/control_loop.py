"""The one paced control loop: the daemon's (``daemon.runner``) and ``tenmon simulate``'s.

Each step: with a simulated clock, advance it one control tick (``daemon.tick_s``); then
:func:`tick_once`: the simulated world's driver when there is one (``obs.sim``, a
``drivers.sim.site.SimSite`` chosen by ``compose.py``: the simulated hardware moves with simulated
time), the observatory's tick, the world's driver again (its incidents, its state file); then the
``after_tick`` callbacks (the heartbeat, systemd's watchdog, the simulation's figures). Ticks are paced at
``speed`` times real time against the wall clock: each tick's lateness against its schedule is
recorded (``obs.loop_stats``: the tick-latency figure of ``tenmon status``); a loop more than a
second behind restarts its schedule rather than catching up in a burst.

``speed = 0`` (``tenmon simulate --fast``) runs as fast as it can, and simulated time waits while
``hold()`` says that something a tick started is still running off the loop (camera renders,
frames in the pool, planning, the jobs' trigger computations): each result is then taken at the
same simulated time whatever the machine is doing (one seed, one night).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from typing import Callable

from tenmon.core.clock import FakeClock

#: How long a held loop sleeps before asking ``hold()`` again (wall seconds).
HOLD_POLL_S = 0.002


def tick_once(obs) -> None:
    """One tick of the observatory with the simulated world (if any) around it: the world steps
    to the clock's time, the observatory ticks, the world reports and saves. Tests that drive a
    simulated observatory by hand call this after advancing its clock."""
    sim = obs.sim
    if sim is not None:
        sim.tick()
    obs.tick()
    if sim is not None:
        sim.after_tick()


class ControlLoop:
    """Ticks ``obs`` until ``done()``; see the module docstring.

    Args:
        obs: the observatory.
        tick_s: simulated (or real) seconds per tick (``daemon.tick_s``).
        speed: simulated seconds per wall second (1 at a site); 0: as fast as possible.
        hold: with ``speed = 0``: simulated time waits while this returns true.
        record: keep every tick's lateness and duration (``late_s``, ``tick_s_used``) and
            ``busy()`` for a whole night's figures (``tenmon simulate``).
        busy: with ``record``: whether the tick counts as "while processing".
    """

    def __init__(self, obs, *, tick_s: float, speed: float,
                 hold: Callable[[], bool] | None = None, record: bool = False,
                 busy: Callable[[], bool] | None = None):
        if speed < 0:
            raise ValueError(f"speed {speed}: must be 0 (as fast as possible) or positive")
        self.obs = obs
        self.tick_s = tick_s
        self.speed = speed
        self.hold = hold
        self.simulated = isinstance(obs.clock, FakeClock)
        #: called after every completed tick (heartbeat, watchdog, progress)
        self.after_tick: list[Callable[[], None]] = []
        self.record = record
        self.busy = busy
        # compact arrays: a night at 0.1 s ticks is half a million of each
        self.late_s = array("d")
        self.duration_s = array("d")
        self.busy_flags = array("b")
        self.sim_s = 0.0
        self.wall_s = 0.0

    @property
    def ticks(self) -> int:
        return len(self.late_s)

    def step(self, late_s: float = 0.0) -> None:
        """One tick: advance a simulated clock, tick the world and the observatory, then the
        ``after_tick`` callbacks. ``late_s``: how late it starts against its schedule."""
        obs = self.obs
        obs.loop_stats.add(late_s)
        t0 = time.perf_counter()
        if self.simulated:
            obs.clock.advance(self.tick_s)
            self.sim_s += self.tick_s
        tick_once(obs)
        if self.record:
            self.late_s.append(late_s)
            self.duration_s.append(time.perf_counter() - t0)
            self.busy_flags.append(1 if self.busy is not None and self.busy() else 0)
        for fn in self.after_tick:
            fn()

    async def run(self, done: Callable[[], bool]) -> None:
        """Tick until ``done()`` (asked before the first tick and after every tick), paced at
        ``speed``."""
        speed = self.speed
        next_wall = time.monotonic()
        wall0 = next_wall
        try:
            while not done():
                if speed == 0 and self.hold is not None and self.hold():
                    await asyncio.sleep(HOLD_POLL_S)
                    next_wall = time.monotonic()
                    continue
                self.step(max(0.0, time.monotonic() - next_wall))
                if done():
                    break
                if speed > 0:
                    next_wall += self.tick_s / speed
                    delay = next_wall - time.monotonic()
                    if delay < -1.0:
                        next_wall = time.monotonic()  # fell behind: no catching up in a burst
                        delay = 0.0
                    await asyncio.sleep(max(0.0, delay))
                else:
                    await asyncio.sleep(0)
        finally:
            self.wall_s += time.monotonic() - wall0


__all__ = ["ControlLoop", "HOLD_POLL_S", "tick_once"]
