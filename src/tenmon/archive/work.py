"""One frame of the archive, in a worker process: fingerprint, header facts, the pipeline, detections.

:func:`process_task` is what the engine runs on a worker (a local Dask worker process or a
remote one): it takes a small dict (:class:`Task` as JSON-ready values) and returns a small
dict: the frame's row for the index and its detections as numpy arrays. It never raises for a
bad frame: an unreadable file, a file with no image, a pipeline error or a failed solve become
``status`` and ``reasons`` (``kind: detail``) in the result, with whatever could be measured.

The work is the project's frame pipeline (``vision.pipeline.process_frame``: calibration with the
frame's masters, LA Cosmic, background, sources) with the header-hinted solver chain
(``vision.solve.header_solver``, the daemon's own) and no products written. The pipeline's
identity (:func:`pipeline_version`: tenmon's version and a hash of the pipeline's source files)
and the settings' hash decide when a frame must be redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tenmon.config.vision import PipelineSettings, SolverSettings

log = logging.getLogger(__name__)

#: The index rows' schema revision: bump when the meaning of a stored value changes.
SCHEMA_REVISION = 1
#: Source files whose code makes the archive's numbers (their hash is part of the pipeline version).
_PIPELINE_SOURCES = ("vision/frames/pipeline.py", "vision/frames/calibration.py", "vision/frames/cosmics.py", "vision/frames/sources.py",
                     "vision/solve/hinted.py", "vision/solve/chain.py", "vision/solve/wcsfit.py",
                     "vision/solve/astrometry_net.py", "vision/solve/frames.py",
                     "vision/solve/header_solver.py", "archive/work.py", "archive/headers.py")
_VERSION: str | None = None


def pipeline_version() -> str:
    """``<tenmon version>+<12 hex digits>``: the hash of the pipeline's source files, so any
    change to the code that makes the numbers redoes the frames it made (tell workers of a
    cluster apart that run other code)."""
    global _VERSION
    if _VERSION is None:
        import tenmon

        base = Path(tenmon.__file__).resolve().parent
        h = hashlib.blake2b(digest_size=6)
        h.update(f"schema {SCHEMA_REVISION};".encode())
        for rel in _PIPELINE_SOURCES:
            p = base / rel
            h.update(rel.encode())
            h.update(p.read_bytes() if p.is_file() else b"<missing>")
        _VERSION = f"{tenmon.__version__}+{h.hexdigest()}"
    return _VERSION


class ArchiveSettings(BaseModel):
    """How the archive processes frames (``--settings`` file: ``[pipeline]``, ``[solver]`` and
    these keys). Their hash (:meth:`settings_hash`) is stored with every frame."""

    model_config = ConfigDict(extra="forbid")

    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    solver: SolverSettings = Field(default_factory=lambda: SolverSettings(order=["hinted"]))
    blind: bool = Field(False, description="also solve frames blind with local solve-field")
    longitude_deg: float | None = Field(None, ge=-180, le=360,
                                        description="site longitude (east +) for the night; else the header's")
    keep_flags: int = Field(0, ge=0, description="detections with any of these flag bits set are dropped")

    def effective(self) -> "ArchiveSettings":
        """The settings as the worker uses them: no products, the chain with ``solve-field``
        when blind (and never when not)."""
        s = self.model_copy(deep=True)
        p = s.pipeline.products
        p.clean_fits = p.mask_fits = p.sources = p.clusters = p.regions = p.preview = False
        s.pipeline.calibration.directory = None  # masters come per frame (walk.masters_for)
        order = [o for o in s.solver.order if o != "astrometry_net"]
        if s.blind:
            order.append("astrometry_net")
        s.solver.order = order or ["hinted"]
        return s

    def settings_hash(self) -> str:
        """16 hex digits of the canonical JSON of :meth:`effective`."""
        blob = json.dumps(self.effective().model_dump(mode="json"), sort_keys=True)
        return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


# ---------------------------------------------------------------------------- worker side

_MASTERS: dict[tuple[str, str], Any] = {}
_SETTINGS: dict[str, ArchiveSettings] = {}


def _limit_threads() -> None:
    """One library thread in this worker (a Dask worker not started by us may lack the env)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # threadpoolctl comes with scikit-learn; without it the env vars do
        pass


