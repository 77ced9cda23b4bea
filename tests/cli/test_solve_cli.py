"""`tenmon solve FILE`: JSON fields, exit status, hints from the header, a solved copy; real files fail cleanly."""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import datetime, timezone

import pytest
from astropy.io import fits

from tenmon.cli import solve as cli
from tenmon.core.errors import TenmonError
from tenmon.vision.render.sky import render_star_field, simple_wcs, write_frame_fits
from tenmon.vision.solve.base import RESULT_FIELDS, describe_wcs
from tenmon.core.astro import separation_deg
from tenmon.vision.solve.catalogs import SimulatedSky


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tenmon")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def sim_frame(tmp_path_factory):
    """A 512 px, 11' simulated frame; the header has the mount's (wrong by 3') position only."""
    shape = (512, 512)
    wcs = simple_wcs((250.0, 36.5), shape=shape, pixel_scale_arcsec=1.28, rotation_deg=200.0)
    frame = render_star_field(wcs=wcs, stars=SimulatedSky(seed=77).stars_for_wcs(wcs, shape), shape=shape, seed=5)
    path = tmp_path_factory.mktemp("frames") / "sim.fits"
    write_frame_fits(frame, path, date_obs=datetime(2026, 11, 21, 12, tzinfo=timezone.utc),
                     mount_ra_deg=250.0 + 0.04, mount_dec_deg=36.5 - 0.03)
    return path, describe_wcs(wcs, shape)


def test_solve_json(sim_frame, capsys, tmp_path):
    path, truth = sim_frame
    out = tmp_path / "solved.fits"
    rc = run(["solve", str(path), "--catalog", "sim:77", "--scale", "1.28", "--solver", "hinted",
              "--out", str(out), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["solved"] is True and rep["solver"] == "hinted"
    for k in RESULT_FIELDS:
        assert k in rep
    err = separation_deg(rep["ra_deg"], rep["dec_deg"], truth["ra_deg"], truth["dec_deg"]) * 3600
    assert err < 0.5 and rep["rms_arcsec"] < 0.3
    assert abs((rep["rotation_deg"] - truth["rotation_deg"] + 180) % 360 - 180) < 0.05
    assert rep["hint"]["ra_deg"] == pytest.approx(250.04) and rep["attempts"][0]["solved"] is True
    assert fits.getheader(out)["SOLVER"] == "hinted"
    # The frame's own FWHM (rendered at the default 2.5 px, cosmic rays and hot pixels left in),
    # not the 0.5 px that cosmic rays used to give.
    assert rep["fwhm_px"] == pytest.approx(2.5, abs=0.4)


def test_solve_human_output(sim_frame, capsys):
    path, _ = sim_frame
    assert run(["solve", str(path), "--catalog", "sim:77", "--scale", "1.28", "--solver", "hinted"]) == 0
    text = capsys.readouterr().out
    assert "solved by hinted" in text and "rotation" in text and "arcsec/px" in text
    assert "frame FWHM" in text


def test_wrong_catalogue_is_not_solved(sim_frame, capsys):
    path, _ = sim_frame
    t = time.perf_counter()
    rc = run(["solve", str(path), "--catalog", "sim:78", "--scale", "1.28", "--solver", "hinted", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == cli.EXIT_NOT_SOLVED and rep["solved"] is False and "no verified match" in rep["reason"]
    assert time.perf_counter() - t < 2.0 + 1.0  # solver under 2 s, plus extraction


@pytest.mark.parametrize("name, words", [("tiny.fits", "no pixel-scale hint"), ("noheader.fits", "no position hint")])
def test_real_frames_without_hints_fail_cleanly(test_data, capsys, name, words):
    t = time.perf_counter()
    rc = run(["solve", str(test_data / "fits" / name), "--catalog", "sim", "--solver", "hinted", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == cli.EXIT_NOT_SOLVED and rep["solved"] is False
    assert words in rep["reason"]
    assert rep["ra_deg"] is None and math.isfinite(rep["elapsed_ms"])
    assert time.perf_counter() - t < 2.0


def test_argument_errors(test_data, tmp_path):
    tiny = str(test_data / "fits" / "tiny.fits")
    with pytest.raises(TenmonError, match="both --ra and --dec"):
        run(["solve", tiny, "--ra", "10"])
    with pytest.raises(TenmonError, match="--solver"):
        run(["solve", tiny, "--solver", "magic"])
    with pytest.raises(TenmonError, match="file not found"):
        run(["solve", tiny, "--catalog", str(tmp_path / "none.ecsv")])
    with pytest.raises(TenmonError, match="not found"):
        run(["solve", str(tmp_path / "none.fits")])
    (tmp_path / "text.fits").write_text("not fits")
    with pytest.raises(TenmonError, match="not a readable FITS"):
        run(["solve", str(tmp_path / "text.fits")])
