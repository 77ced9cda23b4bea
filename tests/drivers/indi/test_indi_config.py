"""The ``type = "indi"`` config sections and the INDI backend's builders (no server needed)."""

from __future__ import annotations

import pydantic
import pytest

from tenmon.core.clock import FakeClock
from tenmon.config.models import (
    IndiCameraConfig,
    IndiFilterWheelConfig,
    IndiFocuserConfig,
    IndiMountConfig,
    IndiWeatherConfig,
)
from tenmon.drivers.camera_fits import FrameSite
from tenmon.drivers.indi import (
    IndiCamera,
    IndiFilterWheel,
    IndiFocuser,
    IndiMount,
    IndiWeather,
    make_camera,
    make_filter_wheel,
    make_focuser,
    make_mount,
    make_weather,
)


def test_defaults_and_validation():
    c = IndiCameraConfig(type="indi", device="CCD Simulator")
    assert (c.host, c.port, c.connect_timeout_s) == ("127.0.0.1", 7624, 15.0)
    with pytest.raises(pydantic.ValidationError, match="device"):
        IndiMountConfig(type="indi")
    with pytest.raises(pydantic.ValidationError, match="port"):
        IndiFocuserConfig(type="indi", device="x", port=70000)
    with pytest.raises(pydantic.ValidationError, match="extra"):
        IndiWeatherConfig(type="indi", device="x", adress="10.0.0.1")
    with pytest.raises(pydantic.ValidationError):
        IndiMountConfig(type="indi", device="x", min_alt_deg=95)


def test_the_backend_offers_the_five_builders(tmp_path):
    """The builders device_factory calls for ``type = "indi"`` (not connected yet)."""
    clock = FakeClock()
    site = FrameSite(name="x", latitude_deg=34.6, longitude_deg=133.6, elevation_m=10.0)
    built = {
        "camera": make_camera(IndiCameraConfig(type="indi", device="c"), None, tmp_path, clock,
                              lambda: {}),
        "mount": make_mount(IndiMountConfig(type="indi", device="m"), clock, site=site),
        "focuser": make_focuser(IndiFocuserConfig(type="indi", device="f"), clock),
        "filter_wheel": make_filter_wheel(IndiFilterWheelConfig(type="indi", device="w"), clock),
        "weather": make_weather(IndiWeatherConfig(type="indi", device="s"), clock),
    }
    assert [type(d) for d in built.values()] == [IndiCamera, IndiMount, IndiFocuser,
                                                 IndiFilterWheel, IndiWeather]
    assert built["mount"].site == (34.6, 133.6) and built["mount"].elevation_m == 10.0
    assert make_mount(IndiMountConfig(type="indi", device="m"), clock).latitude_deg is None
    assert built["weather"].reading() is None  # never connected: no reading, unsafe
    assert built["camera"].frames_dir == tmp_path
