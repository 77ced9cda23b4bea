"""The INDI mount, focuser, filter wheel, weather station and discovery against a real indiserver.

Debian's indi_simulator_telescope, _focus, _wheel and _weather run under one indiserver started
by the module; each test drives a device as the control loop does (update() every tick, the
fake clock advancing) and waits on conditions.
"""

from __future__ import annotations

import math
import time

import pytest
from indi_rig import IndiServer, free_port, wait_for

from tenmon.core.clock import FakeClock
from tenmon.config.models import (
    IndiFilterWheelConfig,
    IndiFocuserConfig,
    IndiMountConfig,
    IndiWeatherConfig,
)
from tenmon.daemon.safety import SafetyInputs, evaluate
from tenmon.config.models import SafetyConfig
from tenmon.drivers.base import Mount, MountState, WeatherSensor
from tenmon.drivers.focuser import FilterWheel, Focuser
from tenmon.drivers.indi import (
    IndiFilterWheel,
    IndiFocuser,
    IndiMount,
    IndiWeather,
    discover_indi,
)
from tenmon.drivers.mount import MountRefused, TargetBelowHorizon
from tenmon.core.errors import DeviceDisconnected, DeviceError, DeviceNotFound

DRIVERS = ("indi_simulator_telescope", "indi_simulator_focus", "indi_simulator_wheel",
           "indi_simulator_weather")
# The fake clock's default start, 2026-11-21 13:00 UTC, at Okayama (E 133.6, N 34.6): night.
LAT, LON = 34.6, 133.6


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = IndiServer(DRIVERS, tmp_path_factory.mktemp("indi-devs")).start()
    yield srv
    srv.stop()


def cfg(model, server, device, **kw):
    return model(type="indi", port=server.port, device=device, connect_timeout_s=20, **kw)


def ticker(dev, clock, dt=0.1):
    def tick():
        clock.advance(dt)
        dev.update()
    return tick


# --------------------------------------------------------------------------- mount


def _zenith(mount: IndiMount) -> tuple[float, float]:
    from tenmon.core.astro import lst_deg

    return lst_deg(mount.clock.now(), LON), LAT


def test_mount_slew_track_sync_park(server):
    clock = FakeClock()
    m = IndiMount(cfg(IndiMountConfig, server, "Telescope Simulator", min_alt_deg=15), clock,
                  latitude_deg=LAT, longitude_deg=LON)
    assert isinstance(m, Mount)
    m.connect()
    tick = ticker(m, clock)
    try:
        if m.state == MountState.PARKED:
            m.unpark()
            assert wait_for(lambda: m.state != MountState.PARKED, 20, tick=tick)
        ra0, dec0 = _zenith(m)
        ra, dec = (ra0 + 20) % 360, dec0 - 10   # 20 deg east of the meridian, high up
        t = time.perf_counter()
        m.goto(ra, dec)
        assert time.perf_counter() - t < 0.5    # non-blocking: the slew has only started
        assert m.state == MountState.SLEWING
        assert wait_for(lambda: m.state == MountState.TRACKING, 60, tick=tick), (m.state, m.error)
        assert m.tracking and m.error is None
        assert abs(((m.ra_deg - ra + 180) % 360) - 180) < 0.1 and abs(m.dec_deg - dec) < 0.1
        assert m.pier_side in ("east", "west")
        # sync moves the mount's idea of the position, not the mount
        m.sync(ra + 0.5, dec + 0.25)
        assert wait_for(lambda: abs(m.dec_deg - (dec + 0.25)) < 0.05, 20, tick=tick)
        m.set_tracking(False)
        assert wait_for(lambda: m.state == MountState.IDLE, 20, tick=tick)
        # park where it stands (the simulator's default park position is a long slew away)
        server.setprop("Telescope Simulator.TELESCOPE_PARK_OPTION.PARK_CURRENT=On")
        m.park()
        assert m.state in (MountState.PARKING, MountState.PARKED)
        assert wait_for(lambda: m.state == MountState.PARKED, 120, tick=tick), m.state
        with pytest.raises(MountRefused, match="parked"):
            m.goto(ra, dec)
        m.unpark()
        assert wait_for(lambda: m.state != MountState.PARKED, 20, tick=tick)
    finally:
        m.disconnect()


