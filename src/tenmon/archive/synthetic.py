"""A small, real-looking frame archive with known truth, for tests, benchmarks and demonstrations.

:func:`make_archive` renders frames of one field (``vision.skyrender``, stars of the simulated
sky ``SimulatedSky(seed=0)``, which the hinted solver uses as its catalogue) on several nights,
in the header styles of two observatories:

* ``A`` (a modern site, plain or gzipped ``.fits``): ``DATE-OBS`` (ISO), ``EXPTIME``, ``RA``/``DEC``
  in degrees, ``GAIN``, ``PIXSCALE``, ``OBSERVAT``, ``SITELONG``;
* ``B`` (an older camera program, tile-compressed ``.fits.fz`` or plain ``.fit``): ``MJD-OBS``,
  ``EXPOSURE``, ``OBJCTRA``/``OBJCTDEC`` sexagesimal, ``EGAIN``, ``XPIXSZ``/``FOCALLEN``;

both with a bias pedestal of 1000 ADU whose master bias is in ``ROOT/masters/`` (the archive's
convention);

plus a variable star whose magnitude follows a known sinusoid (:func:`variable_mag`), and,
optionally, the files every archive has: a truncated frame, a text file named ``.fits``, a
FITS file with only a table, a frame without a date and a frame without pointing keywords.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from tenmon.vision.render import sky as skyrender
from tenmon.vision.solve.catalogs import SimulatedSky

FIELD = (150.0, 20.0)
VARIABLE = (150.0042, 20.0031)
VAR_MEAN_MAG, VAR_AMPLITUDE_MAG, VAR_PERIOD_D, VAR_EPOCH_MJD = 15.2, 0.6, 2.37, 61040.0
ZERO_POINT_MAG = 22.5  # the magnitude giving 1 e-/s (skyrender's convention)
SCALE_ARCSEC = 1.2


def variable_mag(mjd: float | np.ndarray) -> float | np.ndarray:
    """The injected variable's true magnitude at ``mjd``."""
    return VAR_MEAN_MAG + VAR_AMPLITUDE_MAG * np.sin(2 * np.pi * (np.asarray(mjd) - VAR_EPOCH_MJD) / VAR_PERIOD_D)


@dataclass
class SyntheticArchive:
    """What :func:`make_archive` wrote: ``frames`` (path -> mid-exposure MJD and style), the
    corrupt files (path -> the failure kind expected) and the root."""

    root: Path
    frames: dict[str, dict] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)


def render(mjd_start: float, *, style: str, seed: int, size: int = 256, exposure_s: float = 60.0,
           variable: bool = True, scale_arcsec: float = SCALE_ARCSEC):
    """One rendered frame of the field at ``mjd_start``: ``(RenderedFrame, header, true_wcs)``."""
    rng = np.random.default_rng(seed)
    ra0 = FIELD[0] + rng.uniform(-0.006, 0.006)
    dec0 = FIELD[1] + rng.uniform(-0.006, 0.006)
    wcs = skyrender.simple_wcs((ra0, dec0), shape=(size, size), pixel_scale_arcsec=scale_arcsec,
                               rotation_deg=float(rng.uniform(-3, 3)) + (180.0 if style == "B" else 0.0))
    stars = SimulatedSky(seed=0).stars_for_wcs(wcs, (size, size))
    mid = mjd_start + exposure_s / 2 / 86400.0
    if variable:
        stars = vstack([stars, Table({"ra": [VARIABLE[0]], "dec": [VARIABLE[1]],
                                      "mag": [float(variable_mag(mid))]})])
    gain = 1.5 if style == "A" else 2.2
    frame = skyrender.render_star_field(
        wcs=wcs, stars=stars, shape=(size, size), fwhm_px=2.6, sky_adu=250.0 if style == "A" else 180.0,
        exposure_s=exposure_s, gain=gain, read_noise_e=7.0, zero_point_mag=ZERO_POINT_MAG,
        n_cosmic_rays=int(rng.integers(3, 10)), n_hot_pixels=5, bad_columns=(),
        bias_adu=1000.0, seed=seed)
    t = datetime(1858, 11, 17, tzinfo=timezone.utc) + timedelta(days=mjd_start)
    h = skyrender.frame_header(frame, date_obs=t, mount_ra_deg=ra0 + rng.uniform(-0.004, 0.004),
                               mount_dec_deg=dec0 + rng.uniform(-0.004, 0.004), object_name="FIELD-150+20",
                               filter_name="V")
    for k in ("SIMULATD", "SIMSEED", "SEEING"):
        h.remove(k, ignore_missing=True)
    if style == "A":
        for k in ("EXPOSURE", "EGAIN", "OBJCTRA", "OBJCTDEC", "XPIXSZ", "YPIXSZ", "XBINNING", "YBINNING"):
            h.remove(k, ignore_missing=True)
        h["PIXSCALE"] = (scale_arcsec, "[arcsec/px]")
        h["TELESCOP"] = "60cm Ritchey-Chretien"
        h["INSTRUME"] = "CCD-A 2k"
        h["OBSERVAT"] = "Site A"
        h["SITELONG"] = (134.3356, "[deg] east")
        h["SITELAT"] = (35.0253, "[deg]")
    else:
        for k in ("DATE-OBS", "EXPTIME", "GAIN", "RA", "DEC"):
            h.remove(k, ignore_missing=True)
        h["MJD-OBS"] = (mjd_start, "start of exposure")
        h["FOCALLEN"] = (round(206.265 * skyrender.PIXEL_SIZE_UM / scale_arcsec, 2), "[mm]")
        h["TELESCOP"] = "old 60cm"
        h["INSTRUME"] = "ST-B camera"
        h["SITENAME"] = "Site B"
    return frame, h, wcs


