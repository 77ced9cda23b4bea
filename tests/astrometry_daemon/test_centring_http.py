"""`tenmon center` and `tenmon nayuta sync` end to end: the CLI in a thread, against the daemon's
aiohttp app on a real local port, with the simulated observatory ticking in the same event loop."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest
from aiohttp import web

from tenmon.cli import center as center_cli
from tenmon.cli import nayuta as nayuta_cli
from tenmon.daemon.api.server import build_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    center_cli.register(sub)
    nayuta_cli.register(sub)
    return p


async def _serve(r, body):
    """Serve the observatory's API, tick it until ``body(url, session)`` returns; the session
    sends the API token, as the CLI finds it."""
    port = _free_port()
    runner = web.AppRunner(build_app(r.obs), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    finished = False
    ticker = asyncio.create_task(r.run(lambda: finished, sim_s=1e9, wall_s=300))
    try:
        async with aiohttp.ClientSession(headers=r.base.api_headers()) as session:
            return await body(f"http://127.0.0.1:{port}", session)
    finally:
        finished = True
        await ticker
        await runner.cleanup()


@pytest.fixture
def rig(rig, monkeypatch):
    """conftest's ``rig``; the CLI run in-process then finds the API token as an operator's
    does, from the data directory of the daemon's config (the rig's, as
    TENMON_PATHS__DATA_DIR)."""
    def make(**kw):
        r = rig(**kw)
        monkeypatch.setenv("TENMON_PATHS__DATA_DIR", str(r.obs.config.paths.data_dir))
        return r
    return make


def _cli(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


def test_tenmon_center_end_to_end(rig, capsys):
    r = rig(nayuta=False)
    ra, dec = (r.lst_deg() - 20.0) % 360.0, 45.0
    r.set_pointing_error(ra, dec, 5.0, seed=3)
    cli_thread = ThreadPoolExecutor(max_workers=1)

    async def body(url, s):
        async with s.get(url + "/api/v1/center") as resp:
            assert resp.status == 200 and (await resp.json())["job"] is None
        async with s.post(url + "/api/v1/center", json={"ra_deg": ra, "dec_deg": 95}) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"
        async with s.post(url + "/api/v1/center", json={"ra_deg": ra}) as resp:
            err = (await resp.json())["error"]
            assert resp.status == 400 and "dec_deg" in err["message"]
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(cli_thread, _cli, [
            "center", f"{ra}", f"{dec}", "--url", url, "--max-tries", "3", "--poll", "0.2"])
        human = capsys.readouterr().out
        code_json = await loop.run_in_executor(cli_thread, _cli, [
            "center", f"{ra}", f"{dec}", "--url", url, "--json", "--poll", "0.2"])
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        async with s.get(url + "/api/v1/center") as resp:
            last = (await resp.json())["job"]
        async with s.post(url + "/api/v1/center/abort") as resp:
            assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_running"
        async with s.get(url + "/api/v1/status") as resp:
            status = await resp.json()
        return code, human, code_json, lines, last, status

    code, human, code_json, lines, last, status = asyncio.run(_serve(r, body))
    cli_thread.shutdown()
    assert code == 0, human
    assert "try 1:" in human and "synced the mount" in human and "centred" in human
    assert human.strip().splitlines()[-1].startswith("done: within 10\"")
    assert r.true_separation_arcsec(ra, dec) < 10.0
    # already centred: the second job is done at its first try
    assert code_json == 0 and lines[-1]["state"] == "done" and len(lines[-1]["tries"]) == 1
    assert [x["try"] for x in lines[:-1]] == [1] and lines[0]["action"] == "done"
    assert last["id"] == lines[-1]["id"]
    assert status["centring"]["state"] == "done"


def test_tenmon_center_refused_exits_with_the_reason(rig):
    r = rig(nayuta=False, open_dome=False)
    cli_thread = ThreadPoolExecutor(max_workers=1)

    async def body(url, s):
        loop = asyncio.get_running_loop()

        def run():
            with pytest.raises(Exception) as exc:
                _cli(["center", f"{r.lst_deg():.4f}", "35", "--url", url])
            return exc.value

        return await loop.run_in_executor(cli_thread, run)

    exc = asyncio.run(_serve(r, body))
    cli_thread.shutdown()
    assert getattr(exc, "code", None) == "not_open" and getattr(exc, "status", None) == 409
    assert "open the slit and cover first" in str(exc)


def test_tenmon_nayuta_sync_end_to_end(rig, capsys):
    r = rig()
    cli_thread = ThreadPoolExecutor(max_workers=1)

    async def body(url, s):
        ra, dec = (r.lst_deg() + 10.0) % 360.0, 40.0
        async with s.post(url + "/api/v1/sim/nayuta", json={"ra_deg": ra, "dec_deg": dec}) as resp:
            assert resp.status == 200, await resp.text()
            star = await resp.json()
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(cli_thread, _cli, ["nayuta", "sync", "--url", url,
                                                             "--json"])
        answer = json.loads(capsys.readouterr().out)
        async with s.get(url + "/api/v1/nayuta") as resp:
            state = await resp.json()
        return code, answer, star, state

    code, answer, star, state = asyncio.run(_serve(r, body))
    cli_thread.shutdown()
    assert code == 0 and answer["ok"] is True, answer
    assert answer["id"] == state["id"] and state["state"] == "done"
    assert r.true_separation_arcsec(star["ra_deg"], star["dec_deg"]) < 10.0
    for key in ("target_ra_deg", "target_dec_deg", "route", "tries", "final_separation_arcsec",
                "mag_slit_viewer", "mag_60cm", "elapsed_s"):
        assert answer[key] is not None, key


def test_service_routes_follow_the_api_rules(rig):
    """Centring and Nayuta routes take the same strict input, token and content type as the
    core routes (one shared set of rules: daemon.api_kit)."""
    r = rig()

    async def body(url, s):
        out = []
        for path, payload in [
            ("/api/v1/center", {"ra_deg": True, "dec_deg": 40}),
            ("/api/v1/center", {"ra_deg": 10, "dec_deg": 40, "max_tries": "3"}),
            ("/api/v1/center", {"ra_deg": 10, "dec_deg": 40, "max_tries": 2.5}),
            ("/api/v1/center", {"ra_deg": 10, "dec_deg": 40, "speed": 1}),
            ("/api/v1/center/abort", {"reason": 5}),
            ("/api/v1/nayuta/sync", {"once": "false"}),
            ("/api/v1/nayuta/sync", {"wait_s": -1}),
            ("/api/v1/sim/nayuta", {"ra_deg": True, "dec_deg": 1}),
        ]:
            async with s.post(url + path, json=payload) as resp:
                out.append((path, resp.status, (await resp.json())["error"]["code"]))
        async with s.post(url + "/api/v1/center", data="ra=1", headers={
                "Content-Type": "application/x-www-form-urlencoded"}) as resp:
            out.append(("form", resp.status, (await resp.json())["error"]["code"]))
        async with aiohttp.ClientSession() as bare:  # no token
            async with bare.post(url + "/api/v1/nayuta/stop", json={}) as resp:
                out.append(("no token", resp.status, (await resp.json())["error"]["code"]))
        return out

    out = asyncio.run(_serve(r, body))
    assert [x[1:] for x in out] == [(400, "bad_request")] * 8 + [
        (415, "unsupported_media_type"), (401, "unauthorized")], out
    assert r.service.job is None and r.obs.nayuta.run is None
