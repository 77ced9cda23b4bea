"""`[alpaca]`: defaults, what `tenmon config validate` refuses (naming key and line), and what
it lets through."""

from __future__ import annotations

import json

from tenmon.cli.main import main
from tenmon.config.loader import load_config, simulated_config_path
from tenmon.config.models import AlpacaConfig

SIM = simulated_config_path()


def _file(tmp_path, section: str):
    path = tmp_path / "site.toml"
    path.write_text(SIM.read_text() + "\n[alpaca]\n" + section + "\n")
    return path


def _problems(capsys, path) -> dict[str, dict]:
    code = main(["config", "validate", str(path), "--json"])
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    return code, {r.get("key", ""): r for r in rows}


def test_defaults_are_off_on_loopback_and_the_standard_port():
    a = AlpacaConfig()
    assert (a.enabled, a.host, a.port, a.discovery, a.discovery_port) == (
        False, "127.0.0.1", 11111, True, 32227)
    assert a.command_from == ["127.0.0.1", "::1"] and a.username is None
    assert load_config(SIM).alpaca == a


def test_a_lan_server_with_an_allow_list_and_basic_auth_validates(tmp_path, capsys):
    path = _file(tmp_path, 'enabled = true\nhost = "0.0.0.0"\ncommand_from = ["192.168.1.0/24", '
                 '"127.0.0.1"]\nusername = "observer"\npassword_env = "TENMON_ALPACA_PW"')
    code, rows = _problems(capsys, path)
    assert code == 0, rows
    assert rows[""]["alpaca"] == "0.0.0.0:11111"
    # an allow-list of addresses alone is a choice the site may make
    path = _file(tmp_path, 'enabled = true\nhost = "0.0.0.0"\ncommand_from = ["192.168.1.20"]')
    assert _problems(capsys, path)[0] == 0


def test_bad_alpaca_settings_name_key_and_line(tmp_path, capsys):
    cases = {
        'enabled = true\ncommand_from = ["192.168.1.300"]': "alpaca.command_from",
        'enabled = true\nusername = "observer"': "alpaca",
        'enabled = true\npassword_file = "/etc/tenmon/alpaca.pw"': "alpaca",
        'enabled = true\nport = 8470': "alpaca.port",          # the API's port
        'enabled = true\nport = 70000': "alpaca.port",
        'enabled = true\nhost = "0.0.0.0"\ncommand_from = ["0.0.0.0/0"]': "alpaca.command_from",
        'enabled = true\nlisten = 5': "alpaca.listen",
    }
    for section, key in cases.items():
        code, rows = _problems(capsys, _file(tmp_path, section))
        assert code == 1, section
        assert key in rows, (section, rows)
        assert isinstance(rows[key]["line"], int), (section, rows[key])
    # the open door is named for what it is
    _code, rows = _problems(capsys, _file(tmp_path, 'enabled = true\nhost = "0.0.0.0"\n'
                                          'command_from = ["0.0.0.0/0"]'))
    assert "any machine" in rows["alpaca.command_from"]["message"]
    # the same with basic auth is a deliberate choice: valid
    code, _ = _problems(capsys, _file(tmp_path, 'enabled = true\nhost = "0.0.0.0"\n'
                                      'command_from = ["0.0.0.0/0"]\nusername = "o"\n'
                                      'password_env = "PW"'))
    assert code == 0


def test_daemon_alpaca_port_flag_overrides(tmp_path):
    """`tenmon daemon --simulate --alpaca-port N` becomes [alpaca] enabled on 127.0.0.1:N (the
    flag's environment overrides, as cmd_daemon sets them)."""
    env = {"TENMON_ALPACA__ENABLED": "true", "TENMON_ALPACA__PORT": "12345",
           "TENMON_ALPACA__HOST": '"127.0.0.1"'}
    a = load_config(SIM, env=env).alpaca
    assert (a.enabled, a.host, a.port) == (True, "127.0.0.1", 12345)
    from tenmon.cli.main import build_parser
    args = build_parser("daemon").parse_args(["daemon", "--simulate", "--alpaca-port", "12345"])
    assert args.alpaca_port == 12345
