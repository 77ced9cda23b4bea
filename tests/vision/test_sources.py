"""Background, source extraction, flags and frame quality on seeded synthetic frames with truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table
from scipy.spatial import cKDTree

from tenmon.core.errors import VisionError
from tenmon.vision.render import sky as sr
from tenmon.vision.frames import sources as src
from tenmon.vision.frames.sources import SourceFlag


def _field(seed, *, n=768, fwhm=2.5, psf="moffat", density=120000, **kw):
    w = sr.simple_wcs((210.0, -5.0), shape=(n, n), pixel_scale_arcsec=0.32, rotation_deg=seed * 13.0)
    cat = sr.random_star_catalog((210.0, -5.0), n * 0.32 / 3600 * 0.75, density_per_deg2=density,
                                 mag_bright=13.0, seed=seed)
    kw.setdefault("n_cosmic_rays", 0)
    kw.setdefault("n_hot_pixels", 0)
    kw.setdefault("bad_columns", ())
    return sr.render_star_field(wcs=w, stars=cat, shape=(n, n), fwhm_px=fwhm, psf=psf, seed=seed + 300, **kw)


@pytest.fixture(scope="module")
def frames():
    return [_field(s, fwhm=f, psf=p) for s, f, p in ((201, 2.5, "moffat"), (202, 2.8, "gaussian"),
                                                    (203, 2.3, "moffat"), (204, 3.0, "moffat"))]


def test_complete_above_snr_10_with_accurate_positions(frames):
    found = total = 0
    sq, n_pos = np.zeros(2), 0
    for f in frames:
        t = src.extract_sources(f.image, gain=f.gain, saturation_adu=f.saturation_adu)
        assert {"x", "y", "flux", "fwhm", "ellipticity", "flags", "snr"} <= set(t.colnames)
        tr = f.stars[f.stars["in_frame"]]
        d, i = cKDTree(np.column_stack([t["x"], t["y"]])).query(np.column_stack([tr["x"], tr["y"]]))
        sel = (np.asarray(tr["snr"]) >= 10) & ~np.asarray(tr["saturated"])
        found += int((sel & (d < 1.5)).sum())
        total += int(sel.sum())
        # Positions are judged on isolated stars: no other star within 3 FWHM brighter than 5 % of
        # its flux (a blend has no single true position), and unflagged detections.
        allxy = np.column_stack([f.stars["x"], f.stars["y"]])
        tree = cKDTree(allxy)
        iso = np.array([all(j == k or f.stars["flux_adu"][j] < 0.05 * fl
                            for j in tree.query_ball_point([x, y], 3 * f.fwhm_px))
                        for k, x, y, fl in zip(np.nonzero(f.stars["in_frame"])[0], tr["x"], tr["y"], tr["flux_adu"])])
        ok = sel & iso & (d < 1.5) & (np.asarray(t["flags"])[i] == 0)
        sq += [np.sum((np.asarray(t["x"])[i] - tr["x"])[ok] ** 2), np.sum((np.asarray(t["y"])[i] - tr["y"])[ok] ** 2)]
        n_pos += int(ok.sum())
    assert total > 150
    assert found / total >= 0.95
    rms = np.sqrt(sq / n_pos)
    assert np.all(rms <= 0.1), rms  # per axis


@pytest.mark.parametrize("psf,fwhm", [("gaussian", 2.5), ("moffat", 2.5), ("moffat", 3.5)])
def test_frame_fwhm_is_measured(psf, fwhm):
    f = _field(210, fwhm=fwhm, psf=psf)
    t = src.extract_sources(f.image, gain=f.gain)
    assert t.meta["fwhm_px"] == pytest.approx(fwhm, rel=0.12)
    clean = t[(t["flags"] == 0) & (t["snr"] > 30)]
    assert np.median(clean["fwhm"]) == pytest.approx(fwhm, rel=0.15)
    assert np.median(clean["ellipticity"]) < 0.15  # round stars


def test_kron_flux_recovers_total_flux_of_isolated_stars(frames):
    f = frames[0]
    t = src.extract_sources(f.image, gain=f.gain, saturation_adu=f.saturation_adu)
    tr = f.stars[f.stars["in_frame"] & ~f.stars["saturated"] & (f.stars["snr"] > 50)]
    d, i = cKDTree(np.column_stack([t["x"], t["y"]])).query(np.column_stack([tr["x"], tr["y"]]))
    ok = (d < 1.0) & (np.asarray(t["flags"])[i] == 0)
    ratio = np.asarray(t["flux"])[i][ok] / np.asarray(tr["flux_adu"])[ok]
    assert ok.sum() >= 10
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    assert np.all(np.asarray(t["flux_aper"])[i][ok] < np.asarray(t["flux"])[i][ok])  # 1-FWHM aperture < total


def test_flags_saturated_edge_and_bad_pixels():
    w = sr.simple_wcs((210.0, -5.0), shape=(256, 256), pixel_scale_arcsec=0.32)
    pts = {"sat": (128.0, 128.0, 9.0), "edge": (1.5, 60.0, 15.0), "bad": (60.0, 200.0, 15.0), "ok": (200.0, 60.0, 15.0)}
    ra, dec = w.all_pix2world([[x, y] for x, y, _ in pts.values()], 0).T
    cat = Table({"ra": ra, "dec": dec, "mag": [m for _, _, m in pts.values()]})
    f = sr.render_star_field(wcs=w, stars=cat, shape=(256, 256), n_cosmic_rays=0, n_hot_pixels=0, bad_columns=(),
                             seed=220)
    bad = np.zeros(f.image.shape, bool)
    bad[195:206, 61] = True
    t = src.extract_sources(f.image, mask=bad, gain=f.gain, saturation_adu=f.saturation_adu)

    def flags_at(x, y):
        d = np.hypot(t["x"] - x, t["y"] - y)
        return int(t["flags"][np.argmin(d)])

    assert flags_at(128, 128) & SourceFlag.SATURATED
    assert flags_at(1.5, 60) & SourceFlag.EDGE
    assert flags_at(60, 200) & SourceFlag.BAD_PIXEL
    assert flags_at(200, 60) == 0


def test_noise_only_frame_gives_a_typed_empty_table():
    rng = np.random.default_rng(230)
    img = rng.normal(1000.0, 10.0, (200, 200)).astype(np.float32)
    t = src.extract_sources(img, gain=1.0)
    assert len(t) == 0
    assert list(t.colnames) == list(src.empty_sources().colnames)
    assert t["x"].dtype == np.float64 and t["flags"].dtype == np.int64


def test_background_and_quality():
    f = _field(240, sky_adu=1200.0)
    bkg = src.measure_background(f.image)
    assert bkg.global_level == pytest.approx(1200.0, abs=3.0)
    assert bkg.global_rms == pytest.approx(np.median(f.noise_adu), rel=0.05)
    t = src.extract_sources(f.image, background=bkg, gain=f.gain)
    q = src.frame_quality(t, bkg, gain=f.gain, exposure_s=f.exposure_s, zero_point_mag=22.5 - 2.5 * math.log10(f.gain))
    assert q.n_sources == len(t) and q.fwhm_px == t.meta["fwhm_px"]
    # The limiting magnitude (SNR 5, instrumental zero point = the renderer's in ADU) sits where the
    # truth's SNR crosses 5.
    tr = f.stars
    near = tr[(tr["snr"] > 4) & (tr["snr"] < 6)]
    assert q.limiting_mag == pytest.approx(float(np.median(near["mag"])), abs=0.35)
    js = q.to_json()
    assert set(js) == {"fwhm_px", "background", "background_rms", "n_sources", "ellipticity", "limiting_mag",
                       "n_saturated"}


def test_bad_input_raises():
    with pytest.raises(VisionError):
        src.extract_sources(np.zeros(5))
    with pytest.raises(VisionError):
        src.measure_background(np.zeros((1, 1)))
