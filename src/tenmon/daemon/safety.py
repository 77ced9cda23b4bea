"""The safety decision: a pure function of readings and time. Missing or stale readings are unsafe.

Nothing here touches a device. The supervisor (``supervisor.py``) acts on the verdict; the
simulator simulates sensors, never this decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tenmon.config.models import SafetyConfig
from tenmon.drivers.base import WeatherReading


@dataclass(frozen=True)
class SafetyInputs:
    """Everything the decision looks at, taken at ``now``.

    ``encoder_age_s`` is the age of the last *trusted* encoder reading (``None``: never had one).
    ``sun_alt_deg`` is ``None`` when it could not be computed.
    """

    now: datetime
    weather: WeatherReading | None
    sun_alt_deg: float | None
    encoder_age_s: float | None
    emergency: str | None = None  # the operator's reason, when an emergency stop is latched


@dataclass(frozen=True)
class SafetyVerdict:
    safe: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict:
        return {"safe": self.safe, "reasons": list(self.reasons)}


def evaluate(inputs: SafetyInputs, limits: SafetyConfig) -> SafetyVerdict:
    """Decide whether the slit may be (or stay) open. Pure and total: never raises.

    Rules: operator emergency; no weather reading, or one older than ``weather_stale_s``;
    rain; wind above ``max_wind_ms``; humidity above ``max_humidity_pct``; the sun above
    ``sun_max_alt_deg`` or unknown; no trusted encoder reading for ``encoder_stale_s``.
    A rule whose quantity the sensor does not measure (``None``) is not applied, except rain,
    which every site must measure.
    """
    reasons: list[str] = []
    if inputs.emergency:
        reasons.append(f"operator emergency stop: {inputs.emergency}")
    w = inputs.weather
    if w is None:
        reasons.append("no weather reading")
    else:
        age = (inputs.now - w.time).total_seconds()
        if age > limits.weather_stale_s:
            reasons.append(f"weather reading stale ({age:.0f} s old, limit "
                           f"{limits.weather_stale_s:g} s)")
        if w.rain is None:
            reasons.append("rain not measured")
        elif w.rain:
            reasons.append("rain")
        if w.wind_ms is not None and w.wind_ms > limits.max_wind_ms:
            reasons.append(f"wind {w.wind_ms:.1f} m/s above {limits.max_wind_ms:g} m/s")
        if w.humidity_pct is not None and w.humidity_pct > limits.max_humidity_pct:
            reasons.append(f"humidity {w.humidity_pct:.0f} % above {limits.max_humidity_pct:g} %")
    if inputs.sun_alt_deg is None:
        reasons.append("sun altitude unknown")
    elif inputs.sun_alt_deg > limits.sun_max_alt_deg:
        reasons.append(f"sun altitude {inputs.sun_alt_deg:.1f} deg above "
                       f"{limits.sun_max_alt_deg:g} deg")
    if inputs.encoder_age_s is None:
        reasons.append("encoder lost (no trusted reading yet)")
    elif inputs.encoder_age_s > limits.encoder_stale_s:
        reasons.append(f"encoder lost (no trusted reading for {inputs.encoder_age_s:.0f} s)")
    return SafetyVerdict(safe=not reasons, reasons=tuple(reasons))
