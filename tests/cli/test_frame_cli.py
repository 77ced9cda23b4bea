"""`tenmon frame process` and `tenmon clusters` through their argparse registration."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

import numpy as np
import pytest
from astropy.table import Table

from tenmon.cli import clusters as clusters_cli
from tenmon.cli import frame as frame_cli
from tenmon.core.errors import TenmonError
from tenmon.vision.render import sky as sr


def _run(argv):
    parser = argparse.ArgumentParser(prog="tenmon")
    sub = parser.add_subparsers(dest="command")
    frame_cli.register(sub)
    clusters_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def _frame(path, seed):
    w = sr.simple_wcs((60.0, 30.0), shape=(160, 160), pixel_scale_arcsec=0.32)
    cat = sr.random_star_catalog((60.0, 30.0), 0.012, density_per_deg2=200000, seed=seed)
    f = sr.render_star_field(wcs=w, stars=cat, shape=(160, 160), n_cosmic_rays=8, seed=seed)
    sr.write_frame_fits(f, path, date_obs=datetime(2026, 11, 21, 17, 0, tzinfo=timezone.utc), mount_ra_deg=60.0,
                        mount_dec_deg=30.0)
    return path


def test_process_one_file_json(tmp_path, capsys):
    p = _frame(tmp_path / "one.fits", 801)
    rc = _run(["frame", "process", str(p), "--out", str(tmp_path / "out"), "--json", "--gain", "2.5"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    js = json.loads(lines[0])
    assert {"frame", "n_cosmic_pixels", "n_sources", "fwhm_px", "background", "background_rms", "clusters",
            "products", "elapsed_ms", "timings_ms"} <= set(js)
    assert js["header"]["gain_e_per_adu"] == 2.5
    assert (tmp_path / "out" / "one.clean.fits").exists()


def test_process_directory_in_parallel_with_one_bad_frame(tmp_path, capsys):
    d = tmp_path / "night"
    d.mkdir()
    _frame(d / "a.fits", 802)
    _frame(d / "b.fit", 803)
    (d / "c.fits").write_bytes(b"corrupt")
    (d / "notes.txt").write_text("not a frame")
    rc = _run(["frame", "process", str(d), "--out", str(tmp_path / "out"), "--jobs", "2", "--json", "--no-preview"])
    assert rc == 1  # one frame failed
    out = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert sorted(o["frame"].rsplit("/", 1)[1] for o in out) == ["a.fits", "b.fit", "c.fits"]
    errs = [o for o in out if "error" in o]
    assert len(errs) == 1 and "c.fits" in errs[0]["error"]
    ok = [o for o in out if "error" not in o]
    assert all(o["products"]["preview"] is None for o in ok)


def test_human_output_and_errors(tmp_path, capsys):
    p = _frame(tmp_path / "h.fits", 804)
    assert _run(["frame", "process", str(p), "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "h.fits:" in text and "sources" in text and "FWHM" in text
    with pytest.raises(TenmonError, match="nope.fits: no such file"):
        _run(["frame", "process", str(tmp_path / "nope.fits")])
    with pytest.raises(TenmonError, match="--jobs 0"):
        _run(["frame", "process", str(p), "--jobs", "0"])
    with pytest.raises(TenmonError, match="calibration"):
        _run(["frame", "process", str(p), "--calibration", str(tmp_path / "nodir")])
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"x")
    with pytest.raises(TenmonError, match="bad.fits"):
        _run(["frame", "process", str(bad), "--out", str(tmp_path / "o")])


@pytest.fixture(scope="module")
def gaia_table(tmp_path_factory):
    d = tmp_path_factory.mktemp("gaia")
    t = sr.gaia_like_table(radius_deg=0.6, seed=810)
    t.write(d / "m67.ecsv")
    t.write(d / "m67.fits")
    t.write(d / "m67.vot", format="votable")
    t.write(d / "m67.csv")
    return d, t


def test_clusters_defaults_recover_the_open_cluster(gaia_table, capsys):
    d, t = gaia_table
    out = d / "labelled.ecsv"
    assert _run(["clusters", str(d / "m67.ecsv"), "--out", str(out), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["n_candidates"] == 1 and js["eps_chosen"] and js["min_samples_chosen"]
    assert js["features"] == ["ra", "dec", "parallax", "pmra", "pmdec"] and js["eps"] > 0 and js["min_samples"] >= 2
    lab = Table.read(out)
    assert len(lab) == len(t) and "cluster_id" in lab.colnames
    assert np.array_equal(lab["source_id"], t["source_id"])
    members = lab["cluster_id"] == 0
    assert (members & lab["true_member"]).sum() / lab["true_member"].sum() > 0.6
    assert set(np.unique(lab["cluster_id"])) == {-1, 0}


@pytest.mark.parametrize("name", ["m67.fits", "m67.vot", "m67.csv"])
def test_clusters_reads_every_table_format(gaia_table, capsys, name):
    d, _ = gaia_table
    assert _run(["clusters", str(d / name), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_candidates"] == 1


def test_clusters_options_and_errors(gaia_table, capsys):
    d, _ = gaia_table
    assert _run(["clusters", str(d / "m67.ecsv"), "--features", "pmra,pmdec", "--eps", "0.05",
                 "--min-samples", "15"]) == 0
    text = capsys.readouterr().out
    assert "eps 0.05" in text and "(given)" in text and "min_samples 15" in text
    with pytest.raises(TenmonError, match="not in the table: nope"):
        _run(["clusters", str(d / "m67.ecsv"), "--features", "nope"])
    with pytest.raises(TenmonError, match="no such file"):
        _run(["clusters", str(d / "missing.ecsv")])
    with pytest.raises(TenmonError, match="--eps"):
        _run(["clusters", str(d / "m67.ecsv"), "--eps", "-1"])
