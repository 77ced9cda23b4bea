"""`tenmon events`, `tenmon audit` and the token discovery of the CLI, against the daemon's API
served on a real local port (the app in a thread with its own event loop, the CLI in the test's
thread, as two processes would be)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from aiohttp import web

from eventkit import add_events_bulk
from tenmon.cli.client import resolve_token, resolve_url
from tenmon.cli.main import main
from tenmon.daemon.api.server import build_app
from tenmon.core.errors import ApiError


class Served:
    """The rig's API on 127.0.0.1:PORT, served from a thread until ``close()``."""

    def __init__(self, obs):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start():
            self.runner = web.AppRunner(build_app(obs), access_log=None)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(start()),
                                                       self.loop.run_forever()), daemon=True)
        self.thread.start()
        assert ready.wait(30)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def served(sim_rig, monkeypatch):
    rig = sim_rig()
    for k in ("TENMON_TOKEN", "TENMON_URL", "TENMON_API__TOKEN_FILE", "TENMON_API__TOKEN_ENV"):
        monkeypatch.delenv(k, raising=False)
    # the CLI finds the token as at a site: in the data directory of the daemon's config
    monkeypatch.setenv("TENMON_PATHS__DATA_DIR", str(rig.obs.config.paths.data_dir))
    s = Served(rig.obs)
    s.rig = rig
    yield s
    s.close()


def _add_events(rig, n):
    add_events_bulk(rig.obs.store, (("2026-11-21T12:00:00.000+00:00", "info", "test",
                                     f"event {i}", {}) for i in range(n)))


def test_events_limit_takes_the_newest_across_pages(served, capsys):
    _add_events(served.rig, 2500)
    assert main(["--url", served.url, "events", "--limit", "1500", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    ids = [e["id"] for e in rows]
    newest = served.rig.obs.store.db.execute("SELECT MAX(id) FROM events").fetchone()[0]
    assert len(rows) == 1500 and ids == list(range(newest - 1499, newest + 1))
    assert main(["--url", served.url, "events", "--limit", "0"]) == 1
    assert "--limit 0" in capsys.readouterr().err


def test_commands_find_the_token_and_audit_shows_them(served, capsys, monkeypatch):
    assert main(["--url", served.url, "dome", "goto", "45", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    monkeypatch.setenv("TENMON_TOKEN", "an-old-token-that-is-wrong")
    assert main(["--url", served.url, "slit", "open"]) == 1
    err = capsys.readouterr().err
    assert "wrong API token" in err and "$TENMON_TOKEN" in err
    assert str(served.rig.obs.config.paths.data_dir / "api.token") in err
    assert main(["--url", served.url, "audit"]) == 1  # the audit trail needs the token too
    capsys.readouterr()
    monkeypatch.delenv("TENMON_TOKEN")
    assert main(["--url", served.url, "audit", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["route"], r["status"], r["auth"]) for r in rows] == [
        ("/api/v1/dome/goto", 200, "ok"), ("/api/v1/slit/open", 401, "wrong")]
    token = served.rig.api_token()
    assert main(["--url", served.url, "--token", token, "audit", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "/api/v1/slit/open" in out and "401" in out and "dome" not in out


def test_token_discovery_order_and_messages(tmp_path, monkeypatch):
    for k in ("TENMON_TOKEN", "TENMON_PATHS__DATA_DIR", "TENMON_API__TOKEN_FILE",
              "TENMON_API__TOKEN_ENV"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "site.toml"
    cfg.write_text('[paths]\ndata_dir = "d"\n[api]\nhost = "0.0.0.0"\nport = 9001\n')
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "api.token").write_text("token-from-the-data-dir\n")
    assert resolve_token("given", str(cfg)).value == "given"
    assert resolve_token(None, str(cfg), env={"TENMON_TOKEN": "t-env"}).where == "$TENMON_TOKEN"
    t = resolve_token(None, str(cfg), env={})
    assert t.value == "token-from-the-data-dir" and t.where == str(tmp_path / "d" / "api.token")
    cfg.write_text('[paths]\ndata_dir = "d"\n[api]\ntoken_env = "SITE_TOKEN"\n')
    assert resolve_token(None, str(cfg), env={"SITE_TOKEN": "s"}).value == "s"
    assert resolve_token(None, str(cfg), env={}).value is None
    cfg.write_text('[api]\ntoken_file = "elsewhere/tok"\n')
    missing = resolve_token(None, str(cfg), env={})
    assert missing.value is None and "not there" in missing.where
    # without any config: the simulated observatory's data directory under the current one
    if not resolve_url(None, None).startswith("http://127.0.0.1:8470"):
        pytest.skip("this machine has /etc/tenmon/tenmon.toml or TENMON_URL")
    sim = tmp_path / "var" / "tenmon-sim"
    sim.mkdir(parents=True)
    (sim / "api.token").write_text("simulated-token\n")
    assert resolve_token(None, None, env={}).value == "simulated-token"


def test_a_bind_to_every_address_is_reached_on_loopback(tmp_path, monkeypatch):
    monkeypatch.delenv("TENMON_URL", raising=False)
    for k in ("TENMON_API__HOST", "TENMON_API__PORT"):
        monkeypatch.delenv(k, raising=False)
    cfg = tmp_path / "site.toml"
    cfg.write_text('[api]\nhost = "0.0.0.0"\nport = 9001\n')
    assert resolve_url(None, str(cfg)) == "http://127.0.0.1:9001"  # a Host the daemon takes
    cfg.write_text('[api]\nhost = "::1"\nport = 9001\n')
    assert resolve_url(None, str(cfg)) == "http://[::1]:9001"


def test_no_daemon_is_still_one_line(tmp_path):
    with pytest.raises(ApiError, match="no tenmon daemon answers"):
        from tenmon.cli.client import ApiClient

        ApiClient("http://127.0.0.1:9", timeout_s=2, token="x" * 20).get("/status")
