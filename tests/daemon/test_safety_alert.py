"""A network weather sensor's own alert (Alpaca SafetyMonitor not safe, INDI weather alert) is
unsafe; stale and non-finite readings from it are unsafe as from any sensor."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tenmon.config.models import SafetyConfig
from tenmon.daemon.safety import evaluate, SafetyInputs
from tenmon.drivers.base import WeatherReading

NOW = datetime(2026, 11, 21, 14, 0, tzinfo=timezone.utc)


def _v(w):
    return evaluate(SafetyInputs(now=NOW, weather=w, sun_alt_deg=-40.0, encoder_age_s=0.1),
                    SafetyConfig())


def test_alert_is_unsafe_with_its_reason():
    ok = WeatherReading(NOW, rain=False, wind_ms=2.0, humidity_pct=40.0)
    assert _v(ok).safe
    v = _v(WeatherReading(NOW, rain=False, wind_ms=2.0, alert="SafetyMonitor 0: IsSafe false"))
    assert not v.safe and v.codes == ("weather_alert",)
    assert "IsSafe false" in v.reasons[0]
    v = _v(WeatherReading(NOW, rain=False, alert=""))  # an alert without words is an alert
    assert not v.safe and "weather_alert" in v.codes


def test_network_reading_stale_or_non_finite_is_unsafe():
    stale = WeatherReading(NOW - timedelta(seconds=31), rain=False, stale_after_s=30.0)
    assert "weather_stale" in _v(stale).codes
    for bad in (float("nan"), float("inf")):
        assert "weather_invalid" in _v(WeatherReading(NOW, rain=False, wind_ms=bad)).codes
        assert "weather_invalid" in _v(WeatherReading(NOW, rain=False, humidity_pct=bad)).codes
