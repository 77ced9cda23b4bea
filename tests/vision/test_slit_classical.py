"""The model-free slit estimator: azimuth from the edge-pair profile, opening, honest unknowns."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tenmon.vision.slit.render import render, render_random, site_params
from tenmon.vision.slit.classical import ClassicalEstimator, estimate, fit_azimuth
from tenmon.vision.slit.reading import angle_diff


def _site(**kw):
    base = site_params(480, 360, tube_alt_deg=5.0, tube_az_deg=200.0, tube_pivot=(0.0, -0.3, -0.2),
                       north_angle_deg=75.0, azimuth_sense=1, n_ribs=16)
    return replace(base, **kw)


@pytest.mark.parametrize("az", [0.2, 88.0, 181.5, 271.0, 359.4])
def test_azimuth_of_an_open_slit(az):
    res = render(az, 1.0, _site(), seed=2)
    r = estimate(res.image, res.truth.calibration)
    assert r.source == "classical"
    assert r.state == "open"
    assert abs(angle_diff(r.azimuth_deg, az)) < 0.5
    assert r.confidence > 0.5


def test_closed_and_partly_open_slits():
    est = ClassicalEstimator()
    closed = render(140.0, 0.0, _site(), seed=3)
    r = est.estimate(closed.image, closed.truth.calibration)
    assert r.state == "closed" and abs(angle_diff(r.azimuth_deg, 140.0)) < 1.0
    part = render(140.0, 0.4, _site(), seed=3)
    r = est.estimate(part.image, part.truth.calibration)
    assert r.state == "partial"
    assert r.open_fraction == pytest.approx(0.4, abs=0.1)


@pytest.mark.parametrize("occlusion", ["lights_off", "lens_covered", "blinded"])
def test_unreadable_frames_are_unknown(occlusion):
    p = _site(occlusion=occlusion, cover_fraction=1.0, glare_radius_frac=0.8,
              illuminator=occlusion != "lights_off", ambient=0.0, sky_level=0.0002)
    res = render(60.0, 1.0, p, seed=4)
    r = estimate(res.image, res.truth.calibration)
    assert r.state == "unknown" and r.azimuth_deg is None


def test_refinement_window_finds_the_peak_near_a_guess():
    from tenmon.vision.slit.polar import StripMapper, to_gray
    from tenmon.vision.slit.classical import CLASSICAL_GEOMETRY

    res = render(359.0, 1.0, _site(), seed=5)
    g = to_gray(res.image)
    m = StripMapper(res.truth.calibration, g.shape, CLASSICAL_GEOMETRY)
    fit = fit_azimuth(m.unwrap(g), m.valid, CLASSICAL_GEOMETRY, around_deg=1.5, window_deg=4.0)
    assert abs(angle_diff(fit.azimuth_deg, 359.0)) < 0.5


def test_on_random_night_frames_the_azimuth_is_mostly_right():
    errs = []
    for seed in range(700, 724):
        res = render_random(seed, scene="night", occlusion="none", resolution=(480, 360))
        if not res.truth.slit_visible:
            continue
        r = estimate(res.image, res.truth.calibration)
        errs.append(np.inf if r.azimuth_deg is None else abs(angle_diff(r.azimuth_deg, res.truth.azimuth_deg)))
    errs = np.array(errs)
    assert len(errs) >= 15
    assert np.median(errs) < 1.0
