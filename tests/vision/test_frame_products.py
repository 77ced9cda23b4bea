"""Frame products: atomic writes, DS9 regions, PNG preview, masks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from matplotlib import image as mpimg

from tenmon.vision.frames import products as prod


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "x.ecsv"

    def boom(tmp):
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        prod.atomic_write(target, boom)
    assert not target.exists() and list(target.parent.iterdir()) == []
    prod.atomic_write_bytes(target, b"done")
    assert target.read_bytes() == b"done" and len(list(target.parent.iterdir())) == 1


def test_ds9_regions_are_one_based_image_coordinates():
    s = Table({"x": [0.0, 10.5], "y": [0.0, 20.25]})
    c = Table({"x": [100.0], "y": [50.0], "radius_px": [40.0], "n_members": [55], "significance": [7.25]})
    text = prod.ds9_regions(s, c)
    lines = text.splitlines()
    assert lines[0] == "# Region file format: DS9 version 4.1" and "image" in lines
    assert "circle(1.00,1.00,5.0)" in lines and "circle(11.50,21.25,5.0)" in lines
    assert "circle(101.00,51.00,40.0) # color=red width=2 text={55 stars 7.2 sigma}" in lines


def test_mask_bits_and_files(tmp_path):
    cosmic = np.zeros((40, 50), bool)
    cosmic[3, 4] = True
    bad = np.zeros_like(cosmic)
    bad[:, 7] = True
    sat = np.zeros_like(cosmic)
    sat[3, 4] = True
    m = prod.build_mask(cosmic, bad, sat)
    assert m[3, 4] == prod.MASK_COSMIC | prod.MASK_SATURATED and m[10, 7] == prod.MASK_BAD and m[0, 0] == 0
    h = fits.Header({"OBJECT": "x", "BITPIX": 16, "NAXIS": 2, "BZERO": 32768})
    p = prod.write_clean_fits(tmp_path / "c.fits", np.ones((40, 50)), m, h, history=["step one"])
    with fits.open(p) as hd:
        assert hd[0].header["OBJECT"] == "x" and "BZERO" not in hd[0].header
        assert hd[0].data.dtype.kind == "f" and np.array_equal(hd["MASK"].data, m)
        assert "step one" in str(hd[0].header["HISTORY"])
    assert h["BZERO"] == 32768  # the caller's header is not modified
    q = prod.write_mask_fits(tmp_path / "m.fits", m)
    with fits.open(q) as hd:
        assert np.array_equal(hd[1].data, m)
    assert q.stat().st_size < 20000


def test_preview_is_a_png_of_the_requested_size_with_marks():
    rng = np.random.default_rng(601)
    img = rng.normal(100, 5, (300, 400)).astype(np.float32)
    img[150, 200] = 5000
    s = Table({"x": [200.0], "y": [150.0]})
    c = Table({"x": [100.0], "y": [100.0], "radius_px": [30.0], "n_members": [60], "significance": [6.0]})
    png = prod.preview_png(img, sources=s, clusters=c, max_px=200)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    rgba = mpimg.imread(io.BytesIO(png))
    assert rgba.shape[:2] == (150, 200)  # block-averaged by 2 to fit 200 px
    # Red circle of the candidate, green circle of the source somewhere in the picture.
    assert np.any((rgba[..., 0] > 0.8) & (rgba[..., 1] < 0.3))
    assert np.any((rgba[..., 1] > 0.8) & (rgba[..., 0] < 0.3))
    flat = prod.preview_png(np.zeros((50, 50), np.float32))  # a blank frame still renders
    assert flat[:8] == b"\x89PNG\r\n\x1a\n"
