"""`tenmon nayuta locate` on simulated frames, and `tenmon nayuta sync` against a local HTTP server."""

from __future__ import annotations

import argparse
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tenmon.cli import nayuta as cli
from tenmon.drivers.nayuta_feed import SimulatedNayutaFeed
from tenmon.config.services import SimulatedSlitViewerSettings
from tenmon.core.errors import ApiError, TenmonError
from tenmon.vision.render.sky import render_star_field, simple_wcs, write_frame_fits
from tenmon.core.astro import separation_deg

T0 = datetime(2026, 11, 21, 14, 0, tzinfo=timezone.utc)
SKY = 11


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tenmon")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """A simulated slit-viewer frame (Nayuta's header) and a 60 cm frame pointed 2.5' away."""
    d = tmp_path_factory.mktemp("nayuta")
    feed = SimulatedNayutaFeed(SimulatedSlitViewerSettings(sky_seed=SKY, seed=2))
    ra, dec, _ = feed.nearest_star(150.0, 20.0)
    sv = feed.write(d, ra, dec, T0, name="sv.fits")
    shape = (1024, 1024)
    w = simple_wcs((ra + 0.03, dec - 0.025), shape=shape, pixel_scale_arcsec=0.64, rotation_deg=30.0)
    fr = render_star_field(wcs=w, stars=feed.sky.stars_for_wcs(w, shape), shape=shape, fwhm_px=3.1, sky_adu=300.0,
                           exposure_s=30.0, seed=3)
    f60 = write_frame_fits(fr, d / "f60.fits", date_obs=T0, mount_ra_deg=ra + 0.04, mount_dec_deg=dec - 0.02,
                           extra={"PIXSCALE": 0.64})
    f60_wcs = write_frame_fits(fr, d / "f60-wcs.fits", date_obs=T0, mount_ra_deg=ra + 0.04, mount_dec_deg=dec - 0.02,
                               include_wcs=True, extra={"PIXSCALE": 0.64})
    blank = feed.write(d, ra, dec, T0, name="blank.fits")
    from astropy.io import fits

    with fits.open(blank, mode="update") as h:  # a frame with no slit at all: a flat noisy sky
        h[0].data = np.random.default_rng(0).normal(200, 5, h[0].data.shape).astype(np.uint16)
    return {"sv": sv, "f60": f60, "f60_wcs": f60_wcs, "blank": blank, "ra": ra, "dec": dec}


def sep_arcsec(ra1, dec1, ra2, dec2):
    return float(separation_deg(np.array([ra1]), np.array([dec1]), ra2, dec2)[0] * 3600)


def test_locate_json_both_routes(frames, capsys):
    before = frames["sv"].read_bytes()
    rc = run(["nayuta", "locate", str(frames["sv"]), "--frame60", str(frames["f60"]), "--catalog", f"sim:{SKY}",
              "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 1
    rep = json.loads(out[0])
    assert list(rep)[1 : 1 + len(cli.LOCATE_FIELDS)] == list(cli.LOCATE_FIELDS)
    assert rep["method"] == "solve" and set(rep["routes"]) == {"solve", "register"}
    assert sep_arcsec(rep["target_ra_deg"], rep["target_dec_deg"], frames["ra"], frames["dec"]) < 1.0
    assert rep["slit_angle_deg"] == pytest.approx(90.0, abs=0.1)  # the simulated slit runs along y
    assert len(rep["target_xy"]) == 2 and rep["target_xy_60cm"] is not None
    assert isinstance(rep["mag_slit_viewer"], float) and isinstance(rep["mag_60cm"], float)
    assert rep["mag_slit_viewer_is_limit"] is True and rep["elapsed_ms"] > 0
    assert frames["sv"].read_bytes() == before  # input untouched


def test_locate_register_route_with_a_60cm_wcs_and_no_catalogue(frames, capsys):
    rc = run(["nayuta", "locate", str(frames["sv"]), "--frame60", str(frames["f60_wcs"]), "--route", "register",
              "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["method"] == "register" and rep["sv_solve"] is None
    assert sep_arcsec(rep["target_ra_deg"], rep["target_dec_deg"], frames["ra"], frames["dec"]) < 1.0


def test_locate_human_output(frames, capsys):
    assert run(["nayuta", "locate", str(frames["sv"]), "--catalog", f"sim:{SKY}"]) == 0
    text = capsys.readouterr().out
    assert "target located by solve" in text and "slit     angle" in text and "at least this bright" in text


def test_locate_without_any_route_is_not_located(frames, capsys):
    rc = run(["nayuta", "locate", str(frames["sv"]), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == cli.EXIT_NOT_LOCATED and rep["located"] is False and rep["target_ra_deg"] is None
    assert "no solver" in rep["reason"] and rep["target"]["found"] is True  # found on the slit, not on the sky


def test_locate_a_frame_without_slit(frames, capsys):
    rc = run(["nayuta", "locate", str(frames["blank"]), "--catalog", f"sim:{SKY}", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == cli.EXIT_NOT_LOCATED and rep["reason"].startswith("slit not found") and rep["slit_angle_deg"] is None


def test_locate_errors_name_the_problem(frames, tmp_path):
    with pytest.raises(TenmonError, match="missing.fits"):
        run(["nayuta", "locate", str(tmp_path / "missing.fits")])
    with pytest.raises(TenmonError, match="--route register needs --frame60"):
        run(["nayuta", "locate", str(frames["sv"]), "--route", "register"])
    with pytest.raises(TenmonError, match="both --ra and --dec"):
        run(["nayuta", "locate", str(frames["sv"]), "--ra", "10"])
    with pytest.raises(TenmonError, match="--catalog nope.ecsv"):
        run(["nayuta", "locate", str(frames["sv"]), "--catalog", "nope.ecsv"])


# --------------------------------------------------------------------------- sync


class _Daemon:
    """A local HTTP server standing in for tenmond's API: records requests, answers as told."""

    def __init__(self, status: int, answer: dict):
        self.requests: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length", 0))
                outer.requests.append((self.path, json.loads(self.rfile.read(n) or b"{}")))
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_sync_once_posts_and_prints(capsys):
    answer = {"ok": True, "target_ra_deg": 150.0049, "target_dec_deg": 20.0132, "separation_arcsec": 2.1}
    with _Daemon(200, answer) as d:
        assert run(["nayuta", "sync", "--url", d.url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == answer
        assert run(["nayuta", "sync", "--follow", "--url", d.url]) == 0
        text = capsys.readouterr().out
    assert d.requests == [("/api/v1/nayuta/sync", {"once": True}), ("/api/v1/nayuta/sync", {"once": False})]
    assert "following" in text and "separation_arcsec" in text


def test_sync_not_done_exits_2(capsys):
    with _Daemon(200, {"ok": False, "reason": "no slit-viewer frame"}) as d:
        assert run(["nayuta", "sync", "--once", "--url", d.url]) == cli.EXIT_NOT_LOCATED
    assert "no slit-viewer frame" in capsys.readouterr().out


def test_sync_against_a_daemon_without_the_endpoint():
    err = {"error": {"code": "not_found", "message": "POST /api/v1/nayuta/sync: Not Found"}}
    with _Daemon(404, err) as d:
        with pytest.raises(cli.NayutaSyncUnavailable, match="no Nayuta sync.*404") as exc:
            run(["nayuta", "sync", "--url", d.url])
    assert exc.value.status == 404 and isinstance(exc.value, ApiError)


def test_sync_passes_other_daemon_errors_through():
    err = {"error": {"code": "unsafe", "message": "weather unsafe: rain"}}
    with _Daemon(409, err) as d:
        with pytest.raises(ApiError, match="rain") as exc:
            run(["nayuta", "sync", "--url", d.url])
    assert exc.value.code == "unsafe" and not isinstance(exc.value, cli.NayutaSyncUnavailable)


def test_sync_once_and_follow_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        run(["nayuta", "sync", "--once", "--follow"])
    capsys.readouterr()


def test_sync_with_no_daemon_says_so():
    with pytest.raises(ApiError, match="no tenmon daemon answers"):
        run(["nayuta", "sync", "--url", "http://127.0.0.1:9", "--timeout", "2"])