def _settings(settings_json: str) -> ArchiveSettings:
    s = _SETTINGS.get(settings_json)
    if s is None:
        _SETTINGS.clear()
        s = _SETTINGS[settings_json] = ArchiveSettings.model_validate_json(settings_json).effective()
    return s


def _masters(directory: str | None, key: str):
    from tenmon.vision.frames import calibration

    if not directory:
        return calibration.Masters()
    k = (directory, key)
    if k not in _MASTERS:
        if len(_MASTERS) > 8:
            _MASTERS.clear()
        _MASTERS[k] = calibration.load_masters(directory)
    return _MASTERS[k]


def process_task(task: dict[str, Any]) -> dict[str, Any]:
    """Process one frame (see the module doc). ``task`` keys: ``path``, ``size``, ``mtime_ns``,
    ``known_sha`` (skip the work if the content still has this hash), ``settings_json``,
    ``masters`` (directory or ``None``), ``masters_key``, ``settings_hash``."""
    _limit_threads()
    t0 = time.perf_counter()
    path = task["path"]
    out: dict[str, Any] = {
        "path": path, "size": task.get("size"), "mtime_ns": task.get("mtime_ns"), "sha": None,
        "status": "failed", "reasons": [], "pipeline_version": pipeline_version(),
        "settings_hash": task.get("settings_hash"), "masters": task.get("masters"),
        "masters_key": task.get("masters_key", ""), "facts": None, "detections": None,
        "worker_pid": os.getpid(),
    }
    try:
        st = os.stat(path)
        out["size"], out["mtime_ns"] = st.st_size, st.st_mtime_ns
        from tenmon.archive.walk import content_hash

        out["sha"] = content_hash(path)
    except OSError as exc:
        out["reasons"].append(f"unreadable: {exc.strerror or exc}")
        return _finish(out, t0)
    if task.get("known_sha") and task["known_sha"] == out["sha"]:
        out["unchanged"] = True
        return _finish(out, t0)
    s = _settings(task["settings_json"])
    try:
        header, shape = scan_image_header(path)
    except UnreadableFrame as exc:
        out["reasons"].append(str(exc))
        return _finish(out, t0)
    from tenmon.archive.headers import read_facts

    facts = read_facts(header)
    out["facts"] = facts.to_json()
    out["night"] = facts.night(s.longitude_deg)
    out["shape"] = shape
    if not facts.has_time:
        out["reasons"].append("header: no observation time (tried "
                              + ", ".join(facts.missing.get("time", [])) + ")")
    try:
        res = _run_pipeline(path, s, task, facts)
    except Exception as exc:  # noqa: BLE001 - every failure of a frame is recorded, never raised
        from tenmon.core.errors import VisionError

        kind = "unreadable" if isinstance(exc, VisionError) and "cannot read" in str(exc) else "pipeline"
        out["reasons"].append(f"{kind}: {type(exc).__name__}: {exc}" if kind == "pipeline" else f"{kind}: {exc}")
        return _finish(out, t0)
    out.update(res)
    if out.get("wcs") is None:
        out["reasons"].append(f"solve failed: {out.get('solve_reason') or 'no WCS'}")
    out["status"] = "partial" if out["reasons"] else "ok"
    return _finish(out, t0)


class UnreadableFrame(Exception):
    """A file the archive cannot read as a frame (its message says why: ``unreadable: ...``)."""


#: Tile-compression bookkeeping keywords (FITS tiled image convention), not the frame's own.
_COMPRESSION_KEY = re.compile(r"^Z(IMAGE|BITPIX|NAXIS\d*|TILE\d+|CMPTYPE|NAME\d+|VAL\d+|QUANTIZ|DITHER0|SIMPLE|"
                              r"EXTEND|TENSION|PCOUNT|GCOUNT|HECKSUM|DATASUM|BLANK|SCALE|ZERO|BLOCKED)$")


