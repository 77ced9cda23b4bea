"""Network device sections of ``type = "indi"`` ([ccd]/[mount]/[focuser]/[filter_wheel]/[weather]):
accepted by the site file, checked by `tenmon config validate` (bad values named with key and
line), built by the device factory, and a missing indiserver is a DeviceNotFound naming it."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tenmon.cli.main import main
from tenmon.core.clock import FakeClock
from tenmon.config.loader import parse_config
from tenmon.core.errors import ConfigError, DeviceNotFound

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "config" / "site-example.toml"
SIM = REPO / "config" / "simulated.toml"

MOUNT = '[mount]\ntype = "indi"\nhost = "10.0.0.5"\ndevice = "EQMod Mount"\nmin_alt_deg = 15'
WEATHER = ('[weather]\ntype = "indi"\nhost = "10.0.0.5"\ndevice = "AAG Cloud Watcher NG"\n'
           'stale_s = 120')
CCD = ('[ccd]\ntype = "indi"\nhost = "10.0.0.5"\nport = 7625\ndevice = "QHY CCD QHY600M"\n'
       'binning = 2\ncooler_setpoint_c = -10')
OTHERS = '''
[focuser]
type = "indi"
host = "10.0.0.5"
device = "MoonLite"

[filter_wheel]
type = "indi"
host = "10.0.0.5"
device = "QHYCFW3"
'''


def _site(mount: str = MOUNT, weather: str = WEATHER, ccd: str = CCD) -> str:
    text = SITE.read_text()
    text = re.sub(r'\[mount\]\n.*?\n\n', mount + "\n\n", text, flags=re.S)
    text = re.sub(r'\[weather\]\n.*?\n\n', weather + "\n\n", text, flags=re.S)
    text = re.sub(r'\[ccd\]\n.*?\n\n', "", text, flags=re.S)
    return text + "\n" + ccd + "\n" + OTHERS


def test_an_indi_site_validates(tmp_path, capsys):
    text = _site()
    cfg = parse_config(text, env={})
    assert type(cfg.mount).__name__ == "IndiMountConfig" and cfg.mount.min_alt_deg == 15
    assert (cfg.mount.host, cfg.mount.port, cfg.mount.device) == ("10.0.0.5", 7624, "EQMod Mount")
    assert type(cfg.weather).__name__ == "IndiWeatherConfig" and cfg.weather.stale_s == 120
    assert type(cfg.ccd).__name__ == "IndiCameraConfig"
    assert (cfg.ccd.port, cfg.ccd.binning, cfg.ccd.cooler_setpoint_c) == (7625, 2, -10)
    assert type(cfg.focuser).__name__ == "IndiFocuserConfig" and cfg.focuser.device == "MoonLite"
    assert type(cfg.filter_wheel).__name__ == "IndiFilterWheelConfig"
    path = tmp_path / "site.toml"
    path.write_text(text)
    assert main(["config", "validate", str(path)]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("bad,key,words", [
    ('host = "http://10.0.0.5"', "mount.host", "scheme"),
    ('host = "10.0.0.5:7624"', "mount.host", "port = n"),
    ('port = 99999', "mount.port", "less than or equal"),
    ('device = ""', "mount.device", "at least 1"),
    ('connect_timeout_s = 0', "mount.connect_timeout_s", "greater"),
    ('min_alt_deg = 95', "mount.min_alt_deg", "less than or equal"),
    ('adress = "10.0.0.5"', "mount.adress", "unknown key"),
])
def test_bad_indi_values_name_key_and_line(tmp_path, capsys, bad, key, words):
    lines = MOUNT.splitlines()
    field = bad.split(" = ")[0]
    mount = "\n".join([x for x in lines if not x.startswith(field + " ")] + [bad])
    text = _site(mount=mount)
    line = text.splitlines().index(bad) + 1
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    got_key, got_line, msg = info.value.problems[0]
    assert (got_key, got_line) == (key, line), info.value.problems
    assert words in msg.lower(), msg
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["config", "validate", str(path)]) == 1
    assert key in capsys.readouterr().out


def test_an_indi_section_needs_its_device_name():
    with pytest.raises(ConfigError) as info:
        parse_config(_site(ccd='[ccd]\ntype = "indi"\nhost = "10.0.0.5"'), env={})
    assert info.value.problems[0][0] == "ccd.device"


def test_a_simulated_observatory_may_use_indi_devices():
    text = SIM.read_text()
    text = re.sub(r'\[mount\]\n.*?\n\n', MOUNT + "\n\n", text, flags=re.S)
    text = re.sub(r'\[weather\]\n.*?\n\n', WEATHER + "\n\n", text, flags=re.S)
    text = text.replace('[ccd]\ntype = "simulated"', CCD) + OTHERS
    cfg = parse_config(text, env={})
    assert (cfg.mode, cfg.mount.type, cfg.weather.type, cfg.ccd.type) == (
        "simulated", "indi", "indi", "indi")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_factory_builds_each_kind_and_a_missing_server_is_named(tmp_path):
    """Every kind through device_factory (as compose.py and night.py build them); connecting to
    a port where no indiserver listens is DeviceNotFound naming host:port, never a simulator."""
    from tenmon.daemon import device_factory as f

    port = _free_port()
    local = f'host = "127.0.0.1"\nport = {port}\nconnect_timeout_s = 2'
    text = _site().replace("port = 7625\n", "").replace('host = "10.0.0.5"', local)
    cfg = parse_config(text, env={})
    clock = FakeClock()
    built = {
        "mount": f.build_mount(cfg.mount, clock, site=cfg.site),
        "weather": f.build_weather(cfg.weather, clock),
        "camera": f.build_camera(cfg.ccd, None, tmp_path / "frames", clock,
                                 f.header_context_for(cfg, None)),
        "focuser": f.build_focuser(cfg.focuser, clock),
        "filter_wheel": f.build_filter_wheel(cfg.filter_wheel, clock),
    }
    assert [type(d).__name__ for d in built.values()] == [
        "IndiMount", "IndiWeather", "IndiCamera", "IndiFocuser", "IndiFilterWheel"]
    assert built["mount"].latitude_deg == cfg.site.latitude_deg
    assert built["weather"].reading() is None  # never connected: no reading (unsafe)
    for kind, dev in built.items():
        with pytest.raises(DeviceNotFound, match=f"no indiserver at 127.0.0.1:{port}"):
            dev.connect()
