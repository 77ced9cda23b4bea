"""Who may use the API: the token, Host/Origin checks, content types, and the audit trail.

The API in-process on aiohttp's test server (a real local socket), serving a simulated
observatory; commands carry the token as the CLI finds it (``rig.api_headers()``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tenmon.config.models import ApiConfig
from tenmon.daemon.api.server import build_app
from tenmon.daemon.api.access import ApiAccess, ApiToken, load_token


def serve(rig, body):
    """Run ``body(client)`` against the rig's API; returns what it returns."""
    async def go():
        async with TestClient(TestServer(build_app(rig.obs))) as client:
            return await body(client)
    return asyncio.run(go())


async def call(client, method, path, **kw):
    resp = await client.request(method, path, **kw)
    return resp.status, json.loads(await resp.text())


# --------------------------------------------------------------------------- the finding


def test_cross_site_text_plain_open_is_refused_and_the_slit_stays_closed(sim_rig):
    """The finding: POST /slit/open with text/plain, an evil Origin and Host opened the slit."""
    rig = sim_rig()
    assert rig.obs.slit.state.value == "closed" and rig.obs.verdict.safe

    async def body(c):
        evil = {"Content-Type": "text/plain", "Origin": "http://evil.example",
                "Host": "evil.example"}
        out = [await call(c, "POST", "/api/v1/slit/open", data="{}", headers=evil)]
        # each part alone is refused too, even with the right token
        h = rig.api_headers()
        out.append(await call(c, "POST", "/api/v1/slit/open", data="{}",
                              headers={**h, "Host": "evil.example",
                                       "Content-Type": "application/json"}))
        out.append(await call(c, "POST", "/api/v1/slit/open", json={},
                              headers={**h, "Origin": "http://evil.example"}))
        out.append(await call(c, "POST", "/api/v1/slit/open", data="{}",
                              headers={**h, "Content-Type": "text/plain"}))
        out.append(await call(c, "POST", "/api/v1/slit/open", data="",
                              headers={**h, "Content-Type": "application/x-www-form-urlencoded"}))
        out.append(await call(c, "POST", "/api/v1/slit/open", data="a=1",
                              headers={**h, "Content-Type": "multipart/form-data; boundary=x"}))
        out.append(await call(c, "POST", "/api/v1/slit/open"))  # no token at all
        return out

    answers = serve(rig, body)
    assert [s for s, _ in answers] == [403, 403, 403, 415, 415, 415, 401]
    assert "evil.example" in answers[0][1]["error"]["message"]
    assert answers[0][1]["error"]["code"] == "forbidden"
    assert answers[3][1]["error"]["code"] == "unsupported_media_type"
    rig.run(10)
    assert rig.obs.slit.state.value == "closed" and rig.world.state.slit_fraction == 0.0
    assert not any("slit: opening" in m for m in rig.messages())


def test_right_token_works_wrong_or_missing_is_401_saying_where(sim_rig):
    rig = sim_rig()

    async def body(c):
        ok = await call(c, "POST", "/api/v1/slit/open", headers=rig.api_headers())
        lower = await call(c, "POST", "/api/v1/slit/close",
                           headers={"authorization": "bearer " + rig.api_token()})
        missing = await call(c, "POST", "/api/v1/dome/goto", json={"azimuth_deg": 10})
        wrong = await call(c, "POST", "/api/v1/dome/goto", json={"azimuth_deg": 10},
                           headers={"Authorization": "Bearer " + "x" * 43})
        basic = await call(c, "POST", "/api/v1/dome/goto", json={"azimuth_deg": 10},
                           headers={"Authorization": "Basic dXNlcjpwYXNz"})
        resp = await c.post("/api/v1/resume")
        return ok, lower, missing, wrong, basic, resp.headers.get("WWW-Authenticate")

    ok, lower, missing, wrong, basic, www = serve(rig, body)
    assert ok[0] == 200 and ok[1]["status"]["slit"]["state"] == "opening"
    assert lower[0] == 200
    where = str(rig.obs.config.paths.data_dir / "api.token")
    for status, answer in (missing, wrong, basic):
        assert status == 401 and answer["error"]["code"] == "unauthorized"
        assert where in answer["error"]["message"]
    assert "wrong API token" in wrong[1]["error"]["message"]
    assert www and www.startswith("Bearer")
    assert rig.obs.dome.target_deg is None  # nothing moved for the refused ones


def test_reads_open_on_loopback_but_the_audit_trail_needs_the_token(sim_rig):
    rig = sim_rig()

    async def body(c):
        return [(await call(c, "GET", p))[0] for p in
                ("/api/v1/status", "/api/v1/events", "/api/v1/history/dome",
                 "/api/v1/openapi.json", "/api/v1/audit")] + [
            (await call(c, "GET", "/api/v1/audit", headers=rig.api_headers()))[0]]

    assert serve(rig, body) == [200, 200, 200, 200, 401, 200]


