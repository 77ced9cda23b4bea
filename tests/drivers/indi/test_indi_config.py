"""The ``type = "indi"`` config sections and the INDI factory (no server needed)."""

from __future__ import annotations

import pydantic
import pytest

from tenmon.clock import FakeClock
from tenmon.config.models import (
    IndiCameraConfig,
    IndiFilterWheelConfig,
    IndiFocuserConfig,
    IndiMountConfig,
    IndiWeatherConfig,
)
from tenmon.drivers.indi import (
    IndiCamera,
    IndiFilterWheel,
    IndiFocuser,
    IndiMount,
    IndiWeather,
    make_indi_device,
)
from tenmon.errors import ConfigError


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


def test_factory_builds_each_kind(tmp_path):
    clock = FakeClock()
    built = {
        "camera": make_indi_device("camera", IndiCameraConfig(type="indi", device="c"), clock,
                                   frames_dir=tmp_path),
        "mount": make_indi_device("mount", IndiMountConfig(type="indi", device="m"), clock,
                                  latitude_deg=34.6, longitude_deg=133.6),
        "focuser": make_indi_device("focuser", IndiFocuserConfig(type="indi", device="f"), clock),
        "filter_wheel": make_indi_device("filter_wheel",
                                         IndiFilterWheelConfig(type="indi", device="w"), clock),
        "weather": make_indi_device("weather", IndiWeatherConfig(type="indi", device="s"), clock),
    }
    assert [type(d) for d in built.values()] == [IndiCamera, IndiMount, IndiFocuser,
                                                 IndiFilterWheel, IndiWeather]
    assert built["mount"].site == (34.6, 133.6)
    assert built["weather"].reading() is None  # never connected: no reading, unsafe
    with pytest.raises(ConfigError, match="dome"):
        make_indi_device("dome", IndiFocuserConfig(type="indi", device="d"), clock)