def scan_image_header(path: str):
    """The merged header of the first 2-D image HDU and the image's ``(ny, nx)``, reading headers
    only. Raises ``UnreadableFrame`` with ``unreadable: ...`` or ``no image: ...``."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            hdr0 = hdul[0].header
            for hdu in hdul:
                h = hdu.header
                if h.get("ZIMAGE"):  # a tile-compressed image (.fz): its real axes are ZNAXISn
                    naxes = [int(h.get(f"ZNAXIS{i}", 0) or 0) for i in range(1, int(h.get("ZNAXIS", 0)) + 1)]
                elif str(h.get("XTENSION", "")).strip() in ("BINTABLE", "TABLE"):
                    continue
                else:
                    naxes = [int(h.get(f"NAXIS{i}", 0) or 0) for i in range(1, int(h.get("NAXIS", 0)) + 1)]
                dims = [n for n in naxes if n != 1]
                if len(dims) == 2 and min(dims) > 0:
                    merged = hdr0.copy()
                    if hdu is not hdul[0]:
                        for card in h.cards:
                            if card.keyword not in ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "COMMENT",
                                                    "HISTORY", "") and not _COMPRESSION_KEY.match(card.keyword):
                                merged[card.keyword] = (card.value, card.comment)
                    return merged, (dims[-1], dims[0])
            n = len(hdul)
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError... for a broken file
        raise UnreadableFrame(f"unreadable: not a readable FITS file: {exc}") from exc
    raise UnreadableFrame(f"no image: none of the {n} HDU(s) holds a 2-D image")


def _run_pipeline(path: str, s: ArchiveSettings, task: dict, facts) -> dict[str, Any]:
    from tenmon.vision.frames.pipeline import process_frame
    from tenmon.vision.solve.header_solver import header_solver

    masters = _masters(task.get("masters"), task.get("masters_key", ""))
    lon = s.longitude_deg if s.longitude_deg is not None else (facts.site_lon_deg or 0.0)
    solver = header_solver(s.solver, longitude_deg=lon)
    seen: dict[str, tuple[int, int]] = {}

    def solve(*, image, sources, header):
        seen["shape"] = tuple(int(v) for v in image.shape)  # the calibrated (trimmed) frame's
        return solver(image=image, sources=sources, header=header)

    with tempfile.TemporaryDirectory(prefix="tenmon-archive-") as tmp:
        r = process_frame(path, out_dir=tmp, settings=s.pipeline, solver=solve, masters=masters)
    q = r.quality.to_json()
    solve_json = (r.solve or {}).get("solve") or {}
    out: dict[str, Any] = {
        "n_sources": r.n_sources, "n_cosmic_pixels": r.n_cosmic_pixels,
        "fwhm_px": q.get("fwhm_px"), "background": q.get("background"),
        "background_rms": q.get("background_rms"), "ellipticity": q.get("ellipticity"),
        "limiting_mag": q.get("limiting_mag"), "gain_used": r.header.get("gain_e_per_adu"),
        "pipeline_ms": r.elapsed_ms, "warnings": list(r.warnings),
        "wcs_source": r.wcs_source, "solver": solve_json.get("solver"),
        "solve_reason": solve_json.get("reason"), "solve_rms_arcsec": solve_json.get("rms_arcsec"),
        "solve_n_matched": solve_json.get("n_matched"),
    }
    if "shape" in seen:
        out["shape"] = list(seen["shape"])
    if r.wcs is not None:
        out["wcs"] = _wcs_cards(r.wcs)
        out.update(footprint(r.wcs, tuple(out["shape"])))
    else:
        out["wcs"] = None
    out["detections"] = detections_of(r.sources, exptime_s=facts.exptime_s, gain=r.header.get("gain_e_per_adu"),
                                      keep_flags=s.keep_flags)
    return out


def _wcs_cards(wcs) -> dict[str, Any]:
    h = wcs.to_header(relax=True)
    out = {}
    for card in h.cards:
        if card.keyword in ("COMMENT", "HISTORY", ""):
            continue
        v = card.value
        out[card.keyword] = v.item() if hasattr(v, "item") else v
    return out


def footprint(wcs, shape: tuple[int, int]) -> dict[str, Any]:
    """Centre, radius (centre to the farthest corner) [deg] and the four corners of a frame."""
    ny, nx = shape
    pix = np.array([[(nx - 1) / 2, (ny - 1) / 2], [-0.5, -0.5], [nx - 0.5, -0.5], [nx - 0.5, ny - 0.5],
                    [-0.5, ny - 0.5]])
    w = wcs.all_pix2world(pix, 0)
    ra0, dec0 = float(w[0, 0]) % 360.0, float(w[0, 1])
    from tenmon.core.astro import separation_deg

    r = float(np.max(separation_deg(w[1:, 0], w[1:, 1], ra0, dec0)))
    return {"ra_deg": ra0, "dec_deg": dec0, "radius_deg": r,
            "corners": [[round(float(a) % 360.0, 7), round(float(b), 7)] for a, b in w[1:]]}


#: Detection columns (numpy dtypes) as the worker returns them; ``detections.SCHEMA`` stores them.
DETECTION_COLUMNS = {"x": np.float32, "y": np.float32, "ra": np.float64, "dec": np.float64,
                     "flux": np.float64, "flux_err": np.float64, "mag": np.float32, "mag_err": np.float32,
                     "snr": np.float32, "fwhm": np.float32, "flags": np.int32}


def detections_of(sources, *, exptime_s: float | None, gain: float | None, keep_flags: int = 0
                  ) -> dict[str, np.ndarray]:
    """The detections to store from a source table.

    ``mag`` is the instrumental magnitude of the electron rate, ``-2.5 log10(flux * gain /
    exptime_s)`` (zero point 0: add a frame's zero point for calibrated magnitudes); NaN when the
    exposure is unknown or the flux not positive. ``ra``/``dec`` are NaN without a WCS.
    """
    n = 0 if sources is None else len(sources)
    cols: dict[str, np.ndarray] = {}
    if n == 0:
        return {k: np.zeros(0, dtype=t) for k, t in DETECTION_COLUMNS.items()}
    flags = np.asarray(sources["flags"], dtype=np.int32)
    keep = (flags & keep_flags) == 0 if keep_flags else np.ones(n, bool)
    flux = np.asarray(sources["flux"], dtype=np.float64)[keep]
    ferr = np.asarray(sources["flux_err"], dtype=np.float64)[keep]
    cols["x"] = np.asarray(sources["x"], np.float32)[keep]
    cols["y"] = np.asarray(sources["y"], np.float32)[keep]
    if "ra" in sources.colnames:
        cols["ra"] = np.asarray(sources["ra"], np.float64)[keep]
        cols["dec"] = np.asarray(sources["dec"], np.float64)[keep]
    else:
        cols["ra"] = np.full(int(keep.sum()), np.nan)
        cols["dec"] = np.full(int(keep.sum()), np.nan)
    cols["flux"], cols["flux_err"] = flux, ferr
    with np.errstate(divide="ignore", invalid="ignore"):
        if exptime_s and exptime_s > 0 and gain and gain > 0:
            mag = -2.5 * np.log10(flux * gain / exptime_s)
        else:
            mag = np.full(len(flux), np.nan)
        mag = np.where(flux > 0, mag, np.nan)
        merr = np.where(flux > 0, 2.5 / math.log(10) * ferr / flux, np.nan)
    cols["mag"] = mag.astype(np.float32)
    cols["mag_err"] = merr.astype(np.float32)
    cols["snr"] = np.asarray(sources["snr"], np.float32)[keep]
    cols["fwhm"] = np.asarray(sources["fwhm"], np.float32)[keep]
    cols["flags"] = flags[keep]
    return cols


def _finish(out: dict[str, Any], t0: float) -> dict[str, Any]:
    out["elapsed_ms"] = (time.perf_counter() - t0) * 1e3
    # Peak resident memory of this worker process so far [MiB] (Linux: ru_maxrss in KiB).
    out["worker_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if out["status"] != "ok" and not out["reasons"] and not out.get("unchanged"):
        out["reasons"].append("failed: no reason recorded")
    return out


__all__ = ["ArchiveSettings", "DETECTION_COLUMNS", "SCHEMA_REVISION", "detections_of", "footprint",
           "pipeline_version", "process_task"]
