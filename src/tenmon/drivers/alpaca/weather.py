"""Weather from an Alpaca ObservingConditions device and/or a SafetyMonitor, as a safety input.

The worker polls every ``poll_s``; each complete poll makes a
:class:`~tenmon.drivers.base.WeatherReading` stamped with the injected clock's time, with
``stale_after_s`` from the config. A failed poll leaves the last reading as it is, so it goes
stale and the safety decision closes (stale = unsafe). Values are passed on as the server sends
them: a NaN wind is a sensor fault the safety decision judges (non-finite = unsafe), never
quietly dropped. A SafetyMonitor that says not safe is the reading's ``alert``.

Rain: ObservingConditions' ``RainRate`` above ``rain_threshold_mm_h``; a station without
RainRate (0x400) measures no rain, which is unsafe, unless the site says its rain sensor feeds
the SafetyMonitor (``rain_from_safety_monitor``: rain is then "not IsSafe").
"""

from __future__ import annotations

import logging

from alpaca.observingconditions import ObservingConditions
from alpaca.safetymonitor import SafetyMonitor

from tenmon.drivers.alpaca._wire import bounded, call, optional
from tenmon.drivers.alpaca._worker import AlpacaDevice
from tenmon.drivers.base import WeatherReading
from tenmon.core.errors import DeviceNotFound

log = logging.getLogger(__name__)


class AlpacaWeather(AlpacaDevice):
    """See the module docstring. ``config``: ``AlpacaWeatherConfig``."""

    kind = "weather"
    ascom_type = "observingconditions"
    api_class = ObservingConditions

    def __init__(self, config, clock):
        super().__init__(config, clock)
        if not config.observing_conditions:
            self.label = (f"Alpaca safetymonitor {config.safety_monitor} at {config.address}")
        self.monitor = None
        self.monitor_label = None
        if config.safety_monitor is not None:
            self.monitor = bounded(SafetyMonitor, config.address, config.safety_monitor,
                                   timeout_s=config.timeout_s)
            self.monitor_label = (f"Alpaca safetymonitor {config.safety_monitor} at "
                                  f"{config.address}")
        self._reading: WeatherReading | None = None

    def _open(self, *, connecting: bool = False) -> None:
        cfg = self.config
        for dev, label, on in ((self.dev, self.label, cfg.observing_conditions),
                               (self.monitor, self.monitor_label, self.monitor is not None)):
            if not on:
                continue
            call("weather", label, "Connected = true",
                 lambda d=dev: setattr(d, "Connected", True), connecting=connecting)
            if not call("weather", label, "Connected", lambda d=dev: d.Connected,
                        connecting=connecting):
                raise DeviceNotFound("weather", f"{label}: the server would not connect the "
                                     "device (Connected stays false)")
        self._poll()
        import time

        self._last_ok_m = time.monotonic()

    def _poll(self) -> None:
        cfg = self.config
        rain_rate = wind = humidity = None
        if cfg.observing_conditions:
            d = self.dev
            rain_rate = optional("weather", self.label, "RainRate", lambda: d.RainRate)
            wind = optional("weather", self.label, "WindSpeed", lambda: d.WindSpeed)
            humidity = optional("weather", self.label, "Humidity", lambda: d.Humidity)
        safe = None
        if self.monitor is not None:
            safe = call("weather", self.monitor_label, "IsSafe", lambda: self.monitor.IsSafe)
        rain: bool | None = None
        if rain_rate is not None:
            try:
                r = float(rain_rate)
            except (TypeError, ValueError):
                r = float("nan")
            # NaN compares false: a rain rate that is not a number is rain (unsafe)
            rain = not (r <= cfg.rain_threshold_mm_h)
        elif cfg.rain_from_safety_monitor and safe is not None:
            rain = not bool(safe)
        alert = None
        if safe is not None and safe is not True:
            alert = f"{self.monitor_label}: IsSafe is {safe!r}"
        self._reading = WeatherReading(time=self.clock.now(), rain=rain,
                                       wind_ms=_value(wind), humidity_pct=_value(humidity),
                                       stale_after_s=cfg.stale_after_s, alert=alert)

    def reading(self) -> WeatherReading | None:
        """The last complete reading (``None`` before the first): ages while the server is
        away."""
        return self._reading


def _value(v):
    """A number as sent (NaN and infinity included, for the safety decision to judge)."""
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