def write(frame, header: fits.Header, path: Path) -> Path:
    """Write a frame as its name says: ``.fits``, ``.fits.gz`` or tile-compressed ``.fits.fz``."""
    data = frame.image.astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".fz"):
        hdus = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data=data, header=header, compression_type="RICE_1")])
    else:
        hdus = fits.HDUList([fits.PrimaryHDU(data=data, header=header)])
    hdus.writeto(path, overwrite=True)
    return path


def make_archive(root: str | Path, *, nights: int = 4, per_night: int = 3, size: int = 256,
                 corrupt: bool = True, first_mjd: float = 61040.54, seed: int = 1) -> SyntheticArchive:
    """Write the archive under ``root`` (see the module doc); returns its truth.

    Night ``n`` lives in ``root/YYYY-MM-DD/``; frames alternate styles A and B; every third
    frame of style A is gzipped and every second of style B tile-compressed.
    """
    root = Path(root)
    out = SyntheticArchive(root=root)
    k = 0
    for n in range(nights):
        night_mjd = first_mjd + n
        # UTC 13:00 is the same night at site A (134 deg E) and at longitude 0 (site B's header
        # says nothing): the night is the date of local time minus 12 h.
        night = (datetime(1858, 11, 17) + timedelta(days=math.floor(night_mjd - 0.5))).date()
        d = root / night.isoformat()
        for i in range(per_night):
            style = "A" if (k % 2 == 0) else "B"
            mjd = night_mjd + 0.05 * i + 0.01 * n
            frame, h, _ = render(mjd, style=style, seed=seed * 1000 + k, size=size)
            if style == "A":
                name = f"a{k:03d}.fits.gz" if k % 3 == 0 else f"a{k:03d}.fits"
            else:
                name = f"b{k:03d}.fits.fz" if (k // 2) % 2 == 0 else f"b{k:03d}.fit"
            p = write(frame, h, d / name)
            out.frames[str(p.resolve())] = {"mjd_mid": mjd + 30.0 / 86400.0, "style": style, "night": night.isoformat()}
            k += 1
    mdir = root / "masters"
    mdir.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.full((size, size), 1000.0, np.float32)).writeto(mdir / "bias.fits", overwrite=True)
    if corrupt:
        bad = root / "bad"
        bad.mkdir(parents=True, exist_ok=True)
        frame, h, _ = render(first_mjd + 0.2, style="A", seed=seed * 1000 + 900, size=size)
        good = write(frame, h, bad / "whole.tmp.fits")
        blob = good.read_bytes()
        good.unlink()
        (bad / "truncated.fits").write_bytes(blob[: len(blob) // 2])
        out.bad[str((bad / "truncated.fits").resolve())] = "unreadable"
        (bad / "notes.fits").write_text("observing log, not a FITS file\n")
        out.bad[str((bad / "notes.fits").resolve())] = "unreadable"
        tab = fits.BinTableHDU(Table({"a": [1, 2, 3]}))
        fits.HDUList([fits.PrimaryHDU(), tab]).writeto(bad / "table_only.fits", overwrite=True)
        out.bad[str((bad / "table_only.fits").resolve())] = "no image"
        frame, h, _ = render(first_mjd + 0.21, style="A", seed=seed * 1000 + 901, size=size)
        del h["DATE-OBS"]
        write(frame, h, bad / "nodate.fits")
        out.bad[str((bad / "nodate.fits").resolve())] = "header"
        frame, h, _ = render(first_mjd + 0.22, style="A", seed=seed * 1000 + 902, size=size)
        for key in ("RA", "DEC", "OBJCTRA", "OBJCTDEC"):
            h.remove(key, ignore_missing=True)
        write(frame, h, bad / "nopointing.fits")
        out.bad[str((bad / "nopointing.fits").resolve())] = "solve failed"
    (root / "README.txt").write_text("not a frame: the walk ignores it\n")
    return out


__all__ = ["FIELD", "VARIABLE", "ZERO_POINT_MAG", "SyntheticArchive", "make_archive", "render", "variable_mag",
           "write"]
