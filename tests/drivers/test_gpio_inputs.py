"""GPIO rain sensor and cover limit switches over gpiozero's MockFactory (pin levels, not calls).

A cut cable is a line nothing drives any more: it floats to its pull (``cut(pin)``).
"""

from __future__ import annotations

from pathlib import Path

import gpiozero
import pytest
from gpiozero.pins.mock import MockFactory

from tenmon.core.clock import FakeClock
from tenmon.config.models import CoverLimitSwitches, GpioRainConfig
from tenmon.drivers.base import WeatherSensor
from tenmon.drivers.gpio_inputs import GpioRainSensor, LimitSwitchConflict, LimitSwitches
from tenmon.core.errors import DeviceError, DeviceNotFound

RAIN_PIN = 4
BEAT_PIN = 27


def rain(clock, factory, **kw) -> GpioRainSensor:
    """A rain sensor; by default the fail-safe normally-closed wiring (contact to ground closed
    while dry, pull-up: wet is high)."""
    kw = {"wet_when_high": True, "pull_up": True, **kw}
    cfg = GpioRainConfig(type="gpio-rain", pin=RAIN_PIN, **kw)
    return GpioRainSensor(cfg, clock, pin_factory=factory)


def cut(pin) -> None:
    """The cable is cut: nothing drives the line, which floats to its pull."""
    pin.pull = pin.pull


def test_rain_sensor_is_a_weather_sensor():
    assert isinstance(rain(FakeClock(), MockFactory()), WeatherSensor)


def test_rain_wet_low_module_with_pull_down():
    """A comparator module (FC-37 type) that pulls low when wet, with the Pi's pull-down."""
    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory, wet_when_high=False, pull_up=False)
    assert s.reading() is None
    s.connect()
    pin = factory.pin(RAIN_PIN)
    assert pin.function == "input" and pin.pull == "down"
    pin.drive_high()  # the module's output: high while dry
    s.update()
    r = s.reading()
    assert r.rain is False and r.time == clock.now()
    assert r.wind_ms is None and r.humidity_pct is None and r.stale_after_s is None
    pin.drive_low()
    clock.advance(1.0)
    s.update()
    assert s.reading().rain is True and s.reading().time == clock.now()
    s.disconnect()
    assert factory.pin(RAIN_PIN).function == "input"


def test_fail_open_wiring_is_refused_without_a_heartbeat():
    """The old example wiring (wet low with the pull-up) reads a cut cable as dry: refused."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="a cut cable would read dry"):
        GpioRainConfig(type="gpio-rain", pin=RAIN_PIN, wet_when_high=False, pull_up=True)
    with pytest.raises(ValidationError, match="wet_when_high"):
        GpioRainConfig(type="gpio-rain", pin=RAIN_PIN)  # no default: a guess could read rain dry
    # with a heartbeat a lost sensor is told by its silence
    GpioRainConfig(type="gpio-rain", pin=RAIN_PIN, wet_when_high=False, pull_up=True,
                   heartbeat_pin=BEAT_PIN)


def test_example_wiring_reads_a_cut_cable_as_wet():
    """config/site-example.toml's wiring: dry closes the contact (low); a cut cable reads wet."""
    from tenmon.config.loader import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "config" / "site-example.toml",
                      env={}).weather
    clock, factory = FakeClock(), MockFactory()
    s = GpioRainSensor(cfg.model_copy(update={"pin": RAIN_PIN}), clock, pin_factory=factory)
    s.connect()
    pin = factory.pin(RAIN_PIN)
    pin.drive_high() if cfg.wet_when_high is False else pin.drive_low()  # the sensor says dry
    for _ in range(10):
        clock.advance(0.1)
        s.update()
    assert s.reading().rain is False
    cut(pin)
    clock.advance(0.1)
    s.update()
    assert s.reading().rain is True  # at the first sample after the cut


def test_nc_wiring_cut_cable_is_unsafe_at_once():
    from tenmon.config.models import SafetyConfig
    from tenmon.daemon.safety import SafetyInputs, evaluate

    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory)
    s.connect()
    pin = factory.pin(RAIN_PIN)
    pin.drive_low()  # the contact is closed: dry
    s.update()

    def verdict():
        return evaluate(SafetyInputs(now=clock.now(), weather=s.reading(), sun_alt_deg=-30.0,
                                     encoder_age_s=0.1), SafetyConfig())
    assert verdict().safe
    cut(pin)
    clock.advance(0.1)
    s.update()
    v = verdict()
    assert not v.safe and v.codes == ("rain",)


