"""Built-in hinted solver: any rotation/parity, offsets to half the field, SIP, and clean refusals."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from solve_synth import angle_diff, centre_error_arcsec, point_case

from tenmon.vision.render.sky import render_star_field, simple_wcs
from tenmon.vision.solve.base import SolveHint, describe_wcs
from tenmon.vision.solve.catalogs import SimulatedSky
from tenmon.vision.solve.detect import detect_sources
from tenmon.vision.solve.hinted import HintedSolver
from tenmon.config.vision import HintedSettings

SKY = SimulatedSky(seed=11)
OTHER_SKY = SimulatedSky(seed=12)


def check_solution(res, case, *, max_err=0.5, max_rms=0.3):
    assert res.solved, res.reason
    assert centre_error_arcsec(res, case.truth) < max_err
    assert res.rms_arcsec < max_rms
    assert res.parity == case.truth["parity"]
    assert angle_diff(res.rotation_deg, case.truth["rotation_deg"]) < 0.02
    assert res.scale_arcsec == pytest.approx(case.truth["scale_arcsec"], rel=1e-4)
    assert res.n_matched >= 6


@pytest.mark.parametrize("seed", range(101, 113))
def test_solves_11_arcmin_point_sets_any_rotation_and_parity(seed):
    case = point_case(seed, SKY)
    res = HintedSolver(SKY).solve(case.sources, case.shape, case.hint, timeout_s=5)
    check_solution(res, case)


def test_offsets_up_to_half_the_field_and_both_parities():
    solver = HintedSolver(SKY)
    parities = set()
    for seed in range(200, 206):
        case = point_case(seed, SKY, max_off_deg=5.5 / 60)
        # Force the hint to the edge of the allowed error: half the 11' field.
        pa = seed
        ra, dec = case.truth["ra_deg"], case.truth["dec_deg"]
        hint = SolveHint(ra + 5.5 / 60 * math.sin(pa) / math.cos(math.radians(dec)), dec + 5.5 / 60 * math.cos(pa),
                         radius_deg=5.6 / 60, scale_arcsec=case.truth["scale_arcsec"] * 1.045)
        res = solver.solve(case.sources, case.shape, hint, timeout_s=5)
        check_solution(res, case)
        parities.add(res.parity)
    assert parities == {"normal", "flipped"}


def test_sparse_frame_of_eight_stars_solves():
    sparse = SimulatedSky(seed=5, density_per_deg2=300.0, mag_faint=14.0)
    solved = 0
    for seed in range(300, 306):
        case = point_case(seed, sparse, n_bright=8, n_artifacts=2)
        if case.n_stars < 8:
            continue
        res = HintedSolver(sparse).solve(case.sources, case.shape, case.hint, timeout_s=5)
        if res.solved:  # when it answers it is right; it may decline on very few stars
            solved += 1
            assert centre_error_arcsec(res, case.truth) < 0.5
    assert solved >= 3


def test_fewer_than_six_stars_is_a_quick_clean_no():
    case = point_case(400, SKY, n_bright=5, n_artifacts=0)
    t = time.perf_counter()
    res = HintedSolver(SKY).solve(case.sources, case.shape, case.hint, timeout_s=5)
    assert not res.solved and "only 5 sources" in res.reason
    assert time.perf_counter() - t < 2.0


def test_wrong_catalogue_never_solves_and_answers_fast():
    worst = 0.0
    for seed in range(500, 520):
        case = point_case(seed, SKY)
        t = time.perf_counter()
        res = HintedSolver(OTHER_SKY).solve(case.sources, case.shape, case.hint, timeout_s=5)
        worst = max(worst, time.perf_counter() - t)
        assert not res.solved, res
        assert res.reason
    assert worst < 2.0


def test_no_hint_no_scale_and_timeout_reasons():
    case = point_case(600, SKY)
    solver = HintedSolver(SKY)
    assert "no position hint" in solver.solve(case.sources, case.shape, SolveHint(scale_arcsec=0.32)).reason
    no_scale = SolveHint(case.hint.ra_deg, case.hint.dec_deg, radius_deg=0.1)
    assert "no pixel-scale hint" in solver.solve(case.sources, case.shape, no_scale).reason
    res = solver.solve(case.sources, case.shape, case.hint, timeout_s=0.0)
    assert not res.solved and "timed out" in res.reason


def test_sip_distortion_is_fitted_when_the_field_needs_it():
    shape = (2048, 2048)
    base = simple_wcs((150.0, 20.0), shape=shape, pixel_scale_arcsec=0.32, rotation_deg=33.0)
    hdr = base.to_header()
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    hdr["A_ORDER"] = hdr["B_ORDER"] = 2
    # Barrel-like distortion of ~3 px at the corners: far above the 0.15 px centroid noise.
    hdr["A_2_0"], hdr["A_0_2"], hdr["B_1_1"] = 2.5e-6, 1.5e-6, -2e-6
    sip_wcs = WCS(hdr)
    sip_wcs.pixel_shape = (2048, 2048)
    case = point_case(700, SKY, wcs=sip_wcs, n_bright=300)
    tan_only = HintedSolver(SKY, HintedSettings(sip="never")).solve(case.sources, shape, case.hint)
    res = HintedSolver(SKY).solve(case.sources, shape, case.hint)
    assert res.solved and res.wcs.sip is not None
    assert res.rms_arcsec < 0.1
    assert not tan_only.solved or tan_only.rms_arcsec > 3 * res.rms_arcsec
    # The solution reproduces the distorted positions in the corners too.
    corners = np.array([[0.0, 0.0], [2047.0, 0.0], [0.0, 2047.0], [2047.0, 2047.0]])
    a = res.wcs.all_pix2world(corners, 0)
    b = sip_wcs.all_pix2world(corners, 0)
    sep = np.hypot((a[:, 0] - b[:, 0]) * math.cos(math.radians(20.0)), a[:, 1] - b[:, 1]) * 3600
    assert sep.max() < 0.3


def test_rendered_frame_end_to_end():
    """A real rendering (PSF, sky, noise, cosmic rays, hot pixels) of a 512 px, 11' field."""
    shape = (512, 512)
    truth_wcs = simple_wcs((210.0, 54.0), shape=shape, pixel_scale_arcsec=1.28, rotation_deg=117.0, flip=True)
    frame = render_star_field(wcs=truth_wcs, stars=SKY.stars_for_wcs(truth_wcs, shape), shape=shape,
                              fwhm_px=2.2, seed=41)
    sources = detect_sources(frame.image)
    hint = SolveHint(210.0 + 0.05, 54.0 - 0.04, radius_deg=0.1, scale_arcsec=1.28 * 0.97)
    res = HintedSolver(SKY).solve(sources, shape, hint, timeout_s=5)
    truth = describe_wcs(truth_wcs, shape)
    assert res.solved, res.reason
    assert centre_error_arcsec(res, truth) < 0.5
    assert res.rms_arcsec < 0.3
    assert res.parity == "flipped"


def test_result_json_has_the_cli_fields():
    case = point_case(800, SKY)
    res = HintedSolver(SKY).solve(case.sources, case.shape, case.hint)
    j = res.to_json()
    for k in ("solved", "ra_deg", "dec_deg", "rotation_deg", "scale_arcsec", "parity", "rms_arcsec",
              "n_matched", "solver", "elapsed_ms", "reason"):
        assert k in j
    assert j["solver"] == "hinted" and j["reason"] is None
    assert j["wcs"]["CTYPE1"].startswith("RA---TAN")


def test_bad_source_table_is_a_solve_error():
    from tenmon.core.errors import SolveError

    with pytest.raises(SolveError, match="no 'x' column"):
        HintedSolver(SKY).solve(Table({"u": [1.0]}), (10, 10), SolveHint(1.0, 1.0, scale_arcsec=1.0))
