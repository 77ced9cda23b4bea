"""The systemd units: sandbox score (systemd-analyze security, offline), verify, the OnFailure alert
unit's command (it exists in the CLI and reaches a real SMTP server), and the daemon under the
kernel's equivalent of MemoryDenyWriteExecute."""

from __future__ import annotations

import ctypes
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from alert_rigs import SmtpServer, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "tenmond.service"
ALERT_UNIT = ROOT / "systemd" / "tenmon-alert@.service"
INSTALLED_VENV = "/opt/tenmon/venv"
MAX_EXPOSURE = 3.0

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (Debian: systemd)")


def directives(path: Path) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` for every assignment of a unit file (keys may repeat)."""
    out, section = [], ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(path: Path, key: str) -> list[str]:
    return [v for _, k, v in directives(path) if k == key]


def exposure(path: Path) -> float:
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


# --------------------------------------------------------------------------- the sandbox


@needs_analyze
def test_daemon_unit_security_exposure_is_at_most_3():
    assert exposure(UNIT) <= MAX_EXPOSURE


@needs_analyze
def test_alert_unit_security_exposure_is_at_most_3():
    assert exposure(ALERT_UNIT) <= MAX_EXPOSURE


@needs_analyze
def test_units_verify(tmp_path):
    """systemd-analyze verify, with the installed venv's paths pointed at this one (verify checks
    that the commands exist)."""
    bindir = Path(sys.executable).parent
    assert (bindir / "tenmon").exists(), "run the tests from the project's virtualenv"
    for unit in (UNIT, ALERT_UNIT):
        text = unit.read_text().replace(f"{INSTALLED_VENV}/bin", str(bindir))
        (tmp_path / unit.name).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--no-pager", "tenmond.service",
                        "tenmon-alert@tenmond.service"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tenmon" not in r.stdout + r.stderr, r.stdout + r.stderr  # no warnings about ours


def test_daemon_unit_contract():
    assert values(UNIT, "OnFailure") == ["tenmon-alert@%n.service"]
    assert values(UNIT, "IPAddressDeny") == ["any"]
    assert values(UNIT, "IPAddressAllow") == ["localhost"]
    assert "tenmon.relays_off" in values(UNIT, "ExecStopPost")[0]
    assert values(UNIT, "StateDirectory") == ["tenmon"]  # relays_off finds the device map there
    assert values(UNIT, "UMask") == ["0027"]
    # the daemon needs these devices: a sandbox that hides them stops the observatory
    allowed = " ".join(values(UNIT, "DeviceAllow"))
    for dev in ("char-ttyUSB", "char-ttyACM", "/dev/gpiochip0", "char-video4linux",
                "char-hidraw"):
        assert dev in allowed
    assert values(UNIT, "PrivateDevices") == [] and values(UNIT, "PrivateUsers") == []
    # the shutdown bound: the daemon's safe shutdown plus the alert flush fit in TimeoutStopSec
    from tenmon.config.models import DaemonConfig
    from tenmon.daemon.runner import ALERTS_FLUSH_S

    stop_s = float(values(UNIT, "TimeoutStopSec")[0])
    assert DaemonConfig().shutdown_timeout_s + ALERTS_FLUSH_S < stop_s


def _alert_command(config: Path, data_dir: Path) -> list[str]:
    """The alert unit's ExecStart as this test can run it: %i -> tenmond.service, the installed
    tenmon -> this interpreter's CLI, the site config -> ``config``."""
    (cmd,) = values(ALERT_UNIT, "ExecStart")
    argv = shlex.split(cmd.replace("%i", "tenmond.service"))
    assert argv[0] == f"{INSTALLED_VENV}/bin/tenmon"
    argv = [a.replace("/etc/tenmon/tenmon.toml", str(config))
            .replace("/var/lib/tenmon", str(data_dir)) for a in argv[1:]]
    return [sys.executable, "-m", "tenmon.cli.main", *argv]


def test_alert_unit_command_exists_in_the_cli():
    from tenmon.cli.alerts_cmd import cmd_send
    from tenmon.cli.main import _command_of, build_parser

    argv = _alert_command(Path("/etc/tenmon/tenmon.toml"), Path("/var/lib/tenmon"))[3:]
    args = build_parser(_command_of(argv)).parse_args(argv)
    assert args.func is cmd_send and args.unit == "tenmond.service"


def _site_config(tmp_path: Path, alerts: str) -> Path:
    from tenmon.config.loader import simulated_config_path

    text = simulated_config_path().read_text()
    text = text.replace('data_dir = "var/tenmon-sim"', f'data_dir = "{tmp_path / "data"}"')
    path = tmp_path / "tenmon.toml"
    path.write_text(text + "\n" + alerts)
    return path


def test_systemd_giving_up_reaches_a_person(tmp_path):
    """Finding: "systemd gives up after 5 starts and nobody is told". systemd then starts
    tenmon-alert@tenmond.service, whose command sends the alarm: here to a real SMTP server."""
    pytest.importorskip("apprise")
    smtp = SmtpServer()
    try:
        cfg = _site_config(tmp_path, f'[alerts]\nurls = ["{smtp.url()}"]\nretries = 0\n')
        r = subprocess.run(_alert_command(cfg, tmp_path / "data"), capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr + r.stdout
        assert "1 of 1 target reached" in r.stdout
        assert wait_for(lambda: smtp.messages, 10)
    finally:
        smtp.stop()
    text = SmtpServer.text(smtp.messages[0])
    assert "tenmond.service failed" in text and "nothing is watching the dome" in text.lower()
    assert "Nishi-Harima" in str(smtp.messages[0]["Subject"])


def test_alerts_test_reports_each_target(tmp_path):
    pytest.importorskip("apprise")
    smtp = SmtpServer()
    dead = free_port()  # nothing listens there
    try:
        cfg = _site_config(tmp_path, "[alerts]\nurls = [\"" + smtp.url() + "\", "
                           f"\"json://127.0.0.1:{dead}/x\", \"nosuchscheme://x\"]\n"
                           "timeout_s = 5\n")
        r = subprocess.run([sys.executable, "-m", "tenmon.cli.main", "--config", str(cfg),
                            "alerts", "test", "--json", "--no-retry"],
                           capture_output=True, text=True, timeout=120)
    finally:
        smtp.stop()
    import json

    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 1  # not every target was reached
    assert [row["ok"] for row in rows] == [True, False, False]
    assert "apprise" in rows[2]["error"]
    assert len(smtp.messages) == 1 and "test alert" in str(smtp.messages[0]["Subject"])


def test_alerts_send_uses_the_last_good_targets_when_the_config_is_broken(tmp_path):
    pytest.importorskip("apprise")
    from tenmon.config.loader import load_config
    from tenmon.lastgood import save_alerts

    smtp = SmtpServer()
    try:
        cfg_path = _site_config(tmp_path, f'[alerts]\nurls = ["{smtp.url()}"]\nretries = 0\n')
        (tmp_path / "data").mkdir()
        save_alerts(load_config(cfg_path), tmp_path / "data", str(cfg_path))
        cfg_path.write_text("this is [not toml")
        r = subprocess.run(_alert_command(cfg_path, tmp_path / "data"), capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr + r.stdout
        assert "last good start" in r.stderr
        assert wait_for(lambda: smtp.messages, 10)
    finally:
        smtp.stop()
    assert "tenmond.service failed" in SmtpServer.text(smtp.messages[0])
    assert (tmp_path / "data" / "alerts.json").stat().st_mode & 0o077 == 0  # secrets: 0600


# --------------------------------------------------------------------------- MemoryDenyWriteExecute

PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1

MDWE_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(f"PR_SET_MDWE: {os.strerror(ctypes.get_errno())}")
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _mdwe_supported() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    return ctypes.CDLL(None).prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0


needs_mdwe = pytest.mark.skipif(not _mdwe_supported(),
                                reason="the kernel has no PR_SET_MDWE (Linux >= 6.3)")


@needs_mdwe
def test_onnx_model_and_libraries_run_without_writable_executable_memory():
    code = """
import ctypes
assert ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) == 1, "MDWE not in force"
import numpy as np, onnxruntime as ort, cv2, astroscrappy, sep, photutils, sklearn.cluster
from importlib import resources
for name in ("slit.onnx", "slit_band.onnx"):
    s = ort.InferenceSession(str(resources.files("tenmon.vision.slit.models").joinpath(name)),
                             providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    s.run(None, {i.name: np.zeros(shape, np.float32)})
img = np.random.default_rng(1).normal(100, 5, (256, 256)).astype(np.float32)
astroscrappy.detect_cosmics(img)
sep.extract(img - 100, 25)
import os
from tenmon.core.lifeline import die_with_parent
assert die_with_parent(os.getppid())
print("OK")
"""
    r = subprocess.run([sys.executable, "-c", MDWE_EXEC, "-c", code], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


@needs_mdwe
@pytest.mark.slow
def test_simulated_daemon_runs_without_writable_executable_memory(tmp_path):
    port = free_port()
    log = open(tmp_path / "daemon.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", MDWE_EXEC, "-m", "tenmon.cli.main", "daemon",
                             "--simulate", "--fresh", "--speed", "10", "--port", str(port),
                             "--data-dir", str(tmp_path / "data")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def status():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status",
                                            timeout=5) as resp:
                    return resp.status == 200
            except OSError:
                assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
                return False

        assert wait_for(status, 60), (tmp_path / "daemon.log").read_text()
        time.sleep(3.0)  # the frame pool warms up (imports the pipeline in its worker)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
    assert "stopped cleanly" in text and "did not start" not in text
