"""The safety decision is a pure function: each rule, and missing or stale readings are unsafe."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from tenmon.config.models import SafetyConfig
from tenmon.daemon.safety import SafetyInputs, evaluate
from tenmon.drivers.base import WeatherReading

NOW = datetime(2026, 11, 21, 14, 0, tzinfo=timezone.utc)
LIMITS = SafetyConfig()


def inputs(**kw):
    base = dict(now=NOW, weather=WeatherReading(NOW, rain=False, wind_ms=3.0, humidity_pct=50.0),
                sun_alt_deg=-40.0, encoder_age_s=0.2, emergency=None)
    base.update(kw)
    return SafetyInputs(**base)


def test_all_clear_is_safe():
    v = evaluate(inputs(), LIMITS)
    assert v.safe and v.reasons == ()


def test_each_rule():
    cases = {
        "rain": dict(weather=WeatherReading(NOW, rain=True)),
        "wind": dict(weather=WeatherReading(NOW, rain=False, wind_ms=20.0)),
        "humidity": dict(weather=WeatherReading(NOW, rain=False, humidity_pct=97.0)),
        "no weather reading": dict(weather=None),
        "stale": dict(weather=WeatherReading(NOW - timedelta(seconds=200), rain=False)),
        "rain not measured": dict(weather=WeatherReading(NOW, rain=None)),
        "sun altitude -2.0": dict(sun_alt_deg=-2.0),
        "sun altitude unknown": dict(sun_alt_deg=None),
        "encoder lost (no trusted reading yet)": dict(encoder_age_s=None),
        "encoder lost (no trusted reading for 11 s)": dict(encoder_age_s=11.0),
        "operator emergency stop: person in dome": dict(emergency="person in dome"),
    }
    for expected, kw in cases.items():
        v = evaluate(inputs(**kw), LIMITS)
        assert not v.safe, expected
        assert any(expected in r for r in v.reasons), (expected, v.reasons)


def test_unmeasured_quantities_are_not_judged():
    v = evaluate(inputs(weather=WeatherReading(NOW, rain=False)), LIMITS)
    assert v.safe


@given(rain=st.booleans(), wind=st.none() | st.floats(0, 40), hum=st.none() | st.floats(0, 100),
       age=st.floats(0, 1000), sun=st.none() | st.floats(-90, 90),
       enc=st.none() | st.floats(0, 100))
def test_safe_only_if_every_condition_holds(rain, wind, hum, age, sun, enc):
    w = WeatherReading(NOW - timedelta(seconds=age), rain=rain, wind_ms=wind, humidity_pct=hum)
    v = evaluate(inputs(weather=w, sun_alt_deg=sun, encoder_age_s=enc), LIMITS)
    expected = (not rain and (wind is None or wind <= LIMITS.max_wind_ms)
                and (hum is None or hum <= LIMITS.max_humidity_pct)
                and age <= LIMITS.weather_stale_s and sun is not None
                and sun <= LIMITS.sun_max_alt_deg and enc is not None
                and enc <= LIMITS.encoder_stale_s)
    assert v.safe == expected
    assert v.safe == (len(v.reasons) == 0)
