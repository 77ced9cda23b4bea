"""SExtractor (Debian's ``source-extractor``) as the reference catalogue for tenmon's sources.

Not used to process frames: tenmon extracts with sep (``tenmon.vision.frames.sources``). This runs the
real program, with its default configuration (``source-extractor -dd``) plus the frame's gain
and saturation, so a benchmark and a test can measure how far tenmon's catalogue is from it
(``benchmarks/sources_vs_sextractor.py``, docs/bench/sources.md). Pure apart from running the
program in a temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

from tenmon.core.errors import VisionError

#: The program's names: Debian ships ``source-extractor``, older builds ``sex``/``sextractor``.
PROGRAMS = ("source-extractor", "sextractor", "sex")
#: Where Debian keeps the default filter (3x3 pyramid, "all-ground", FWHM 2 px).
CONFIG_DIRS = (Path("/usr/share/source-extractor"), Path("/usr/share/sextractor"))
PARAMS = ("NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "FLUX_AUTO", "FLUXERR_AUTO",
          "FLUX_ISO", "FLUXERR_ISO", "FWHM_IMAGE", "FLAGS", "ISOAREA_IMAGE")


def find_program() -> str | None:
    """Path of the SExtractor executable, or ``None`` when it is not installed."""
    for name in PROGRAMS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _default_conv() -> Path | None:
    for d in CONFIG_DIRS:
        if (d / "default.conv").is_file():
            return d / "default.conv"
    return None


def run_sextractor(image: np.ndarray, *, gain: float | None = None, saturation_adu: float | None = None,
                   program: str | None = None, timeout_s: float = 120.0) -> Table:
    """SExtractor's catalogue of ``image`` with its default configuration plus gain and saturation.

    Args:
        image: 2-D frame [ADU], background not subtracted.
        gain: [e-/ADU]; ``None`` keeps SExtractor's default (0: no Poisson term).
        saturation_adu: ``SATUR_LEVEL``; ``None`` keeps the default (50000).
        program: the executable (default: :func:`find_program`).

    Returns:
        Table ``x``, ``y`` (0-based: SExtractor's 1-based ``X_IMAGE``/``Y_IMAGE`` minus 1),
        ``xwin``, ``ywin``, ``flux_auto``, ``fluxerr_auto``, ``snr`` (= FLUX_AUTO/FLUXERR_AUTO),
        ``flux_iso``, ``fluxerr_iso``, ``fwhm``, ``flags``, ``isoarea``; ``meta['version']``.

    Raises:
        VisionError: program missing, failing or timing out.
    """
    exe = program or find_program()
    if exe is None:
        raise VisionError("SExtractor (source-extractor) is not installed")
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise VisionError(f"expected a 2-D image, got shape {img.shape}")
    with tempfile.TemporaryDirectory(prefix="tenmon-sex-") as tmp:
        d = Path(tmp)
        fits.PrimaryHDU(img).writeto(d / "frame.fits")
        dd = subprocess.run([exe, "-dd"], capture_output=True, text=True, timeout=timeout_s)
        if dd.returncode != 0:
            raise VisionError(f"{exe} -dd failed: {dd.stderr.strip()[-300:]}")
        (d / "default.sex").write_text(dd.stdout)
        (d / "default.param").write_text("\n".join(PARAMS) + "\n")
        conv = _default_conv()
        if conv is None:  # the documented default filter, written out
            conv = d / "default.conv"
            conv.write_text("CONV NORM\n1 2 1\n2 4 2\n1 2 1\n")
        args = [exe, "frame.fits", "-c", "default.sex", "-CATALOG_NAME", "cat.fits", "-CATALOG_TYPE", "FITS_1.0",
                "-PARAMETERS_NAME", "default.param", "-FILTER_NAME", str(conv), "-CHECKIMAGE_TYPE", "NONE",
                "-VERBOSE_TYPE", "QUIET", "-NTHREADS", "1"]
        if gain is not None:
            args += ["-GAIN", f"{float(gain):.6g}"]
        if saturation_adu is not None:
            args += ["-SATUR_LEVEL", f"{float(saturation_adu):.8g}"]
        try:
            run = subprocess.run(args, cwd=d, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise VisionError(f"{exe} timed out after {timeout_s:.0f} s") from exc
        if run.returncode != 0 or not (d / "cat.fits").is_file():
            raise VisionError(f"{exe} failed ({run.returncode}): {run.stderr.strip()[-300:]}")
        cat = Table.read(d / "cat.fits", hdu=1)
        version = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=timeout_s).stdout.strip()
    err = np.asarray(cat["FLUXERR_AUTO"], float)
    out = Table({
        "x": np.asarray(cat["X_IMAGE"], float) - 1.0,
        "y": np.asarray(cat["Y_IMAGE"], float) - 1.0,
        "xwin": np.asarray(cat["XWIN_IMAGE"], float) - 1.0,
        "ywin": np.asarray(cat["YWIN_IMAGE"], float) - 1.0,
        "flux_auto": np.asarray(cat["FLUX_AUTO"], float),
        "fluxerr_auto": err,
        "snr": np.where(err > 0, np.asarray(cat["FLUX_AUTO"], float) / np.where(err > 0, err, 1.0), 0.0),
        "flux_iso": np.asarray(cat["FLUX_ISO"], float),
        "fluxerr_iso": np.asarray(cat["FLUXERR_ISO"], float),
        "fwhm": np.asarray(cat["FWHM_IMAGE"], float),
        "flags": np.asarray(cat["FLAGS"], int),
        "isoarea": np.asarray(cat["ISOAREA_IMAGE"], int),
    })
    out.meta["version"] = version
    return out


def agreement(reference: Table, sources: Table, *, min_snr: float = 10.0, radius_px: float = 1.0) -> dict:
    """How many of the reference's objects with SNR >= ``min_snr`` have a source within ``radius_px``.

    Returns a dict: ``n_ref`` (reference objects at that SNR), ``n_matched``, ``fraction``
    (``None`` when ``n_ref`` is 0), ``median_sep_px`` of the matches, and ``missed``: the
    indices (into ``reference``) of the reference objects without a match.
    """
    sel = np.nonzero(np.asarray(reference["snr"], float) >= min_snr)[0]
    if len(sel) == 0:
        return {"n_ref": 0, "n_matched": 0, "fraction": None, "median_sep_px": None, "missed": []}
    if len(sources) == 0:
        return {"n_ref": len(sel), "n_matched": 0, "fraction": 0.0, "median_sep_px": None, "missed": sel.tolist()}
    tree = cKDTree(np.column_stack([np.asarray(sources["x"], float), np.asarray(sources["y"], float)]))
    d, _ = tree.query(np.column_stack([np.asarray(reference["x"], float)[sel],
                                       np.asarray(reference["y"], float)[sel]]))
    ok = d <= radius_px
    return {"n_ref": int(len(sel)), "n_matched": int(ok.sum()), "fraction": float(ok.mean()),
            "median_sep_px": float(np.median(d[ok])) if ok.any() else None, "missed": sel[~ok].tolist()}


__all__ = ["find_program", "run_sextractor", "agreement", "PROGRAMS"]
