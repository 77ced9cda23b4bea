"""The operator page's server side, in-process on a real loopback HTTP server (aiohttp's test
server) over the simulated observatory on a FakeClock: its files and the API's guards, the live
stream (the one status model, following the dome, a slow client resynchronised and dropped
without holding anything up), the IR picture with the encoder's reading drawn where the slit is,
and a CCD frame processed by the real pipeline with its solve and pointing offset."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tenmon.cli.ops import format_status
from tenmon.daemon.api.server import build_app
from tenmon.daemon.api.page import PAGE_KEY
from tenmon.daemon.api.page_media import ir_overlay
from tenmon.statusview import status_view


async def _message(resp, timeout=20.0) -> tuple[str, dict]:
    """The next SSE message (event name, data) of a stream (comments skipped)."""
    kind, data = "message", ""
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), timeout)).decode()
        if line in ("\n", ""):
            if data:
                return kind, json.loads(data)
            if line == "":
                raise EOFError("stream ended")
            continue
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


async def _until(resp, pred, rig=None, tick_s=0.5, limit=60):
    """Read messages (ticking the rig between them) until ``pred(doc)``; the doc."""
    for _ in range(limit):
        kind, doc = await _message(resp)
        if pred(doc):
            return doc
        if rig is not None:
            rig.run(tick_s)
    raise AssertionError("the stream never showed it")


def _serve(rig, go, **env):
    async def main():
        app = build_app(rig.obs)
        push = app[PAGE_KEY]
        push.period_s = 0.05
        async with TestClient(TestServer(app)) as client:
            return await go(client, push)
    return asyncio.run(main())


def test_page_files_need_no_token_and_the_api_guards_still_hold(sim_rig):
    rig = sim_rig()

    async def go(client, push):
        token = rig.api_headers()  # made by build_app
        out = {}
        r = await client.get("/")
        out["index"] = (r.status, r.headers["Content-Type"], r.headers.get("X-Frame-Options"),
                        r.headers.get("Content-Security-Policy", ""), await r.text())
        for name in ("app.js", "style.css", "icon.svg"):
            r = await client.get(f"/page/{name}")
            out[name] = (r.status, len(await r.read()))
        out["missing"] = (await client.get("/page/nothing.js")).status
        out["evil_host"] = (await client.get("/", headers={"Host": "evil.example"})).status
        port = client.server.port
        own = {"Origin": f"http://127.0.0.1:{port}"}
        r = await client.post("/api/v1/dome/goto", json={"azimuth_deg": 45}, headers=own)
        out["no_token"] = (r.status, (await r.json())["error"]["code"])
        r = await client.post("/api/v1/dome/goto", json={"azimuth_deg": 45},
                              headers={**own, "Origin": "http://evil.example", **token})
        out["cross_site"] = r.status
        r = await client.post("/api/v1/dome/goto", data="azimuth_deg=45",
                              headers={**own, **token, "Content-Type": "text/plain"})
        out["form"] = r.status
        r = await client.post("/api/v1/dome/goto", json={"azimuth_deg": 45},
                              headers={**own, **token})
        out["with_token"] = (r.status, (await r.json())["status"]["dome"]["slewing"])
        return out

    out = _serve(rig, go)
    status, ctype, frame, csp, html = out["index"]
    assert status == 200 and ctype.startswith("text/html") and frame == "DENY"
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert '<script src="/page/app.js"' in html and "http" not in html.replace(
        "http://www.w3.org", "")  # nothing from another site
    assert all(out[n][0] == 200 and out[n][1] > 100 for n in ("app.js", "style.css", "icon.svg"))
    assert out["missing"] == 404 and out["evil_host"] == 403
    assert out["no_token"] == (401, "unauthorized")
    assert out["cross_site"] == 403 and out["form"] == 415
    assert out["with_token"] == (200, True)


def test_reads_of_the_page_need_the_token_where_reads_do(sim_rig, tmp_path):
    # reachable from other machines (which needs a token file named in the config)
    rig = sim_rig(TENMON_API__HOST='"0.0.0.0"',
                  TENMON_API__TOKEN_FILE=f'"{tmp_path / "remote.token"}"')

    async def go(client, push):
        out = {"index": (await client.get("/")).status,
               "js": (await client.get("/page/app.js")).status,
               "stream": (await client.get("/page/stream")).status,
               "ir": (await client.get("/page/ir.jpg")).status,
               "ccd": (await client.get("/page/ccd.jpg")).status}
        token = (tmp_path / "remote.token").read_text().strip()
        r = await client.get("/page/stream", headers={"Authorization": f"Bearer {token}"})
        out["stream_token"] = (r.status, (await _message(r))[0])
        r.close()
        return out

    out = _serve(rig, go)
    assert out["index"] == 200 and out["js"] == 200
    assert out["stream"] == 401 and out["ir"] == 401 and out["ccd"] == 401
    assert out["stream_token"] == (200, "snapshot")


def test_the_stream_carries_the_status_view_and_follows_the_dome(sim_rig):
    rig = sim_rig()

    async def go(client, push):
        r = await client.get("/page/stream")
        assert r.headers["Content-Type"] == "text/event-stream"
        kind, first = await _message(r)
        assert kind == "snapshot"
        await client.post("/api/v1/dome/goto", json={"azimuth_deg": 90},
                          headers=rig.api_headers())
        moving = await _until(r, lambda d: d["status"]["dome"]["slewing"]
                              and d["status"]["dome"]["azimuth_deg"] > 5, rig)
        arrived = await _until(r, lambda d: not d["status"]["dome"]["slewing"]
                               and abs(d["status"]["dome"]["azimuth_deg"] - 90) < 1.0, rig,
                               tick_s=2.0)
        r.close()
        return first, moving, arrived

    first, moving, arrived = _serve(rig, go)
    for doc in (first, moving, arrived):
        # one status model: the page's lines are exactly what `tenmon status` prints
        assert doc["view"] == status_view(doc["status"])
        assert doc["view"]["text"] == format_status(doc["status"])
    assert first["view"]["headline"]["safe"] is True and first["view"]["alarms"] == []
    assert [f["label"] for f in first["view"]["facts"]][:6] == ["dome", "slit", "cover", "mount",
                                                              "safety", "weather"]
    assert first["events"], "the snapshot carries the recorded events"
    assert "to 90.0°" in moving["view"]["facts"][0]["text"]
    assert arrived["seq"] > moving["seq"] > first["seq"]


def test_an_unsafe_verdict_is_an_alarm_on_the_stream(sim_rig):
    rig = sim_rig()

    async def go(client, push):
        r = await client.get("/page/stream")
        await _message(r)
        rig.obs.sim.set_weather("rain")
        doc = await _until(r, lambda d: not d["status"]["safety"]["safe"], rig)
        r.close()
        return doc

    doc = _serve(rig, go)
    assert doc["view"]["headline"]["level"] == "alarm"
    assert any(a.startswith("safety: UNSAFE: rain") for a in doc["view"]["alarms"])
    assert any("unsafe: rain" in e["message"] for e in doc["events"])


def test_a_slow_client_is_resynchronised_then_dropped_and_holds_nothing_up(sim_rig):
    rig = sim_rig()

    async def go(client, push):
        push.write_timeout_s = 2.0
        port = client.server.port
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        slow.setblocking(False)
        try:
            slow.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        await asyncio.sleep(0.1)
        slow.send(f"GET /page/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        fast = await client.get("/page/stream")
        seqs, worst_queue, ticks = [], 0, 0
        for _ in range(4000):  # bounded: until the slow client was resynced and dropped
            rig.run(0.1)
            ticks += 1
            worst_queue = max([worst_queue] + [c.queue.qsize() for c in push.clients])
            kind, doc = await _message(fast)
            seqs.append(doc["seq"])
            if push.stats["slow_writes"] >= 1 and len(push.clients) == 1:
                break
        fast.close()
        slow.close()
        return seqs, worst_queue, ticks, dict(push.stats)

    seqs, worst_queue, ticks, stats = _serve(rig, go)
    assert stats["resyncs"] >= 1, stats          # it fell behind and got the whole state instead
    assert stats["slow_writes"] >= 1, stats      # then its stalled write ended its stream
    assert worst_queue <= 8                      # never more than its bounded queue
    assert seqs == sorted(seqs) and len(seqs) == ticks  # the fast page saw every tick's push


def test_the_ir_picture_has_the_reading_drawn_where_the_slit_is(sim_rig):
    rig = sim_rig()
    rig.obs.dome_goto(200)
    rig.run(60, until=lambda: not rig.obs.dome.slewing)
    rig.obs.slit_open()
    rig.run(80, until=lambda: rig.obs.slit.state.value == "open")
    assert rig.obs.slit.state.value == "open"

    async def go(client, push):
        r = await client.get("/page/stream")
        doc = await _until(r, lambda d: (d["media"]["ir"] or {}).get("seq"), tick_s=0.0,
                           limit=400)
        img = await client.get("/page/ir.jpg")
        body = await img.read()
        r.close()
        return doc, img.status, img.headers["Content-Type"], body, push.media

    doc, status, ctype, body, media = _serve(rig, go)
    ir = doc["media"]["ir"]
    assert status == 200 and ctype == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (ir["height"], ir["width"])
    reading = ir["reading"]
    assert abs(reading["azimuth_deg"] - 200) < 2 and reading["state"] == "open"
    assert ir["overlay"]["band"] and ir["overlay"]["open"]
    # the band drawn at the read azimuth lies on the open slit: the darkest of 12 directions
    cal = media._sim_camera.calibration
    scale = ir["width"] / media._sim_camera.params.width

    def mean(az):
        poly = np.round(np.array(ir_overlay(cal, az, 0.0, scale)["band"])).astype(np.int32)
        mask = np.zeros(image.shape, np.uint8)
        cv2.fillPoly(mask, [poly], 1)
        return float(image[mask > 0].mean())

    assert ir["overlay"]["band"] == ir_overlay(cal, reading["azimuth_deg"],
                                               reading["open_fraction"], scale)["band"]
    others = [mean(reading["azimuth_deg"] + d) for d in range(30, 360, 30)]
    assert mean(reading["azimuth_deg"]) < 0.6 * min(others)


def _processed_frame(tmp_path):
    """A synthetic star field (the project's renderer) through the real frame pipeline."""
    from tenmon.daemon.services.frames import FrameRecord
    from tenmon.vision.frames import pipeline
    from tenmon.vision.render import sky as sr

    c = (300.0, 40.0)
    n = 384
    w = sr.simple_wcs(c, shape=(n, n), pixel_scale_arcsec=0.5, rotation_deg=10.0)
    cat = sr.random_star_catalog(c, n * 0.5 / 3600 * 0.75, density_per_deg2=40000, seed=7)
    f = sr.render_star_field(wcs=w, stars=cat, shape=(n, n), bias_adu=1000.0, overscan_px=16,
                             seed=8, n_cosmic_rays=10)
    path = tmp_path / "frame-0001.fits"
    sr.write_frame_fits(f, path, date_obs=datetime(2026, 11, 21, 15, 0, tzinfo=timezone.utc),
                        mount_ra_deg=300.01, mount_dec_deg=40.0, include_wcs=True,
                        object_name="test field")
    res = pipeline.process_frame(path, out_dir=tmp_path / "products").to_json()
    # the solve as the frame service's solver chain reports it (here: the field's true centre)
    res["solve"] = {"solved": True, "solver": "test", "ra_deg": 300.0, "dec_deg": 40.0,
                    "rms_arcsec": 0.3, "n_matched": 20, "mount_ra_deg": 300.01,
                    "mount_dec_deg": 40.0}
    return FrameRecord(str(path), True, {"target": "test field"}, res, None, None, None), res


def test_a_processed_ccd_frame_is_shown_with_its_solve_and_pointing_offset(sim_rig, tmp_path):
    rig = sim_rig()
    record, res = _processed_frame(tmp_path)

    async def go(client, push):
        r = await client.get("/page/stream")
        await _message(r)
        none_yet = (await client.get("/page/ccd.jpg")).status
        push.media.on_frame(record)  # as the frame service calls its listeners
        doc = await _until(r, lambda d: (d["media"]["ccd"] or {}).get("ready"), limit=400)
        img = await client.get("/page/ccd.jpg")
        body = await img.read()
        r.close()
        return none_yet, doc, img.status, body

    none_yet, doc, status, body = _serve(rig, go)
    ccd = doc["media"]["ccd"]
    assert none_yet == 404 and status == 200
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (ccd["height"], ccd["width"])
    assert ccd["n_sources"] == res["n_sources"] > 10 and ccd["target"] == "test field"
    assert ccd["solve"]["solved"] and ccd["solve"]["ra_deg"] == 300.0
    # solved minus the mount: 0.01 deg of RA west at Dec 40 = -27.6" east
    assert ccd["offset"]["east_arcsec"] == pytest.approx(-0.01 * np.cos(np.radians(40)) * 3600,
                                                         abs=0.1)
    assert ccd["offset"]["north_arcsec"] == 0.0
    # the preview shows the detected sources: the pipeline's green circles are in the picture
    b, g, r = (image[..., i].astype(int) for i in range(3))
    assert ((g > 150) & (r < 120) & (b < 120)).sum() > 50
