"""Calibration hooks: overscan and trim from the header or settings, masters, bad columns."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from tenmon.core.errors import VisionError
from tenmon.vision.frames import calibration as cal


def _raw(seed=401, ny=100, nx=120, over=20, bias=1000.0):
    rng = np.random.default_rng(seed)
    sky = 300.0 + rng.normal(0, 5, (ny, nx))
    gradient = np.linspace(0, 20, ny)[:, None]  # a bias that drifts along the rows
    data = np.hstack([sky + bias + gradient, bias + gradient + rng.normal(0, 3, (ny, over))])
    return data.astype(np.float32)


def test_overscan_subtracted_per_row_and_trimmed_from_the_header():
    raw = _raw()
    h = fits.Header({"BIASSEC": "[121:140,1:100]", "TRIMSEC": "[1:120,1:100]"})
    r = cal.calibrate(raw, h, settings=cal.CalibrationSettings(detect_bad_columns=False))
    assert r.image.shape == (100, 120)
    assert np.median(r.image) == pytest.approx(300.0, abs=1.5)
    # The row-wise drift is gone: top and bottom rows agree.
    assert np.median(r.image[:10]) == pytest.approx(np.median(r.image[-10:]), abs=2.5)
    assert r.bias_level_adu == pytest.approx(1010.0, abs=2.0)
    assert r.saturation_adu == pytest.approx(65535.0 - r.bias_level_adu)
    assert any("overscan" in line for line in r.history) and any("trimmed" in line for line in r.history)


def test_overscan_without_trim_drops_the_edge_columns_and_settings_override_the_header():
    raw = _raw()
    r = cal.calibrate(raw, fits.Header(), settings=cal.CalibrationSettings(overscan="[121:140,1:100]"))
    assert r.image.shape == (100, 120)
    r2 = cal.calibrate(raw, fits.Header({"BIASSEC": "[121:140,1:100]"}),
                       settings=cal.CalibrationSettings(use_header_sections=False))
    assert r2.image.shape == raw.shape and not r2.history


def test_masters_bias_dark_flat_bpm(tmp_path):
    rng = np.random.default_rng(402)
    shape = (64, 80)
    bias = (500.0 + rng.normal(0, 2, shape)).astype(np.float32)
    dark_rate = np.zeros(shape, np.float32)
    dark_rate[10, 20] = 5.0  # a warm pixel: 5 ADU/s
    flat = (1.0 + 0.1 * np.sin(np.arange(80) / 10.0))[None, :] * np.ones(shape)
    flat[30, 30] = 0.01  # a dead pixel
    bpm = np.zeros(shape, np.uint8)
    bpm[5, 5] = 1
    fits.writeto(tmp_path / "bias.fits", bias)
    fits.writeto(tmp_path / "dark.fits", dark_rate * 100.0, header=fits.Header({"EXPTIME": 100.0}))
    fits.writeto(tmp_path / "flat_v.fits", (flat * 20000).astype(np.float32))
    fits.writeto(tmp_path / "bpm.fits", bpm)
    sky = 200.0
    raw = (bias + dark_rate * 50.0 + sky * flat).astype(np.float32)
    m = cal.load_masters(tmp_path)
    assert m.bias is not None and m.dark_exptime_s == 100.0 and "v" in m.flats and m.bpm is not None
    r = cal.calibrate(raw, fits.Header({"EXPTIME": 50.0, "FILTER": "V"}), masters=m,
                      settings=cal.CalibrationSettings(detect_bad_columns=False))
    good = ~r.bad
    flat_norm = flat / np.median(flat)
    assert np.allclose(r.image[good], (sky * flat / flat_norm)[good], rtol=1e-4)
    assert r.bad[30, 30] and r.bad[5, 5]
    assert len(r.history) == 4


def test_master_of_the_wrong_shape_is_named(tmp_path):
    fits.writeto(tmp_path / "bias.fits", np.zeros((10, 10), np.float32))
    m = cal.load_masters(tmp_path)
    with pytest.raises(VisionError, match="bias.*10x10"):
        cal.calibrate(np.zeros((20, 20), np.float32), masters=m)
    with pytest.raises(VisionError, match="does not exist"):
        cal.load_masters(tmp_path / "nope")


def test_bad_columns_are_found_and_masked():
    rng = np.random.default_rng(403)
    img = rng.normal(500, 10, (400, 300)).astype(np.float32)
    img += np.linspace(0, 50, 300)[None, :]  # a gradient is not a bad column
    img[:, 123] += 40.0
    img[:, 200] -= 60.0
    img[100:104, 50:54] += 5000  # a star does not make a column bad
    assert cal.find_bad_columns(img) == [123, 200]
    r = cal.calibrate(img)
    assert r.bad_columns == [123, 200] and r.bad[:, 123].all()


@pytest.mark.parametrize("section", ["1:10,1:10", "[0:10,1:10]", "[1:999,1:10]", "[5:3,1:10]"])
def test_malformed_sections_raise(section):
    with pytest.raises(VisionError):
        cal.parse_section(section, (100, 100))


def test_constant_bias_level_and_saturation_mask():
    img = np.full((50, 50), 1100.0, np.float32)
    img[10, 10] = 65535.0
    r = cal.calibrate(img, settings=cal.CalibrationSettings(bias_level_adu=1000.0))
    assert np.median(r.image) == pytest.approx(100.0)
    assert r.saturated[10, 10] and r.saturated.sum() == 1
    assert r.saturation_adu == 64535.0
