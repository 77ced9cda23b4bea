"""tenmon's sources against SExtractor on real frames; one extraction for pipeline and solver."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from astropy.io import fits
from scipy.spatial import cKDTree

from tenmon.vision.frames import sources as src
from tenmon.vision.frames.sextractor import agreement, find_program, run_sextractor
from tenmon.vision.render.sky import render_star_field, simple_wcs
from tenmon.vision.solve.catalogs import SimulatedSky
from tenmon.vision.solve.detect import detect_sources, header_gain_saturation

needs_sextractor = pytest.mark.skipif(find_program() is None,
                                      reason="source-extractor not installed (make test-deps installs it)")


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as h:
            hdu = next(x for x in h if x.data is not None and x.data.ndim == 2)
            return np.asarray(hdu.data, dtype=np.float32), hdu.header


@needs_sextractor
@pytest.mark.parametrize("name", ["monet_small.fits", "c4d_170316_062107_ooi_z_ls9.N2.fits"])
def test_agrees_with_sextractor_on_real_frames(test_data, name):
    img, hdr = _read(test_data / "sources" / name)
    gain, sat = header_gain_saturation(hdr)
    ref = run_sextractor(img, gain=gain, saturation_adu=sat)
    ours = src.extract_sources(img, gain=gain, saturation_adu=sat)
    a = agreement(ref, ours, min_snr=10.0, radius_px=1.0)
    assert a["n_ref"] >= 8, a
    assert a["fraction"] >= 0.95, a
    assert a["median_sep_px"] < 0.3, a


@needs_sextractor
def test_agreement_measure_sees_a_wrong_catalogue(test_data):
    img, _ = _read(test_data / "sources" / "monet_small.fits")
    ref = run_sextractor(img)
    ours = src.extract_sources(img)
    ours["x"] += 1.5  # every position off by 1.5 px: nothing may match
    assert agreement(ref, ours)["fraction"] == 0.0
    assert ref.meta["version"].startswith("Source Extractor")


def test_frame_fwhm_is_not_a_cosmic_ray(test_data, caplog):
    # A real HSC cut-out with its cosmic rays left in (as `tenmon solve` sees a raw frame): the
    # frame's FWHM is the stars' (~3 px), not the fit's floor of 0.5 px from a cosmic ray.
    img, _ = _read(test_data / "sources" / "hsc_crs.fits")
    with caplog.at_level(logging.WARNING, logger="tenmon.vision.frames.sources"):
        t = detect_sources(img)
    assert 2.0 < t.meta["fwhm_px"] < 4.5, t.meta["fwhm_px"]
    assert "doubtful" not in caplog.text


def test_solver_extraction_uses_the_frames_fwhm_on_a_raw_frame(caplog):
    # Cosmic rays and hot pixels, not cleaned: what `tenmon solve` is given.
    sky = SimulatedSky(seed=11)
    shape = (512, 512)
    wcs = simple_wcs((210.0, 54.0), shape=shape, pixel_scale_arcsec=1.28, rotation_deg=117.0, flip=True)
    frame = render_star_field(wcs=wcs, stars=sky.stars_for_wcs(wcs, shape), shape=shape, fwhm_px=2.2, seed=41)
    hdr = fits.Header({"GAIN": 1.5, "SATURATE": 60000.0})
    with caplog.at_level(logging.WARNING, logger="tenmon.vision.frames.sources"):
        t = detect_sources(frame.image, header=hdr)
    assert abs(t.meta["fwhm_px"] - 2.2) < 0.4, t.meta["fwhm_px"]
    assert "doubtful" not in caplog.text
    assert len(t) > 20
    # The same pixels through the frame pipeline's extractor give the same stars.
    full = src.extract_sources(frame.image, gain=1.5, saturation_adu=60000.0)
    assert len(full) == len(t)
    assert np.allclose(np.sort(np.asarray(full["x"])), np.sort(np.asarray(t["x"])))


def test_header_gain_and_saturation():
    assert header_gain_saturation(fits.Header({"EGAIN": 2.5, "SATLEVEL": 40000})) == (2.5, 40000.0)
    assert header_gain_saturation(fits.Header({"GAIN": "n/a"})) == (None, None)
    assert header_gain_saturation(None) == (None, None)


def test_defaults_are_sextractors_choices():
    s = src.SourceSettings()
    assert (s.threshold_sigma, s.min_area_px, s.deblend_nthresh, s.deblend_cont) == (1.5, 5, 32, 0.005)
    assert (s.clean, s.clean_param, s.detection_filter) == (True, 1.0, "default")
    assert (s.background_box_px, s.background_filter_px) == (64, 3)
    assert np.array_equal(src.DEFAULT_CONV, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_extended_objects_keep_the_isophotal_barycentre():
    # An elongated "galaxy" beside a star: the galaxy keeps SExtractor's barycentre (X_IMAGE),
    # the star gets a refined position close to its truth.
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:128, 0:128].astype(float)
    img = rng.normal(100.0, 3.0, (128, 128))
    u, v = (xx - 40.3), (yy - 60.7)
    c, s_ = np.cos(0.5), np.sin(0.5)
    img += 400.0 * np.exp(-0.5 * (((c * u + s_ * v) / 7.0) ** 2 + ((-s_ * u + c * v) / 2.0) ** 2))
    img += 3000.0 * np.exp(-0.5 * ((xx - 95.2) ** 2 + (yy - 70.4) ** 2) / 1.2 ** 2)
    t = src.extract_sources(img.astype(np.float32), gain=2.0)
    gal = t[np.argmin(np.hypot(t["x"] - 40.3, t["y"] - 60.7))]
    star = t[np.argmin(np.hypot(t["x"] - 95.2, t["y"] - 70.4))]
    assert gal["flags"] & src.SourceFlag.ELONGATED
    bkg = src.measure_background(img.astype(np.float32))
    raw = src._detect(np.ascontiguousarray(img - bkg.level, dtype=np.float32), bkg.global_rms, None,
                      src.SourceSettings())
    j = np.argmin(np.hypot(raw["x"] - 40.3, raw["y"] - 60.7))
    assert abs(gal["x"] - raw["x"][j]) < 1e-6 and abs(gal["y"] - raw["y"][j]) < 1e-6
    assert np.hypot(star["x"] - 95.2, star["y"] - 70.4) < 0.15


def test_detections_in_a_galaxy_kept_by_sextractors_snr(test_data):
    # Inside M51's disc the local sky rms is several times the global one: the aperture SNR
    # (local noise) of some detections is below min_snr while SExtractor's is above it.
    img, _ = _read(test_data / "sources" / "M51.16.Mono.fits")
    t = src.extract_sources(img)
    snr, snr_auto = np.asarray(t["snr"]), np.asarray(t["snr_auto"])
    assert np.all((snr >= 5.0) | (snr_auto >= 5.0))
    assert np.sum((snr < 5.0) & (snr_auto >= 5.0)) >= 5  # kept only by SExtractor's definition


def test_local_noise_threshold_is_available(test_data):
    # A site with a strong sky gradient may prefer the local rms map: fewer detections where the
    # sky is noisier (M51's disc), the same stars elsewhere.
    img, _ = _read(test_data / "sources" / "M51.16.Mono.fits")
    glob = src.extract_sources(img)
    loc = src.extract_sources(img, settings=src.SourceSettings(threshold_noise="local"))
    assert 0.5 * len(glob) < len(loc) < len(glob)
    assert np.all((np.asarray(loc["snr"]) >= 5.0) | (np.asarray(loc["snr_auto"]) >= 5.0))


@needs_sextractor
@pytest.mark.parametrize("name", ["c4d_131122_030338_ooi_z_ls9.S21.fits", "hsc_crs.fits"])
def test_frames_without_a_measured_psf_keep_the_barycentres(test_data, name):
    # Fewer than 3 stars to fit a PSF: the frame FWHM is a guess (a 100x100 DECam cut-out with 3
    # objects, ~13 px; an HSC cut-out whose brightest objects are cosmic rays). A centroid window
    # or a PSF model of that guess moved a blended object 2.5 px and a cosmic-ray worm 1.2 px;
    # without a measured PSF every object keeps its isophotal barycentre, SExtractor's X_IMAGE.
    img, hdr = _read(test_data / "sources" / name)
    gain, sat = header_gain_saturation(hdr)
    ref = run_sextractor(img, gain=gain, saturation_adu=sat)
    ours = src.extract_sources(img, gain=gain, saturation_adu=sat)
    a = agreement(ref, ours, min_snr=10.0, radius_px=1.0)
    assert a["n_matched"] == a["n_ref"], a
    bkg = src.measure_background(img)
    raw = src._detect(np.ascontiguousarray(img - bkg.level, dtype=np.float32), bkg.global_rms, None,
                      src.SourceSettings())
    d, _ = cKDTree(np.column_stack([raw["x"], raw["y"]])).query(np.column_stack([ours["x"], ours["y"]]))
    assert np.all(d < 1e-6)


def test_neighbours_pixels_are_masked_in_the_kron_flux():
    # A faint star on the wing of a bright one (Moffat PSFs, 15 px apart; deblended): the faint
    # star's Kron aperture reaches into the bright star. SExtractor leaves the neighbour's pixels
    # out (MASK_TYPE CORRECT); without that the faint star's flux is many times its own.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:96, 0:96].astype(float)
    img = rng.normal(100.0, 3.0, (96, 96))
    beta, fwhm = 2.5, 3.0
    al = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    for x0, y0, f in ((30.2, 48.3, 1e6), (45.1, 48.6, 3e4)):
        img += f * (beta - 1) / (np.pi * al**2) * (1 + ((xx - x0) ** 2 + (yy - y0) ** 2) / al**2) ** -beta
    img = img.astype(np.float32)
    for masked, lo, hi in ((True, 0.8, 1.5), (False, 3.0, np.inf)):
        t = src.extract_sources(img, gain=2.0, settings=src.SourceSettings(mask_neighbours=masked))
        faint = t[np.argmin(np.hypot(t["x"] - 45.1, t["y"] - 48.6))]
        assert np.hypot(faint["x"] - 45.1, faint["y"] - 48.6) < 0.3
        assert lo < faint["flux"] / 3e4 < hi, (masked, faint["flux"])


def test_faint_object_on_a_galaxy_keeps_sextractors_snr(test_data):
    # Inside M51 the mesh background sits above the sky around a faint object (SExtractor: SNR
    # 11.4 at 513.03, 488.58, 1-based 514.03, 489.58): its Kron radius cannot be measured (first
    # moment <= 0), and SExtractor then uses its minimum aperture, 3.5 isophotal a and b.
    img, _ = _read(test_data / "sources" / "M51.16.Mono.fits")
    t = src.extract_sources(img)
    d = np.hypot(np.asarray(t["x"]) - 513.03, np.asarray(t["y"]) - 488.58)
    j = int(np.argmin(d))
    assert d[j] < 0.5
    assert 6.0 < t["snr_auto"][j] < 20.0, t["snr_auto"][j]
