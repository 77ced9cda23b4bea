"""Config models and loader: the example files validate; every kind of error names key and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tenmon.cli.main import main
from tenmon.config.loader import KeyLines, load_config, parse_config, simulated_config_path
from tenmon.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "config" / "site-example.toml"
SIM = REPO / "config" / "simulated.toml"


def test_example_files_validate():
    site = load_config(SITE, env={})
    assert site.mode == "site"
    assert site.relays["main"].type == "lcus-serial"
    assert site.relays["main"].port == "/dev/ttyUSB0"
    assert site.mount.type == "lx200" and site.mount.port == "/dev/ttyUSB1"
    assert site.weather.type == "gpio-rain"
    assert site.cover.limit_switches is not None
    assert site.encoder.type == "ir-camera" and site.encoder.device == "/dev/video0"
    sim = load_config(SIM, env={})
    assert sim.mode == "simulated"
    assert (sim.site.latitude_deg, sim.site.longitude_deg, sim.site.elevation_m) == (
        35.0253, 134.3356, 449)
    assert SIM.resolve() == simulated_config_path().resolve()


def _problem(text: str) -> tuple[str, int | None, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    assert len(info.value.problems) >= 1
    return info.value.problems[0]


def test_misspelt_key_names_key_and_line():
    text = SITE.read_text().replace("dead_band_deg = 0.5", "dead_bnad_deg = 0.5")
    line = text.splitlines().index("dead_bnad_deg = 0.5") + 1
    key, got_line, msg = _problem(text)
    assert key == "dome.dead_bnad_deg"
    assert got_line == line
    assert "unknown key" in msg


def test_services_sections_are_typed_with_key_and_line():
    """[night], [solver], ... are typed in the config itself: the loader validates them with no
    models handed to it, with the same key and line."""
    from tenmon.config.sections import section
    from tenmon.config.services import DomeGeometry
    from tenmon.config.vision import SolverSettings

    site = load_config(SITE, env={})
    assert isinstance(site.solver, SolverSettings)
    geometry = section(site, "dome_geometry", DomeGeometry)
    assert isinstance(geometry, DomeGeometry) and geometry.radius_m == 2.5
    text = SITE.read_text().replace("max_tries = 3", 'max_tries = "three"')
    line = text.splitlines().index('max_tries = "three"') + 1
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    key, got_line, msg = info.value.problems[0]
    assert (key, got_line) == ("solver.centering.max_tries", line) and "three" in msg
    with pytest.raises(ConfigError) as info:  # a table handed to the reader is checked too
        section(site, "solver", SolverSettings, given={"centering": {"max_tries": "three"}})
    assert "[solver]" in str(info.value) and "max_tries" in str(info.value)


def test_bad_value_names_key_and_line():
    text = SITE.read_text().replace('port = "/dev/ttyUSB1"\nbaudrate = 9600',
                                    'port = "/dev/ttyUSB1"\nbaudrate = "fast"')
    line = text.splitlines().index('baudrate = "fast"') + 1
    key, got_line, msg = _problem(text)
    assert key == "mount.baudrate"
    assert got_line == line
    assert "fast" in msg


def test_out_of_range_value():
    text = SITE.read_text().replace("latitude_deg = 35.0253", "latitude_deg = 135.0")
    key, line, msg = _problem(text)
    assert key == "site.latitude_deg"
    assert text.splitlines()[line - 1] == "latitude_deg = 135.0"


def test_missing_interlock_is_an_error_with_line():
    text = SITE.read_text().replace("interlocks = [[1, 2], [3, 4], [5, 6]]",
                                    "interlocks = [[1, 2], [5, 6]]")
    key, line, msg = _problem(text)
    assert key == "relays.main.interlocks"
    assert text.splitlines()[line - 1].startswith("interlocks")
    assert "[3, 4]" in msg


def test_relay_limit_shorter_than_motion_is_an_error():
    text = SITE.read_text().replace("max_on_s = 90 ", "max_on_s = 30 ")
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    keys = {k for k, _, _ in info.value.problems}
    assert keys == {"relays.main.max_on_s"}
    assert any("slit" in m for _, _, m in info.value.problems)


def test_site_must_not_use_simulated_devices():
    text = re.sub(r'type = "gpio-rain".*?\n\n', 'type = "simulated"\n\n', SITE.read_text(),
                  flags=re.S)
    key, line, msg = _problem(text)
    assert key == "weather.type" and "simulated" in msg


def test_toml_syntax_error_has_line():
    key, line, msg = _problem("mode = 'site'\n[site\nname = 1\n")
    assert line == 2 and "syntax" in msg


def test_env_overrides(tmp_path):
    cfg = load_config(SITE, env={"TENMON_API__PORT": "8471", "TENMON_DOME__DEAD_BAND_DEG": "0.8",
                                 "TENMON_URL": "http://x", "HOME": "/root"})
    assert cfg.api.port == 8471 and cfg.dome.dead_band_deg == 0.8
    with pytest.raises(ConfigError) as info:
        load_config(SITE, env={"TENMON_API__PORT": "many"})
    key, line, msg = info.value.problems[0]
    assert key == "api.port" and line is None  # it came from the environment


def test_keylines_handles_tables_and_dotted_keys():
    text = "a = 1\n[b]\nc = 2\nd.e = 3\n[[f]]\ng = 4\n[[f]]\ng = 5\n[h.'i.j']\nk = 6\n"
    kl = KeyLines(text)
    assert kl.find("a") == 1 and kl.find("b.c") == 3 and kl.find("b.d.e") == 4
    assert kl.find("f[1].g") == 8 and kl.find("h.i.j.k") == 10
    assert kl.find("b.nothing") == 2  # falls back to the enclosing table


def test_cli_validate_exit_codes(tmp_path, capsys):
    assert main(["config", "validate", str(SITE)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(SITE.read_text().replace("slew_timeout_s = 240", "slew_timeout_s = -5")
                   .replace("dead_band_deg = 0.5", "deadband = 0.5"))
    assert main(["config", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:" in out and "dome.slew_timeout_s" in out and "dome.deadband" in out
    assert main(["config", "validate", str(bad), "--json"]) == 1
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {r["key"] for r in rows} == {"dome.slew_timeout_s", "dome.deadband"}
    assert all(isinstance(r["line"], int) for r in rows)
    assert main(["config", "validate", str(tmp_path / "missing.toml")]) == 1
    assert "no such config file" in capsys.readouterr().out


def test_cli_validate_names_key_and_line_in_the_services_sections(tmp_path, capsys):
    """`tenmon config validate` reports a bad key in [night] (a misspelt key of its nested
    [night.sequencer]) and a bad value in [frames] with their lines, as for every section."""
    text = (SITE.read_text().replace("enabled = true              # dusk/dawn",
                                      "enabeld = true              # dusk/dawn")
            .replace("processes = 1\n", "processes = 0\n")
            + "\n[night.sequencer]\nsettel_s = 5\n")
    bad = tmp_path / "bad-sections.toml"
    bad.write_text(text)
    lines = text.splitlines()
    night_line = next(n for n, t in enumerate(lines, 1) if t.startswith("enabeld = true"))
    seq_line = lines.index("settel_s = 5") + 1
    frames_line = lines.index("processes = 0") + 1
    assert main(["config", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:{night_line}: night.enabeld: unknown key (misspelt?)" in out, out
    assert f"{bad}:{seq_line}: night.sequencer.settel_s: unknown key (misspelt?)" in out, out
    assert f"{bad}:{frames_line}: frames.processes:" in out, out
    assert main(["config", "validate", str(bad), "--json"]) == 1
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {(r["key"], r["line"]) for r in rows} == {
        ("night.enabeld", night_line), ("night.sequencer.settel_s", seq_line),
        ("frames.processes", frames_line)}


def test_a_remote_api_bind_without_a_named_token_is_invalid(tmp_path, capsys):
    """The finding: host = "0.0.0.0" validated silently (any client on the network could then
    command the observatory)."""
    text = SITE.read_text()
    assert 'host = "127.0.0.1"' in text
    for host in ("0.0.0.0", "::", "192.168.1.20", "tenmon-pi.local"):
        bad = tmp_path / "remote.toml"
        bad.write_text(text.replace('host = "127.0.0.1"', f'host = "{host}"'))
        assert main(["config", "validate", str(bad)]) == 1, host
        out = capsys.readouterr().out
        line = next(n for n, t in enumerate(text.splitlines(), 1)
                    if t.startswith('host = "127.0.0.1"'))
        assert f"{bad}:{line}: api.host:" in out and "api.token_file" in out, out
    # naming the token makes it a deliberate choice: valid
    ok = tmp_path / "remote-ok.toml"
    ok.write_text(text.replace('host = "127.0.0.1"', 'host = "0.0.0.0"\ntoken_file = '
                               '"/etc/tenmon/api.token"\nallowed_hosts = ["tenmon-pi.local"]'))
    assert main(["config", "validate", str(ok)]) == 0
    env_ok = tmp_path / "remote-env.toml"
    env_ok.write_text(text.replace('host = "127.0.0.1"',
                                   'host = "0.0.0.0"\ntoken_env = "TENMON_SITE_TOKEN"'))
    assert main(["config", "validate", str(env_ok)]) == 0
    # an environment override counts as the daemon applies it
    with pytest.raises(ConfigError, match="api.host"):
        load_config(SITE, env={"TENMON_API__HOST": "0.0.0.0"})
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        load_config(SITE, env={"TENMON_API__HOST": host})


def test_storage_limits_are_finite_and_ordered():
    for env, key in (({"TENMON_STORAGE__WARN_FREE_MB": "inf"}, "storage.warn_free_mb"),
                     ({"TENMON_STORAGE__EVENTS_KEEP_DAYS": "nan"}, "storage.events_keep_days"),
                     ({"TENMON_DAEMON__HISTORY_KEEP_DAYS": "inf"}, "daemon.history_keep_days"),
                     ({"TENMON_STORAGE__BUFFER_MAX_ROWS": "0"}, "storage.buffer_max_rows")):
        with pytest.raises(ConfigError) as info:
            load_config(SITE, env=env)
        assert key in {k for k, _, _ in info.value.problems}, info.value.problems
    with pytest.raises(ConfigError) as info:
        load_config(SITE, env={"TENMON_STORAGE__REFUSE_FREE_MB": "4096"})
    assert "refuse_free_mb (4096) must be below warn_free_mb (2048)" in str(info.value.problems)
    cfg = load_config(SITE, env={})
    assert cfg.storage.refuse_free_mb < cfg.storage.warn_free_mb
