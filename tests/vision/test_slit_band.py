"""The slit band: geometry of the straightened slit, its labels, and the packaged band network."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tenmon.vision.slit.render import render, site_params
from tenmon.vision.slit.polar import to_gray
from tenmon.vision.slit.band import (BAND_T, BAND_U, DEFAULT_BAND_MODEL, BandReader, band_input,
                                     band_points, extract_band, frame_levels, row_labels)
from tenmon.vision.slit.detector import SlitDetector
from tenmon.vision.slit.features import MODEL_GEOMETRY
from tenmon.vision.slit.polar import StripMapper


def test_band_points_lie_on_the_dome_along_the_slit():
    e, n, u = band_points(30.0)
    assert np.allclose(e ** 2 + n ** 2 + u ** 2, 1.0)
    a = math.radians(30.0)
    centre = np.argmin(np.abs(BAND_U))
    # the centre column is in the slit's vertical plane (azimuth 30 / 210)
    across = e[:, centre] * math.cos(a) - n[:, centre] * math.sin(a)
    assert np.max(np.abs(across)) < 0.01
    # row t: elevation t on the slit's side up to the zenith, then down the far side
    k = int(np.argmin(np.abs(BAND_T - 45.5)))
    assert math.degrees(math.asin(u[k, centre])) == pytest.approx(45.5, abs=0.5)
    assert e[k, centre] * math.sin(a) + n[k, centre] * math.cos(a) > 0
    k2 = int(np.argmin(np.abs(BAND_T - 100.5)))
    assert e[k2, centre] * math.sin(a) + n[k2, centre] * math.cos(a) < 0


def test_row_labels_follow_the_opening_and_the_occlusion():
    seen = np.ones_like(BAND_T)
    seen[(BAND_T > 20) & (BAND_T < 30)] = 0.0
    lab = row_labels(0.5, 100.0, seen)
    assert (lab[BAND_T < 20] == 0).all()
    assert (lab[(BAND_T > 20) & (BAND_T < 30)] == 2).all()
    assert (lab[(BAND_T > 30) & (BAND_T < 50)] == 0).all()
    assert (lab[BAND_T > 50] == 1).all()


def _site_frame(az: float, frac: float, seed: int = 5):
    p = site_params(tube=False, illum_alt_deg=88.0, illum_width_deg=80.0)
    res = render(az, frac, p, seed=seed)
    return to_gray(res.image), res.truth.calibration


def test_the_open_slit_is_a_dark_stripe_down_the_band_at_night():
    gray, cal = _site_frame(200.0, 1.0)
    band, valid = extract_band(gray, cal, 200.0)
    assert valid.mean() > 0.9
    inside = np.abs(BAND_U) < 0.03
    flank = np.abs(BAND_U) > 0.15
    rows = (BAND_T > 5) & (BAND_T < 95)
    assert np.median(band[rows][:, inside]) + 20 < np.median(band[rows][:, flank])


def test_the_band_network_ships_with_the_package():
    assert DEFAULT_BAND_MODEL.exists() and DEFAULT_BAND_MODEL.stat().st_size < 2_000_000


@pytest.mark.parametrize("frac,state", [(0.0, "closed"), (0.5, "partial"), (1.0, "open")])
def test_packaged_band_network_reads_the_state_and_where_the_slit_is(frac, state):
    reader = BandReader()
    gray, cal = _site_frame(75.0, frac, seed=11)
    mm = StripMapper(cal, gray.shape, MODEL_GEOMETRY)
    levels = frame_levels(mm.unwrap(gray), mm.valid)
    at = reader.read(gray, cal, 75.0, levels)
    assert at.here > 0.5 and at.state == state
    if state == "partial":
        sky = at.row_probs[:, 0] > 0.5
        assert sky[BAND_T < 40].mean() > 0.9 and sky[(BAND_T > 60) & (BAND_T < 100)].mean() < 0.1
    off = reader.read(gray, cal, 75.0 + 90.0, levels)
    assert off.here < 0.5


def test_detector_answers_through_the_band_and_refuses_a_hidden_slit():
    det = SlitDetector()
    assert det.band is not None
    gray, cal = _site_frame(300.0, 0.4, seed=3)
    r = det.estimate(gray, cal)
    assert r.state == "partial" and r.source.endswith("+band")
    assert abs((r.azimuth_deg - 300.0 + 180) % 360 - 180) < 1.0
    assert r.open_fraction == pytest.approx(0.4, abs=0.08)
    assert r.details["band_here"] > 0.5
    # lens covered: nothing to read
    dark = np.full_like(gray, 3)
    assert det.estimate(dark, cal).state == "unknown"


def test_band_input_scales_by_the_frame_levels():
    band = np.full((len(BAND_T), len(BAND_U)), 100, np.uint8)
    valid = np.ones_like(band, bool)
    valid[:, :4] = False
    x = band_input(band, valid, (20.0, 60.0, 140.0))
    assert x.shape == (4, len(BAND_T), len(BAND_U))
    assert x[0, 0, 10] == pytest.approx((100 - 60) / 120)
    assert x[0, 0, 0] == 0.0 and x[1, 0, 0] == 0.0 and x[1, 0, 10] == 1.0


def test_a_box_on_the_wrong_azimuth_is_checked_and_the_slit_found_elsewhere():
    from datetime import datetime, timezone

    from tenmon.vision.slit.detector import Detection

    det = SlitDetector()
    gray, cal = _site_frame(140.0, 1.0, seed=8)
    maps = det.maps(cal, gray.shape)
    sm, sf = maps.model.unwrap(gray), maps.fine.unwrap(gray)
    now = datetime(2026, 11, 22, tzinfo=timezone.utc)
    # a confident box 40 degrees off, as YOLO gives on a rib: the band there shows no slit
    wrong = Detection(azimuth_deg=180.0, top_t_deg=100.0, cls=1, score=0.9,
                      probs=np.array([0.05, 0.9, 0.05]), box=(0, 0, 1, 1))
    det._cl_cache = None
    r = det._band_reading(wrong, 180.0, 0.9, None, {}, gray, cal, sm, maps.model.valid, sf,
                          maps.fine.valid, now)
    assert r.details["first_band_here"] < 0.5 and r.details["band_here"] > 0.9
    assert r.source == "search+band" and r.details["first_azimuth_deg"] == pytest.approx(180.0)
    assert abs((r.azimuth_deg - 140.0 + 180) % 360 - 180) < 1.0 and r.state == "open"
    # the same box on a frame whose slit is hidden under a lens cap: unknown, not 180
    det._cl_cache = None
    dark = np.full_like(gray, 2)
    dm = det.maps(cal, dark.shape)
    r2 = det._band_reading(wrong, 180.0, 0.9, None, {}, dark, cal, dm.model.unwrap(dark),
                           dm.model.valid, dm.fine.unwrap(dark), dm.fine.valid, now)
    assert r2.state == "unknown" and r2.azimuth_deg is None
