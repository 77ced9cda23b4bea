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


# --------------------------------------------------------------------------- invalid readings


def test_nan_wind_is_unsafe():
    """``nan > limit`` is False: a NaN must not read as calm."""
    v = evaluate(inputs(weather=WeatherReading(NOW, rain=False, wind_ms=float("nan"))), LIMITS)
    assert not v.safe and v.codes == ("weather_invalid",)
    assert "nan" in v.reasons[0]


def test_non_finite_and_out_of_range_readings_are_unsafe():
    nan, inf = float("nan"), float("inf")
    cases = [
        dict(weather=WeatherReading(NOW, rain=False, wind_ms=inf)),
        dict(weather=WeatherReading(NOW, rain=False, wind_ms=-1.0)),
        dict(weather=WeatherReading(NOW, rain=False, wind_ms=300.0)),
        dict(weather=WeatherReading(NOW, rain=False, humidity_pct=nan)),
        dict(weather=WeatherReading(NOW, rain=False, humidity_pct=-5.0)),
        dict(weather=WeatherReading(NOW, rain=False, humidity_pct=130.0)),
        dict(weather=WeatherReading(NOW + timedelta(hours=1), rain=False)),  # from the future
        dict(weather=WeatherReading(NOW, rain=float("nan"))),  # not a yes or no
    ]
    for kw in cases:
        v = evaluate(inputs(**kw), LIMITS)
        assert not v.safe and "weather_invalid" in v.codes, (kw, v)
    for sun in (nan, inf, -inf, 120.0):
        v = evaluate(inputs(sun_alt_deg=sun), LIMITS)
        assert not v.safe and v.codes == ("sun_unknown",), sun
    for enc in (nan, inf, -1.0):
        v = evaluate(inputs(encoder_age_s=enc), LIMITS)
        assert not v.safe and v.codes == ("encoder_lost",), enc


def test_inputs_it_cannot_judge_are_unsafe_not_an_exception():
    naive = NOW.replace(tzinfo=None)  # naive - aware raises TypeError inside
    v = evaluate(inputs(weather=WeatherReading(naive, rain=False)), LIMITS)
    assert not v.safe and v.codes == ("internal",)


def test_a_sensor_may_shorten_its_staleness_but_never_lengthen_it():
    w = WeatherReading(NOW - timedelta(seconds=10), rain=False, stale_after_s=5.0)
    assert evaluate(inputs(weather=w), LIMITS).codes == ("weather_stale",)
    w = WeatherReading(NOW - timedelta(seconds=200), rain=False, stale_after_s=1e6)
    assert evaluate(inputs(weather=w), LIMITS).codes == ("weather_stale",)


def test_a_stale_reason_keeps_its_code_as_it_ages():
    texts, codes = set(), set()
    for age in (130, 131, 500):
        v = evaluate(inputs(weather=WeatherReading(NOW - timedelta(seconds=age), rain=False)),
                     LIMITS)
        texts.add(v.reasons)
        codes.add(v.codes)
    assert len(texts) == 3 and codes == {("weather_stale",)}


def test_actuator_faults_are_unsafe():
    v = evaluate(inputs(faults=("dome turning with no motion commanded",)), LIMITS)
    assert not v.safe and v.codes == ("actuator_fault",)
    assert "dome turning" in v.reasons[0]


_ANY = st.none() | st.floats(allow_nan=True, allow_infinity=True)


@given(wind=_ANY, hum=_ANY, sun=_ANY, enc=_ANY, age=st.floats(-1e5, 1e5),
       stale=st.none() | st.floats(allow_nan=True, allow_infinity=True))
def test_total_and_never_safe_on_a_non_finite_reading(wind, hum, sun, enc, age, stale):
    import math

    w = WeatherReading(NOW - timedelta(seconds=age), rain=False, wind_ms=wind, humidity_pct=hum,
                       stale_after_s=stale)
    v = evaluate(inputs(weather=w, sun_alt_deg=sun, encoder_age_s=enc), LIMITS)
    assert len(v.codes) == len(v.reasons) and v.safe == (not v.reasons)
    if any(x is not None and not math.isfinite(x) for x in (wind, hum, sun, enc)):
        assert not v.safe


def test_config_limits_must_be_finite():
    import pytest
    from pydantic import ValidationError

    for key in ("weather_stale_s", "max_wind_ms", "encoder_stale_s", "max_humidity_pct",
                "reopen_after_s", "verify_margin_s", "retry_every_s"):
        for bad in (float("inf"), float("nan")):
            with pytest.raises(ValidationError):
                SafetyConfig(**{key: bad})


def test_config_file_with_inf_limits_is_refused(tmp_path):
    import pytest

    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.core.errors import ConfigError

    text = simulated_config_path().read_text()
    for line in ("weather_stale_s = 120", "max_wind_ms = 15"):
        key = line.split()[0]
        p = tmp_path / f"{key}.toml"
        p.write_text(text.replace(line, f"{key} = inf"))
        with pytest.raises(ConfigError) as info:
            load_config(p, env={})
        assert any(k == f"safety.{key}" for k, _, _ in info.value.problems), info.value.problems
    # every float of the site file, not only the safety limits
    p = tmp_path / "travel.toml"
    p.write_text(text.replace("travel_time_s = 60", "travel_time_s = nan"))
    with pytest.raises(ConfigError):
        load_config(p, env={})
