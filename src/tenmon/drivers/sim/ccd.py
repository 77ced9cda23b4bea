"""The simulated CCD: renders the sky where the simulated telescope really points, into FITS files.

At the end of an exposure it draws the stars of the simulated sky (``SimulatedSky``, the same
catalogue the plate solver uses in simulation) through the telescope's *true* pointing
(``SimWorld.true_pointing()`` at mid-exposure), with ``skyrender.render_star_field``: Moffat
seeing, a sky level from the moon and twilight, Poisson and read noise, cosmic rays, hot pixels,
a fixed bad column, saturation and bleeding, bias and overscan. The header carries where the
*mount believes* it points (``RA``/``DEC``), ``DATE-OBS``, ``EXPTIME``, ``GAIN``, ``RDNOISE``, the
binned pixel scale, and the caller's ``meta``. The file is written atomically into the frames
directory, where the frame service's directory intake finds it, as at a site.

Light reaches the detector only through an open cover and an open slit that faces the telescope
(the dome geometry decides where the optical axis meets the dome): the mean light let through
during the exposure scales the stars and the sky, so a frame taken with the dome in the way has
no stars.

Rendering a 1024 x 1024 frame takes a few tenths of a second of mostly Python-level work, so it
runs in a worker process (``render_in="process"``, the default: no competition for the control
loop's interpreter lock) or a thread (``"thread"``, for tests); the camera is ``reading``
meanwhile and ``update()`` never blocks the control loop.
"""

from __future__ import annotations

import logging
import math
import os
import re
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tenmon.core.astro import (julian_days_since_j2000, lst_deg, radec_to_altaz, separation_deg,
                          sun_altitude_deg, sun_radec)
from tenmon.core.clock import Clock
from tenmon.drivers.camera import CameraState
from tenmon.config.services import CameraSettings
from tenmon.drivers.sim.world import SimWorld
from tenmon.core.errors import DeviceError

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


@dataclass(frozen=True)
class ExposurePlan:
    """Everything the renderer needs, captured on the control thread at mid-exposure."""

    path: Path
    date_obs: datetime
    exposure_s: float
    true_ra_deg: float
    true_dec_deg: float
    mount_ra_deg: float
    mount_dec_deg: float
    target_alt_deg: float
    sun_alt_deg: float
    transmission: float
    seed: int
    meta: dict[str, Any]
    site: tuple[float, float, float] | None = None  # latitude, longitude, elevation (moonlight)


