"""The HTTP API in-process (aiohttp's test server on loopback): routes, JSON errors with codes."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tenmon.daemon.api.server import build_app
from tenmon.core.errors import CommandRefused


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
    rig.obs.sim.set_weather("rain")
    rig.run(1)
    status, body = _call(rig, "POST", "/api/v1/slit/open")
    assert status == 409 and body["error"]["code"] == "unsafe"
    assert "rain" in body["error"]["message"]
    status, body = _call(rig, "POST", "/api/v1/sim/fault", json={"name": "gremlins"})
    assert status == 400 and "unknown fault" in body["error"]["message"]


def test_events_query(sim_rig):
    rig = sim_rig()
    rig.obs.sim.set_weather("rain")
    rig.run(1)
    status, body = _call(rig, "GET", "/api/v1/events", params={"since": "2026-11-21T13:00:02Z"})
    assert status == 200
    msgs = [e["message"] for e in body["events"]]
    assert any("unsafe: rain" in m for m in msgs)
    assert all(e["time_utc"] >= "2026-11-21T13:00:02" for e in body["events"])
    status, body = _call(rig, "GET", "/api/v1/events", params={"since": "yesterday"})
    assert status == 400


def test_the_openapi_document_lists_every_route_with_its_rules(sim_rig):
    rig = sim_rig()

    async def go():
        app = build_app(rig.obs)
        served = {(r.method, r.resource.canonical) for r in app.router.routes()
                  if r.method not in ("HEAD",)
                  and r.resource.canonical.startswith("/api/v1")}  # not the operator page
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/api/v1/openapi.json")
            return served, resp.status, await resp.json()

    served, status, doc = asyncio.run(go())
    assert status == 200 and doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method != "get":
                assert op["security"] == [{"bearer": []}], path
                assert {"401", "403"} <= set(op["responses"]), path
    goto = doc["paths"]["/api/v1/dome/goto"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert goto["additionalProperties"] is False and goto["required"] == ["azimuth_deg"]
    assert goto["properties"]["azimuth_deg"]["type"] == "number"
    assert (goto["properties"]["azimuth_deg"]["minimum"],
            goto["properties"]["azimuth_deg"]["maximum"]) == (0, 360)
    audit = doc["paths"]["/api/v1/audit"]["get"]
    assert audit["security"] == [{"bearer": []}]
    assert doc["paths"]["/api/v1/status"]["get"]["security"] == [{}, {"bearer": []}]


def test_a_fault_on_a_channel_no_bank_has_is_refused_not_a_500(sim_rig):
    """Found by the fuzz: relay-stuck:99 raised the relay bank's InterlockError (a 500)."""
    rig = sim_rig()
    for name in ("relay-stuck:99", "relay-stuck:0", "gremlins", ""):
        status, body = _call(rig, "POST", "/api/v1/sim/fault", json={"name": name})
        assert status == 400 and body["error"]["code"] == "bad_request", (name, body)
    with pytest.raises(CommandRefused) as exc:  # the observatory itself: a refusal, not a crash
        rig.obs.sim.fault("relay-stuck:99")
    assert exc.value.code == "bad_request"
    status, body = _call(rig, "POST", "/api/v1/sim/fault", json={"name": "dome-stall",
                                                                 "clear": True})
    assert status == 409 and body["error"]["code"] == "not_active"
    status, body = _call(rig, "POST", "/api/v1/sim/fault", json={"name": "all", "clear": True})
    assert status == 200