def test_mount_limits(server):
    clock = FakeClock()
    m = IndiMount(cfg(IndiMountConfig, server, "Telescope Simulator", min_alt_deg=20,
                      max_hour_angle_deg=60), clock, latitude_deg=LAT, longitude_deg=LON)
    m.connect()
    try:
        ra0, _ = _zenith(m)
        with pytest.raises(TargetBelowHorizon, match="below the limit 20"):
            m.goto(ra0, LAT - 80)          # on the meridian, 10 deg up in the south
        with pytest.raises(MountRefused, match="hour angle"):
            m.goto((ra0 - 75) % 360, 80)   # high near the pole but 75 deg west of the meridian
        with pytest.raises(ValueError):
            m.goto(math.nan, 0)
        assert m.state != MountState.SLEWING
    finally:
        m.disconnect()


def test_mount_stops_tracking_below_the_limit(server):
    clock = FakeClock()
    m = IndiMount(cfg(IndiMountConfig, server, "Telescope Simulator", min_alt_deg=15), clock,
                  latitude_deg=LAT, longitude_deg=LON)
    m.connect()
    tick = ticker(m, clock)
    try:
        if m.state == MountState.PARKED:
            m.unpark()
            assert wait_for(lambda: m.state != MountState.PARKED, 20, tick=tick)
        ra0, _ = _zenith(m)
        m.goto((ra0 - 60) % 360, 0.0)  # 60 deg west, on the equator: ~ 20 deg up, setting
        assert wait_for(lambda: m.state == MountState.TRACKING, 60, tick=tick), m.error
        clock.advance(3 * 3600)        # hours later (the mount's own position barely moved)
        m.update()
        assert m.state == MountState.ERROR and "altitude limit" in m.error
        assert wait_for(lambda: not m.tracking, 20, tick=m.update)
        m.abort()
    finally:
        m.disconnect()


def test_mount_slew_timeout_and_lost_server(tmp_path):
    srv = IndiServer(("indi_simulator_telescope",), tmp_path).start()
    clock = FakeClock()
    m = IndiMount(cfg(IndiMountConfig, srv, "Telescope Simulator", slew_timeout_s=5,
                      min_alt_deg=0), clock, latitude_deg=LAT, longitude_deg=LON)
    m.connect()
    try:
        if m.state == MountState.PARKED:
            m.unpark()
            assert wait_for(lambda: m.state != MountState.PARKED, 20, tick=m.update)
        ra0, _ = _zenith(m)
        m.goto((ra0 + 80) % 360, 0.0)  # low in the east, far from the pole: a long slew
        m.update()
        clock.advance(6)
        m.update()
        assert m.state == MountState.ERROR and "did not end within 5 s" in m.error
        srv.kill()
        assert wait_for(lambda: "lost" in (m.error or ""), 30, tick=m.update), m.error
        with pytest.raises(DeviceDisconnected, match=f"127.0.0.1:{srv.port}"):
            m.goto(ra0, LAT)
    finally:
        m.disconnect()
        srv.stop()


# --------------------------------------------------------------------------- focuser, wheel


def test_focuser_moves_and_refuses_out_of_range(server):
    clock = FakeClock()
    f = IndiFocuser(cfg(IndiFocuserConfig, server, "Focuser Simulator"), clock)
    assert isinstance(f, Focuser)
    f.connect()
    tick = ticker(f, clock)
    try:
        assert f.max_position == 100000 and f.position is not None
        target = 30000 if f.position != 30000 else 31000
        f.move_to(target)
        assert f.moving
        assert wait_for(lambda: not f.moving and f.position == target, 60, tick=tick), \
            (f.position, f.error)
        assert f.error is None
        with pytest.raises(DeviceError, match="outside 0..100000"):
            f.move_to(100001)
        with pytest.raises(DeviceError):
            f.move_to(12.5)
        f.move_to(target + 2000)
        f.halt()
        f.update()
        assert f.temperature_c is None or math.isfinite(f.temperature_c)
    finally:
        f.disconnect()


def test_filter_wheel_by_name(server):
    clock = FakeClock()
    w = IndiFilterWheel(cfg(IndiFilterWheelConfig, server, "Filter Simulator"), clock)
    assert isinstance(w, FilterWheel)
    w.connect()
    tick = ticker(w, clock)
    try:
        assert w.names[:3] == ["Red", "Green", "Blue"] and len(w.names) == 8
        w.select("blue")
        assert wait_for(lambda: w.position == 2, 30, tick=tick), (w.position, w.error)
        assert w.filter_name == "Blue"
        w.select("H_Alpha")
        assert wait_for(lambda: w.position == 3, 30, tick=tick)
        with pytest.raises(DeviceError, match="no filter 'V'.*Red, Green"):
            w.select("V")
    finally:
        w.disconnect()


# --------------------------------------------------------------------------- weather


