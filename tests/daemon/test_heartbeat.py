"""The heartbeat output for an external dead-man relay, on gpiozero's MockFactory pins: it toggles
while the control loop runs, and stops when the loop stops, a tick hangs, or the safe state
cannot be reached."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from tenmon.core.clock import FakeClock, RealClock
from tenmon.config.models import HeartbeatConfig
from tenmon.config.loader import parse_config, simulated_config_path
from tenmon.daemon.heartbeat import Heartbeat, close_failed
from tenmon.daemon.notify import SystemdNotifier
from tenmon.daemon.runner import _loop
from tenmon.core.errors import DeviceNotFound

PIN = 26


def _pin_states(factory: MockFactory) -> list:
    return list(factory.pin(PIN).states)


def test_toggles_once_per_period_while_healthy():
    factory = MockFactory()
    clock = FakeClock()
    hb = Heartbeat(HeartbeatConfig(pin=PIN, period_s=0.5), clock, pin_factory=factory)
    hb.open()
    for _ in range(50):  # 5 s of 0.1 s ticks
        hb.beat()
        clock.advance(0.1)
    states = _pin_states(factory)
    assert hb.toggles == 10
    levels = [s.state for s in states[1:]]
    assert levels == [True, False] * 5  # a square wave, not a level
    hb.beat(healthy=False, why_not="safe state not reached")
    for _ in range(30):
        clock.advance(0.1)
        hb.beat(healthy=False, why_not="safe state not reached")
    assert hb.toggles == 10 and hb.status()["held"] == "safe state not reached"
    assert not hb.status()["pulsing"]
    clock.advance(0.5)
    hb.beat()
    assert hb.toggles == 11 and hb.status()["pulsing"]
    hb.close()
    hb.beat()  # after close: nothing, no error
    assert hb.toggles == 11


def test_a_taken_pin_is_device_not_found():
    from gpiozero import DigitalOutputDevice

    factory = MockFactory()
    holder = DigitalOutputDevice(PIN, pin_factory=factory)  # noqa: F841 - keeps the pin taken
    with pytest.raises(DeviceNotFound, match=f"GPIO pin {PIN}"):
        Heartbeat(HeartbeatConfig(pin=PIN), FakeClock(), pin_factory=factory).open()


def test_period_shorter_than_the_tick_is_a_config_error():
    from tenmon.core.errors import ConfigError

    text = simulated_config_path().read_text() + "\n[heartbeat]\npin = 26\nperiod_s = 0.05\n"
    with pytest.raises(ConfigError, match="heartbeat.period_s"):
        parse_config(text)
    cfg = parse_config(simulated_config_path().read_text() + "\n[heartbeat]\npin = 26\n")
    assert cfg.heartbeat.period_s == 0.5 and cfg.heartbeat.stop_when_close_fails


def test_control_loop_pulses_and_stops_when_a_tick_hangs_or_the_loop_ends(sim_rig):
    """The real control loop (runner._loop) at x10 on the simulated observatory: pulses every
    period while ticks complete; none while one tick hangs 1.5 s; none after the loop ends."""
    rig = sim_rig()
    obs = rig.obs
    factory = MockFactory()
    hb = Heartbeat(HeartbeatConfig(pin=PIN, period_s=0.1), RealClock(), pin_factory=factory)
    hb.open()
    hang = threading.Event()
    hung = []

    def maybe_hang():
        if hang.is_set():
            hang.clear()
            t0 = time.monotonic()
            hung.append((len(factory.pin(PIN).states), t0))
            time.sleep(1.5)  # a tick that does not return for 1.5 s
            hung.append((len(factory.pin(PIN).states), time.monotonic()))

    obs.tick_hooks.append(maybe_hang)
    stop = {"signals": 0}
    notifier = SystemdNotifier(address="")

    def run():
        asyncio.run(_loop(obs, obs.config, 10.0, notifier, lambda: stop["signals"], hb))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(1.0)
    n_running = len(factory.pin(PIN).states)
    assert n_running >= 5  # ~10 toggles a second (0.1 s period, 10 ms ticks)
    hang.set()
    time.sleep(2.5)
    assert len(hung) == 2
    (n0, _), (n1, _) = hung
    assert n1 == n0  # not one toggle while the tick hung
    # ... and the gap is in the pin's own history (timestamps are times since the last change)
    gaps = [s.timestamp for s in factory.pin(PIN).states[1:]]
    assert max(gaps) >= 1.4
    assert len(factory.pin(PIN).states) > n1  # pulses resumed after the hang
    obs.begin_shutdown("test")  # the loop ends once the safe state is reached
    stop["signals"] = 2  # second signal: end now
    t.join(20)
    assert not t.is_alive()
    n_end = len(factory.pin(PIN).states)
    time.sleep(0.5)
    assert len(factory.pin(PIN).states) == n_end  # no pulses without the loop


def test_heartbeat_held_while_the_safe_state_cannot_be_reached(sim_rig):
    """Slit stalled + rain: once the supervisor gives up ("SAFE STATE NOT REACHED"), the pulses
    stop so that the external relay can close the slit; close_failed() says why."""
    rig = sim_rig()
    obs = rig.obs
    clock = FakeClock()
    factory = MockFactory()
    hb = Heartbeat(HeartbeatConfig(pin=PIN, period_s=0.5), clock, pin_factory=factory)
    hb.open()

    def tick_and_beat():
        held = close_failed(obs)
        hb.beat(healthy=held is None, why_not=held or "")
        clock.advance(obs.config.daemon.tick_s)
        return False

    obs.tick_hooks.append(tick_and_beat)
    obs.slit_open()
    rig.run(30)
    assert hb.toggles > 50 and hb.holding is None
    obs.sim.fault("slit-stall")
    obs.sim.set_weather("rain")
    rig.run(900, until=lambda: obs.supervisor.alarmed)
    assert obs.supervisor.alarmed and "SAFE STATE NOT REACHED" in " ".join(rig.messages())
    n = hb.toggles
    rig.run(60)
    assert hb.toggles == n and "safe state not reached" in hb.status()["held"]
    obs.sim.fault("slit-stall", clear=True)
    rig.run(200, until=obs.supervisor.in_safe_state)
    rig.run(2)
    assert obs.supervisor.in_safe_state() and hb.toggles > n  # pulses again once safe


def test_heartbeat_pin_used_elsewhere_is_a_config_error():
    from tenmon.core.errors import ConfigError

    # config/simulated.toml reads the cover's limit switches on GPIO 23 and 24
    text = simulated_config_path().read_text() + "\n[heartbeat]\npin = 24\n"
    with pytest.raises(ConfigError, match="GPIO 24 is already used by cover.limit_switches"):
        parse_config(text)
