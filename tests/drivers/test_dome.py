"""Dome rotation, closed-loop through the simulated world (relays -> world -> encoder -> control)."""

from __future__ import annotations

import pytest

from tenmon.core.astro import wrap180
from tenmon.drivers.base import DomeState
from tenmon.core.errors import EncoderLost


def _slew(rig, az, limit=300.0):
    rig.obs.dome_goto(az)
    rig.run(limit, until=lambda: not rig.obs.dome.slewing)
    return rig.world.state.dome_az_deg


@pytest.mark.parametrize("target", [123.0, 359.5, 181.0, 1.2, 250.0])
def test_slews_land_within_one_degree(sim_rig, target):
    rig = sim_rig()
    true_az = _slew(rig, target)
    assert rig.obs.dome.state == DomeState.IDLE, rig.obs.dome.error
    assert abs(wrap180(true_az - target)) <= 1.0
    assert not rig.obs.banks["main"].is_on(1) and not rig.obs.banks["main"].is_on(2)


def test_takes_the_shortest_way_round(sim_rig):
    rig = sim_rig()  # the dome starts at 0
    rig.obs.dome_goto(330.0)
    rig.run(1.0)
    assert rig.obs.banks["main"].is_on(2) and not rig.obs.banks["main"].is_on(1)  # CCW
    assert rig.world.state.dome_speed_deg_s < 0
    rig.run(300, until=lambda: not rig.obs.dome.slewing)
    assert abs(wrap180(rig.world.state.dome_az_deg - 330.0)) <= 1.0


def test_coast_is_learned_from_overshoot(sim_rig):
    rig = sim_rig(TENMON_DOME__COAST_INITIAL_S="0.2")  # a poor first guess: overshoots
    dome = rig.obs.dome
    _slew(rig, 90.0)
    first = dome.coast_s
    _slew(rig, 200.0)
    _slew(rig, 300.0)
    # the simulated dome coasts with a 1.0 s time constant
    assert 0.2 < first
    assert abs(dome.coast_s - 1.0) < 0.25
    assert abs(wrap180(rig.world.state.dome_az_deg - 300.0)) <= 1.0


def test_stall_stops_motor_and_errors(sim_rig):
    rig = sim_rig()
    rig.world.inject_fault("dome-stall")
    rig.obs.dome_goto(90.0)
    took = rig.run(30.0, until=lambda: rig.obs.dome.state == DomeState.ERROR)
    assert rig.obs.dome.state == DomeState.ERROR
    assert "stall" in rig.obs.dome.error
    assert took <= rig.obs.config.dome.stall_window_s + 1.0
    assert not rig.obs.banks["main"].is_on(1)
    assert any("stall" in m for m in rig.messages())


def test_encoder_lost_during_slew_stops(sim_rig):
    rig = sim_rig()
    rig.obs.dome_goto(180.0)
    rig.run(10.0)
    rig.world.inject_fault("encoder-dropout")
    rig.run(5.0)
    assert rig.obs.dome.state == DomeState.ERROR
    assert "encoder lost" in rig.obs.dome.error
    assert not rig.obs.banks["main"].is_on(1)
    with pytest.raises(Exception):
        rig.obs.dome_goto(10.0)


def test_slew_refused_without_encoder(sim_rig):
    rig = sim_rig()
    rig.world.inject_fault("encoder-dropout")
    rig.run(3.0)
    with pytest.raises(EncoderLost):
        rig.obs.dome.slew_to_azimuth(10.0)


def test_timeout(sim_rig):
    rig = sim_rig(TENMON_DOME__SLEW_TIMEOUT_S="20")
    rig.obs.dome_goto(180.0)  # 60 s away at 3 deg/s
    rig.run(30.0, until=lambda: rig.obs.dome.state == DomeState.ERROR)
    assert "timed out" in rig.obs.dome.error
    assert not rig.obs.banks["main"].is_on(1)


def test_home_park_and_abort(sim_rig):
    rig = sim_rig()
    rig.obs.dome_park()
    rig.run(200, until=lambda: not rig.obs.dome.slewing)
    assert rig.obs.dome.at_park and not rig.obs.dome.at_home
    rig.obs.dome_home()
    rig.run(5.0)
    rig.obs.dome_abort()
    assert not rig.obs.dome.slewing
    assert not rig.obs.banks["main"].is_on(1) and not rig.obs.banks["main"].is_on(2)
    rig.run(6.0)
    assert rig.world.state.dome_speed_deg_s == 0.0
    rig.obs.dome_home()
    rig.run(200, until=lambda: not rig.obs.dome.slewing)
    assert rig.obs.dome.at_home


def test_stuck_relay_is_detected(sim_rig):
    rig = sim_rig()
    rig.obs.dome_goto(40.0)
    rig.run(2.0)
    rig.world.inject_fault("relay-stuck:1")  # the CW contact welds: the dome never stops
    rig.run(120.0, until=lambda: rig.obs.dome.state == DomeState.ERROR)
    assert rig.obs.dome.state == DomeState.ERROR
    assert "relay stuck" in rig.obs.dome.error