def test_weather_readings_alerts_and_staleness(server):
    clock = FakeClock()
    w = IndiWeather(cfg(IndiWeatherConfig, server, "Weather Simulator", stale_s=60,
                        update_period_s=1), clock)
    assert isinstance(w, WeatherSensor)
    w.connect()
    tick = ticker(w, clock, dt=0.5)
    limits = SafetyConfig()

    def verdict():
        return evaluate(SafetyInputs(now=clock.now(), weather=w.reading(), sun_alt_deg=-30,
                                     encoder_age_s=0.0), limits)
    try:
        server.setprop("Weather Simulator.WEATHER_CONTROL.Weather=0;Temperature=15;Wind=0;"
                       "Gust=0;Precip=0")
        assert wait_for(lambda: w.reading() is not None and w.reading().rain is False
                        and not w.reading().alert, 30, tick=tick), w.reading()
        r = w.reading()
        assert r.wind_ms == 0 and r.stale_after_s == 60
        assert verdict().safe, verdict().reasons
        # rain: the station's rain parameter and its WEATHER_STATUS light
        server.setprop("Weather Simulator.WEATHER_CONTROL.Precip=5")
        assert wait_for(lambda: w.reading().rain is True, 30, tick=tick), w.reading()
        v = verdict()
        assert not v.safe and "rain" in v.codes and "weather_alert" in v.codes
        assert "WEATHER_RAIN_HOUR" in (w.reading().alert or "")
        # wind above the station's own limit (20 km/h): an alert; 72 km/h is 20 m/s
        server.setprop("Weather Simulator.WEATHER_CONTROL.Precip=0;Wind=72")
        assert wait_for(lambda: w.reading().rain is False and w.reading().wind_ms
                        == pytest.approx(20.0), 30, tick=tick), w.reading()
        assert "WEATHER_WIND_SPEED" in (w.reading().alert or "") and not verdict().safe
        server.setprop("Weather Simulator.WEATHER_CONTROL.Wind=0")
        assert wait_for(lambda: not w.reading().alert, 30, tick=tick)
        assert verdict().safe
        # stale: the clock runs on, no new report is looked at
        clock.advance(61)
        v = verdict()
        assert not v.safe and "weather_stale" in v.codes
        tick()
        assert wait_for(lambda: verdict().safe, 30, tick=tick)  # fresh reports again
    finally:
        w.disconnect()


def test_weather_lost_server_is_unsafe(tmp_path):
    srv = IndiServer(("indi_simulator_weather",), tmp_path).start()
    clock = FakeClock()
    w = IndiWeather(cfg(IndiWeatherConfig, srv, "Weather Simulator", update_period_s=1), clock)
    w.connect()
    try:
        assert wait_for(lambda: w.reading() is not None, 30, tick=ticker(w, clock))
        srv.kill()
        assert wait_for(lambda: w.reading() is None, 30, tick=ticker(w, clock))
        assert "lost" in w.error
        v = evaluate(SafetyInputs(now=clock.now(), weather=w.reading(), sun_alt_deg=-30,
                                  encoder_age_s=0.0), SafetyConfig())
        assert not v.safe and "weather_missing" in v.codes
    finally:
        w.disconnect()
        srv.stop()


# --------------------------------------------------------------------------- discovery


def test_discover_lists_devices_and_kinds(server):
    found = {d.name: d for d in discover_indi("127.0.0.1", server.port, timeout_s=15)}
    assert set(found) >= {"Telescope Simulator", "Focuser Simulator", "Filter Simulator",
                          "Weather Simulator"}
    assert found["Telescope Simulator"].kinds[0] == "mount"
    assert found["Focuser Simulator"].kinds == ("focuser",)
    assert found["Filter Simulator"].kinds == ("filter_wheel",)
    assert found["Weather Simulator"].kinds == ("weather",)
    assert found["Focuser Simulator"].driver == "indi_simulator_focus"
    lines = found["Weather Simulator"].config_lines()
    assert lines == [f'[weather]\ntype = "indi"\nhost = "127.0.0.1"\nport = {server.port}\n'
                     'device = "Weather Simulator"']
    j = found["Telescope Simulator"].to_json()
    assert j["source"] == "indi" and j["kinds"][0] == "mount"


def test_discover_names_a_missing_server():
    port = free_port()
    with pytest.raises(DeviceNotFound, match=f"127.0.0.1:{port}"):
        discover_indi("127.0.0.1", port, timeout_s=2)


def test_safety_inputs_signature():
    # guards the keyword names the tests above rely on
    import inspect

    assert {"now", "weather", "sun_alt_deg", "encoder_age_s"} <= set(
        inspect.signature(SafetyInputs).parameters)
