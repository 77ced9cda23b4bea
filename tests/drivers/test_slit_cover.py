"""Slit and mirror cover drivers over the simulated world."""

from __future__ import annotations

import pytest

from tenmon.drivers.base import ShutterState
from tenmon.core.errors import EncoderLost


def test_slit_opens_and_closes(sim_rig):
    rig = sim_rig()
    slit = rig.obs.slit
    assert slit.state == ShutterState.CLOSED
    rig.obs.slit_open()
    assert slit.state == ShutterState.OPENING
    took = rig.run(120, until=lambda: slit.state == ShutterState.OPEN)
    assert 55 <= took <= 62  # the simulated shutter travels in 58 s
    assert not rig.obs.banks["main"].is_on(3)
    assert rig.world.state.slit_fraction >= 0.97
    rig.obs.slit_close()
    took = rig.run(120, until=lambda: slit.state == ShutterState.CLOSED)
    cfg = rig.obs.config.slit  # the relay runs at least the configured travel, then the overrun
    assert took <= cfg.travel_time_s + cfg.close_overrun_s + 1.5
    assert rig.world.state.slit_fraction == 0.0 and slit.verified
    seen = [e["message"] for e in rig.events() if e["message"].startswith("slit closed after")]
    assert seen and 56.0 <= float(seen[-1].split()[3]) <= 60.5  # the simulated travel is 58 s


def test_slit_never_opens_blind(sim_rig):
    rig = sim_rig()
    rig.world.inject_fault("encoder-dropout")
    rig.run(3.0)
    with pytest.raises(EncoderLost):
        rig.obs.slit.open_slit()


def test_encoder_lost_while_opening_stops(sim_rig):
    rig = sim_rig(TENMON_SAFETY__ENCODER_STALE_S="1000")  # keep the supervisor out of it
    rig.obs.slit_open()
    rig.run(20)
    rig.world.inject_fault("encoder-dropout")
    rig.run(3)
    assert rig.obs.slit.state == ShutterState.ERROR
    assert not rig.obs.banks["main"].is_on(3)


def test_blind_close_runs_full_travel_and_says_so(sim_rig):
    rig = sim_rig(TENMON_SAFETY__ENCODER_STALE_S="1000")
    slit = rig.obs.slit
    rig.obs.slit_open()
    rig.run(120, until=lambda: slit.state == ShutterState.OPEN)
    rig.world.inject_fault("encoder-dropout")
    rig.run(3)
    rig.obs.slit_close()
    assert slit.blind
    took = rig.run(200, until=lambda: not slit.moving)
    limit = rig.obs.config.slit.travel_time_s + rig.obs.config.slit.margin_s
    assert abs(took - limit) <= 0.2
    assert slit.state == ShutterState.CLOSED and not slit.verified
    assert rig.world.state.slit_fraction == 0.0
    msgs = " | ".join(rig.messages())
    assert "blind close" in msgs and "not verified" in msgs
    rig.world.clear_fault("encoder-dropout")
    rig.run(3)
    assert slit.state == ShutterState.CLOSED and slit.verified


def test_slit_stall_times_out(sim_rig):
    rig = sim_rig()
    rig.world.inject_fault("slit-stall")
    rig.obs.slit_open()
    rig.run(100, until=lambda: rig.obs.slit.state == ShutterState.ERROR)
    assert "did not open" in rig.obs.slit.error
    assert not rig.obs.banks["main"].is_on(3)


def test_cover_with_switches(sim_rig):
    rig = sim_rig()
    cover = rig.obs.cover
    assert cover.state == ShutterState.CLOSED and cover.verified
    rig.obs.cover_open()
    took = rig.run(60, until=lambda: cover.state == ShutterState.OPEN)
    assert 18 <= took <= 21
    rig.obs.cover_close()
    rig.run(60, until=lambda: cover.state == ShutterState.CLOSED)
    assert rig.world.state.cover_fraction == 0.0


def test_cover_stall_with_switches_errors(sim_rig):
    rig = sim_rig()
    rig.world.inject_fault("cover-stall")
    rig.obs.cover_open()
    rig.run(60, until=lambda: rig.obs.cover.state == ShutterState.ERROR)
    assert "did not reach open" in rig.obs.cover.error
    assert not rig.obs.banks["main"].is_on(5)


def test_timed_cover(tmp_path):
    from tenmon.core.clock import FakeClock
    from tenmon.config.models import CoverConfig, SimulatedRelayConfig
    from tenmon.drivers.cover import RelayCover
    from tenmon.drivers.sim.relays import SimulatedRelayBank

    clock = FakeClock()
    bank = SimulatedRelayBank("b", SimulatedRelayConfig(type="simulated", channels=2,
                                                        interlocks=[(1, 2)]), clock)
    bank.connect()
    cover = RelayCover(CoverConfig(relays="b", open_channel=1, close_channel=2,
                                   travel_time_s=20, margin_s=4), bank, clock)
    assert cover.state == ShutterState.UNKNOWN
    cover.close_cover()
    t = 0.0
    while cover.moving:
        clock.advance(0.1)
        t += 0.1
        cover.update()
        assert bank.is_on(2) or not cover.moving
    assert abs(t - 24.0) < 0.15
    assert cover.state == ShutterState.CLOSED and not cover.verified
    assert not bank.is_on(2)


def test_a_state_hidden_from_the_encoder_is_carried_while_the_slit_stands(sim_rig):
    rig = sim_rig()
    slit = rig.obs.slit
    rig.obs.slit_open()
    rig.run(120, until=lambda: slit.state == ShutterState.OPEN)
    rig.world.inject_fault("slit-state-hidden")  # the telescope now hides the slit's far end
    rig.run(300)
    assert slit.state == ShutterState.OPEN  # it has not moved since it was seen open
    assert slit.view.good.details["state_age_s"] > 290
    assert not rig.obs.encoder_view.lost(2.0)  # the dome keeps its azimuth


def test_a_close_whose_end_cannot_be_seen_runs_full_travel_and_is_not_verified(sim_rig):
    rig = sim_rig()
    slit = rig.obs.slit
    rig.obs.slit_open()
    rig.run(120, until=lambda: slit.state == ShutterState.OPEN)
    rig.world.inject_fault("slit-state-hidden")
    rig.run(10)
    rig.obs.slit_close()
    assert not slit.blind  # the encoder still reads the azimuth
    took = rig.run(200, until=lambda: not slit.moving)
    limit = rig.obs.config.slit.travel_time_s + rig.obs.config.slit.margin_s
    assert abs(took - limit) <= 0.6
    assert slit.state == ShutterState.CLOSED and not slit.verified and slit.error is None
    assert rig.world.state.slit_fraction == 0.0
    assert any("closed, not verified" in m for m in rig.messages())
    rig.world.clear_fault("slit-state-hidden")
    rig.run(3)
    assert slit.state == ShutterState.CLOSED and slit.verified


def test_an_open_whose_end_cannot_be_seen_is_not_called_open(sim_rig):
    rig = sim_rig()
    slit = rig.obs.slit
    rig.run(3)
    assert slit.state == ShutterState.CLOSED
    rig.world.inject_fault("slit-state-hidden")
    rig.obs.slit_open()
    rig.run(200, until=lambda: not slit.moving)
    assert slit.state == ShutterState.UNKNOWN and slit.error is None  # not OPEN: it was not seen
    assert any("open not verified" in m for m in rig.messages())
    assert not rig.obs.banks["main"].is_on(3)
    rig.world.clear_fault("slit-state-hidden")
    rig.run(3)
    assert slit.state == ShutterState.OPEN