def test_rain_wet_when_high_with_pull_down_needs_a_heartbeat():
    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory, wet_when_high=True, pull_up=False, bounce_s=0.0,
             heartbeat_pin=BEAT_PIN, heartbeat="ok-low")
    s.connect()
    pin = factory.pin(RAIN_PIN)
    assert pin.pull == "down"
    factory.pin(BEAT_PIN).drive_low()  # sensor OK
    s.update()
    assert s.reading().rain is False
    pin.drive_high()
    s.update()
    assert s.reading().rain is True
    pin.drive_low()
    s.update()
    assert s.reading().rain is False  # no debounce configured


def test_heartbeat_lost_goes_stale_after_its_timeout():
    """A toggling heartbeat: the reading's time is the last edge; silence makes it stale."""
    from tenmon.config.models import SafetyConfig
    from tenmon.daemon.safety import SafetyInputs, evaluate

    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory, heartbeat_pin=BEAT_PIN, heartbeat_timeout_s=5.0)
    s.connect()
    rain_pin, beat = factory.pin(RAIN_PIN), factory.pin(BEAT_PIN)
    rain_pin.drive_low()  # dry
    s.update()
    assert s.reading() is None and s.error == "no heartbeat yet"  # no sign of life yet

    def verdict():
        return evaluate(SafetyInputs(now=clock.now(), weather=s.reading(), sun_alt_deg=-30.0,
                                     encoder_age_s=0.1), SafetyConfig())
    for i in range(30):  # a 1 Hz toggle, sampled at 10 Hz
        if i % 10 == 0:
            beat.drive_high() if not beat.state else beat.drive_low()
        clock.advance(0.1)
        s.update()
    r = s.reading()
    assert r.rain is False and r.stale_after_s == 5.0 and s.error is None
    assert verdict().safe
    last = r.time
    while (clock.now() - last).total_seconds() < 4.95:  # 5 s of silence: within the timeout
        clock.advance(0.1)
        s.update()
    assert s.reading().time == last and verdict().safe and s.error is None
    clock.advance(0.2)
    s.update()
    assert "heartbeat lost" in s.error
    v = verdict()
    assert not v.safe and v.codes == ("weather_stale",)
    beat.drive_high() if not beat.state else beat.drive_low()  # alive again
    clock.advance(0.1)
    s.update()
    assert s.error is None and verdict().safe


def test_heartbeat_pulses_shorter_than_a_tick_are_seen():
    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory, heartbeat_pin=BEAT_PIN, heartbeat_timeout_s=1.0)
    s.connect()
    factory.pin(RAIN_PIN).drive_low()
    beat = factory.pin(BEAT_PIN)
    for _ in range(40):  # a pulse (up and down) between two samples, every 0.5 s
        beat.drive_low()
        beat.drive_high()
        clock.advance(0.5)
        s.update()
        assert s.error is None and s.reading().time == clock.now()


def test_ok_line_cut_cable_reads_lost():
    """A "sensor OK" line (active low, pull-up): a cut cable floats high: not OK."""
    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory, heartbeat_pin=BEAT_PIN, heartbeat="ok-low",
             heartbeat_timeout_s=2.0)
    s.connect()
    factory.pin(RAIN_PIN).drive_low()
    ok = factory.pin(BEAT_PIN)
    ok.drive_low()
    s.update()
    assert s.error is None
    cut(ok)
    for _ in range(21):
        clock.advance(0.1)
        s.update()
    assert "heartbeat lost" in s.error
    with pytest.raises(ValueError, match="reads a cut cable as OK"):
        GpioRainConfig(type="gpio-rain", pin=RAIN_PIN, wet_when_high=True,
                       heartbeat_pin=BEAT_PIN, heartbeat="ok-high", heartbeat_pull_up=True)


def test_rain_debounce_is_fail_safe():
    """Wet at once; dry only after bounce_s of uninterrupted dry samples."""
    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory, bounce_s=0.5)  # normally closed: wet is high
    s.connect()
    pin = factory.pin(RAIN_PIN)
    pin.drive_high()
    s.update()
    assert s.reading().rain is True
    pin.drive_low()
    for _ in range(2):
        clock.advance(0.2)
        s.update()
        assert s.reading().rain is True  # dry for 0.0 s, then 0.2 s
    pin.drive_high()  # a flicker of wet restarts the dry wait
    clock.advance(0.1)
    s.update()
    pin.drive_low()
    clock.advance(0.1)
    s.update()
    clock.advance(0.4)
    s.update()
    assert s.reading().rain is True  # 0.4 s dry
    clock.advance(0.1)
    s.update()
    assert s.reading().rain is False  # 0.5 s dry
    times = []
    for _ in range(3):
        clock.advance(2.0)
        s.update()
        times.append(s.reading().time)
    assert times == sorted(times) and len(set(times)) == 3  # a fresh reading every update


