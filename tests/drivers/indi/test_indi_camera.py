"""The INDI camera against a real indiserver running Debian's indi_simulator_ccd.

Exposures end as FITS files with full headers, written atomically; binning and subframe reach
the driver; the faults at the wire (server killed mid-exposure, device disconnected, an exposure
that never ends) each end in ``error`` with a clear message, without blocking ``update()``.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from astropy.io import fits
from indi_rig import IndiServer, wait_for

from tenmon.core.clock import FakeClock
from tenmon.config.models import IndiCameraConfig
from tenmon.drivers.camera import Camera, CameraState
from tenmon.config.services import CameraSettings
from tenmon.drivers.camera_fits import FrameSite
from tenmon.drivers.indi import IndiCamera
from tenmon.core.errors import DeviceError, DeviceNotFound

CCD = "CCD Simulator"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = IndiServer(("indi_simulator_ccd",), tmp_path_factory.mktemp("indi-ccd")).start()
    yield srv
    srv.stop()


SITE = FrameSite(name="Okayama", latitude_deg=34.7, longitude_deg=137.4, elevation_m=50.0)


def context():
    """The header context device_factory gives the camera: the mount's pointing, the focuser,
    the wheel's filter and the site."""
    return {"site": SITE, "ra_deg": 83.8, "dec_deg": -5.4, "focus_position": 36700,
            "focus_temp_c": 4.5, "filter_name": "V", "pixel_scale_arcsec": 1.19}


def make_camera(server, frames, clock=None, **kw) -> IndiCamera:
    cfg = IndiCameraConfig(type="indi", port=server.port, device=CCD, connect_timeout_s=20,
                           readout_timeout_s=kw.pop("readout_timeout_s", 60))
    return IndiCamera(cfg, CameraSettings(), frames, clock or FakeClock(), context, **kw)


def run_until(cam: IndiCamera, clock: FakeClock, states=(CameraState.IDLE, CameraState.ERROR),
              timeout_s=60.0) -> float:
    """Tick the camera as the control loop does (clock advancing) until it leaves the exposure;
    returns the longest update() call in seconds."""
    worst = 0.0

    def tick():
        nonlocal worst
        clock.advance(0.05)
        t = time.perf_counter()
        cam.update()
        worst = max(worst, time.perf_counter() - t)

    assert wait_for(lambda: cam.state in states, timeout_s, tick=tick), cam.state
    return worst


def test_light_frame_has_full_header_and_is_atomic(server, tmp_path):
    clock = FakeClock()
    cam = make_camera(server, tmp_path / "frames", clock)
    assert isinstance(cam, Camera)
    cam.connect()
    try:
        t0 = clock.now()
        cam.start_exposure(0.5, name="M42 test", meta={"OBJECT": "M42", "FILTER": "R"})
        assert cam.state == CameraState.EXPOSING
        with pytest.raises(DeviceError, match="busy"):
            cam.start_exposure(1, name="again")
        run_until(cam, clock)
        assert cam.state == CameraState.IDLE, cam.error
        path = cam.take_frame()
        assert path is not None and cam.take_frame() is None
        assert path.parent == tmp_path / "frames" and path.name.startswith("M42_test-")
        # nothing but the finished file: no temporary left behind
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
        with fits.open(path) as hdul:
            h = hdul[0].header
            data = hdul[0].data
        assert data.ndim == 2 and data.shape == (1024, 1280)
        assert h["DATE-OBS"] == t0.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]  # tenmon's clock
        assert h["TIMESYS"] == "UTC" and h["EXPTIME"] == pytest.approx(0.5)
        assert "DATE-END" in h and "MJD-OBS" in h
        # meta's FILTER (the exposure's own) wins over the wheel's in the context
        assert h["IMAGETYP"] == "Light Frame" and h["OBJECT"] == "M42" and h["FILTER"] == "R"
        assert h["RA"] == pytest.approx(83.8) and h["DEC"] == pytest.approx(-5.4)
        assert h["OBJCTRA"] == "05 35 12.00" and h["EQUINOX"] == 2000.0
        assert h["SITELAT"] == pytest.approx(34.7) and h["OBSERVAT"] == "Okayama"
        assert h["FOCUSPOS"] == 36700 and h["FOCTEMP"] == pytest.approx(4.5)
        assert "CCD-TEMP" in h and h["GAIN"] == pytest.approx(1.5) and "GAINSET" in h
        assert h["XBINNING"] == 1 and h["PIXSCALE"] == pytest.approx(1.19)
        assert h["INSTRUME"] == CCD and "INDIDATE" in h and h["CREATOR"] == "tenmon"
        assert h["INDISERV"] == f"127.0.0.1:{server.port}"
    finally:
        cam.disconnect()


