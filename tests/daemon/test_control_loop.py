"""The one control loop (``daemon.control_loop``) of the daemon and `tenmon simulate`, and the
simulated world's driver (``drivers.sim.site``) it ticks around the observatory."""

from __future__ import annotations

import asyncio
import json

import pytest

from tenmon.daemon.control_loop import ControlLoop, tick_once


def test_a_step_advances_simulated_time_and_moves_the_world(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    loop = ControlLoop(obs, tick_s=obs.config.daemon.tick_s, speed=0.0, record=True)
    t0, w0 = obs.clock.now(), obs.world.time
    for _ in range(10):
        loop.step()
    assert (obs.clock.now() - t0).total_seconds() == pytest.approx(10 * obs.config.daemon.tick_s)
    assert obs.world.time == obs.clock.now() and obs.world.time > w0  # the world follows
    assert loop.ticks == 10 and abs(loop.sim_s - 10 * obs.config.daemon.tick_s) < 1e-9
    assert obs.loop_stats.count >= 10


def test_the_observatory_alone_does_not_move_the_world(sim_rig):
    """The observatory's tick is the site's: the simulated world moves only by its driver."""
    rig = sim_rig()
    obs = rig.obs
    w0 = obs.world.time
    obs.clock.advance(1.0)
    obs.tick()
    assert obs.world.time == w0
    tick_once(obs)
    assert obs.world.time == obs.clock.now()


def test_fast_mode_holds_simulated_time_while_work_is_in_flight(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    held = {"n": 5}

    def hold() -> bool:  # in flight for the next five polls
        held["n"] -= 1
        return held["n"] > 0

    loop = ControlLoop(obs, tick_s=obs.config.daemon.tick_s, speed=0.0, hold=hold)
    t0 = obs.clock.now()
    ticks = {"n": 0}
    loop.after_tick.append(lambda: ticks.__setitem__("n", ticks["n"] + 1))
    asyncio.run(loop.run(lambda: ticks["n"] >= 3))
    assert held["n"] <= 0  # it waited out every poll before the first tick
    assert (obs.clock.now() - t0).total_seconds() == pytest.approx(3 * obs.config.daemon.tick_s)


def test_the_world_driver_saves_reports_and_takes_sim_commands(sim_rig, tmp_path):
    rig = sim_rig()
    obs = rig.obs
    assert obs.sim is not None and obs.sim.path is not None
    rig.run(1.5)
    saved = json.loads(obs.sim.path.read_text())
    assert saved  # written every simulated second while the loop ticks
    obs.sim.set_weather("rain")
    obs.sim.fault("slit-stall")
    assert obs.status()["sim"]["faults"] == ["slit-stall"]
    obs.sim.fault("all", clear=True)
    assert obs.status()["sim"]["faults"] == []
    msgs = rig.messages()
    assert "simulated weather: rain" in msgs
    assert "simulated fault injected: slit-stall" in msgs
