"""Polar correction: the camera model's round trips and the unwrapped strip, seam included."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tenmon.core.errors import VisionError
from tenmon.vision.slit.polar import (StripGeometry, StripMapper, dome_to_pixels, pixels_to_directions,
                                 radius_to_theta, slit_half_width_deg, theta_to_radius, to_gray, unwrap)
from tenmon.vision.slit.reading import PROJECTIONS, Calibration


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_radius_and_zenith_angle_are_inverse(projection):
    theta = np.linspace(0, 89.0, 50)
    r = theta_to_radius(theta, 200.0, projection)
    assert r[0] == 0 and np.all(np.diff(r) > 0)
    assert theta_to_radius(90.0, 200.0, projection) == pytest.approx(200.0)
    assert radius_to_theta(r, 200.0, projection) == pytest.approx(theta, abs=1e-6)


@pytest.mark.parametrize("sense", [1, -1])
def test_pixels_and_directions_round_trip(sense):
    cal = Calibration(center_x=310.0, center_y=250.0, horizon_radius=220.0, north_angle_deg=37.0,
                      azimuth_sense=sense)
    az = np.array([0.0, 45.0, 90.0, 200.0, 359.0])
    el = np.array([10.0, 30.0, 60.0, 5.0, 80.0])
    x, y = dome_to_pixels(cal, az, el)  # camera at the centre: dome point = direction
    az2, el2 = pixels_to_directions(cal, x, y)
    assert np.abs((az2 - az + 180) % 360 - 180) == pytest.approx(np.zeros(5), abs=1e-9)
    assert el2 == pytest.approx(el, abs=1e-9)
    # azimuth 0 at the horizon lies at image angle north_angle_deg (clockwise from up)
    x0, y0 = dome_to_pixels(cal, 0.0, 0.0)
    angle = np.degrees(np.arctan2(x0 - cal.center_x, -(y0 - cal.center_y))) % 360
    assert angle == pytest.approx(37.0)
    # azimuth 90 lies 90 degrees clockwise (sense +1) or counterclockwise (sense -1) of it
    x9, y9 = dome_to_pixels(cal, 90.0, 0.0)
    angle9 = np.degrees(np.arctan2(x9 - cal.center_x, -(y9 - cal.center_y))) % 360
    assert angle9 == pytest.approx((37.0 + sense * 90.0) % 360)


def test_parallax_of_an_offset_camera_is_applied():
    cal0 = Calibration(320, 240, 200, 0.0, 1)
    cal1 = Calibration(320, 240, 200, 0.0, 1, camera_offset_east=0.05)
    # a camera east of the centre sees the northern horizon slightly to the west (left of north)
    x0, _ = dome_to_pixels(cal0, 0.0, 0.0)
    x1, _ = dome_to_pixels(cal1, 0.0, 0.0)
    assert x1 < x0 - 5


def _radial_line_image(cal: Calibration, az: float, shape=(480, 640)) -> np.ndarray:
    img = np.full(shape, 40, np.uint8)
    t = np.linspace(0.0, 85.0, 400)
    x, y = dome_to_pixels(cal, az, t)
    pts = np.stack([x, y], -1).round().astype(np.int32)
    cv2.polylines(img, [pts], False, 255, 3)
    return img


@pytest.mark.parametrize("az", [0.3, 77.0, 181.0, 359.6])
def test_a_line_on_the_dome_is_one_column_of_the_strip_and_the_seam_is_padded(az):
    cal = Calibration(320, 240, 210, north_angle_deg=-20.0, azimuth_sense=-1)
    g = StripGeometry(width=800, height=100, pad_deg=20.0, t_max_deg=110.0)
    strip = unwrap(_radial_line_image(cal, az), cal, g)
    rows = (g.row_to_t(np.arange(g.height)) > 5) & (g.row_to_t(np.arange(g.height)) < 60)
    profile = strip[rows].astype(float).mean(axis=0)
    cols = np.flatnonzero(profile > 150)
    found = set(np.round(g.col_to_az(cols)).astype(int) % 360)
    assert round(az) % 360 in found or (round(az) + 1) % 360 in found or (round(az) - 1) % 360 in found
    # near the seam the padding shows the line twice, 360 degrees apart
    copies = [a for a in (az - 360, az, az + 360) if -g.pad_deg < a < 360 + g.pad_deg]
    for a in copies:
        c = int(round(float(g.az_to_col(a))))
        assert profile[max(c - 2, 0):c + 3].max() > 150


def test_strip_geometry_round_trips():
    g = StripGeometry()
    assert g.az_to_col(g.col_to_az(123.4)) == pytest.approx(123.4)
    assert g.t_to_row(g.row_to_t(42.0)) == pytest.approx(42.0)
    assert g.row_to_t(g.height - 0.5) == pytest.approx(0.0)
    assert g.col_to_az(-0.5) == pytest.approx(-g.pad_deg)


def test_mapper_refuses_other_frame_sizes_and_off_sensor_calibrations():
    cal = Calibration(320, 240, 200)
    m = StripMapper(cal, (480, 640))
    assert m.unwrap(np.zeros((480, 640), np.uint8)).shape == (m.geometry.height, m.geometry.width)
    with pytest.raises(VisionError):
        m.unwrap(np.zeros((240, 320), np.uint8))
    with pytest.raises(VisionError):
        StripMapper(Calibration(5000, 5000, 10), (480, 640))


def test_clipped_image_circle_marks_invalid_strip_pixels():
    cal = Calibration(320, 240, 320)  # horizon circle larger than the 480-high sensor
    m = StripMapper(cal, (480, 640))
    assert 0.3 < m.valid.mean() < 1.0
    assert m.valid[0].all()  # near the zenith everything is on the sensor


def test_slit_band_widens_towards_the_zenith():
    w = slit_half_width_deg(np.array([0.0, 45.0, 80.0, 89.0]), 0.1)
    assert w[0] == pytest.approx(np.degrees(np.arcsin(0.1)))
    assert np.all(np.diff(w) > 0) and w[-1] == pytest.approx(90.0)


def test_to_gray_accepts_bgr_bgra_gray_and_refuses_junk():
    bgr = np.zeros((4, 5, 3), np.uint8)
    assert to_gray(bgr).shape == (4, 5)
    assert to_gray(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5)
    g = np.zeros((4, 5), np.uint8)
    assert to_gray(g) is g
    with pytest.raises(VisionError):
        to_gray(np.zeros((0, 0), np.uint8))
    with pytest.raises(VisionError):
        to_gray(np.zeros((2, 2, 2), np.uint8))