class SimulatedCcd:
    """A CCD camera in the simulated world (see the module docstring).

    Args:
        settings: the detector and optics.
        world: the simulated world (true pointing, dome, slit, cover).
        clock: the daemon's clock.
        frames_dir: where frames are written (the frame service watches it).
        sky: a catalogue provider with ``stars_for_wcs`` (``SimulatedSky``).
        light_path: ``callable() -> float`` in 0..1, how much light the dome, slit and cover let
            through now (1 when no such check is wanted); the frame gets the exposure's mean.
        seed: seed of the frame noise (each frame gets its own from it and its number).
        render_in: ``"process"`` (default) or ``"thread"``; a process needs ``sky`` to be a
            ``SimulatedSky`` (rebuilt there from its parameters).
    """

    name = "camera"

    def __init__(self, settings: CameraSettings, world: SimWorld, clock: Clock, frames_dir: Path,
                 sky, *, light_path=None, seed: int = 0, render_in: str = "process"):
        if render_in not in ("process", "thread"):
            raise ValueError(f"render_in must be 'process' or 'thread', not {render_in!r}")
        self.render_in = render_in
        self.settings = settings
        self.world = world
        self.clock = clock
        self.frames_dir = Path(frames_dir)
        self.sky = sky
        self.light_path = light_path or (lambda: 1.0)
        self.seed = int(seed)
        self._state = CameraState.IDLE
        self._error: str | None = None
        self._pool: Executor | None = None
        self._future: Future | None = None
        self._exp: dict[str, Any] | None = None
        self._done: Path | None = None
        self._count = 0
        rng = np.random.default_rng(self.seed * 7 + 11)
        self.bad_column = int(rng.integers(0, settings.width_px))  # a real CCD's is always there
        self.frames_written = 0

    # ------------------------------------------------------------------ life cycle

    def connect(self) -> None:
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        if self._pool is None:
            if self.render_in == "process":
                from tenmon.core.lifeline import pool_context

                ctx = pool_context()  # its fork server and the renderer die with the daemon
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx,
                                                 initializer=_init_render,
                                                 initargs=(10, os.getpid()))
                # start the process and import the renderer now, not at the first readout
                self._pool.submit(_sky_from, _sky_spec(self.sky)
                                  if hasattr(self.sky, "tile") else None)
            else:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-ccd")

    def disconnect(self) -> None:
        self.abort()
        if self._pool is not None:
            self._pool.shutdown(wait=self.render_in == "thread", cancel_futures=True)
            self._pool = None

    @property
    def state(self) -> CameraState:
        return self._state

    @property
    def rendering(self) -> bool:
        """A frame is being rendered and written on the worker thread."""
        return self._future is not None and not self._future.done()

    @property
    def error(self) -> str | None:
        return self._error

    # ------------------------------------------------------------------ exposures

    def start_exposure(self, seconds: float, *, name: str, meta: dict[str, Any] | None = None
                       ) -> None:
        if self._pool is None:
            raise DeviceError("camera", "not connected")
        if self._state in (CameraState.EXPOSING, CameraState.READING):
            raise DeviceError("camera", f"busy ({self._state.value})")
        if not 0 < seconds <= 3600:
            raise DeviceError("camera", f"exposure {seconds} s is outside (0, 3600]")
        now_m = self.clock.monotonic()
        self._count += 1
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%S")
        fname = f"{_SAFE.sub('_', name).strip('_') or 'frame'}-{stamp}-{self._count:04d}.fits"
        self._exp = {"seconds": float(seconds), "start_m": now_m, "start": self.clock.now(),
                     "path": self.frames_dir / fname, "meta": dict(meta or {}),
                     "mid": None, "light_s": 0.0, "t_light": 0.0}
        self._done = None
        self._error = None
        self._state = CameraState.EXPOSING

    def abort(self) -> None:
        if self._state == CameraState.EXPOSING:
            log.info("simulated CCD: exposure aborted")
        self._exp = None
        self._state = CameraState.IDLE if self._state != CameraState.ERROR else self._state
        if self._future is not None:
            self._future.cancel()
            self._future = None

    def take_frame(self) -> Path | None:
        if self._done is None:
            return None
        path, self._done = self._done, None
        return path

    def update(self) -> None:
        """Follow the exposure: light through the dome, mid-exposure pointing, readout."""
        exp = self._exp
        if self._state == CameraState.EXPOSING and exp is not None:
            now_m = self.clock.monotonic()
            elapsed = now_m - exp["start_m"]
            try:
                light = float(self.light_path())
            except Exception as exc:  # noqa: BLE001 - a geometry bug must not kill the camera
                log.warning("simulated CCD: light path unknown (%s): taking it as blocked", exc)
                light = 0.0
            # the frame collects the time-weighted mean of the light let through
            dt = max(0.0, min(elapsed, exp["seconds"]) - exp["t_light"])
            exp["light_s"] += dt * light
            exp["t_light"] += dt
            if exp["mid"] is None and elapsed >= exp["seconds"] / 2:
                exp["mid"] = self._snapshot(exp)
            if elapsed >= exp["seconds"]:
                if exp["mid"] is None:
                    exp["mid"] = self._snapshot(exp)
                plan = _replace_light(exp["mid"], exp["light_s"] / exp["seconds"])
                self._state = CameraState.READING
                exp["read_m"] = now_m
                sky = self.sky if self.render_in == "thread" else _sky_spec(self.sky)
                self._future = self._pool.submit(_render_and_write, plan, self.settings, sky,
                                                 self.bad_column)
        elif self._state == CameraState.READING and exp is not None:
            fut = self._future
            waited = self.clock.monotonic() - exp["start_m"]
            if fut is not None and fut.done():
                self._future = None
                exc = fut.exception()
                if exc is not None:
                    self._fail(f"frame could not be written: {exc}")
                    return
                # the readout time is simulated too: the file counts from the end of readout
                if self.clock.monotonic() - exp["read_m"] < self.settings.readout_s:
                    self._future = fut  # keep it until the readout time has passed
                    return
                self._done = fut.result()
                self.frames_written += 1
                self._exp = None
                self._state = CameraState.IDLE
            elif waited > exp["seconds"] + self.settings.timeout_s:
                self._fail(f"no frame {self.settings.timeout_s:g} s after the exposure ended")

    def _fail(self, message: str) -> None:
        log.error("simulated CCD: %s", message)
        self._error = message
        self._state = CameraState.ERROR
        self._exp = None
        if self._future is not None:
            self._future.cancel()
            self._future = None

    def clear_error(self) -> None:
        """Leave the error state (the next exposure may be tried)."""
        if self._state == CameraState.ERROR:
            self._state = CameraState.IDLE
            self._error = None

    def _snapshot(self, exp: dict[str, Any]) -> ExposurePlan:
        w = self.world
        true_ra, true_dec = w.true_pointing()
        site = w.site
        now = self.clock.now()
        alt, _ = radec_to_altaz(true_ra, true_dec, lst_deg(now, site.longitude_deg),
                                site.latitude_deg)
        return ExposurePlan(
            path=exp["path"], date_obs=exp["start"], exposure_s=exp["seconds"],
            true_ra_deg=true_ra, true_dec_deg=true_dec, mount_ra_deg=w.mount_ra_deg,
            mount_dec_deg=w.state.mount_dec_deg, target_alt_deg=alt,
            sun_alt_deg=sun_altitude_deg(now, site.latitude_deg, site.longitude_deg),
            transmission=1.0, seed=self.seed * 1_000_003 + self._count, meta=exp["meta"],
            site=(site.latitude_deg, site.longitude_deg, site.elevation_m))