def test_binning_subframe_dark_bias(server, tmp_path):
    clock = FakeClock()
    cam = make_camera(server, tmp_path, clock)
    cam.connect()
    try:
        cam.set_binning(2)
        assert wait_for(lambda: cam.binning == 2, 20)
        cam.set_subframe(0, 0, 640, 512)
        assert wait_for(lambda: cam.num("CCD_FRAME", "WIDTH") == 640, 20)
        with pytest.raises(DeviceError, match="outside"):
            cam.set_subframe(1000, 0, 640, 512)
        with pytest.raises(DeviceError, match="binning 99"):
            cam.set_binning(99)
        for kind, exptime in (("dark", 0.3), ("bias", 0.0)):
            cam.start_exposure(exptime, name=kind, meta={"IMAGETYP": kind})
            run_until(cam, clock)
            assert cam.state == CameraState.IDLE, cam.error
            with fits.open(cam.take_frame()) as hdul:
                h, shape = hdul[0].header, hdul[0].data.shape
            assert h["IMAGETYP"] == {"dark": "Dark Frame", "bias": "Bias Frame"}[kind]
            assert shape == (256, 320) and h["XBINNING"] == 2
        with pytest.raises(DeviceError, match="frame type"):
            cam.start_exposure(1, name="x", meta={"IMAGETYP": "sky"})
        cam.set_binning(1)
        assert wait_for(lambda: cam.binning == 1, 20)
        cam.full_frame()
        assert wait_for(lambda: cam.num("CCD_FRAME", "WIDTH") == 1280, 20)
    finally:
        cam.disconnect()


def test_cooler_setpoint_reaches_the_driver(server, tmp_path):
    cam = make_camera(server, tmp_path)
    cam.connect()
    try:
        cam.set_cooler(True, -5.0)
        # the simulator ramps its CCD temperature towards the set point
        assert wait_for(lambda: cam.temperature_c is not None and cam.temperature_c < -1, 30), \
            cam.temperature_c
    finally:
        cam.set_cooler(True, 0.0)
        cam.disconnect()


def test_abort_writes_nothing(server, tmp_path):
    clock = FakeClock()
    cam = make_camera(server, tmp_path, clock)
    cam.connect()
    try:
        cam.start_exposure(3, name="aborted")
        clock.advance(0.5)
        cam.update()
        cam.abort()
        assert cam.state == CameraState.IDLE
        wait_for(lambda: False, 4.0, tick=cam.update)  # past the would-be end of the exposure
        assert cam.take_frame() is None and list(tmp_path.glob("*.fits")) == []
        # the camera is usable again
        cam.start_exposure(0.2, name="after")
        run_until(cam, clock)
        assert cam.take_frame() is not None
    finally:
        cam.disconnect()


def test_missing_server_and_device_are_named(server, tmp_path):
    from indi_rig import free_port

    port = free_port()
    cfg = IndiCameraConfig(type="indi", port=port, device=CCD, connect_timeout_s=3)
    with pytest.raises(DeviceNotFound, match=f"no indiserver at 127.0.0.1:{port}"):
        IndiCamera(cfg, None, tmp_path, FakeClock()).connect()
    cfg = IndiCameraConfig(type="indi", port=server.port, device="QHY CCD", connect_timeout_s=3)
    with pytest.raises(DeviceNotFound, match="has no device 'QHY CCD'.*CCD Simulator"):
        IndiCamera(cfg, None, tmp_path, FakeClock()).connect()


# --------------------------------------------------------------------------- faults at the wire


def test_device_disconnected_mid_exposure(server, tmp_path):
    clock = FakeClock()
    cam = make_camera(server, tmp_path, clock)
    cam.connect()
    try:
        cam.start_exposure(5, name="cut")
        server.setprop(f"{CCD}.CONNECTION.DISCONNECT=On")
        worst = run_until(cam, clock, states=(CameraState.ERROR,), timeout_s=30)
        assert "disconnected" in cam.error and CCD in cam.error
        assert worst < 0.5  # update() only reads the cache (generous bound: behaviour, not speed)
        with pytest.raises(DeviceError, match="in error"):
            cam.start_exposure(1, name="x")
        cam.connect()  # switches the device on again
        assert cam.state == CameraState.IDLE and cam.error is None
        cam.start_exposure(0.2, name="again")
        run_until(cam, clock)
        assert cam.take_frame() is not None
    finally:
        cam.disconnect()


def test_exposure_that_never_ends(server, tmp_path):
    clock = FakeClock()
    cam = make_camera(server, tmp_path, clock, readout_timeout_s=5)
    cam.connect()
    pid = server.driver_pid("indi_simulator_ccd")
    try:
        cam.start_exposure(1, name="frozen")
        os.kill(pid, signal.SIGSTOP)  # the driver hangs: the server and the link stay up
        t = time.perf_counter()
        clock.advance(3)
        cam.update()
        assert cam.state == CameraState.EXPOSING
        clock.advance(10)  # past exposure + readout_timeout_s
        cam.update()
        assert time.perf_counter() - t < 1.0
        assert cam.state == CameraState.ERROR and "never ended" in cam.error
    finally:
        os.kill(pid, signal.SIGCONT)
        cam.disconnect()


def test_server_killed_mid_exposure(tmp_path):
    srv = IndiServer(("indi_simulator_ccd",), tmp_path / "home").start()
    clock = FakeClock()
    cam = make_camera(srv, tmp_path / "frames", clock)
    try:
        cam.connect()
        cam.start_exposure(5, name="killed")
        srv.kill()
        worst = run_until(cam, clock, states=(CameraState.ERROR,), timeout_s=30)
        assert f"indiserver 127.0.0.1:{srv.port} lost" in cam.error
        assert worst < 0.5
        assert list((tmp_path / "frames").glob("*.fits")) == []
        with pytest.raises(DeviceError):
            cam.start_exposure(1, name="x")
    finally:
        cam.disconnect()
        srv.stop()
