"""The frame pipeline end to end on small synthetic FITS frames and the real files in tests/data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from tenmon.core.errors import SolveError, VisionError
from tenmon.vision.frames import pipeline
from tenmon.vision.render import sky as sr
from tenmon.vision.frames.products import MASK_BAD, MASK_COSMIC

ISSUE_KEYS = {"frame", "n_cosmic_pixels", "n_sources", "fwhm_px", "background", "background_rms", "clusters",
              "products", "elapsed_ms", "timings_ms"}
PRODUCT_KEYS = {"clean", "mask", "sources", "clusters", "preview"}


def _write(tmp_path, name="f.fits", *, seed=501, n=512, cluster=True, wcs_in_header=True, **kw):
    c = (300.0, 40.0)
    w = sr.simple_wcs(c, shape=(n, n), pixel_scale_arcsec=0.32, rotation_deg=25.0)
    cat = sr.random_star_catalog(c, n * 0.32 / 3600 * 0.75, density_per_deg2=60000, seed=seed)
    truth = None
    if cluster:
        ra, dec = w.all_pix2world([[200.0, 300.0]], 0)[0]
        cat, truth = sr.inject_cluster(cat, center=(ra, dec), n_members=70, radius_deg=0.5 / 60,
                                       mag_bright=14, mag_faint=19, seed=seed + 1)
    kw.setdefault("n_cosmic_rays", 40)
    f = sr.render_star_field(wcs=w, stars=cat, shape=(n, n), bias_adu=1000.0, overscan_px=16, seed=seed + 2, **kw)
    p = tmp_path / name
    sr.write_frame_fits(f, p, date_obs=datetime(2026, 11, 21, 15, 0, tzinfo=timezone.utc), mount_ra_deg=300.01,
                        mount_dec_deg=40.0, include_wcs=wcs_in_header, object_name="test field")
    return p, f, truth, w


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipe")
    p, f, truth, w = _write(d)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    res = pipeline.process_frame(p, out_dir=d / "products")
    return p, f, truth, w, res, digest


def test_json_has_exactly_the_issue_fields_and_products_exist(processed):
    p, f, truth, w, res, digest = processed
    js = res.to_json()
    assert ISSUE_KEYS <= set(js)
    json.dumps(js)  # serialisable as it is
    assert js["frame"] == str(p)
    assert set(js["products"]) >= PRODUCT_KEYS
    for k in PRODUCT_KEYS:
        assert js["products"][k] and (p.parent / "products").samefile(pipeline.Path(js["products"][k]).parent)
    assert {"read", "calibrate", "cosmics", "sources", "clusters", "products"} <= set(js["timings_ms"])
    assert js["elapsed_ms"] >= sum(v for k, v in js["timings_ms"].items() if k != "lacosmic") * 0.99
    assert js["n_cosmic_pixels"] >= 40 and js["n_sources"] > 50
    assert js["fwhm_px"] == pytest.approx(f.fwhm_px, rel=0.15)
    assert js["background"] == pytest.approx(f.sky_adu, abs=5)  # overscan took the 1000 ADU bias off
    assert js["background_rms"] == pytest.approx(float(np.median(f.noise_adu)), rel=0.1)
    assert hashlib.sha256(p.read_bytes()).hexdigest() == digest  # the input is never modified
    assert not list((p.parent / "products").glob(".*"))  # no temporary files left


def test_cluster_candidate_in_json_with_sky_position(processed):
    _, f, truth, w, res, _ = processed
    js = res.to_json()
    assert js["wcs_source"] == "header"
    near = [c for c in js["clusters"] if np.hypot(c["x"] - 200, c["y"] - 300) < 31]
    assert len(near) == 1 and len(js["clusters"]) == 1
    c = near[0]
    assert set(c) == {"x", "y", "radius_px", "n_members", "significance", "ra", "dec"}
    assert c["n_members"] >= 20
    assert np.hypot(c["ra"] - truth.ra, (c["dec"] - truth.dec)) * 3600 < 10.0


def test_products_contents(processed):
    p, f, _, w, res, _ = processed
    with fits.open(res.products["clean"]) as h:
        assert h[0].data.shape == (512, 512) and h[0].data.dtype.kind == "f" and h[0].data.dtype.itemsize == 4
        assert h["MASK"].data.dtype == np.uint8
        mask = h["MASK"].data
        assert (mask & MASK_COSMIC).astype(bool).sum() == res.n_cosmic_pixels
        assert (mask & MASK_BAD)[:, f.bad_columns[0]].all()
        assert any("tenmon" in str(v) for v in h[0].header["HISTORY"])
        assert h[0].header["CTYPE1"].startswith("RA---TAN")
        assert h[0].header["OBJECT"] == "test field"
    with fits.open(res.products["mask"]) as h:
        assert np.array_equal(h[1].data, mask)
    t = Table.read(res.products["sources"], format="ascii.ecsv")
    assert {"x", "y", "flux", "fwhm", "ra", "dec", "flags"} <= set(t.colnames)
    assert len(t) == res.n_sources
    ra, dec = w.all_pix2world(np.column_stack([t["x"], t["y"]]), 0).T
    assert np.allclose(t["ra"], ra) and np.allclose(t["dec"], dec)
    ct = Table.read(res.products["clusters"], format="ascii.ecsv")
    assert len(ct) == len(res.clusters)
    reg = open(res.products["regions"]).read()
    assert reg.startswith("# Region file format: DS9") and reg.count("circle(") == len(t) + len(ct)
    png = open(res.products["preview"], "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_wcs_means_no_sky_columns_and_no_cluster_sky_position(tmp_path):
    p, *_ = _write(tmp_path, seed=510, cluster=True, wcs_in_header=False)
    res = pipeline.process_frame(p, out_dir=tmp_path / "out")
    js = res.to_json()
    assert js["wcs_source"] is None
    assert "ra" not in res.sources.colnames
    assert all("ra" not in c for c in js["clusters"])


@dataclass
class _Solved:
    wcs: object
    def to_json(self):
        return {"solved": self.wcs is not None, "solver": "test"}


def test_solver_hook_gives_the_wcs_and_merges_its_json(tmp_path):
    p, f, _, w, = _write(tmp_path, seed=520, cluster=False, wcs_in_header=False, n=256)[:4]
    calls = []

    def solver(*, image, sources, header):
        calls.append((image.shape, len(sources), header["RA"]))
        return _Solved(w)

    res = pipeline.process_frame(p, out_dir=tmp_path / "out", solver=solver)
    assert calls and calls[0][0] == (256, 256) and calls[0][2] == 300.01
    js = res.to_json()
    assert js["solved"] is True and js["solver"] == "test" and js["wcs_source"] == "solver"
    assert "ra" in res.sources.colnames and "solve" in js["timings_ms"]

    def unsolved(**_):
        return _Solved(None)

    js2 = pipeline.process_frame(p, out_dir=tmp_path / "out2", solver=unsolved).to_json()
    assert js2["solved"] is False and js2["wcs_source"] is None

    def broken(**_):
        raise SolveError("index files missing")

    js3 = pipeline.process_frame(p, out_dir=tmp_path / "out3", solver=broken).to_json()
    assert any("index files missing" in w_ for w_ in js3["warnings"])


def test_settings_override_header_gain_and_products_can_be_skipped(tmp_path):
    p, *_ = _write(tmp_path, seed=530, cluster=False, n=256)
    s = pipeline.PipelineSettings(gain_e_per_adu=3.0, read_noise_e=11.0)
    s.products.preview = False
    s.products.mask_fits = False
    res = pipeline.process_frame(p, out_dir=tmp_path / "out", settings=s)
    js = res.to_json()
    assert js["header"]["gain_e_per_adu"] == 3.0 and js["header"]["gain_from"] == "settings"
    assert js["header"]["read_noise_e"] == 11.0
    assert js["products"]["preview"] is None and js["products"]["mask"] is None
    assert js["products"]["clean"] is not None


@pytest.mark.parametrize("name", ["pole.fits", "tiny.fits", "noheader.fits", "sip-wcs.fit"])
def test_real_frames_process_or_warn(test_data, tmp_path, name):
    res = pipeline.process_frame(test_data / "fits" / name, out_dir=tmp_path)
    js = res.to_json()
    assert ISSUE_KEYS <= set(js)
    if name == "noheader.fits":
        assert any("GAIN" in w for w in js["warnings"])
    if name in ("pole.fits", "sip-wcs.fit"):
        assert js["wcs_source"] == "header"


def test_gmos_extension_and_its_cosmic_rays(test_data, tmp_path):
    s = pipeline.PipelineSettings(gain_e_per_adu=1.933, read_noise_e=4.24)
    s.calibration.detect_bad_columns = False
    res = pipeline.process_frame(test_data / "cosmic" / "gmos.fits", out_dir=tmp_path, settings=s)
    with fits.open(res.products["mask"]) as h:
        mask = (h[1].data & MASK_COSMIC).astype(bool)
    assert mask[41:72, 142:161].sum() >= 70 and mask[117:147, 35:43].sum() >= 70


def test_unreadable_input_raises(tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"not a fits file at all")
    with pytest.raises(VisionError, match="bad.fits"):
        pipeline.process_frame(bad, out_dir=tmp_path / "o")
    empty = tmp_path / "empty.fits"
    fits.PrimaryHDU().writeto(empty)
    with pytest.raises(VisionError, match="no 2-D image"):
        pipeline.process_frame(empty, out_dir=tmp_path / "o")


def test_names_of_products():
    assert pipeline.frame_stem("/x/night_001.fits.fz") == "night_001"
    assert pipeline.frame_stem("a.FIT") == "a"
    assert pipeline.is_fits_name("b.fts") and not pipeline.is_fits_name("c.txt")
    paths = pipeline.product_paths("/data/m.fits", "/p")
    assert str(paths["clean"]) == "/p/m.clean.fits" and str(paths["preview"]) == "/p/m.preview.png"
