"""Network device sections ([ccd]/[mount]/[focuser]/[filter_wheel]/[weather] of type alpaca):
validated by `tenmon config validate`, bad values named with key and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tenmon.cli.main import main
from tenmon.config.loader import parse_config
from tenmon.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "config" / "site-example.toml"
SIM = REPO / "config" / "simulated.toml"

ALPACA = '''
[focuser]
type = "alpaca"
address = "192.168.1.20:11111"
device_number = 0

[filter_wheel]
type = "alpaca"
address = "192.168.1.20"
device_number = 0
'''


def _site(mount: str, weather: str, ccd: str) -> str:
    text = SITE.read_text()
    text = re.sub(r'\[mount\]\n.*?\n\n', mount + "\n\n", text, flags=re.S)
    text = re.sub(r'\[weather\]\n.*?\n\n', weather + "\n\n", text, flags=re.S)
    text = re.sub(r'\[ccd\]\n.*?\n\n', "", text, flags=re.S)
    return text + "\n" + ccd + "\n" + ALPACA


MOUNT = '[mount]\ntype = "alpaca"\naddress = "192.168.1.20:11111"\nmin_altitude_deg = 15'
WEATHER = ('[weather]\ntype = "alpaca"\naddress = "192.168.1.21:32323"\n'
           'safety_monitor = 0\nstale_after_s = 30')
CCD = '[ccd]\ntype = "alpaca"\naddress = "192.168.1.20:11111"\nbinning = 2\ncooler_setpoint_c = -20'


def test_alpaca_site_validates(tmp_path, capsys):
    text = _site(MOUNT, WEATHER, CCD)
    cfg = parse_config(text, env={})
    assert cfg.mount.type == "alpaca" and cfg.mount.address == "192.168.1.20:11111"
    assert cfg.weather.safety_monitor == 0 and cfg.weather.observing_conditions
    assert cfg.ccd.binning == 2 and cfg.ccd.cooler_setpoint_c == -20
    assert cfg.focuser.device_number == 0
    assert cfg.filter_wheel.address == "192.168.1.20:11111"  # the Alpaca default port
    path = tmp_path / "site.toml"
    path.write_text(text)
    assert main(["config", "validate", str(path)]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("bad,key,words", [
    ('address = "http://192.168.1.20:11111"', "mount.address", "host:port"),
    ('address = "192.168.1.20:99999"', "mount.address", "1..65535"),
    ('device_number = -1', "mount.device_number", "greater"),
    ('timeout_s = 0', "mount.timeout_s", "greater"),
    ('speed = 3', "mount.speed", "unknown"),
])
def test_bad_network_values_name_key_and_line(tmp_path, capsys, bad, key, words):
    mount = (MOUNT.replace('address = "192.168.1.20:11111"', bad) if bad.startswith("address")
             else MOUNT + "\n" + bad)
    text = _site(mount, WEATHER, CCD)
    line = text.splitlines().index(bad) + 1
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    got_key, got_line, msg = info.value.problems[0]
    assert (got_key, got_line) == (key, line)
    assert words in msg.lower() or words in msg
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["config", "validate", str(path)]) == 1
    assert key in capsys.readouterr().out


def test_weather_needs_a_device_and_rain_from_a_monitor_needs_one():
    no_device = ('[weather]\ntype = "alpaca"\naddress = "h:1"\nobserving_conditions = false')
    with pytest.raises(ConfigError) as info:
        parse_config(_site(MOUNT, no_device, CCD), env={})
    assert "SafetyMonitor" in info.value.problems[0][2]
    rain = '[weather]\ntype = "alpaca"\naddress = "h:1"\nrain_from_safety_monitor = true'
    with pytest.raises(ConfigError) as info:
        parse_config(_site(MOUNT, rain, CCD), env={})
    assert "safety_monitor" in info.value.problems[0][2]


def test_a_simulated_observatory_may_use_network_devices_but_not_a_site_simulator():
    text = SIM.read_text()
    text = re.sub(r'\[mount\]\n.*?\n\n', MOUNT + "\n\n", text, flags=re.S)
    text = text.replace('[ccd]\ntype = "simulated"', CCD) + ALPACA
    cfg = parse_config(text, env={})
    assert cfg.mode == "simulated" and cfg.mount.type == "alpaca" and cfg.ccd.type == "alpaca"
    # a site still may not use a simulated device beside them
    site = _site(MOUNT, '[weather]\ntype = "simulated"', CCD)
    with pytest.raises(ConfigError) as info:
        parse_config(site, env={})
    assert info.value.problems[0][0] == "weather.type"
