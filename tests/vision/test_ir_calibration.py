"""Calibration solving from frames at known dome azimuths, against the renderer's true camera."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tenmon.vision.slit.calibration import CalibrationError, calibrate, find_rotation_center
from tenmon.vision.slit.render import render, site_params
from tenmon.vision.slit.polar import dome_to_pixels
from tenmon.vision.slit.reading import angle_diff

AZIMUTHS = [15.0, 105.0, 200.0, 290.0]


def _frames(params, fraction=1.0):
    out = [render(a, fraction, params, seed=10 + k) for k, a in enumerate(AZIMUTHS)]
    return [r.image for r in out], out[0].truth.calibration


def _dome_base_radius(cal):
    x, y = dome_to_pixels(cal, np.arange(0.0, 360.0, 10.0), 0.0)
    return float(np.mean(np.hypot(x - cal.center_x, y - cal.center_y)))


CAMERAS = {
    "plain": dict(north_angle_deg=30.0, azimuth_sense=1),
    "mirrored-offset-tilted": dict(north_angle_deg=250.0, azimuth_sense=-1, optical_cx=300.0, optical_cy=250.0,
                                   camera_offset=(0.02, -0.01, -0.08), tilt_deg=1.0, tilt_dir_deg=40.0,
                                   projection="equisolid"),
}


@pytest.mark.parametrize("name", list(CAMERAS))
def test_calibration_recovers_the_camera(name):
    p = replace(site_params(640, 480, tube_alt_deg=5.0, tube_az_deg=200.0, tube_pivot=(0.0, -0.3, -0.2),
                            n_ribs=16), **CAMERAS[name])
    frames, truth = _frames(p)
    res = calibrate(frames, AZIMUTHS, projection=p.projection)
    cal = res.calibration
    hr = truth.horizon_radius
    assert abs(cal.center_x - truth.center_x) < 0.03 * hr
    assert abs(cal.center_y - truth.center_y) < 0.03 * hr
    assert cal.azimuth_sense == truth.azimuth_sense
    assert abs(angle_diff(cal.north_angle_deg, truth.north_angle_deg)) < 1.5
    # the horizon found is the dome's base as this camera sees it
    assert cal.horizon_radius == pytest.approx(_dome_base_radius(truth), rel=0.06)
    assert res.north_rms_deg < 1.5


def test_too_few_or_too_similar_frames_are_refused():
    p = site_params(320, 240)
    one = render(10.0, 1.0, p, seed=1).image
    with pytest.raises(CalibrationError):
        calibrate([one], [10.0])
    with pytest.raises(CalibrationError):
        find_rotation_center([one, one], [10.0, 15.0])
    with pytest.raises(CalibrationError):
        calibrate([one, one], [10.0])
