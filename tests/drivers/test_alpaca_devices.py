"""The Alpaca backends against the real alpaca-simulators server (a subprocess on a free
loopback port): camera, mount, focuser, filter wheel, weather; a missing server is a clear error.

Skipped, with the reason, where alpaca-simulators is not installed (it is in the dev extra).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from alpaca_sim_rig import (AlpacaServer, FaultProxy, free_port, sim_config, simulators_missing,
                        wait_for, write_catalog)

pytestmark = pytest.mark.skipif(simulators_missing() is not None,
                                reason=simulators_missing() or "")

from tenmon.core.astro import lst_deg  # noqa: E402
from tenmon.core.clock import FakeClock  # noqa: E402
from tenmon.config.models import (AlpacaCcdConfig, AlpacaFilterWheelConfig,  # noqa: E402
                                  AlpacaFocuserConfig, AlpacaMountConfig, AlpacaWeatherConfig,
                                  SafetyConfig)
from tenmon.drivers.base import MountState  # noqa: E402
from tenmon.drivers.camera import CameraState  # noqa: E402
from tenmon.core.errors import DeviceError, DeviceNotFound  # noqa: E402

LAT, LON = 35.0253, 134.3356
T0 = datetime(2026, 11, 21, 14, 0, tzinfo=timezone.utc)
FIELD = (round(lst_deg(T0, LON), 4), 40.0)  # near the zenith at T0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alpaca")
    cat = write_catalog(tmp / "catalog.sqlite", [FIELD])
    srv = AlpacaServer(sim_config(tmp, catalog=cat)).start()
    yield srv
    srv.kill()


@pytest.fixture
def clock():
    return FakeClock(T0)


def _cfg(model, server, **kw):
    return model(type="alpaca", address=server.address, poll_s=0.1, timeout_s=3.0, **kw)


@pytest.fixture
def mount(server, clock):
    from tenmon.drivers.alpaca import make_mount

    m = make_mount(_cfg(AlpacaMountConfig, server, min_altitude_deg=10), clock)
    m.connect()
    yield m
    m.disconnect()


def test_mount_slews_tracks_syncs_and_parks(mount):
    wait_for(lambda: mount.state != MountState.UNKNOWN, what="a first poll")
    ra, dec = FIELD
    mount.goto(ra, dec)
    # from the command on, the mount is slewing: a stale "tracking" is never taken for arrival
    assert mount.state == MountState.SLEWING
    wait_for(lambda: mount.state == MountState.TRACKING, 60, what="the slew to end")
    assert mount.ra_deg == pytest.approx(ra, abs=0.01)
    assert mount.dec_deg == pytest.approx(dec, abs=0.01)
    assert mount.tracking and mount.pier_side in ("east", "west", "unknown")
    mount.sync(ra + 0.05, dec - 0.05)
    wait_for(lambda: abs(mount.dec_deg - (dec - 0.05)) < 1e-3, what="the sync")
    mount.set_tracking(False)
    wait_for(lambda: mount.state == MountState.IDLE, what="tracking off")
    mount.park()
    assert mount.state in (MountState.PARKING, MountState.PARKED)  # the simulator parks at once
    wait_for(lambda: mount.state == MountState.PARKED, 60, what="the park")
    mount.unpark()
    wait_for(lambda: mount.state != MountState.PARKED, what="the unpark")
    assert mount.error is None


def test_mount_limits_and_abort(mount):
    ra, dec = FIELD
    with pytest.raises(DeviceError, match="below the limit"):
        mount.goto((ra + 180.0) % 360.0, -dec)   # the nadir side of the sky
    with pytest.raises(DeviceError, match="not a sky position"):
        mount.goto(ra, 95.0)
    mount.goto((ra + 30.0) % 360.0, dec)
    mount.abort()
    wait_for(lambda: mount.state in (MountState.TRACKING, MountState.IDLE), 30,
             what="the aborted slew to stop")


@pytest.fixture
def camera(server, clock, tmp_path, mount):
    from tenmon.daemon.device_factory import header_context_for
    from tenmon.config.models import SiteConfig
    from tenmon.drivers.alpaca import make_camera
    from types import SimpleNamespace

    cfg = SimpleNamespace(site=SiteConfig(name="Nishi-Harima", latitude_deg=LAT,
                                          longitude_deg=LON, elevation_m=449))
    ctx = header_context_for(cfg, mount, pixel_scale_arcsec=1.03)
    cam = make_camera(_cfg(AlpacaCcdConfig, server, cooler_setpoint_c=-15.0,
                           exposure_margin_s=30.0), None, tmp_path / "frames", clock, ctx)
    cam.connect()
    yield cam
    cam.disconnect()


def test_camera_light_frame_has_full_headers_and_reaches_the_intake(camera, mount, tmp_path,
                                                                    clock):
    from astropy.io import fits

    from tenmon.drivers.ccd_directory import FrameDirectory, FrameDirectorySettings

    mount.goto(*FIELD)
    wait_for(lambda: mount.state == MountState.TRACKING, 60, what="the slew")
    camera.start_exposure(0.5, name="M 1", meta={"OBJECT": "M1", "FILTER": "Red",
                                                 "TMBLOCK": "b7"})
    assert camera.state == CameraState.EXPOSING
    with pytest.raises(DeviceError, match="busy"):
        camera.start_exposure(0.5, name="again")
    path = wait_for(camera.take_frame, 60, what="the frame")
    assert camera.take_frame() is None  # handed over once
    assert camera.state == CameraState.IDLE
    h = fits.getheader(path)
    data = fits.getdata(path)
    assert data.shape == (256, 256)
    assert h["IMAGETYP"] == "Light Frame" and h["EXPTIME"] == 0.5 and h["TIMESYS"] == "UTC"
    assert h["DATE-OBS"].startswith("2026-11-21T14:00")
    assert h["OBJECT"] == "M1" and h["FILTER"] == "Red" and h["TMBLOCK"] == "b7"
    assert h["RA"] == pytest.approx(FIELD[0], abs=0.01) and h["DEC"] == pytest.approx(40.0,
                                                                                     abs=0.01)
    assert h["SITELAT"] == LAT and h["OBSERVAT"] == "Nishi-Harima"
    assert h["GAIN"] == 1.5 and h["XBINNING"] == 1 and h["CCD-TEMP"] == pytest.approx(-15.0)
    assert h["INSTRUME"] == "Simulator Sensor"
    assert camera.cooler_on is True
    intake = FrameDirectory(tmp_path / "frames", settings=FrameDirectorySettings(stable_s=1.0),
                            clock=clock)
    intake.poll()
    clock.advance(2.0)
    assert [p.name for p in intake.poll()] == [path.name]


def test_camera_dark_bias_binning_and_abort(server, clock, tmp_path, mount):
    from astropy.io import fits

    from tenmon.drivers.alpaca import make_camera

    cam = make_camera(_cfg(AlpacaCcdConfig, server, binning=2, subframe=(8, 16, 64, 32)), None,
                      tmp_path / "f", clock, lambda: {})
    cam.connect()
    try:
        cam.start_exposure(0.3, name="dark", meta={"IMAGETYP": "dark"})
        path = wait_for(cam.take_frame, 60, what="the dark")
        h = fits.getheader(path)
        assert h["IMAGETYP"] == "Dark Frame" and h["XBINNING"] == 2
        assert (h["XORGSUBF"], h["YORGSUBF"]) == (8, 16)
        assert fits.getdata(path).shape == (32, 64)
        cam.start_exposure(0.0, name="bias", meta={"IMAGETYP": "Bias Frame"})
        path = wait_for(cam.take_frame, 60, what="the bias")
        assert fits.getheader(path)["IMAGETYP"] == "Bias Frame"
        with pytest.raises(DeviceError, match="image type"):
            cam.start_exposure(1.0, name="x", meta={"IMAGETYP": "sky"})
        written = cam.frames_written
        cam.start_exposure(3.0, name="aborted")
        cam.abort()
        assert cam.state == CameraState.IDLE
        wait_for(lambda: not cam.busy, 30, what="the worker to let go of the aborted exposure")
        assert cam.take_frame() is None and cam.frames_written == written
        assert not list((tmp_path / "f").glob("aborted*"))
    finally:
        cam.disconnect()


def test_focuser_and_filter_wheel(server, clock):
    from tenmon.drivers.alpaca import make_filter_wheel, make_focuser

    foc = make_focuser(_cfg(AlpacaFocuserConfig, server), clock)
    wheel = make_filter_wheel(_cfg(AlpacaFilterWheelConfig, server), clock)
    foc.connect()
    wheel.connect()
    try:
        assert foc.max_position == 100000 and foc.temperature_c == pytest.approx(20.0)
        foc.move_to(10150)
        assert foc.moving
        wait_for(lambda: not foc.moving and foc.position == 10150, what="the focuser move")
        with pytest.raises(DeviceError, match="outside 0..100000"):
            foc.move_to(100001)
        assert wheel.names == ["Red", "Green", "Blue", "Clear", "Luminance"]
        wheel.select("blue")
        assert wheel.moving and wheel.position is None
        wait_for(lambda: wheel.position == 2, what="the wheel")
        assert wheel.current == "Blue"
        with pytest.raises(DeviceError, match="Red, Green, Blue, Clear, Luminance"):
            wheel.select("Halpha")
    finally:
        foc.disconnect()
        wheel.disconnect()


def test_weather_and_safety_monitor_are_safety_inputs(server, clock):
    from tenmon.daemon.safety import SafetyInputs, evaluate
    from tenmon.drivers.alpaca import make_weather

    w = make_weather(_cfg(AlpacaWeatherConfig, server, safety_monitor=0), clock)
    w.connect()
    try:
        r = w.reading()
        assert r is not None and r.rain is False and r.wind_ms == 3.0
        assert r.humidity_pct == 60.0 and r.alert is None and r.time == T0

        def verdict():
            return evaluate(SafetyInputs(now=clock.now(), weather=w.reading(), sun_alt_deg=-30,
                                         encoder_age_s=0.1), SafetyConfig())

        assert verdict().safe
        server.put("safetymonitor/0/issafe", IsSafe="false")
        wait_for(lambda: w.reading().alert is not None, what="the alert")
        v = verdict()
        assert not v.safe and "weather_alert" in v.codes
        server.put("safetymonitor/0/issafe", IsSafe="true")
        wait_for(lambda: w.reading().alert is None, what="the alert to clear")
        # a reading the server stopped refreshing goes stale by the injected clock
        clock.advance(61.0)
        w.disconnect()
        assert "weather_stale" in verdict().codes
    finally:
        w.disconnect()


def test_missing_server_is_a_clear_error_naming_it(clock):
    from tenmon.drivers.alpaca import make_focuser, make_mount

    port = free_port()  # nothing listens there
    for make, model in ((make_mount, AlpacaMountConfig), (make_focuser, AlpacaFocuserConfig)):
        dev = make(model(type="alpaca", address=f"127.0.0.1:{port}", connect_timeout_s=1.0),
                   clock)
        with pytest.raises(DeviceNotFound) as info:
            dev.connect()
        assert f"127.0.0.1:{port}" in str(info.value)
        assert "not reachable" in str(info.value)
        assert dev.error and f"127.0.0.1:{port}" in dev.error


def test_verbs_never_wait_for_the_server(server, clock):
    """A server that holds a request: the verb has returned long before it answers, and the
    loop-facing properties answer from the last poll."""
    from tenmon.drivers.alpaca import make_focuser

    proxy = FaultProxy(server.port)
    foc = make_focuser(AlpacaFocuserConfig(type="alpaca", address=proxy.address, poll_s=0.1,
                                           timeout_s=20.0), clock)
    try:
        foc.connect()
        before = foc.position
        proxy.stall("/move", max_s=30.0)
        foc.move_to(9000)          # returns at once: the request is still held by the proxy
        assert foc.moving and foc.position == before
        wait_for(lambda: any("/move" in p for p in proxy.seen), what="the held request")
        assert not proxy.released.is_set()
        proxy.clear()
        wait_for(lambda: not foc.moving and foc.position == 9000, 30, what="the move")
    finally:
        foc.disconnect()
        proxy.close()