def test_a_remote_bind_makes_reads_need_the_token(sim_rig, tmp_path):
    token_file = tmp_path / "secret" / "tenmon.token"
    rig = sim_rig(TENMON_API__HOST='"0.0.0.0"', TENMON_API__TOKEN_FILE=f'"{token_file}"')

    async def body(c):
        token = token_file.read_text().strip()
        return [await call(c, "GET", "/api/v1/status"),
                await call(c, "GET", "/api/v1/status",
                           headers={"Authorization": f"Bearer {token}"})]

    (s1, a1), (s2, _) = serve(rig, body)
    assert s1 == 401 and str(token_file) in a1["error"]["message"] and s2 == 200
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_host_and_origin_must_be_the_daemons(sim_rig):
    rig = sim_rig(TENMON_API__ALLOWED_HOSTS='["tenmon-pi.local"]')

    async def body(c):
        port = c.server.port
        h = rig.api_headers()
        hosts = [f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}",
                 f"[::1]:{port}", "tenmon-pi.local", "tenmon-pi.local:443",
                 f"127.0.0.1:{port + 1}", "127.0.0.1", f"evil.example:{port}", f"[::1]x:{port}",
                 f"localhost:{port}@evil", ""]
        out = {}
        for host in hosts:
            out[host] = (await call(c, "GET", "/api/v1/status", headers={"Host": host}))[0]
        origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}",
                   "https://tenmon-pi.local", "http://evil.example", "null",
                   f"http://127.0.0.1:{port + 1}", f"file://127.0.0.1:{port}",
                   f"http://127.0.0.1.evil.example:{port}"]
        for origin in origins:
            out[origin] = (await call(c, "POST", "/api/v1/dome/abort",
                                      headers={**h, "Origin": origin}))[0]
        return out

    out = serve(rig, body)
    ok = [k for k, v in out.items() if v == 200]
    refused = [k for k, v in out.items() if v == 403]
    assert len(ok) + len(refused) == len(out), out
    port_of = next(k for k in ok if k.startswith("127.0.0.1:")).split(":")[1]
    assert sorted(ok) == sorted([f"127.0.0.1:{port_of}", f"localhost:{port_of}",
                                 f"LOCALHOST.:{port_of}", f"[::1]:{port_of}", "tenmon-pi.local",
                                 "tenmon-pi.local:443", f"http://127.0.0.1:{port_of}",
                                 f"http://localhost:{port_of}", "https://tenmon-pi.local"])


def test_the_token_file_is_made_once_0600_and_reused(tmp_path):
    api = ApiConfig()
    first = load_token(api, tmp_path / "data")
    path = tmp_path / "data" / "api.token"
    assert first.created and first.value and first.problem is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.value.decode() in path.read_text()
    again = load_token(api, tmp_path / "data")
    assert not again.created and again.value == first.value
    assert [p.name for p in path.parent.iterdir()] == ["api.token"]  # no temporary left
    os.chmod(path, 0o644)
    assert "readable or writable by other users" in load_token(api, tmp_path / "data").warning


def test_token_from_the_environment_and_its_problems(tmp_path):
    api = ApiConfig(token_env="SITE_TOKEN")
    assert load_token(api, tmp_path, env={"SITE_TOKEN": "s3cret-token-of-the-site"}).value \
        == b"s3cret-token-of-the-site"
    assert "not set" in load_token(api, tmp_path, env={}).problem
    assert "shorter than" in load_token(api, tmp_path, env={"SITE_TOKEN": "abc"}).problem
    bad = tmp_path / "d"
    bad.mkdir()
    assert "cannot read" in load_token(ApiConfig(token_file=bad), tmp_path).problem
    assert not (tmp_path / "api.token").exists()


def test_constant_time_check_accepts_only_the_exact_token():
    access = ApiAccess(ApiConfig(), ApiToken("here", value=b"A" * 43))
    assert access.check_token("Bearer " + "A" * 43)[0] == "ok"
    for header in ("Bearer " + "A" * 42, "Bearer " + "A" * 44, "Bearer " + "a" * 43,
                   "Bearer Ä" + "A" * 42, "Bearer", "Token " + "A" * 43, ""):
        assert access.check_token(header or None)[0] in ("wrong", "missing"), header


def test_without_a_token_commands_are_refused_but_safety_goes_on(sim_rig, tmp_path):
    unreadable = tmp_path / "a-directory"
    unreadable.mkdir()
    rig = sim_rig(TENMON_API__TOKEN_FILE=f'"{unreadable}"')

    async def body(c):
        return [await call(c, "POST", "/api/v1/slit/open"),
                await call(c, "POST", "/api/v1/slit/open",
                           headers={"Authorization": "Bearer " + "x" * 43}),
                await call(c, "GET", "/api/v1/status")]

    (s1, a1), (s2, _), (s3, status) = serve(rig, body)
    assert s1 == s2 == 503 and a1["error"]["code"] == "no_token"
    assert str(unreadable) in a1["error"]["message"]
    assert s3 == 200
    alarms = [e for e in rig.events() if e["kind"] == "api" and e["level"] == "alarm"]
    assert alarms and "refuses every command" in alarms[0]["message"]
    rig.obs.sim.set_weather("rain")
    rig.run(1)
    assert not rig.obs.verdict.safe  # the control loop is untouched


