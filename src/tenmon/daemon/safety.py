"""The safety decision: a pure function of readings and time. Missing, stale or invalid readings are
unsafe.

Nothing here touches a device. The supervisor (``supervisor.py``) acts on the verdict; the
simulator simulates sensors, never this decision.

Every reason carries a stable *code* beside its text (``"weather_stale"`` while the text says how
old the reading is), so the supervisor can tell a new condition from the same one going on, and
the reopen hold-off can tell which conditions start it (:data:`HOLD_OFF_EXEMPT`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from tenmon.config.models import SafetyConfig
from tenmon.drivers.base import WeatherReading

#: Readings outside these ranges are sensor faults (unsafe), not weather.
WIND_RANGE_MS = (0.0, 75.0)
HUMIDITY_RANGE_PCT = (0.0, 100.0)
SUN_RANGE_DEG = (-90.0, 90.0)
#: A reading stamped further in the future than this is from a wrong clock: invalid.
FUTURE_TOLERANCE_S = 60.0

#: Codes whose reasons are a lost, stale or invalid sensor: the supervisor raises an alarm.
SENSOR_CODES = frozenset({"weather_missing", "weather_stale", "weather_invalid", "rain_unmeasured",
                          "sun_unknown", "encoder_lost"})
#: Codes that do not start the reopen hold-off. Daylight is no passing condition: it comes and
#: goes once a day, and the night's first opening waits for its twilight anyway. ``starting``
#: is the daemon's own start, not a condition of the sky or the devices.
HOLD_OFF_EXEMPT = frozenset({"sun", "starting"})


@dataclass(frozen=True)
class SafetyInputs:
    """Everything the decision looks at, taken at ``now``.

    ``encoder_age_s`` is the age of the last *trusted* encoder reading (``None``: never had one).
    ``sun_alt_deg`` is ``None`` when it could not be computed. ``faults`` are actuator faults
    (motion nobody commanded, a relay whose read-back disagrees), one text each; any fault is
    unsafe until it stops or an operator clears it.
    """

    now: datetime
    weather: WeatherReading | None
    sun_alt_deg: float | None
    encoder_age_s: float | None
    emergency: str | None = None  # the operator's reason, when an emergency stop is latched
    faults: tuple[str, ...] = ()


@dataclass(frozen=True)
class SafetyVerdict:
    """``safe`` with the reasons it is not: ``reasons[i]`` is the text of ``codes[i]``."""

    safe: bool
    reasons: tuple[str, ...]
    codes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"safe": self.safe, "reasons": list(self.reasons), "codes": list(self.codes)}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def evaluate(inputs: SafetyInputs, limits: SafetyConfig) -> SafetyVerdict:
    """Decide whether the slit may be (or stay) open. Pure and total: never raises.

    Rules: operator emergency; actuator faults; no weather reading, one older than
    ``weather_stale_s`` (or than the sensor's own ``stale_after_s``, when shorter), or one from
    the future; rain, or rain not measured; wind above ``max_wind_ms``; humidity above
    ``max_humidity_pct``; the sun above ``sun_max_alt_deg`` or unknown; no trusted encoder
    reading for ``encoder_stale_s``. A quantity the sensor does not measure (``None``) is not
    judged, except rain, which every site must measure. A reading that is not a finite number
    in its plausible range (NaN, infinity, negative wind, humidity over 100 %) is a sensor
    fault: unsafe. Anything unexpected (a naive timestamp, a wrong type) is unsafe too.
    """
    try:
        reasons = _evaluate(inputs, limits)
    except Exception as exc:  # noqa: BLE001 - total by design: an input it cannot judge is unsafe
        reasons = [("internal", f"safety inputs could not be judged ({type(exc).__name__}: "
                                f"{exc}): unsafe")]
    return SafetyVerdict(safe=not reasons, reasons=tuple(r for _, r in reasons),
                         codes=tuple(c for c, _ in reasons))


def _evaluate(inputs: SafetyInputs, limits: SafetyConfig) -> list[tuple[str, str]]:
    reasons: list[tuple[str, str]] = []
    add = lambda code, text: reasons.append((code, text))  # noqa: E731
    if inputs.emergency:
        add("emergency", f"operator emergency stop: {inputs.emergency}")
    for fault in inputs.faults:
        add("actuator_fault", f"actuator fault: {fault}")
    w = inputs.weather
    if w is None:
        add("weather_missing", "no weather reading")
    else:
        _judge_weather(w, inputs.now, limits, add)
    sun = inputs.sun_alt_deg
    if sun is None or not _finite(sun) or not SUN_RANGE_DEG[0] <= sun <= SUN_RANGE_DEG[1]:
        add("sun_unknown", "sun altitude unknown" + ("" if sun is None else f" ({sun!r})"))
    elif sun > limits.sun_max_alt_deg:
        add("sun", f"sun altitude {sun:.1f} deg above {limits.sun_max_alt_deg:g} deg")
    enc = inputs.encoder_age_s
    if enc is None:
        add("encoder_lost", "encoder lost (no trusted reading yet)")
    elif not _finite(enc) or enc < 0:
        add("encoder_lost", f"encoder lost (reading age {enc!r} s is not a time)")
    elif enc > limits.encoder_stale_s:
        add("encoder_lost", f"encoder lost (no trusted reading for {enc:.0f} s)")
    return reasons


def _judge_weather(w: WeatherReading, now: datetime, limits: SafetyConfig, add) -> None:
    age = (now - w.time).total_seconds()
    limit = limits.weather_stale_s
    own = getattr(w, "stale_after_s", None)
    if own is not None and _finite(own) and 0 < own < limit:
        limit = own
    if age < -FUTURE_TOLERANCE_S:
        add("weather_invalid", f"weather reading stamped {-age:.0f} s in the future (clock?)")
    elif age > limit:
        # the age stays out of the code: a reading that keeps ageing is one condition
        add("weather_stale", f"weather reading stale ({age:.0f} s old, limit {limit:g} s)")
    if w.rain is None:
        add("rain_unmeasured", "rain not measured")
    elif not isinstance(w.rain, bool):
        add("weather_invalid", f"rain reading {w.rain!r} is not yes or no")
    elif w.rain:
        add("rain", "rain")
    alerts = getattr(w, "alerts", ())
    if alerts:
        add("weather_alert", "the weather station reports unsafe: " + ", ".join(map(str, alerts)))
    if w.wind_ms is not None:
        if not _finite(w.wind_ms) or not WIND_RANGE_MS[0] <= w.wind_ms <= WIND_RANGE_MS[1]:
            add("weather_invalid", f"wind reading {w.wind_ms!r} m/s is not a plausible number "
                f"({WIND_RANGE_MS[0]:g}..{WIND_RANGE_MS[1]:g})")
        elif w.wind_ms > limits.max_wind_ms:
            add("wind", f"wind {w.wind_ms:.1f} m/s above {limits.max_wind_ms:g} m/s")
    if w.humidity_pct is not None:
        if not _finite(w.humidity_pct) or not (
                HUMIDITY_RANGE_PCT[0] <= w.humidity_pct <= HUMIDITY_RANGE_PCT[1]):
            add("weather_invalid", f"humidity reading {w.humidity_pct!r} % is not a plausible "
                f"number ({HUMIDITY_RANGE_PCT[0]:g}..{HUMIDITY_RANGE_PCT[1]:g})")
        elif w.humidity_pct > limits.max_humidity_pct:
            add("humidity", f"humidity {w.humidity_pct:.0f} % above {limits.max_humidity_pct:g} %")