def _replace_light(plan: ExposurePlan, light: float) -> ExposurePlan:
    from dataclasses import replace

    return replace(plan, transmission=max(0.0, min(1.0, light)))


def moon_radec(when: datetime) -> tuple[float, float]:
    """The moon's geocentric (ra, dec) in degrees, low precision (~0.3 deg; the Astronomical
    Almanac's low-precision formulae). Enough for moonlight on the sky, and cheap: the render
    thread must not hold the interpreter for astropy's full ephemeris."""
    t = julian_days_since_j2000(when) / 36525.0
    d = math.radians

    def s(a: float, b: float) -> float:
        return math.sin(d(a + b * t))

    lam = (218.32 + 481267.881 * t + 6.29 * s(135.0, 477198.87) - 1.27 * s(259.3, -413335.36)
           + 0.66 * s(235.7, 890534.22) + 0.21 * s(269.9, 954397.74) - 0.19 * s(357.5, 35999.05)
           - 0.11 * s(186.5, 966404.03))
    beta = (5.13 * s(93.3, 483202.02) + 0.28 * s(228.2, 960400.89) - 0.28 * s(318.3, 6003.15)
            - 0.17 * s(217.6, -407332.21))
    lam_r, beta_r, eps = d(lam % 360.0), d(beta), d(23.439 - 0.013 * t)
    x = math.cos(beta_r) * math.cos(lam_r)
    y = math.cos(eps) * math.cos(beta_r) * math.sin(lam_r) - math.sin(eps) * math.sin(beta_r)
    z = math.sin(eps) * math.cos(beta_r) * math.sin(lam_r) + math.cos(eps) * math.sin(beta_r)
    return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(math.asin(max(-1.0, min(1.0, z))))


def _moon(when: datetime, ra: float, dec: float, lat: float, lon: float
          ) -> tuple[float, float, float]:
    """(moon altitude, separation from (ra, dec), phase angle: 0 full, 180 new), degrees."""
    mra, mdec = moon_radec(when)
    alt, _ = radec_to_altaz(mra, mdec, lst_deg(when, lon), lat)
    sra, sdec = sun_radec(when)
    return alt, separation_deg(ra, dec, mra, mdec), 180.0 - separation_deg(sra, sdec, mra, mdec)


def _init_render(nice: int, origin_pid: int | None = None) -> None:
    """Render process: dies with the daemon (``origin_pid``), a lower CPU priority than the
    control loop's (as the frame workers)."""
    from tenmon.core.lifeline import die_with_parent

    die_with_parent(origin_pid)
    try:
        os.nice(nice)
    except OSError:
        pass
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import importlib

    importlib.import_module("tenmon.vision.render.sky")  # astropy, scipy: once, up front


def _sky_spec(sky) -> tuple:
    """A ``SimulatedSky``'s parameters, to rebuild it in the render process."""
    return ("simulated-sky", sky.seed, sky.density, sky.mag_bright, sky.mag_faint, sky.slope,
            sky.tile)


_SKIES: dict[tuple, Any] = {}