# --------------------------------------------------------------------------- the audit trail


def test_every_command_is_audited_and_the_token_never_stored(sim_rig):
    rig = sim_rig()

    async def body(c):
        h = rig.api_headers()
        await call(c, "POST", "/api/v1/dome/goto", json={"azimuth_deg": 90}, headers=h)
        await call(c, "POST", "/api/v1/dome/goto", json={"azimuth_deg": True}, headers=h)
        await call(c, "POST", "/api/v1/slit/open")
        await call(c, "POST", "/api/v1/slit/open", headers={**h, "Host": "evil.example"})
        await call(c, "POST", "/api/v1/sim/fault", json={"name": "x" * 5000}, headers=h)
        await call(c, "GET", "/api/v1/status")  # reads are not audited
        return await call(c, "GET", "/api/v1/audit", headers=h)

    status, answer = serve(rig, body)
    rows = answer["audit"]
    assert status == 200 and len(rows) == 5
    assert [(r["route"], r["status"], r["code"], r["auth"]) for r in rows] == [
        ("/api/v1/dome/goto", 200, "ok", "ok"),
        ("/api/v1/dome/goto", 400, "bad_request", "ok"),
        ("/api/v1/slit/open", 401, "unauthorized", "missing"),
        ("/api/v1/slit/open", 403, "forbidden", "-"),
        ("/api/v1/sim/fault", 400, "bad_request", "ok")]
    assert rows[0]["body"] == '{"azimuth_deg": 90}' and rows[0]["client"] == "127.0.0.1"
    assert rows[0]["method"] == "POST" and rows[0]["time_utc"].startswith("2026-11-21T13:00")
    assert len(rows[4]["body"]) < 1100 and rows[4]["body"].endswith("(5012 bytes)")
    db = sqlite3.connect(rig.obs.store.path)
    dump = "\n".join(db.iterdump())
    assert rig.api_token() not in dump


def test_audit_rows_are_pruned_after_audit_keep_days(sim_rig):
    from tenmon.daemon.api.audit import AuditLog

    rig = sim_rig()
    log = AuditLog(rig.obs.store, rig.clock, keep_days=1)
    log.record(client="127.0.0.1", method="POST", route="/a", body=b"{}", status=200, code="ok",
               auth="ok")
    rig.clock.advance(2 * 86400)
    log.record(client="127.0.0.1", method="POST", route="/b", body=b"", status=200, code="ok",
               auth="ok")
    assert rig.obs.store.flush(10)
    routes = [r[0] for r in rig.obs.store.db.execute("SELECT route FROM audit")]
    assert routes == ["/b"]


def test_an_audit_write_that_fails_does_not_fail_the_command(sim_rig):
    rig = sim_rig()

    async def body(c):
        assert rig.obs.store.flush(10)
        other = sqlite3.connect(rig.obs.store.path)  # another process's damage: writes fail
        other.execute("DROP TABLE audit")
        other.close()
        return await call(c, "POST", "/api/v1/slit/open", headers=rig.api_headers())

    status, answer = serve(rig, body)
    assert status == 200 and answer["status"]["slit"]["state"] == "opening"


@pytest.mark.parametrize("bad", ["http://x", "a b", "name/path"])
def test_allowed_hosts_are_plain_names(bad):
    with pytest.raises(ValueError):
        ApiConfig(allowed_hosts=[bad])


def test_a_flood_of_refused_requests_is_counted_not_recorded_row_by_row(sim_rig):
    from tenmon.daemon.api.audit import UNAUTHENTICATED_PER_MINUTE, AuditLog

    rig = sim_rig()
    log = AuditLog(rig.obs.store, rig.clock, keep_days=30)
    for i in range(UNAUTHENTICATED_PER_MINUTE + 40):
        log.record(client="10.0.0.9", method="POST", route="/api/v1/slit/open", body=b"{}",
                   status=401, code="unauthorized", auth="wrong")
    log.record(client="127.0.0.1", method="POST", route="/api/v1/stop", body=b"{}",
               status=200, code="ok", auth="ok")  # an operator's command is always recorded
    rig.clock.advance(61)
    log.record(client="10.0.0.9", method="POST", route="/api/v1/slit/open", body=b"{}",
               status=401, code="unauthorized", auth="wrong")
    assert rig.obs.store.flush(10)
    rows = rig.obs.store.db.execute("SELECT route, code, body FROM audit ORDER BY id").fetchall()
    assert len(rows) == UNAUTHENTICATED_PER_MINUTE + 3
    assert rows[UNAUTHENTICATED_PER_MINUTE][0] == "/api/v1/stop"
    assert rows[-2][1] == "flood" and rows[-2][2].startswith("40 more requests")
    assert rows[-1][1] == "unauthorized"
