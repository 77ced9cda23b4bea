"""The daemon's observatory in-process on a fake clock: safety closes, faults, commands, record."""

from __future__ import annotations

import pytest

from tenmon.drivers.base import MountState, ShutterState
from tenmon.core.errors import CommandRefused


def _open_everything(rig):
    obs = rig.obs
    obs.slit_open()
    obs.cover_open()
    obs.mount_goto(60.0, 40.0)
    rig.run(120, until=lambda: obs.slit.state == ShutterState.OPEN
            and obs.cover.state == ShutterState.OPEN and obs.mount.state == MountState.TRACKING)
    assert obs.slit.state == ShutterState.OPEN and obs.cover.state == ShutterState.OPEN


def _first_time(rig, text):
    for e in rig.events():
        if text in e["message"]:
            return e["time_utc"]
    raise AssertionError(f"no event with {text!r}: {rig.messages()}")


def _seconds(a, b):
    from datetime import datetime
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def test_rain_closes_everything_within_travel_times(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    _open_everything(rig)
    obs.sim.set_weather("rain")
    rig.run(200, until=obs.supervisor.in_safe_state)
    assert obs.supervisor.in_safe_state()
    st = obs.status()
    assert st["slit"]["state"] == "closed" and st["cover"]["state"] == "closed"
    assert st["mount"]["parked"] and not st["safety"]["safe"]
    assert "rain" in st["safety"]["reasons"]
    t_rain = _first_time(rig, "unsafe: rain")
    cfg = obs.config
    assert _seconds(t_rain, _first_time(rig, "slit closed after")) <= cfg.slit.travel_time_s + 5
    assert _seconds(t_rain, _first_time(rig, "cover closed after")) <= cfg.cover.travel_time_s + 5
    assert _seconds(t_rain, _first_time(rig, "mount parked")) <= 5 + 180.0 / cfg.mount.slew_rate_deg_s
    # while unsafe, opening is refused with a reason
    with pytest.raises(CommandRefused) as info:
        obs.slit_open()
    assert info.value.code == "unsafe" and "rain" in str(info.value)
    # and the state stays put (no flapping on encoder noise)
    n = len(rig.events())
    rig.run(120)
    assert obs.supervisor.in_safe_state()
    assert not any("going to the safe state" in e["message"] for e in rig.events()[n:])


def test_clear_weather_allows_reopening_after_the_hold_off(sim_rig):
    rig = sim_rig()
    rig.obs.sim.set_weather("rain")
    rig.run(5)
    rig.obs.sim.set_weather("clear")
    rig.run(2)
    assert rig.obs.verdict.safe
    with pytest.raises(CommandRefused) as info:
        rig.obs.slit_open()
    assert info.value.code == "hold_off"
    rig.run(rig.obs.config.safety.reopen_after_s)
    rig.obs.slit_open()


def test_stale_weather_is_unsafe(sim_rig):
    rig = sim_rig()
    rig.world.inject_fault("weather-stale")
    rig.run(rig.obs.config.safety.weather_stale_s + 2)
    assert not rig.obs.verdict.safe
    assert any("stale" in r for r in rig.obs.verdict.reasons)


def test_encoder_dropout_during_slew_ends_in_a_blind_close_not_the_safe_state(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    _open_everything(rig)
    obs.dome_goto(200.0)
    rig.run(10)
    rig.world.inject_fault("encoder-dropout")
    rig.run(200, until=lambda: obs.slit.state == ShutterState.CLOSED and not obs.slit.moving)
    assert rig.world.state.slit_fraction == 0.0  # the blind close really closed it
    assert rig.world.state.dome_speed_deg_s == 0.0
    msgs = " | ".join(rig.messages())
    assert "encoder lost during slew" in msgs and "blind close" in msgs
    # but nothing verified it: closed, not verified, an alarm, never the safe state
    st = obs.status()
    assert st["slit"]["state"] == "closed" and st["slit"]["verified"] is False
    assert not obs.supervisor.in_safe_state() and not st["safety"]["in_safe_state"]
    assert any(e["kind"] == "slit" and "NOT VERIFIED" in e["message"]
               for e in rig.events(level="alarm"))
    assert "safe state reached" not in msgs
    # the encoder sees again: the close is verified and the safe state reached
    rig.world.clear_fault("encoder-dropout")
    rig.run(120, until=obs.supervisor.in_safe_state)
    assert obs.supervisor.in_safe_state()
    assert obs.status()["slit"]["verified"] is True


def test_relay_board_unplugged_raises_alarm_then_recovers(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    _open_everything(rig)
    rig.world.inject_fault("relay-unplugged")
    rig.run(2)
    obs.sim.set_weather("rain")
    rig.run(40)
    alarm_events = rig.events(level="alarm")
    alarms = [e["message"] for e in alarm_events]
    lost = [e for e in alarm_events if e["data"].get("event") == "board-lost"]
    assert lost and lost[0]["message"].startswith("relays.main: ")
    assert any("cannot close slit" in m or "SAFE STATE NOT REACHED" in m for m in alarms)
    assert rig.world.state.slit_fraction > 0.5  # nothing could move it
    rig.world.clear_fault("relay-unplugged")
    rig.run(200, until=obs.supervisor.in_safe_state)
    assert obs.supervisor.in_safe_state()
    assert any(e["data"].get("event") == "reconnected" for e in rig.events())
    assert obs.store.integrity_ok()


def test_emergency_stop_stops_and_closes_slit_only(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    _open_everything(rig)
    obs.dome_goto(200.0)
    obs.mount_goto(120.0, 20.0)
    rig.run(3)
    obs.emergency_stop("person in the dome")
    rig.run(1)
    assert not obs.dome.slewing and obs.mount.state != MountState.SLEWING
    rig.run(80, until=lambda: obs.slit.state == ShutterState.CLOSED)
    assert obs.slit.state == ShutterState.CLOSED
    assert obs.cover.state == ShutterState.OPEN  # not moved: "stop motion, close slit"
    with pytest.raises(CommandRefused) as info:
        obs.dome_goto(10.0)
    assert info.value.code == "emergency"
    obs.resume()
    rig.run(1)
    obs.dome_goto(10.0)


def test_mount_goto_below_horizon_refused(sim_rig):
    rig = sim_rig()
    with pytest.raises(CommandRefused) as info:
        rig.obs.mount_goto(0.0, -80.0)
    assert info.value.code == "below_horizon"


def test_history_and_events_recorded(sim_rig):
    rig = sim_rig()
    rig.obs.slit_open()
    rig.run(70)
    hist = rig.obs.store.history("slit")
    states = [h["state"] for h in hist]
    assert "opening" in states and states[-1] == "open"
    kinds = {e["kind"] for e in rig.events()}
    assert {"daemon", "command", "slit", "reconcile"} <= kinds


def test_restart_after_unclean_shutdown_reconciles(sim_rig, tmp_path):
    """A daemon that dies while the slit opens: the next start finds it partial and closes it."""
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.compose import build_observatory

    rig = sim_rig()
    obs = rig.obs
    obs.slit_open()
    rig.run(20)
    obs.sim.save()  # what the running daemon wrote last
    data_dir = obs.config.paths.data_dir
    # no stop(): the process "died"; a new daemon starts on the same data directory
    cfg = load_config(simulated_config_path(), env={"TENMON_PATHS__DATA_DIR": str(data_dir)})
    obs2 = build_observatory(cfg)
    assert 0.2 < obs2.world.state.slit_fraction < 0.5
    obs2.start()
    rig2 = type(rig)(obs2)
    rig2.run(120, until=obs2.supervisor.in_safe_state)
    assert obs2.supervisor.in_safe_state()
    assert obs2.world.state.slit_fraction == 0.0
    msgs = " | ".join(rig2.messages())
    assert "ended uncleanly" in msgs and "slit: opening" in msgs
    assert "after an unclean shutdown" in msgs
    obs2.stop()
    assert obs2.store.integrity_ok()


def test_device_history_is_pruned(sim_rig):
    from datetime import timedelta

    rig = sim_rig(TENMON_DAEMON__HISTORY_KEEP_DAYS="0.5")
    store = rig.obs.store
    old = rig.clock.now() - timedelta(days=2)
    store.add_history(old, "dome", {"state": "idle"})
    assert any(h["time_utc"].startswith(old.date().isoformat()) for h in store.history("dome"))
    rig.clock.advance(86400)
    rig.run(1)
    assert all(h["time_utc"] > old.isoformat() for h in store.history("dome"))
    assert store.history("dome")  # recent rows stay
