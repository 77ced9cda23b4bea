"""The HTTP API in-process (aiohttp's test server on loopback): routes, JSON errors with codes."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from tenmon.daemon.api import build_app


def _call(rig, method, path, **kw):
    """One request; commands carry the token as the CLI finds it."""
    async def go():
        async with TestClient(TestServer(build_app(rig.obs))) as client:
            if method != "GET":
                kw["headers"] = {**rig.api_headers(), **kw.get("headers", {})}
            resp = await client.request(method, path, **kw)
            return resp.status, await resp.json()
    return asyncio.run(go())


def test_status_has_the_documented_fields(sim_rig):
    rig = sim_rig()
    status, body = _call(rig, "GET", "/api/v1/status")
    assert status == 200
    assert body["mode"] == "simulated" and body["time_utc"].startswith("2026-")
    for key in ("azimuth_deg", "slewing", "at_home", "at_park"):
        assert key in body["dome"]
    assert {"state", "open_fraction"} <= set(body["slit"])
    assert "state" in body["cover"]
    assert {"ra_deg", "dec_deg", "alt_deg", "az_deg", "slewing", "parked", "tracking"} <= set(
        body["mount"])
    assert body["safety"]["safe"] is True and body["safety"]["reasons"] == []


def test_commands_and_error_codes(sim_rig):
    rig = sim_rig()
    status, body = _call(rig, "POST", "/api/v1/dome/goto", json={"azimuth_deg": 90})
    assert status == 200 and body["ok"] and body["status"]["dome"]["slewing"]
    status, body = _call(rig, "POST", "/api/v1/dome/goto", json={"azimuth_deg": "east"})
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert "azimuth_deg" in body["error"]["message"]
    status, body = _call(rig, "POST", "/api/v1/dome/goto", data="{not json",
                         headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body = _call(rig, "GET", "/api/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"
    rig.obs.sim_weather("rain")
    rig.run(1)
    status, body = _call(rig, "POST", "/api/v1/slit/open")
    assert status == 409 and body["error"]["code"] == "unsafe"
    assert "rain" in body["error"]["message"]
    status, body = _call(rig, "POST", "/api/v1/sim/fault", json={"name": "gremlins"})
    assert status == 400 and "unknown fault" in body["error"]["message"]


def test_events_query(sim_rig):
    rig = sim_rig()
    rig.obs.sim_weather("rain")
    rig.run(1)
    status, body = _call(rig, "GET", "/api/v1/events", params={"since": "2026-11-21T13:00:02Z"})
    assert status == 200
    msgs = [e["message"] for e in body["events"]]
    assert any("unsafe: rain" in m for m in msgs)
    assert all(e["time_utc"] >= "2026-11-21T13:00:02" for e in body["events"])
    status, body = _call(rig, "GET", "/api/v1/events", params={"since": "yesterday"})
    assert status == 400
