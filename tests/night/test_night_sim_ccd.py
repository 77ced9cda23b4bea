"""The simulated CCD renders where the simulated telescope really points; its header says where
the mount believes it points; the dome, slit and cover can block the light."""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
import pytest
from astropy.io import fits

from tenmon.daemon.control_loop import tick_once
from tenmon.drivers.base import MountState
from tenmon.drivers.camera import Camera, CameraState
from tenmon.config.services import CameraSettings
from tenmon.drivers.sim.ccd import SimulatedCcd, moon_radec
from tenmon.core.errors import DeviceError
from tenmon.vision.solve.base import SolveHint
from tenmon.vision.solve.catalogs import SimulatedSky
from tenmon.core.astro import separation_arcsec
from tenmon.vision.solve.detect import detect_sources
from tenmon.vision.solve.frames import hint_from_header, read_frame
from tenmon.vision.solve.hinted import HintedSolver

CAM = CameraSettings(width_px=512, height_px=512, binning=4, overscan_px=8)


def _pointed_rig(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    obs.mount_goto(40.0, 40.0)
    rig.run(120, until=lambda: obs.mount.state == MountState.TRACKING)
    assert obs.mount.state == MountState.TRACKING
    return rig


def _expose(rig, cam, seconds=20.0, **kw):
    cam.start_exposure(seconds, name=kw.pop("name", "M 1/test"), meta=kw.pop("meta", None))
    mid = None
    for _ in range(int((seconds + 30) / rig.tick_s)):
        rig.clock.advance(rig.tick_s)
        tick_once(rig.obs)
        cam.update()
        if mid is None and cam.state == CameraState.READING:
            mid = rig.world.true_pointing()  # tracking: unchanged since mid-exposure
        while cam.rendering:  # the render thread, in wall time
            time.sleep(0.01)
        path = cam.take_frame()
        if path is not None:
            return path, mid
    raise AssertionError(f"no frame; camera {cam.state}: {cam.error}")


def test_frame_shows_the_true_pointing_and_the_mounts_idea(sim_rig, tmp_path):
    rig = _pointed_rig(sim_rig)
    sky = SimulatedSky(seed=0)
    cam = SimulatedCcd(CAM, rig.world, rig.clock, tmp_path / "frames", sky, seed=3,
                       render_in="process")
    assert isinstance(cam, Camera)
    cam.connect()
    try:
        start = rig.clock.now()
        path, true_pos = _expose(rig, cam, 20.0, meta={"OBJECT": "M1", "TMBLOCK": "b1"})
        with pytest.raises(DeviceError):  # idle again, but not while busy:
            cam.start_exposure(5.0, name="x")
            cam.start_exposure(5.0, name="x")
    finally:
        cam.disconnect()
    assert path.parent == tmp_path / "frames" and path.name.startswith("M_1_test-")
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # atomic write
    h = fits.getheader(path)
    assert h["EXPTIME"] == 20.0 and h["GAIN"] == CAM.gain_e_per_adu
    assert h["RDNOISE"] == CAM.read_noise_e and h["OBJECT"] == "M1" and h["TMBLOCK"] == "b1"
    assert abs((datetime.fromisoformat(h["DATE-OBS"] + "+00:00") - start).total_seconds()) < 0.2
    assert h["PIXSCALE"] == pytest.approx(CAM.binned_scale_arcsec)
    mount_ra, mount_dec = rig.world.mount_ra_deg, rig.world.state.mount_dec_deg
    assert h["RA"] == pytest.approx(mount_ra, abs=1e-3) and h["DEC"] == pytest.approx(mount_dec)
    # where the mount thinks it points is not where it points (the simulated pointing error)
    off = separation_arcsec(mount_ra, mount_dec, *true_pos)
    assert off > 20.0
    # plate-solve the file: the centre is the true pointing, not the mount's idea
    image, header = read_frame(path)
    data = image[:, : CAM.width_px]
    data = data - np.median(image[:, CAM.width_px:])
    hint = hint_from_header(header, data.shape)
    hint = SolveHint(hint.ra_deg, hint.dec_deg, radius_deg=0.2, scale_arcsec=hint.scale_arcsec)
    res = HintedSolver(sky).solve(detect_sources(data), data.shape, hint, timeout_s=10.0)
    assert res.solved, res.reason
    assert separation_arcsec(res.ra_deg, res.dec_deg, *true_pos) < 2.0
    assert abs(res.scale_arcsec / CAM.binned_scale_arcsec - 1) < 0.01


def test_blocked_light_gives_no_stars(sim_rig, tmp_path):
    rig = _pointed_rig(sim_rig)
    sky = SimulatedSky(seed=0)
    lit = SimulatedCcd(CAM, rig.world, rig.clock, tmp_path / "a", sky, seed=3,
                       render_in="thread")
    dark = SimulatedCcd(CAM, rig.world, rig.clock, tmp_path / "b", sky, seed=3,
                        light_path=lambda: 0.0, render_in="thread")
    for c in (lit, dark):
        c.connect()
    try:
        p_lit, _ = _expose(rig, lit, 20.0)
        p_dark, _ = _expose(rig, dark, 20.0)
    finally:
        lit.disconnect()
        dark.disconnect()
    assert fits.getheader(p_dark)["LIGHTFR"] == 0.0 and fits.getheader(p_lit)["LIGHTFR"] == 1.0
    n_lit = len(detect_sources(read_frame(p_lit)[0][:, : CAM.width_px]))
    n_dark = len(detect_sources(read_frame(p_dark)[0][:, : CAM.width_px]))
    assert n_lit > 100 and n_dark < n_lit / 5  # only hot pixels and cosmic rays remain


def test_abort_writes_nothing_and_moon_is_roughly_right(sim_rig, tmp_path):
    rig = _pointed_rig(sim_rig)
    cam = SimulatedCcd(CAM, rig.world, rig.clock, tmp_path / "f", SimulatedSky(seed=0),
                       render_in="thread")
    cam.connect()
    try:
        cam.start_exposure(30.0, name="t")
        rig.run(10.0)
        cam.update()
        assert cam.state == CameraState.EXPOSING
        cam.abort()
        rig.run(60.0)
        cam.update()
        assert cam.state == CameraState.IDLE and cam.take_frame() is None
    finally:
        cam.disconnect()
    assert not list((tmp_path / "f").iterdir())
    # the low-precision moon used for moonlight agrees with astropy's to a fraction of a degree
    from astropy.coordinates import get_body
    from astropy.time import Time

    when = datetime.fromisoformat("2026-11-21T15:00:00+00:00")
    m = get_body("moon", Time(when))
    ra, dec = moon_radec(when)
    assert separation_arcsec(ra, dec, float(m.ra.deg), float(m.dec.deg)) < 0.7 * 3600
