"""Faults at the wire, on the real alpaca-simulators server: the server killed mid-exposure, a
device that reports itself disconnected, an exposure that never ends, ASCOM error numbers, a
server that stops answering. Each is a clear error naming the device and server; nothing the
control loop calls waits for the server; the devices come back when the server does.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from alpaca_sim_rig import (AlpacaServer, FaultProxy, sim_config, simulators_missing, wait_for,
                        write_catalog)

pytestmark = pytest.mark.skipif(simulators_missing() is not None,
                                reason=simulators_missing() or "")

from tenmon.core.clock import FakeClock  # noqa: E402
from tenmon.config.models import (AlpacaCcdConfig, AlpacaFocuserConfig,  # noqa: E402
                                  AlpacaMountConfig, AlpacaWeatherConfig)
from tenmon.drivers.base import MountState  # noqa: E402
from tenmon.drivers.camera import CameraState  # noqa: E402
from tenmon.core.errors import DeviceError  # noqa: E402

T0 = datetime(2026, 11, 21, 14, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alpaca-faults")
    cat = write_catalog(tmp / "catalog.sqlite", [(0.0, 0.0)])
    srv = AlpacaServer(sim_config(tmp, catalog=cat)).start()
    yield srv
    srv.kill()


@pytest.fixture
def proxy(server):
    p = FaultProxy(server.port)
    yield p
    p.close()


def _cam(address, tmp_path, **kw):
    from tenmon.drivers.alpaca import make_camera

    cfg = AlpacaCcdConfig(type="alpaca", address=address, poll_s=0.1, timeout_s=2.0,
                          connect_timeout_s=5.0, **kw)
    return make_camera(cfg, None, tmp_path / "frames", FakeClock(T0), lambda: {})


def test_server_killed_mid_exposure_then_back(server, tmp_path):
    cam = _cam(server.address, tmp_path)
    cam.connect()
    try:
        cam.start_exposure(5.0, name="killed")
        wait_for(lambda: server.get("camera/0/camerastate") == 2, what="the exposure to start")
        server.kill()
        wait_for(lambda: cam.state == CameraState.ERROR, 30, what="the camera error")
        assert server.address in cam.error and "not reachable" in cam.error
        cam.clear_error()
        with pytest.raises(DeviceError, match="not reachable"):
            cam.start_exposure(1.0, name="refused")   # offline: refused at once, named
        assert cam.state == CameraState.ERROR  # still offline: the error stays visible
        server.start()
        wait_for(lambda: cam.connected and cam.state == CameraState.IDLE, 60,
                 what="the camera to reconnect")
        cam.start_exposure(0.2, name="after")
        path = wait_for(cam.take_frame, 60, what="a frame after the restart")
        assert path.name.startswith("after-")
        assert not list((tmp_path / "frames").glob("killed*"))
    finally:
        cam.disconnect()
        if server.proc is None:
            server.start()


def test_exposure_that_never_ends_is_aborted(proxy, tmp_path):
    proxy.value("camera/0/imageready", False)   # the image never comes
    cam = _cam(proxy.address, tmp_path, exposure_margin_s=1.0)
    cam.connect()
    try:
        cam.start_exposure(0.2, name="forever")
        wait_for(lambda: cam.state == CameraState.ERROR, 30, what="the exposure timeout")
        assert "has not ended 1 s after its time: aborted" in cam.error
        assert any("abortexposure" in p for p in proxy.seen)
        cam.clear_error()
        proxy.clear()
        cam.start_exposure(0.2, name="next")   # the camera is usable again
        wait_for(cam.take_frame, 60, what="the next frame")
    finally:
        cam.disconnect()


@pytest.mark.parametrize("number,name", [(0x40B, "InvalidOperation"), (0x401, "InvalidValue"),
                                         (0x500, "DriverError"), (0x4FF, "UnknownError")])
def test_alpaca_error_numbers_become_clear_errors(proxy, tmp_path, number, name):
    proxy.error("camera/0/startexposure", number, "shutter jammed")
    cam = _cam(proxy.address, tmp_path)
    cam.connect()
    try:
        cam.start_exposure(1.0, name="refused")
        wait_for(lambda: cam.state == CameraState.ERROR, 30, what="the refusal")
        assert f"(ASCOM 0x{number:X} {name})" in cam.error
        assert "shutter jammed" in cam.error and proxy.address in cam.error
        assert cam.connected  # a refused command is not a lost link
    finally:
        cam.disconnect()


def test_device_disconnected_on_its_server_then_back(proxy, server):
    from tenmon.drivers.alpaca import make_focuser

    foc = make_focuser(AlpacaFocuserConfig(type="alpaca", address=proxy.address, poll_s=0.1,
                                           timeout_s=2.0), FakeClock(T0))
    foc.connect()
    try:
        proxy.error("focuser/0/position", 0x407, "USB cable pulled")
        wait_for(lambda: foc.error is not None, 30, what="the lost device")
        assert "not connected on its server" in foc.error and "0x407" in foc.error
        with pytest.raises(DeviceError, match="USB cable pulled"):
            foc.move_to(100)
        proxy.clear()
        wait_for(lambda: foc.error is None, 30, what="the device to come back")
        foc.move_to(12000)
        wait_for(lambda: foc.position == 12000, 30, what="a move after")
    finally:
        foc.disconnect()


def test_mount_refusals_and_a_silent_server(proxy):
    from tenmon.drivers.alpaca import make_mount

    m = make_mount(AlpacaMountConfig(type="alpaca", address=proxy.address, poll_s=0.1,
                                     timeout_s=1.0), FakeClock(T0))
    from tenmon.core.astro import lst_deg

    zenith = (lst_deg(T0, 134.3356), 35.0)
    m.connect()
    try:
        proxy.error("slewtocoordinatesasync", 0x408, "Telescope is parked")
        m.goto(*zenith)
        wait_for(lambda: m.state == MountState.ERROR, 30, what="the refused slew")
        assert "0x408 Parked" in m.error
        proxy.clear()
        m.clear_error()
        # the server stops answering: every poll times out, the mount says so, verbs refuse
        proxy.stall("/telescope/", max_s=30.0)
        wait_for(lambda: m.state == MountState.ERROR and "no answer" in (m.error or ""), 30,
                 what="the timeout")
        with pytest.raises(DeviceError):
            m.goto(*zenith)
        proxy.clear()
        wait_for(lambda: m.state != MountState.ERROR, 30, what="the mount to answer again")
    finally:
        m.disconnect()


def test_weather_from_a_dead_server_goes_stale(proxy):
    """A network weather sensor whose server stops answering keeps its last reading, which
    goes stale by the injected clock: unsafe."""
    from tenmon.config.models import SafetyConfig
    from tenmon.daemon.safety import SafetyInputs, evaluate
    from tenmon.drivers.alpaca import make_weather

    clock = FakeClock(T0)
    w = make_weather(AlpacaWeatherConfig(type="alpaca", address=proxy.address, poll_s=0.1,
                                         timeout_s=1.0, stale_after_s=30.0), clock)
    w.connect()
    try:
        proxy.drop("observingconditions")
        wait_for(lambda: w.error is not None, 30, what="the lost server")
        stamped = w.reading().time
        clock.advance(31.0)
        assert w.reading().time == stamped   # never refreshed while the server is away
        v = evaluate(SafetyInputs(now=clock.now(), weather=w.reading(), sun_alt_deg=-30,
                                  encoder_age_s=0.1), SafetyConfig())
        assert not v.safe and "weather_stale" in v.codes
        # a NaN from the station is a sensor fault, not "no wind"
        proxy.clear()
        proxy.value("observingconditions/0/windspeed", float("nan"))
        wait_for(lambda: w.reading() is not None and w.reading().time == clock.now(), 30,
                 what="a fresh reading")
        v = evaluate(SafetyInputs(now=clock.now(), weather=w.reading(), sun_alt_deg=-30,
                                  encoder_age_s=0.1), SafetyConfig())
        assert not v.safe and "weather_invalid" in v.codes
    finally:
        w.disconnect()