def test_rain_update_when_not_connected_goes_stale():
    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory)
    s.connect()
    s.update()
    first = s.reading()
    s.disconnect()
    clock.advance(10)
    s.update()  # never raises
    assert s.reading() is first and s.error == "not connected"


def test_rain_pin_in_use_is_device_not_found():
    factory = MockFactory()
    holder = gpiozero.DigitalInputDevice(RAIN_PIN, pin_factory=factory)
    s = rain(FakeClock(), factory)
    with pytest.raises(DeviceNotFound, match=f"pin {RAIN_PIN}") as err:
        s.connect()
    assert err.value.device == "weather"
    holder.close()


def test_no_pin_factory_is_device_not_found(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-factory")
    monkeypatch.setattr(gpiozero.Device, "pin_factory", None)
    s = GpioRainSensor(GpioRainConfig(type="gpio-rain", pin=RAIN_PIN, wet_when_high=True),
                       FakeClock())
    with pytest.raises(DeviceNotFound, match="no GPIO pin factory loads.*no-such-factory"):
        s.connect()
    with pytest.raises(DeviceNotFound, match="lgpio"):
        LimitSwitches(CoverLimitSwitches(open_pin=20, closed_pin=21))
    assert gpiozero.Device.pin_factory is None


def test_relay_bank_without_pin_factory_is_device_not_found(monkeypatch):
    from tenmon.config.models import GpioRelayConfig
    from tenmon.drivers.relays import make_relay_bank

    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-factory")
    monkeypatch.setattr(gpiozero.Device, "pin_factory", None)
    bank = make_relay_bank("gpio", GpioRelayConfig(type="gpio", channels=2, pins=[17, 27]),
                           FakeClock())
    with pytest.raises(DeviceNotFound, match="relays.gpio: no GPIO pin factory"):
        bank.connect()


# ----------------------------------------------------------------------------- limit switches


def test_limit_switches_pull_up_switch_to_ground():
    factory = MockFactory()
    sw = LimitSwitches(CoverLimitSwitches(open_pin=20, closed_pin=21), pin_factory=factory)
    p_open, p_closed = factory.pin(20), factory.pin(21)
    assert p_open.pull == "up" and p_closed.pull == "up"
    assert (sw.is_open(), sw.is_closed()) == (False, False)  # between the ends
    p_closed.drive_low()
    assert (sw.is_open(), sw.is_closed()) == (False, True)
    p_closed.drive_high()
    p_open.drive_low()
    assert (sw.is_open(), sw.is_closed()) == (True, False)
    sw.disconnect()
    with pytest.raises(DeviceError, match="cannot read"):
        sw.is_open()


def test_limit_switches_pull_down_switch_to_3v3():
    factory = MockFactory()
    sw = LimitSwitches(CoverLimitSwitches(open_pin=20, closed_pin=21, pull_up=False),
                       pin_factory=factory)
    assert (sw.is_open(), sw.is_closed()) == (False, False)
    factory.pin(20).drive_high()
    assert (sw.is_open(), sw.is_closed()) == (True, False)


def test_both_limit_switches_is_a_clear_error():
    factory = MockFactory()
    sw = LimitSwitches(CoverLimitSwitches(open_pin=20, closed_pin=21), pin_factory=factory)
    factory.pin(20).drive_low()
    factory.pin(21).drive_low()
    for read in (sw.is_open, sw.is_closed):
        with pytest.raises(LimitSwitchConflict, match="both limit switches") as err:
            read()
        assert "pin 20" in str(err.value) and "pin 21" in str(err.value)
        assert err.value.device == "cover.limit_switches"


def test_limit_switch_pin_taken_releases_the_other():
    factory = MockFactory()
    holder = gpiozero.DigitalInputDevice(21, pin_factory=factory)
    with pytest.raises(DeviceNotFound, match="pin 21"):
        LimitSwitches(CoverLimitSwitches(open_pin=20, closed_pin=21), pin_factory=factory)
    # pin 20 was released: it can be claimed again
    gpiozero.DigitalInputDevice(20, pin_factory=factory).close()
    holder.close()
