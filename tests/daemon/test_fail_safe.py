"""Issue 12's safety findings, each reproduced in the simulated observatory (in-process, FakeClock,
the real drivers): nothing may keep the slit open in the rain or let it be opened too soon.

Every test here failed on the code before the fix (see the report of branch i12-safety).
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tenmon.drivers.base import DomeState, MountState, ShutterState
from tenmon.core.errors import CommandRefused


def _open_everything(rig):
    obs = rig.obs
    obs.slit_open()
    obs.cover_open()
    obs.mount_goto(60.0, 40.0)
    rig.run(120, until=lambda: obs.slit.state == ShutterState.OPEN
            and obs.cover.state == ShutterState.OPEN and obs.mount.state == MountState.TRACKING)
    assert obs.slit.state == ShutterState.OPEN and obs.cover.state == ShutterState.OPEN


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


# --------------------------------------------------------------------------- verified means verified


def test_stall_encoder_loss_and_rain_is_an_alarm_never_the_safe_state(sim_rig):
    """The slit jams open and the camera goes blind, then it rains: the blind close cannot be
    verified, so it is an alarm, it is retried, and nothing ever says "safe"."""
    rig = sim_rig()
    obs = rig.obs
    _open_everything(rig)
    rig.world.inject_fault("slit-stall")
    rig.world.inject_fault("encoder-dropout")
    rig.run(2)
    obs.sim.set_weather("rain")
    ever_safe = []
    bound = obs.supervisor.bound_s  # each try may take this long (the park's bound: 125 s)
    for _ in range(int(3 * bound) + 30):  # the first close, two retries, then the alarm
        rig.run(1.0)
        st = obs.status()
        ever_safe.append(st["safety"]["in_safe_state"] or obs.supervisor.in_safe_state())
        json.dumps(st, allow_nan=False)
    assert rig.world.state.slit_fraction == 1.0  # truly still open
    assert not any(ever_safe)
    msgs = rig.messages()
    assert not any(m.startswith("safe state reached") for m in msgs)
    st = obs.status()
    assert st["slit"]["verified"] is False or st["slit"]["state"] in ("closing", "error")
    alarms = rig.events(level="alarm")
    assert any(e["kind"] == "slit" and "NOT VERIFIED" in e["message"] for e in alarms)
    assert any(e["kind"] == "safety" and "SAFE STATE NOT REACHED" in e["message"]
               for e in alarms)
    assert any(e["kind"] == "sensor" and "encoder lost" in e["message"] for e in alarms)
    # retried by policy: the close relay ran again after the first blind close
    closes = [p for p in obs.banks["main"].on_periods(obs.config.slit.close_channel)]
    assert len(closes) >= 3


def test_closed_not_verified_is_reported_as_such(sim_rig):
    rig = sim_rig(TENMON_SAFETY__ENCODER_STALE_S="1000")  # keep the supervisor out of it
    obs = rig.obs
    obs.slit_open()
    rig.run(120, until=lambda: obs.slit.state == ShutterState.OPEN)
    rig.world.inject_fault("encoder-dropout")
    rig.run(3)
    obs.slit_close()
    rig.run(100, until=lambda: not obs.slit.moving)
    st = obs.status()
    assert st["slit"]["state"] == "closed" and st["slit"]["verified"] is False
    assert st["safety"]["safe_state_parts"]["slit"] is False
    assert st["safety"]["in_safe_state"] is False


def test_a_timed_cover_closes_to_its_safe_state_and_says_it_is_not_verified(sim_rig):
    """Decision (docs/install.md): a cover without limit switches can only close by time; that
    timed close is its part of the safe state, reported ``verified: false``."""
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.compose import build_observatory

    base = sim_rig(start=False)
    cfg = load_config(simulated_config_path(), env={
        "TENMON_PATHS__DATA_DIR": str(base.obs.config.paths.data_dir) + "-timed",
        "TENMON_SIM__START_UTC": '"2026-11-21T13:00:00Z"'})
    cfg = cfg.model_copy(update={"cover": cfg.cover.model_copy(update={"limit_switches": None})})
    obs = build_observatory(cfg, fresh=True)
    obs.start()
    rig = type(base)(obs)
    try:
        assert not obs.cover.has_switches
        rig.run(4)
        assert obs.cover.state == ShutterState.UNKNOWN  # a timed cover knows nothing at start
        assert not obs.supervisor.in_safe_state()
        obs.cover_close()
        rig.run(60, until=obs.supervisor.in_safe_state)
        st = obs.status()
        assert st["cover"]["state"] == "closed" and st["cover"]["verified"] is False
        assert st["cover"]["limit_switches"] is False
        assert st["safety"]["safe_state_parts"]["cover"] is True
        assert st["safety"]["in_safe_state"] is True
    finally:
        obs.stop()


# --------------------------------------------------------------------------- sensors fail safe


def test_nan_wind_is_unsafe_and_status_stays_strict_json(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    rig.run(5)
    assert obs.verdict.safe
    rig.world.inject_fault("weather-nan")
    rig.run(1)
    assert not obs.verdict.safe and "weather_invalid" in obs.verdict.codes
    st = obs.status()
    text = json.dumps(st, allow_nan=False)  # raises on a bare NaN
    assert "NaN" not in text
    assert st["weather"]["wind_ms"] is None and st["weather"]["invalid"] == ["wind_ms"]
    alarms = rig.events(level="alarm")
    assert any(e["kind"] == "sensor" and "wind reading nan" in e["message"] for e in alarms)


def test_rain_cable_cut_closes(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    _open_everything(rig)
    rig.world.inject_fault("rain-cable-cut")
    rig.run(1)
    assert not obs.verdict.safe and "rain" in obs.verdict.codes
    rig.run(120, until=obs.supervisor.in_safe_state)
    assert obs.supervisor.in_safe_state() and rig.world.state.slit_fraction == 0.0


def test_gpio_rain_sensor_cut_cable_in_the_daemon_is_unsafe_within_a_tick(sim_rig):
    """The site's GPIO rain sensor (normally-closed wiring, gpiozero mock pins) in the loop."""
    from gpiozero.pins.mock import MockFactory

    from tenmon.config.models import GpioRainConfig
    from tenmon.drivers.gpio_inputs import GpioRainSensor

    rig = sim_rig()
    obs = rig.obs
    factory = MockFactory()
    sensor = GpioRainSensor(GpioRainConfig(type="gpio-rain", pin=17, wet_when_high=True,
                                           pull_up=True), obs.clock, pin_factory=factory)
    sensor.connect()
    pin = factory.pin(17)
    pin.drive_low()  # the contact is closed: dry
    obs.weather = sensor
    rig.run(3)
    assert obs.verdict.safe
    _open_everything(rig)
    pin.pull = pin.pull  # the cable is cut: the line floats to its pull-up
    rig.run(obs.config.daemon.tick_s)
    assert not obs.verdict.safe and obs.verdict.codes == ("rain",)
    rig.run(120, until=obs.supervisor.in_safe_state)
    assert rig.world.state.slit_fraction == 0.0


