"""Nayuta's slit-viewer frames: the newest complete FITS of a watched directory, or a simulated feed.

Two sources of :class:`SlitViewerFrame`, chosen by ``type`` in :class:`NayutaFeedSettings`
(``[nayuta.feed]``):

* :class:`NayutaDirectoryFeed` (``type = "directory"``): the directory Nayuta's slit-viewer
  software writes into (a share mounted on the 60 cm's computer). ``poll()`` returns the newest
  frame that became complete since the last call: a file is only considered when its size and
  mtime have been steady for ``stable_s`` and it parses as complete FITS (the frame intake's
  ``FrameDirectory`` decides both), so a half-written frame is never read. Older frames that
  arrived at the same time are skipped: following Nayuta needs its current target, not its
  history. Frames older than ``max_age_s`` (by ``DATE-OBS``) are reported stale.
* :class:`SimulatedNayutaFeed` (``type = "simulated"``): a callable
  ``feed(target_ra_deg, target_dec_deg, when)`` that renders the slit viewer's current frame
  (``tenmon.vision.nayuta.render_slit_viewer``) around a target of the simulated sky, with a
  little guiding jitter and fresh noise for each time, and Nayuta's *reported* position (its own
  pointing error included) in the header, as the real software writes it. ``write()`` puts such a
  frame into a directory, so the directory feed can be exercised end to end.

A missing directory is an error naming the device (``nayuta``), never a silent fallback to the
simulation.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from tenmon.core import offline
from tenmon.core.astro import separation_deg
from tenmon.core.atomicfile import atomic_write
from tenmon.core.clock import Clock, RealClock
from tenmon.drivers.ccd_directory import FrameDirectory, FrameDirectorySettings
from tenmon.core.errors import DeviceError, VisionError
from tenmon.core.timefmt import fits_time, parse_utc
from tenmon.vision.solve.base import SolveHint
from tenmon.config.services import SimulatedSlitViewerSettings, NayutaFeedSettings

offline.configure()

log = logging.getLogger(__name__)

DEVICE = "nayuta"


@dataclass(frozen=True)
class SlitViewerFrame:
    """One slit-viewer frame and what its header says.

    ``hint``: Nayuta's reported position and the pixel scale (for solving). ``date_obs``: UTC
    start of the exposure (``None`` if the header has none). ``truth``: the simulation's
    ``SlitViewerTruth`` (simulated frames only).
    """

    image: np.ndarray
    header: fits.Header
    hint: SolveHint
    date_obs: datetime | None
    exposure_s: float | None
    gain: float | None
    path: Path | None = None
    truth: Any = field(default=None, repr=False)

    def age_s(self, now: datetime) -> float | None:
        """Seconds from the end of the exposure to ``now`` (``None`` without ``DATE-OBS``)."""
        if self.date_obs is None:
            return None
        end = self.date_obs.timestamp() + (self.exposure_s or 0.0)
        return now.timestamp() - end


def read_slit_viewer_frame(path: str | os.PathLike, *, scale_arcsec: float | None = None,
                           pointing_error_deg: float = 0.05) -> SlitViewerFrame:
    """Read a slit-viewer FITS file (not modified) into a :class:`SlitViewerFrame`.

    Position from the header (``RA``/``DEC`` in degrees, ``OBJCTRA``/``OBJCTDEC``, or a WCS),
    scale from ``PIXSCALE``/``SECPIX``/... else ``scale_arcsec``; ``DATE-OBS``, ``EXPTIME``,
    ``GAIN``.

    Raises:
        DeviceError: (device ``nayuta``) naming the file when it is missing or not a FITS image.
    """
    from tenmon.vision.solve.frames import hint_from_header, read_frame

    p = Path(path)
    try:
        image, header = read_frame(p)
    except VisionError as exc:
        raise DeviceError(DEVICE, f"slit-viewer frame unreadable: {exc}") from exc
    h = hint_from_header(header, image.shape)
    scale = h.scale_arcsec or scale_arcsec
    hint = SolveHint(ra_deg=h.ra_deg, dec_deg=h.dec_deg, radius_deg=pointing_error_deg, scale_arcsec=scale)
    return SlitViewerFrame(image=image, header=header, hint=hint, date_obs=_date_obs(header),
                           exposure_s=_num(header, "EXPTIME", "EXPOSURE"), gain=_num(header, "GAIN", "EGAIN"),
                           path=p)


class NayutaDirectoryFeed:
    """The newest complete slit-viewer frame of a watched directory (see the module docstring).

    ``poll()`` does not block (a directory listing, a few ``stat`` calls, a header walk of files
    that just became steady) and returns ``None`` when nothing new is complete.

    Raises:
        DeviceError: (device ``nayuta``) when the directory does not exist.
    """

    def __init__(self, settings: NayutaFeedSettings, *, clock: Clock | None = None):
        if settings.directory is None:
            raise DeviceError(DEVICE, "no slit-viewer directory configured (nayuta.feed.directory)")
        self.settings = settings
        self.clock = clock or RealClock()
        self.directory = Path(settings.directory)
        self._intake = FrameDirectory(
            self.directory,
            settings=FrameDirectorySettings(pattern=settings.pattern, stable_s=settings.stable_s),
            clock=self.clock,
        )
        self.latest: SlitViewerFrame | None = None
        self.skipped = 0

    def poll(self) -> SlitViewerFrame | None:
        """The newest frame that became complete since the last call, read; else ``None``."""
        if not self.directory.is_dir():
            raise DeviceError(DEVICE, f"slit-viewer directory {self.directory} does not exist")
        ready = self._intake.poll()
        if not ready:
            return None
        self.skipped += len(ready) - 1
        frame = read_slit_viewer_frame(ready[-1], scale_arcsec=self.settings.scale_arcsec,
                                       pointing_error_deg=self.settings.pointing_error_deg)
        self.latest = frame
        return frame

    def is_stale(self, frame: SlitViewerFrame) -> bool:
        """Whether ``frame`` ended more than ``max_age_s`` ago (frames without ``DATE-OBS``: no)."""
        age = frame.age_s(self.clock.now())
        return age is not None and age > self.settings.max_age_s


class SimulatedNayutaFeed:
    """The simulated slit viewer: ``feed(target_ra_deg, target_dec_deg, when) -> SlitViewerFrame``.

    The target is the simulated sky's star within 0.5" of the position when there is one (pick
    one with :meth:`nearest_star`); otherwise a star of ``target_mag`` is added there and kept in
    :attr:`sky`, a catalogue provider that the simulated 60 cm CCD should render too, so that both
    telescopes see the same target. Each ``when`` gets its own noise and guiding jitter; Nayuta's
    reported position (``RA``/``DEC`` in the header) is the target plus a pointing error fixed
    per target. Rendering a 1050 x 600 frame takes ~0.2 s.
    """

    def __init__(self, settings: SimulatedSlitViewerSettings | None = None, *, sky: Any = None):
        from tenmon.vision.nayuta import SkyWithExtraStars
        from tenmon.vision.solve.catalogs import SimulatedSky

        self.settings = settings or SimulatedSlitViewerSettings()
        base = sky if sky is not None else SimulatedSky(seed=self.settings.sky_seed)
        self._extra: list[tuple[float, float, float]] = []
        self._base = base
        self.sky = SkyWithExtraStars(base, Table({"ra": np.zeros(0), "dec": np.zeros(0), "mag": np.zeros(0)}))

    def nearest_star(self, ra_deg: float, dec_deg: float, *, mag_bright: float = 11.0, mag_faint: float = 16.0,
                     radius_deg: float = 0.05) -> tuple[float, float, float]:
        """The simulated sky's star nearest (ra, dec) with ``mag_bright <= mag <= mag_faint``.

        Raises:
            DeviceError: when there is none within ``radius_deg``.
        """

        cone = self.sky.cone(ra_deg, dec_deg, radius_deg)
        m = np.asarray(cone["mag"], float)
        keep = (m >= mag_bright) & (m <= mag_faint)
        if not keep.any():
            raise DeviceError(DEVICE, f"simulated sky has no star of mag {mag_bright}-{mag_faint} within "
                                      f"{radius_deg * 60:.1f}' of ({ra_deg:.5f}, {dec_deg:+.5f})")
        ra, dec = np.asarray(cone["ra"], float)[keep], np.asarray(cone["dec"], float)[keep]
        i = int(np.argmin(separation_deg(ra, dec, ra_deg, dec_deg)))
        return float(ra[i]), float(dec[i]), float(m[keep][i])

    def __call__(self, target_ra_deg: float, target_dec_deg: float, when: datetime) -> SlitViewerFrame:
        """The slit viewer's frame of an exposure starting at ``when`` (timezone-aware UTC).

        Raises:
            ValueError: for a naive ``when`` or a declination outside -90..90.
        """
        from tenmon.vision.nayuta import render_slit_viewer

        if when.tzinfo is None:
            raise ValueError("when must be timezone-aware (UTC)")
        if not -90.0 <= target_dec_deg <= 90.0:
            raise ValueError(f"declination {target_dec_deg} outside -90..90")
        s = self.settings
        ra0, dec0 = float(target_ra_deg) % 360.0, float(target_dec_deg)
        cone = self.sky.cone(ra0, dec0, 1.0 / 3600.0)
        near = separation_deg(np.asarray(cone["ra"], float), np.asarray(cone["dec"], float), ra0, dec0)
        if not (len(near) and float(np.min(near)) * 3600.0 <= 0.5):
            self._add_star(ra0, dec0, s.target_mag)
        tick = int(round(when.timestamp() * 10))
        rng = np.random.default_rng(np.random.SeedSequence([s.seed, tick & 0xFFFFFFFF, tick >> 32]))
        jitter = tuple(float(v) for v in rng.normal(0.0, s.guiding_jitter_arcsec, 2))
        img, truth = render_slit_viewer(
            target_ra_deg=ra0, target_dec_deg=dec0, sky=self.sky, scale_arcsec_px=s.scale_arcsec,
            shape=(s.height_px, s.width_px), rotation_deg=s.rotation_deg, parity=s.parity,
            slit_width_arcsec=s.slit_width_arcsec, slit_angle_deg=s.slit_angle_deg,
            slit_length_arcsec=s.slit_length_arcsec, seeing_arcsec=s.seeing_arcsec, target_mag=None,
            target_offset_arcsec=jitter, exposure_s=s.exposure_s, sky_mag_arcsec2=s.sky_mag_arcsec2,
            zero_point_mag=s.zero_point_mag, gain=s.gain_e_per_adu, read_noise_e=s.read_noise_e,
            seed=int(rng.integers(0, 2**62)),
        )
        rep_ra, rep_dec = self.reported_position(ra0, dec0)
        header = self._header(truth, when, rep_ra, rep_dec)
        hint = SolveHint(ra_deg=rep_ra, dec_deg=rep_dec,
                         radius_deg=max(0.01, 3.0 * s.reported_pointing_error_arcsec / 3600.0),
                         scale_arcsec=s.scale_arcsec)
        return SlitViewerFrame(image=img, header=header, hint=hint, date_obs=when.astimezone(timezone.utc),
                               exposure_s=s.exposure_s, gain=s.gain_e_per_adu, truth=truth)

    def reported_position(self, ra_deg: float, dec_deg: float) -> tuple[float, float]:
        """Where Nayuta says it points for this target: off by a seeded error (fixed per target)."""
        s = self.settings
        key = [s.seed, int(round(ra_deg * 3.6e5)) & 0xFFFFFFFF, int(round((dec_deg + 90) * 3.6e5))]
        rng = np.random.default_rng(np.random.SeedSequence(key))
        pa = rng.uniform(0.0, 2 * math.pi)
        r = abs(rng.normal(0.0, s.reported_pointing_error_arcsec)) / 3600.0
        dec = dec_deg + r * math.cos(pa)
        ra = ra_deg + r * math.sin(pa) / max(1e-6, math.cos(math.radians(dec_deg)))
        return ra % 360.0, max(-90.0, min(90.0, dec))

    def write(self, directory: str | os.PathLike, target_ra_deg: float, target_dec_deg: float,
              when: datetime, *, name: str | None = None) -> Path:
        """Render a frame and write it into ``directory`` atomically (temporary name, rename)."""
        frame = self(target_ra_deg, target_dec_deg, when)
        d = Path(directory)
        path = d / (name or f"sv-{when.astimezone(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}.fits")
        data = np.clip(frame.image, 0, 65535).astype(np.uint16)
        hdu = fits.PrimaryHDU(data=data, header=frame.header)
        atomic_write(path, lambda tmp: hdu.writeto(tmp, overwrite=True), mode=0o644)
        return path

    def _add_star(self, ra: float, dec: float, mag: float) -> None:
        from tenmon.vision.nayuta import SkyWithExtraStars

        self._extra.append((ra, dec, mag))
        e = np.array(self._extra, float)
        self.sky = SkyWithExtraStars(self._base, Table({"ra": e[:, 0], "dec": e[:, 1], "mag": e[:, 2]}))

    def _header(self, truth, when: datetime, ra: float, dec: float) -> fits.Header:
        s = self.settings
        h = fits.Header()
        h["DATE-OBS"] = (fits_time(when), "UTC start of exposure")
        h["EXPTIME"] = (s.exposure_s, "[s] exposure time")
        h["GAIN"] = (s.gain_e_per_adu, "[e-/ADU]")
        h["RDNOISE"] = (s.read_noise_e, "[e-] read noise")
        h["SATURATE"] = (65535.0, "[ADU] saturation level")
        h["RA"] = (ra, "[deg] Nayuta's reported pointing")
        h["DEC"] = (dec, "[deg] Nayuta's reported pointing")
        h["PIXSCALE"] = (s.scale_arcsec, "[arcsec/px] as read out")
        h["TELESCOP"] = "Nayuta 2m (simulated)"
        h["INSTRUME"] = "slit viewer (simulated)"
        h["SIMULATD"] = (True, "rendered by tenmon.vision.nayuta")
        h["SIMTRA"] = (truth.target_ra_deg, "[deg] simulation truth: target RA")
        h["SIMTDEC"] = (truth.target_dec_deg, "[deg] simulation truth: target Dec")
        h["SIMTMAG"] = (round(truth.target_mag, 4), "simulation truth: target mag")
        h["SIMTX"] = (round(truth.target_xy[0], 3), "[px] simulation truth: target x (0-based)")
        h["SIMTY"] = (round(truth.target_xy[1], 3), "[px] simulation truth: target y (0-based)")
        return h


def make_feed(settings: NayutaFeedSettings, *, clock: Clock | None = None, sky: Any = None
              ) -> NayutaDirectoryFeed | SimulatedNayutaFeed:
    """The configured feed: a :class:`NayutaDirectoryFeed` or a :class:`SimulatedNayutaFeed`."""
    if settings.type == "directory":
        return NayutaDirectoryFeed(settings, clock=clock)
    return SimulatedNayutaFeed(settings.simulated, sky=sky)


def _num(header: fits.Header, *keys: str) -> float | None:
    for k in keys:
        v = header.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)) and float(v) > 0:
            return float(v)
    return None


def _date_obs(header: fits.Header) -> datetime | None:
    v = header.get("DATE-OBS")
    if not isinstance(v, str) or not v.strip():
        return None
    try:
        return parse_utc(v)
    except ValueError:
        return None


__all__ = [
    "NayutaFeedSettings",
    "SimulatedSlitViewerSettings",
    "SlitViewerFrame",
    "read_slit_viewer_frame",
    "NayutaDirectoryFeed",
    "SimulatedNayutaFeed",
    "make_feed",
]
