"""GPIO rain sensor and cover limit switches over gpiozero's MockFactory (pin levels, not calls)."""

from __future__ import annotations

import gpiozero
import pytest
from gpiozero.pins.mock import MockFactory

from tenmon.clock import FakeClock
from tenmon.config.models import CoverLimitSwitches, GpioRainConfig
from tenmon.drivers.base import WeatherSensor
from tenmon.drivers.gpio_inputs import GpioRainSensor, LimitSwitchConflict, LimitSwitches
from tenmon.errors import DeviceError, DeviceNotFound

RAIN_PIN = 4


def rain(clock, factory, **kw) -> GpioRainSensor:
    cfg = GpioRainConfig(type="gpio-rain", pin=RAIN_PIN, **kw)
    return GpioRainSensor(cfg, clock, pin_factory=factory)


def test_rain_sensor_is_a_weather_sensor():
    assert isinstance(rain(FakeClock(), MockFactory()), WeatherSensor)


def test_rain_default_wiring_wet_is_low():
    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory)  # wet_when_high = False, pull_up = True
    assert s.reading() is None
    s.connect()
    pin = factory.pin(RAIN_PIN)
    assert pin.function == "input" and pin.pull == "up"
    s.update()  # the pull-up holds the line high: dry
    r = s.reading()
    assert r.rain is False and r.time == clock.now()
    assert r.wind_ms is None and r.humidity_pct is None
    pin.drive_low()
    clock.advance(1.0)
    s.update()
    assert s.reading().rain is True and s.reading().time == clock.now()
    s.disconnect()
    assert factory.pin(RAIN_PIN).function == "input"


def test_rain_wet_when_high_with_pull_down():
    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory, wet_when_high=True, pull_up=False, bounce_s=0.0)
    s.connect()
    pin = factory.pin(RAIN_PIN)
    assert pin.pull == "down"
    s.update()
    assert s.reading().rain is False
    pin.drive_high()
    s.update()
    assert s.reading().rain is True
    pin.drive_low()
    s.update()
    assert s.reading().rain is False  # no debounce configured


def test_rain_debounce_is_fail_safe():
    """Wet at once; dry only after bounce_s of uninterrupted dry samples."""
    clock, factory = FakeClock(), MockFactory()
    s = rain(clock, factory, bounce_s=0.5)
    s.connect()
    pin = factory.pin(RAIN_PIN)
    pin.drive_low()
    s.update()
    assert s.reading().rain is True
    pin.drive_high()
    for _ in range(2):
        clock.advance(0.2)
        s.update()
        assert s.reading().rain is True  # dry for 0.0 s, then 0.2 s
    pin.drive_low()  # a flicker of wet restarts the dry wait
    clock.advance(0.1)
    s.update()
    pin.drive_high()
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
    s = GpioRainSensor(GpioRainConfig(type="gpio-rain", pin=RAIN_PIN), FakeClock())
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
