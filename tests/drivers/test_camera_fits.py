"""write_frame: complete headers, atomic into the frames directory, taken by the intake."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np
import pytest
from astropy.io import fits

from tenmon.drivers.camera_fits import (FrameSite, frame_file_name, frame_header,
                                        normalise_image_type, write_frame)
from tenmon.drivers.ccd_directory import FrameDirectory, FrameDirectorySettings

T0 = datetime(2026, 11, 21, 14, 30, 5, 250000, tzinfo=timezone.utc)
SITE = FrameSite("Nishi-Harima", 35.0253, 134.3356, 449.0)


def _frame(tmp_path, **kw):
    img = np.arange(64 * 80, dtype=np.int64).reshape(64, 80) % 60000
    args = dict(date_obs=T0, exptime_s=30.0, image_type="light", site=SITE, ra_deg=83.822,
                dec_deg=-5.391, object_name="M42", filter_name="Red", focus_position=10012,
                focus_temp_c=3.5, ccd_temp_c=-19.96, set_temp_c=-20.0, gain_e_per_adu=1.4,
                gain_setting=100, binning=(2, 2), subframe_origin=(10, 20),
                pixel_scale_arcsec=0.64, instrument="Simulator Camera", telescope="60 cm",
                extra={"TMBLOCK": "b1"})
    args.update(kw)
    return img, write_frame(img, tmp_path / "frames", file_name="M42-x-0001.fits", **args)


def test_every_card_is_written(tmp_path):
    img, path = _frame(tmp_path)
    with fits.open(path) as hdul:
        h = hdul[0].header
        data = hdul[0].data
    assert data.dtype.kind == "u" or h["BZERO"] == 32768
    assert np.array_equal(data.astype(np.int64), img)
    assert h["DATE-OBS"] == "2026-11-21T14:30:05.250"
    assert h["DATE-END"] == "2026-11-21T14:30:35.250"
    assert h["TIMESYS"] == "UTC" and h["EXPTIME"] == 30.0 and h["IMAGETYP"] == "Light Frame"
    assert (h["SITELAT"], h["SITELONG"], h["SITEELEV"], h["OBSERVAT"]) == (
        35.0253, 134.3356, 449.0, "Nishi-Harima")
    assert h["RA"] == pytest.approx(83.822) and h["DEC"] == pytest.approx(-5.391)
    assert h["OBJCTRA"] == "05 35 17.28" and h["OBJCTDEC"] == "-05 23 27.6"
    assert (h["OBJECT"], h["FILTER"], h["FOCUSPOS"]) == ("M42", "Red", 10012)
    assert h["CCD-TEMP"] == pytest.approx(-19.96) and h["SET-TEMP"] == -20.0
    assert h["GAIN"] == 1.4 and h["EGAIN"] == 1.4 and h["GAINSET"] == 100
    assert (h["XBINNING"], h["YBINNING"], h["XORGSUBF"], h["YORGSUBF"]) == (2, 2, 10, 20)
    assert h["INSTRUME"] == "Simulator Camera" and h["TMBLOCK"] == "b1"
    assert h["PIXSCALE"] == 0.64


def test_the_pipeline_reads_what_it_needs(tmp_path):
    """The solver's hint and the pipeline's gain come from these cards."""
    from tenmon.vision.solve.frames import hint_from_header

    _, path = _frame(tmp_path)
    hint = hint_from_header(fits.getheader(path), (64, 80))
    assert hint.scale_arcsec == pytest.approx(0.64)
    assert hint.ra_deg == pytest.approx(83.822, abs=1e-3)
    assert hint.dec_deg == pytest.approx(-5.391, abs=1e-3)


def test_unknown_and_non_finite_values_are_left_out(tmp_path):
    _, path = _frame(tmp_path, ra_deg=None, ccd_temp_c=float("nan"), focus_position=None,
                     gain_e_per_adu=float("inf"), site=None, filter_name=None,
                     extra={"BAD": float("nan")})
    h = fits.getheader(path)
    for key in ("RA", "DEC", "OBJCTRA", "CCD-TEMP", "FOCUSPOS", "GAIN", "SITELAT", "FILTER",
                "BAD"):
        assert key not in h, key


@pytest.mark.parametrize("given,kind,card", [
    ("dark", "dark", "Dark Frame"), ("Bias Frame", "bias", "Bias Frame"),
    ("FLAT", "flat", "Flat Field"), ("Light Frame", "light", "Light Frame"),
    (None, "light", "Light Frame")])
def test_image_types(tmp_path, given, kind, card):
    assert normalise_image_type(given) == kind
    assert frame_header(date_obs=T0, exptime_s=0.0, image_type=given or "light")["IMAGETYP"] == card


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="image type"):
        normalise_image_type("sky")
    with pytest.raises(ValueError, match="timezone"):
        frame_header(date_obs=datetime(2026, 1, 1), exptime_s=1.0)
    with pytest.raises(ValueError, match="not a time"):
        frame_header(date_obs=T0, exptime_s=float("nan"))
    with pytest.raises(ValueError, match="2-D"):
        write_frame(np.zeros(5), tmp_path, file_name="a.fits", date_obs=T0, exptime_s=1.0)


def test_write_is_atomic_and_the_intake_takes_it(tmp_path, fake_clock, monkeypatch):
    frames = tmp_path / "frames"
    # a failed write leaves nothing behind, not even the temporary file
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(fits.PrimaryHDU, "writeto", boom)
    with pytest.raises(OSError):
        write_frame(np.zeros((8, 8), np.uint16), frames, file_name="a.fits", date_obs=T0,
                    exptime_s=1.0)
    assert os.listdir(frames) == []
    monkeypatch.undo()
    name = frame_file_name("M 42/odd", T0, 7)
    assert name == "M_42_odd-20261121T143005-0007.fits"
    path = write_frame(np.ones((64, 64), np.float64) * 3.5, frames, file_name=name, date_obs=T0,
                       exptime_s=1.0)
    assert sorted(os.listdir(frames)) == [name]
    assert fits.getdata(path).dtype == np.dtype(">f4")
    intake = FrameDirectory(frames, settings=FrameDirectorySettings(stable_s=1.0),
                            clock=fake_clock)
    assert intake.poll() == []
    fake_clock.advance(2.0)
    got = intake.poll()
    assert [p.name for p in got] == [name]