def _sky_from(spec):
    if not (isinstance(spec, tuple) and spec and spec[0] == "simulated-sky"):
        return spec
    sky = _SKIES.get(spec)
    if sky is None:
        from tenmon.vision.solve.catalogs import SimulatedSky

        _SKIES.clear()
        _, seed, density, bright, faint, slope, tile = spec
        sky = _SKIES[spec] = SimulatedSky(seed=seed, density_per_deg2=density, mag_bright=bright,
                                          mag_faint=faint, count_slope=slope, tile_deg=tile)
    return sky


def _render_and_write(plan: ExposurePlan, cam: CameraSettings, sky, bad_column: int) -> Path:
    """Render and write one frame (worker process or thread). Returns the path written."""
    from astropy.table import Table

    sky = _sky_from(sky)
    from tenmon.vision.render.sky import (
        COSMIC_RATE_PER_CM2_S,
        PIXEL_SIZE_UM,
        render_star_field,
        simple_wcs,
        sky_level_adu,
        sky_surface_brightness,
        write_frame_fits,
    )

    meta = dict(plan.meta)
    site = plan.site
    shape = (cam.height_px, cam.width_px)
    scale = cam.binned_scale_arcsec
    wcs = simple_wcs((plan.true_ra_deg, plan.true_dec_deg), shape=shape, pixel_scale_arcsec=scale,
                     rotation_deg=cam.rotation_deg)
    light = plan.transmission
    if site is not None:
        m_alt, m_sep, m_phase = _moon(plan.date_obs + timedelta(seconds=plan.exposure_s / 2),
                                      plan.true_ra_deg, plan.true_dec_deg, site[0], site[1])
    else:
        m_alt, m_sep, m_phase = -30.0, 90.0, 180.0
    sb = sky_surface_brightness(target_alt_deg=plan.target_alt_deg, sun_alt_deg=plan.sun_alt_deg,
                                moon_alt_deg=m_alt, moon_separation_deg=m_sep,
                                moon_phase_angle_deg=m_phase, dark_sky_mag=cam.dark_sky_mag)
    sky_adu = sky_level_adu(sb, pixel_scale_arcsec=scale, exposure_s=plan.exposure_s,
                            zero_point_mag=cam.zero_point_mag, gain=cam.gain_e_per_adu) * light
    if light > 1e-3:
        stars = sky.stars_for_wcs(wcs, shape)
        zp = cam.zero_point_mag + 2.5 * math.log10(light)
    else:  # the dome or the cover is in the way: no starlight at all
        stars = Table({"ra": np.zeros(0), "dec": np.zeros(0), "mag": np.zeros(0)})
        zp = cam.zero_point_mag
    rng = np.random.default_rng(plan.seed)
    area_cm2 = (cam.width_px * cam.binning * PIXEL_SIZE_UM * 1e-4) * (
        cam.height_px * cam.binning * PIXEL_SIZE_UM * 1e-4)
    n_cr = int(rng.poisson(COSMIC_RATE_PER_CM2_S * area_cm2 * plan.exposure_s))
    frame = render_star_field(
        wcs=wcs, stars=stars, shape=shape, fwhm_px=cam.seeing_arcsec / scale, sky_adu=sky_adu,
        exposure_s=plan.exposure_s, gain=cam.gain_e_per_adu, read_noise_e=cam.read_noise_e,
        zero_point_mag=zp, n_cosmic_rays=n_cr, bad_columns=(bad_column,),
        saturation_adu=cam.saturation_adu, bias_adu=cam.bias_adu, overscan_px=cam.overscan_px,
        seed=plan.seed)
    extra = {"XBINNING": cam.binning, "YBINNING": cam.binning,
             "PIXSCALE": (round(scale, 6), "[arcsec/px] binned"),
             "FOCALLEN": (cam.focal_length_mm, "[mm]"),
             "SKYMAG": (round(sb, 3), "[mag/arcsec2] simulated sky brightness"),
             "LIGHTFR": (round(light, 4), "simulated fraction of light past dome and cover")}
    object_name = meta.pop("OBJECT", None)
    filter_name = meta.pop("FILTER", None)
    for k, v in meta.items():
        extra[str(k).upper()[:8]] = v
    return write_frame_fits(frame, plan.path, date_obs=plan.date_obs,
                            mount_ra_deg=plan.mount_ra_deg, mount_dec_deg=plan.mount_dec_deg,
                            object_name=object_name, filter_name=filter_name, extra=extra)
