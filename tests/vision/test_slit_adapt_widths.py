"""The site's edge half-widths of the azimuth refinement, chosen from labelled frames (no torch)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tenmon.vision.slit.render import render, site_params
from tenmon.vision.slit.polar import to_gray
from tenmon.vision.slit.adapt import Frame, angle_err, choose_half_widths, half_width_ranges
from tenmon.vision.slit.detector import DetectorSettings, SlitDetector
from tenmon.vision.slit.labels import FrameLabel
from tenmon.vision.slit.reading import SlitReading

T = datetime(2026, 11, 21, 13, tzinfo=timezone.utc)


def test_the_candidate_ranges_cover_narrow_to_wide_slits():
    ranges = half_width_ranges()
    assert all(len(r) == 9 and np.all(np.diff(r) > 0) for r in ranges)
    assert ranges[0][0] <= 0.03 and ranges[-1][-1] >= 0.17


def test_a_narrow_slit_gets_narrow_widths_and_the_refinement_then_finds_it():
    # a slit half as wide as the packaged range expects, with many ribs beside it
    p = site_params(320, 240, slit_width_frac=0.045, n_ribs=24, tube_alt_deg=5.0,
                    tube_az_deg=0.0, tube_pivot=(0.0, -0.3, -0.2))
    det = SlitDetector(DetectorSettings())
    frames = []
    rng = np.random.default_rng(3)
    for k, az in enumerate(np.linspace(10.0, 340.0, 12)):
        res = render(float(az), 1.0, p, seed=k)
        cal = res.truth.calibration
        lab = FrameLabel(Path(f"f{k}.png"), "open", 1.0, float(az + rng.normal(0, 0.2)))
        frames.append(Frame(lab, to_gray(res.image), SlitReading.unknown(T, source="test"), (0.0, 128.0, 255.0)))
    widths, pairs, rep = choose_half_widths(frames, cal, det)
    assert rep["frames"] == 12
    assert widths is not None and widths[0] <= 0.06, rep
    assert len(pairs) >= 10
    assert np.median([angle_err(a, lab) for a, lab in pairs]) < 0.5
    # the detector with these widths refines a guess 2 degrees off onto the slit
    site = SlitDetector(DetectorSettings(refine_half_widths=widths))
    m = site.maps(cal, frames[0].gray.shape)
    a, fit = site._refine(float(frames[0].label.azimuth_deg) + 2.0, m.fine.unwrap(frames[0].gray), m.fine.valid)
    assert fit is not None and angle_err(a, 10.0) < 0.7