def test_gpio_heartbeat_lost_is_a_sensor_alarm(sim_rig):
    from gpiozero.pins.mock import MockFactory

    from tenmon.config.models import GpioRainConfig
    from tenmon.drivers.gpio_inputs import GpioRainSensor

    rig = sim_rig()
    obs = rig.obs
    factory = MockFactory()
    sensor = GpioRainSensor(GpioRainConfig(type="gpio-rain", pin=17, wet_when_high=True,
                                           heartbeat_pin=27, heartbeat_timeout_s=5.0),
                            obs.clock, pin_factory=factory)
    sensor.connect()
    factory.pin(17).drive_low()
    beat = factory.pin(27)
    obs.weather = sensor
    for _ in range(10):  # alive: a 1 Hz toggle
        beat.drive_high() if not beat.state else beat.drive_low()
        rig.run(1.0)
    assert obs.verdict.safe
    rig.run(6.0)  # silence
    assert not obs.verdict.safe and obs.verdict.codes == ("weather_stale",)
    alarms = [e for e in rig.events(level="alarm") if e["kind"] == "sensor"]
    assert len(alarms) == 1 and "weather reading stale" in alarms[0]["message"]
    assert obs.status()["weather"]["error"].startswith("heartbeat lost")


def test_a_stale_reading_is_one_event_and_one_alarm_not_one_a_second(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    rig.world.inject_fault("weather-stale")
    rig.run(obs.config.safety.weather_stale_s + 2)
    assert "weather_stale" in obs.verdict.codes
    n0 = len(rig.events())
    rig.run(60)
    stale = [e for e in rig.events() if "weather reading stale" in e["message"]]
    assert len(stale) == 2  # one "unsafe: ..." and one sensor alarm, for the whole minute
    assert {e["level"] for e in stale} == {"warning", "alarm"}
    assert all(e["data"]["count"] == 1 for e in stale)
    assert len(rig.events()) - n0 <= 1  # the minute wrote no safety event at all
    st = obs.status()
    assert st["weather"]["age_s"] >= obs.config.safety.weather_stale_s + 60


def test_a_flapping_condition_is_counted_not_logged_each_time(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    rig.run(2)
    n0 = len(rig.events())
    for _ in range(30):  # rain on and off every second for a minute
        obs.world.set_weather("rain")
        rig.run(1.0)
        obs.world.set_weather("clear")
        rig.run(1.0)
    rig.run(65)  # the window closes: the log catches up with the current state
    safety = [e for e in rig.events()[n0:] if e["kind"] == "safety"
              and (e["message"].startswith("unsafe") or e["message"].startswith("safe:"))]
    assert 2 <= len(safety) <= 4
    assert safety[-1]["message"].startswith("safe:")  # the log ends with the truth
    assert max(e["data"]["count"] for e in safety) >= 50  # the flapping is counted


# --------------------------------------------------------------------------- every actuator is watched


def _idle_rig(sim_rig, **env):
    rig = sim_rig(**env)
    rig.run(20)  # past the dome's coast watch after start
    assert rig.obs.verdict.safe
    return rig


@pytest.mark.parametrize("readback", ["true", "false"])
def test_relay_stuck_on_is_an_alarm_and_unsafe_within_seconds(sim_rig, readback):
    """A welded dome relay turns the idle dome: seen by the relay read-back at once, or (a
    write-only board) by the encoder within seconds; unsafe, an alarm, status tells the truth."""
    rig = _idle_rig(sim_rig, TENMON_RELAYS__MAIN__READBACK=readback)
    obs = rig.obs
    rig.world.inject_fault("relay-stuck:1")
    took = rig.run(10, until=lambda: not obs.verdict.safe)
    assert took <= (0.5 if readback == "true" else 3.0)
    assert "actuator_fault" in obs.verdict.codes
    alarms = [e for e in rig.events(level="alarm") if e["kind"] == "actuator"]
    assert len(alarms) == 1
    rig.run(2)
    st = obs.status()
    assert st["dome"]["state"] == "moving (uncommanded)" and st["dome"]["uncommanded"]
    assert st["relays"]["main"]["on"] == []
    if readback == "true":
        assert st["relays"]["main"]["physically_on"] == [1]
        assert st["relays"]["main"]["disagree"] == [1]
        assert "relay stuck on" in alarms[0]["message"]
    else:
        assert st["relays"]["main"]["physically_on"] is None
        assert "turning with no motion commanded" in alarms[0]["message"]
    assert not st["safety"]["safe"] and st["safety"]["faults"]
    json.dumps(st, allow_nan=False)
    # nothing is energized against the welded contact: the CCW relay is refused
    bank = obs.banks["main"]
    with pytest.raises(CommandRefused) as info:
        obs.dome_goto(10.0)
    assert info.value.code == "actuator_fault"
    with pytest.raises(Exception, match="welded"):
        bank.set(obs.config.dome.ccw_channel, True)
    assert not bank.is_on(obs.config.dome.ccw_channel)
    # the contact frees: the dome stops, and once still for fault_clear_s the fault is over
    rig.world.clear_fault("relay-stuck:1")
    rig.run(obs.config.safety.fault_clear_s + 15, until=lambda: obs.verdict.safe)
    assert obs.verdict.safe and not obs.watch.faults()
    assert rig.world.state.dome_speed_deg_s == 0.0


def test_a_goto_after_the_weld_does_not_leave_safety_saying_safe(sim_rig):
    """The issue's run: the relay welds during a goto; status said dome idle and SAFE."""
    rig = _idle_rig(sim_rig)
    obs = rig.obs
    obs.dome_goto(90.0)
    rig.run(2)
    rig.world.inject_fault("relay-stuck:1")
    rig.run(60)
    assert obs.dome.state == DomeState.ERROR and "relay stuck" in obs.dome.error
    assert not obs.verdict.safe and "actuator_fault" in obs.verdict.codes
    assert obs.status()["dome"]["state"] == "moving (uncommanded)"


def test_slit_relay_stuck_open_is_never_driven_against(sim_rig):
    """The slit's open relay welds while idle: the close relay must never be energized against
    it, even while the (now unsafe) supervisor wants the slit closed."""
    rig = _idle_rig(sim_rig)
    obs = rig.obs
    ch_open, ch_close = obs.config.slit.open_channel, obs.config.slit.close_channel
    rig.world.inject_fault(f"relay-stuck:{ch_open}")
    rig.run(30)
    assert not obs.verdict.safe
    bank = obs.banks["main"]
    assert not any(p for p in bank.on_periods(ch_close))  # never switched on
    assert not rig.world.incidents  # no "both directions energized" in the world
    assert any(e["kind"] in ("actuator", "safety") and "welded" in e["message"]
               for e in rig.events(level="alarm"))
    assert obs.status()["slit"]["uncommanded"] is True


def test_shutter_moving_with_no_command_is_seen_by_the_encoder(sim_rig):
    rig = _idle_rig(sim_rig, TENMON_RELAYS__MAIN__READBACK="false")
    obs = rig.obs
    rig.world.inject_fault(f"relay-stuck:{obs.config.slit.open_channel}")
    took = rig.run(20, until=lambda: not obs.verdict.safe)
    assert took <= 8.0  # 0.08 of a 58 s travel is 4.6 s, plus the median of 5 readings
    alarms = [e for e in rig.events(level="alarm") if e["kind"] == "actuator"]
    assert alarms and "shutter is opening with no motion commanded" in alarms[0]["message"]
    assert obs.status()["slit"]["state"] == "moving (uncommanded)"
    # the open relay is suspected welded: its partner (close) is never energized against it
    assert obs.config.slit.open_channel in obs.banks["main"].suspects()


def test_no_false_alarm_in_ordinary_operation(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    _open_everything(rig)
    for az in (120.0, 300.0, 10.0):
        obs.dome_goto(az)
        rig.run(200, until=lambda: not obs.dome.slewing)
        rig.run(30)
    obs.sim.set_weather("rain")
    rig.run(200, until=obs.supervisor.in_safe_state)
    assert obs.supervisor.in_safe_state()
    assert not [e for e in rig.events() if e["kind"] == "actuator"]


def test_operator_clears_a_fault_that_stopped(sim_rig):
    rig = _idle_rig(sim_rig)
    obs = rig.obs
    rig.world.inject_fault("relay-stuck:1")
    rig.run(3)
    rig.world.clear_fault("relay-stuck:1")
    rig.run(10)  # stopped, but not yet for fault_clear_s
    assert obs.watch.faults()
    obs.resume()
    rig.run(1)
    assert not obs.watch.faults() and obs.verdict.safe
    assert any("cleared by the operator" in m for m in rig.messages())


# --------------------------------------------------------------------------- a device that comes back


def test_board_back_in_the_rain_resumes_the_close_at_once(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    _open_everything(rig)
    rig.world.inject_fault("relay-unplugged")
    rig.run(2)
    obs.sim.set_weather("rain")
    rig.run(70)  # the close failed; the supervisor is between retries
    assert rig.world.state.slit_fraction > 0.5
    rig.world.clear_fault("relay-unplugged")
    back = rig.run(20, until=lambda: any(e["data"].get("event") == "reconnected"
                                         for e in rig.events()))
    assert back <= 6.0  # the bank retries every 5 s
    t_back = [e for e in rig.events() if e["data"].get("event") == "reconnected"][0]["time_utc"]
    rig.run(2.0)
    bank = obs.banks["main"]
    on = [p for p in bank.on_periods(obs.config.slit.close_channel) if p.end_s is None]
    assert on, "the close relay is not on 2 s after the board came back"
    t_on = bank.history(obs.config.slit.close_channel)[-1].time
    assert 0 <= (t_on - datetime.fromisoformat(t_back)).total_seconds() <= 2.0
    rig.run(120, until=obs.supervisor.in_safe_state)
    assert obs.supervisor.in_safe_state() and rig.world.state.slit_fraction == 0.0


def test_mount_back_resumes_the_park_at_once(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    _open_everything(rig)
    rig.world.inject_fault("mount-disconnect")
    rig.run(1)
    obs.sim.set_weather("rain")
    rig.run(90)  # slit and cover closed; the mount cannot park
    assert obs.mount.state == MountState.ERROR and not obs.supervisor.in_safe_state()
    rig.world.clear_fault("mount-disconnect")
    rig.run(1.0)
    assert obs.mount.state == MountState.PARKING
    assert any("the mount answers again" in m for m in rig.messages())


# --------------------------------------------------------------------------- reopen hold-off


def test_hold_off_refuses_an_open_after_rain_until_safe_long_enough_and_survives_a_restart(
        sim_rig):
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.compose import build_observatory

    rig = sim_rig()
    obs = rig.obs
    after = obs.config.safety.reopen_after_s
    assert after == 600.0  # the default
    obs.sim.set_weather("rain")
    rig.run(60)
    obs.sim.set_weather("clear")
    rig.run(300)  # 5 minutes after the rain
    assert obs.verdict.safe
    for open_ in (obs.slit_open, obs.cover_open):
        with pytest.raises(CommandRefused) as info:
            open_()
        assert info.value.code == "hold_off"
        assert "300 s to go" in str(info.value) and "rain" in str(info.value)
    hold = obs.status()["safety"]["hold_off"]
    assert 299 <= hold["remaining_s"] <= 301
    # a restart does not cut it short
    obs.stop()
    cfg = load_config(simulated_config_path(), env={
        "TENMON_PATHS__DATA_DIR": str(obs.config.paths.data_dir)})
    obs2 = build_observatory(cfg)
    obs2.start()
    rig2 = type(rig)(obs2)
    rig2.run(5)
    with pytest.raises(CommandRefused) as info:
        obs2.slit_open()
    assert info.value.code == "hold_off"
    assert 280 <= obs2.hold_off_remaining_s() <= 300
    rig2.run(obs2.hold_off_remaining_s() + 1)  # safe for 10 minutes in all
    obs2.slit_open()
    rig2.run(100, until=lambda: obs2.slit.state == ShutterState.OPEN)
    assert obs2.slit.state == ShutterState.OPEN
    obs2.stop()


def test_hold_off_restarts_with_every_unsafe_condition_but_not_daylight(sim_rig):
    rig = sim_rig(TENMON_SAFETY__REOPEN_AFTER_S="100")
    obs = rig.obs
    obs.sim.set_weather("wind", 20.0)
    rig.run(5)
    obs.sim.set_weather("clear")
    rig.run(90)
    obs.sim.set_weather("humid")  # a new condition restarts the wait
    rig.run(2)
    obs.sim.set_weather("clear")
    rig.run(90)
    assert obs.hold_off_remaining_s() > 5
    rig.run(15)
    assert obs.hold_off_remaining_s() == 0
    obs.slit_open()
    # daylight alone does not start it (the night's first opening waits for twilight anyway)
    from tenmon.daemon.safety import SafetyVerdict

    obs.supervisor.hold_off.observe(SafetyVerdict(False, ("sun altitude 3.0 deg",), ("sun",)))
    assert obs.hold_off_remaining_s() == 0


def test_the_sequencer_waits_out_the_shared_hold_off(sim_rig):
    """No open path of its own: the sequencer reopens only through Observatory.check_open."""
    from tenmon.config.services import SequencerSettings

    assert "reopen_after_safe_s" not in SequencerSettings.model_fields
    rig = sim_rig()
    obs = rig.obs
    obs.sim.set_weather("rain")
    rig.run(5)
    obs.sim.set_weather("clear")
    rig.run(5)
    with pytest.raises(CommandRefused) as info:
        obs.check_open("sequencer open")
    assert info.value.code == "hold_off"


# --------------------------------------------------------------------------- every reading has its age


def test_status_gives_every_reading_its_age(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    rig.run(40)  # the sun's cache is refreshed every 30 s
    st = obs.status()
    assert 0 <= st["weather"]["age_s"] <= 0.2
    assert 0 <= st["encoder"]["age_s"] <= 0.5 and st["encoder"]["state_age_s"] is None
    assert 0 <= st["safety"]["sun_age_s"] <= 30.0
    assert st["mount"]["position_age_s"] == 0.0
    rig.world.inject_fault("weather-stale")
    rig.world.inject_fault("slit-state-hidden")
    rig.run(30)
    st = obs.status()
    assert 29.5 <= st["weather"]["age_s"] <= 30.5  # a stale value shows how old it is
    assert st["encoder"]["state_age_s"] >= 29.0  # a carried state shows how old it is
    json.dumps(st, allow_nan=False)


def test_sim_fault_help_lists_every_fault():
    from tenmon.cli.main import build_parser
    from tenmon.drivers.sim.world import FAULTS

    p = build_parser("sim")
    sim = next(a for a in p._subparsers._group_actions[0].choices.values()
               if a.prog.endswith("sim"))
    fault = sim._subparsers._group_actions[0].choices["fault"]
    text = fault.format_help()
    for name in FAULTS:
        assert name in text, name
    from tenmon.cli.ops import SIM_FAULTS

    assert {n.partition(":")[0] for n in SIM_FAULTS} == set(FAULTS)


def test_hold_off_writes_transitions_not_every_flap():
    from tenmon.core.clock import FakeClock
    from tenmon.daemon.safety import SafetyVerdict
    from tenmon.daemon.supervisor import ReopenHoldOff

    clock, saved = FakeClock(), []
    h = ReopenHoldOff(600.0, clock, save=saved.append)
    h.restore(None)
    rain, clear = SafetyVerdict(False, ("rain",), ("rain",)), SafetyVerdict(True, (), ())
    for _ in range(60):  # a sensor flapping every half second
        h.observe(rain)
        clock.advance(0.5)
        h.observe(clear)
        clock.advance(0.5)
    assert len(saved) == 1 and saved[0]["unsafe"] is True
    for _ in range(60):
        clock.advance(0.1)
        h.observe(clear)
    assert len(saved) == 2 and saved[-1]["unsafe"] is False
    assert 593 <= h.remaining_s() <= 595
    h2 = ReopenHoldOff(600.0, clock)  # a restart takes it up
    h2.restore(saved[-1])
    assert h2.remaining_s() == h.remaining_s()
    h3 = ReopenHoldOff(600.0, clock)
    h3.restore({"garbage": 1})  # an unreadable record: assume unsafe
    assert h3.remaining_s() == 600.0
