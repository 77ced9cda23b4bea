"""INDI weather station as a safety input: WEATHER_STATUS alerts are unsafe; parameters are readings.

Properties used (INDI's weather interface, ``indi_simulator_weather`` and every INDI weather
driver): ``WEATHER_PARAMETERS`` (numbers: ``WEATHER_RAIN_HOUR`` mm, ``WEATHER_WIND_SPEED`` and
``WEATHER_WIND_GUST`` km/h, ``WEATHER_HUMIDITY`` %, ...), ``WEATHER_STATUS`` (one light per
critical parameter: ``Ok``, ``Busy`` = warning, ``Alert`` = danger) and ``WEATHER_UPDATE``
(the station's refresh period, set at connect).

The reading's ``time`` is the injected clock's time at the tick that first saw a fresh
``WEATHER_PARAMETERS`` report from the station (so staleness is judged in the same time as
every other safety input); ``stale_after_s`` is ``stale_s``. Every light in ``Alert`` is named
in ``alert`` (unsafe). Rain is measured when the station has a rain parameter (any
``WEATHER_RAIN*``/``WEATHER_PRECIP*``): wet when one is above zero or its light is in Alert;
without one, ``rain`` is ``None`` (unsafe: every site must measure rain). A non-finite parameter
passes through as NaN (the safety rules call it a sensor fault). With the server or the device
gone, ``reading()`` is ``None`` (no reading: unsafe) and ``error`` says why.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

from tenmon.core.clock import Clock
from tenmon.drivers.base import WeatherReading
from tenmon.drivers.indi.device import IndiDevice

__all__ = ["IndiWeather"]

log = logging.getLogger(__name__)

_RAIN_PREFIXES = ("WEATHER_RAIN", "WEATHER_PRECIP")


class IndiWeather(IndiDevice):
    """A weather station on an indiserver (``[weather] type = "indi"``); implements
    :class:`~tenmon.drivers.base.WeatherSensor`."""

    required = ("WEATHER_PARAMETERS", "WEATHER_STATUS")

    def __init__(self, config: Any, clock: Clock, *, name: str = "weather"):
        super().__init__(config, clock, name=name)
        self._seen_version: int | None = None
        self._fresh_at: datetime | None = None
        self._reading: WeatherReading | None = None

    def _after_connect(self) -> None:
        period = self.config.update_period_s
        if period is not None and self.vec("WEATHER_UPDATE") is not None:
            self.conn.send_number(self.device, "WEATHER_UPDATE", {"PERIOD": period})
        self._seen_version = None

    def parameters(self) -> dict[str, float]:
        """Every parameter the station reports now (NaN where unreadable)."""
        v = self.vec("WEATHER_PARAMETERS")
        return {} if v is None else {k: v.number(k) for k in v.values}

    def refresh(self) -> None:
        """Ask the station for fresh values now (``WEATHER_REFRESH``), when it has that."""
        if self.vec("WEATHER_REFRESH") is not None:
            self._send_switch("WEATHER_REFRESH", "REFRESH", off=[])

    def update(self) -> None:
        """Take a fresh report when the station sent one (non-blocking). Never raises."""
        try:
            why = self.link_problem()
            if why is not None:
                self._fail(why)
                self._reading = None
                return
            self._error = None
            params = self.vec("WEATHER_PARAMETERS")
            if params is None:
                self._reading = None
                return
            if params.version != self._seen_version and params.state != "Busy":
                self._seen_version = params.version
                self._fresh_at = self.clock.now()
            if self._fresh_at is None:
                return
            self._reading = self._judge(params.values, self._fresh_at)
        except Exception as exc:  # noqa: BLE001 - update never raises for a device fault
            self._fail(f"update failed: {exc}")
            self._reading = None

    def _judge(self, raw: dict[str, str], when: datetime) -> WeatherReading:
        p = self.parameters()
        status = self.vec("WEATHER_STATUS")
        lights = dict(status.values) if status is not None else {}
        alerts = tuple(sorted(k for k, s in lights.items() if s == "Alert"))
        if status is not None and status.state == "Alert" and not alerts:
            alerts = ("WEATHER_STATUS",)
        rain_keys = [k for k in (*p, *lights) if k.startswith(_RAIN_PREFIXES)]
        rain: bool | None
        if not rain_keys:
            rain = None
        else:
            values = [p[k] for k in rain_keys if k in p]
            if any(not math.isfinite(x) for x in values):
                rain = None
            else:
                rain = any(x > 0 for x in values) or any(lights.get(k) == "Alert"
                                                         for k in rain_keys)
        winds = [p[k] for k in ("WEATHER_WIND_SPEED", "WEATHER_WIND_GUST") if k in p]
        wind_ms = None
        if winds:
            wind_ms = math.nan if any(not math.isfinite(w) for w in winds) else max(winds) / 3.6
        hum = p.get("WEATHER_HUMIDITY")
        return WeatherReading(time=when, rain=rain, wind_ms=wind_ms, humidity_pct=hum,
                              stale_after_s=self.config.stale_s,
                              alert=("in Alert: " + ", ".join(alerts)) if alerts else None)

    def reading(self) -> WeatherReading | None:
        """The latest reading; ``None`` before the first report or with the link lost."""
        return self._reading
