"""`--wait` ends on every terminal state (unknown, error, closed but not verified) with an honest
exit code and message, against the real API serving the simulated observatory in this process."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from aiohttp import web

from tenmon.daemon.control_loop import tick_once
from tenmon.cli.client import resolve_token
from tenmon.cli.main import main
from tenmon.cli.ops import shutter_outcome
from tenmon.daemon.api.server import build_app
from tenmon.drivers.base import ShutterState


class LiveApi:
    """The daemon's API on a free loopback port, its loop ticking the observatory as fast as it
    can (simulated time), as the daemon's runner does."""

    def __init__(self, obs):
        self.obs = obs
        self.port: int | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        runner = web.AppRunner(build_app(self.obs), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        tick = self.obs.config.daemon.tick_s
        try:
            while not self._stop.is_set():
                self.obs.clock.advance(tick)
                tick_once(self.obs)
                await asyncio.sleep(0.0005)
        finally:
            await runner.cleanup()

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(10)
        url = f"http://127.0.0.1:{self.port}"
        # the API's token (made by build_app), found as the CLI finds it at a site
        _TOKENS[url] = resolve_token(
            env={"TENMON_PATHS__DATA_DIR": str(self.obs.config.paths.data_dir)}).value
        return url

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


_TOKENS: dict[str, str | None] = {}


def _cli(url: str, *args: str, capsys) -> tuple[int, dict]:
    rc = main(["--url", url, "--token", _TOKENS[url], *args, "--wait", "--timeout", "60",
               "--poll", "0.05", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return rc, json.loads(out[-1])


def test_slit_open_wait_ends_promptly_on_unknown(sim_rig, capsys):
    """The telescope hides the slit's far end: the open ends 'unknown'; the wait says so at once
    instead of waiting out its timeout."""
    rig = sim_rig()
    rig.world.inject_fault("slit-state-hidden")
    with LiveApi(rig.obs) as url:
        rc, out = _cli(url, "slit", "open", capsys=capsys)
    assert rc == 1 and out["ok"] is False
    assert "unknown" in out["error"] and "not done after" not in out["error"]
    assert out["slit"]["state"] == "unknown"
    assert rig.obs.slit.state == ShutterState.UNKNOWN


def test_slit_close_wait_fails_on_closed_not_verified(sim_rig, capsys):
    rig = sim_rig(TENMON_SAFETY__ENCODER_STALE_S="1000")  # keep the supervisor out of it
    rig.world.inject_fault("encoder-dropout")
    rig.run(3)
    with LiveApi(rig.obs) as url:
        rc, out = _cli(url, "slit", "close", capsys=capsys)
    assert rc == 1 and out["ok"] is False
    assert "NOT VERIFIED" in out["error"]
    assert out["slit"]["state"] == "closed" and out["slit"]["verified"] is False


def test_slit_open_wait_succeeds_and_exits_0(sim_rig, capsys):
    rig = sim_rig()
    with LiveApi(rig.obs) as url:
        rc, out = _cli(url, "slit", "open", capsys=capsys)
    assert rc == 0 and out["ok"] is True and out["slit"]["state"] == "open"


def test_wait_without_json_prints_one_friendly_line(sim_rig, capsys):
    rig = sim_rig()
    rig.world.inject_fault("slit-state-hidden")
    with LiveApi(rig.obs) as url:
        rc = main(["--url", url, "--token", _TOKENS[url], "slit", "open", "--wait", "--timeout",
                   "60", "--poll", "0.05"])
    err = capsys.readouterr().err  # the in-process daemon logs here too
    mine = [line for line in err.splitlines() if line.startswith("tenmon:")]
    assert rc == 1 and "Traceback" not in err
    assert mine == ["tenmon: slit open: slit state unknown (the encoder cannot tell it)"]


@pytest.mark.parametrize("state, verified, switches, want, expected", [
    ("open", True, True, "open", "done"),
    ("opening", True, True, "open", None),
    ("unknown", True, True, "open", "failed"),
    ("error", True, True, "open", "failed"),
    ("partial", True, True, "open", "failed"),
    ("closed", True, True, "open", "failed"),
    ("closed", True, True, "closed", "done"),
    ("closing", True, True, "closed", None),
    ("closed", False, True, "closed", "failed"),     # the slit: blind close
    ("closed", False, False, "closed", "done"),      # a cover without switches: timed
    ("unknown", True, True, "closed", "failed"),
    ("opening", True, True, "closed", "failed"),
])
def test_shutter_outcome_table(state, verified, switches, want, expected):
    s = {"slit": {"state": state, "verified": verified, "limit_switches": switches,
                  "error": None},
         "safety": {"safe": True, "reasons": []}}
    device = "slit" if switches else "cover"
    s[device] = s["slit"]
    got = shutter_outcome(device, want, s)
    assert (got[0] if got else None) == expected, got
