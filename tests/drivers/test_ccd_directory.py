"""Watched-directory intake: stable and complete FITS only, delivered once, remembered across restarts."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

from tenmon.drivers.ccd_directory import FrameDirectory, FrameDirectorySettings, fits_is_complete
from tenmon.core.errors import DeviceError


def _fits_bytes(shape=(64, 80), seed=0, ext=False):
    import io

    data = np.random.default_rng(seed).integers(0, 60000, shape).astype(np.uint16)
    hdus = [fits.PrimaryHDU(data)]
    if ext:
        hdus.append(fits.ImageHDU(np.zeros((10, 10), np.float32), name="MASK"))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def test_fits_completeness(tmp_path):
    full = _fits_bytes(ext=True)
    p = tmp_path / "a.fits"
    p.write_bytes(full)
    assert fits_is_complete(p)
    # Cuts inside a header, inside the primary data, inside the extension's header and data.
    for cut in (100, 2880, 2880 * 3 + 7, len(full) - 2880 - 100, len(full) - 2880 + 200):
        p.write_bytes(full[:cut])
        assert not fits_is_complete(p), cut
    # Cut exactly after a whole HDU: a valid file of its own (stability over time covers this);
    # a missing pad of the last block with the data complete is accepted too.
    p.write_bytes(full[: len(full) - 2 * 2880])
    assert fits_is_complete(p)
    p.write_bytes(full[:-100])
    assert fits_is_complete(p)
    p.write_bytes(b"SIMPLE  =" + b" " * 3000)  # no END card
    assert not fits_is_complete(p)
    p.write_bytes(b"garbage" * 1000)
    assert not fits_is_complete(p)
    assert not fits_is_complete(tmp_path / "missing.fits")


def test_file_is_delivered_only_when_stable_and_complete(tmp_path, fake_clock):
    d = FrameDirectory(tmp_path, settings=FrameDirectorySettings(stable_s=2.0), clock=fake_clock)
    data = _fits_bytes()
    p = tmp_path / "frame1.fits"
    # The CCD program has written half the file.
    p.write_bytes(data[: len(data) // 2])
    assert d.poll() == [] and d.pending == 1
    fake_clock.advance(5.0)
    assert d.poll() == []  # stable but truncated: not complete FITS
    # It finishes writing: the size changes, so the stability clock restarts.
    with open(p, "ab") as fh:
        fh.write(data[len(data) // 2 :])
    assert d.poll() == []
    fake_clock.advance(1.0)
    assert d.poll() == []
    fake_clock.advance(1.5)
    assert d.poll() == [p]
    fake_clock.advance(10.0)
    assert d.poll() == []  # delivered once


def test_order_pattern_hidden_and_temporary_files(tmp_path, fake_clock):
    d = FrameDirectory(tmp_path, settings=FrameDirectorySettings(stable_s=1.0, pattern="*.fit*"), clock=fake_clock)
    data = _fits_bytes()
    names = ["b.fits", "a.fit", ".hidden.fits", "c.fits.tmp", "notes.txt", "d.fits.part"]
    for i, n in enumerate(names):
        (tmp_path / n).write_bytes(data)
        os.utime(tmp_path / n, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    assert d.poll() == []
    fake_clock.advance(1.5)
    assert [p.name for p in d.poll()] == ["b.fits", "a.fit"]  # oldest mtime first


def test_processed_frames_are_remembered_across_restarts_and_rewrites_count_as_new(tmp_path, fake_clock):
    frames = tmp_path / "frames"
    frames.mkdir()
    state = tmp_path / "state" / "intake.json"
    data = _fits_bytes()
    (frames / "x.fits").write_bytes(data)
    (frames / "y.fits").write_bytes(data)
    d = FrameDirectory(frames, clock=fake_clock, state_file=state)
    d.poll()
    fake_clock.advance(3.0)
    got = d.poll()
    assert len(got) == 2
    d.mark_processed(got[0])  # y.fits is delivered but the daemon dies before processing it
    assert state.exists() and d.is_processed(got[0])
    again = FrameDirectory(frames, clock=fake_clock, state_file=state)
    again.poll()
    fake_clock.advance(3.0)
    assert again.poll() == [got[1]]
    # A rewritten frame (new content, new mtime) is new again.
    got[0].write_bytes(_fits_bytes(seed=5))
    os.utime(got[0], ns=(2 * 10**18, 2 * 10**18))
    again.poll()
    fake_clock.advance(3.0)
    assert again.poll() == [got[0]]


def test_missing_directory_and_unreadable_state(tmp_path, fake_clock):
    d = FrameDirectory(tmp_path / "nope", clock=fake_clock)
    with pytest.raises(DeviceError, match="ccd: frames directory .*nope does not exist"):
        d.poll()
    bad_state = tmp_path / "state.json"
    bad_state.write_text("{not json")
    ok = FrameDirectory(tmp_path, clock=fake_clock, state_file=bad_state)
    assert ok.poll() == []


def test_recursive_and_file_removed_before_delivery(tmp_path, fake_clock):
    (tmp_path / "night1").mkdir()
    data = _fits_bytes()
    (tmp_path / "night1" / "f.fits").write_bytes(data)
    (tmp_path / "gone.fits").write_bytes(data)
    d = FrameDirectory(tmp_path, settings=FrameDirectorySettings(stable_s=1.0, recursive=True), clock=fake_clock)
    d.poll()
    (tmp_path / "gone.fits").unlink()
    fake_clock.advance(2.0)
    assert [p.name for p in d.poll()] == ["f.fits"]
    assert d.pending == 0
