"""The frame pipeline: read, calibrate, LA Cosmic, background and sources, (solve), clusters, products.

``process_frame(path, out_dir=..., settings=...)`` is pure apart from reading its input and
writing its products (atomically); it keeps no state between calls, so a process pool can run it.
The plate solver is an optional callable (see :func:`process_frame`); whatever WCS is known (the
solver's, else a celestial WCS in the header) gives sources and candidates ``ra``/``dec``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from astropy.io import fits
from astropy.table import Table

from tenmon.core import offline
from tenmon.core.errors import TenmonError, VisionError
from tenmon.vision.frames import calibration as cal
from tenmon.vision.frames import clusters as clu
from tenmon.vision.frames import cosmics as cr
from tenmon.vision.frames import hfr as hfr_
from tenmon.vision.frames import products as prod
from tenmon.vision.frames import sources as src

offline.configure()

from astropy.wcs import WCS  # noqa: E402
from astropy.wcs import FITSFixedWarning  # noqa: E402
from tenmon.config.vision import PipelineSettings

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.fz", ".fits.gz", ".fit.gz", ".fz")


#: What a plate solver returns: an object with ``.wcs`` (``astropy.wcs.WCS`` or ``None`` when it
#: did not solve) and ``.to_json() -> dict`` merged into the frame's JSON.
Solver = Callable[..., Any]


@dataclass
class FrameResult:
    """Everything one frame produced; :meth:`to_json` is the CLI's and the daemon's record."""

    frame: str
    n_cosmic_pixels: int
    n_sources: int
    quality: src.FrameQuality
    clusters: list[clu.FrameCluster]
    products: dict[str, str | None]
    elapsed_ms: float
    timings_ms: dict[str, float]
    header: dict[str, Any] = field(default_factory=dict)
    wcs: WCS | None = None
    wcs_source: str | None = None
    solve: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    sources: Table | None = None
    eps_px: float | None = None
    min_samples: int | None = None
    hfr: hfr_.HalfFluxRadius | None = None

    @property
    def fwhm_px(self) -> float | None:
        return self.quality.fwhm_px

    def to_json(self) -> dict[str, Any]:
        """The issue's per-frame JSON (keys ``frame``, ``n_cosmic_pixels``, ``n_sources``,
        ``fwhm_px``, ``background``, ``background_rms``, ``clusters``, ``products``,
        ``elapsed_ms``, ``timings_ms``) plus ``quality``, ``header``, ``wcs_source``,
        ``cluster_scale``, ``warnings``, ``hfr_px`` (the stars' median half-flux radius, the
        focus measure: :mod:`tenmon.vision.frames.hfr`) and ``hfr``; a solver's dict is merged in last."""
        q = self.quality.to_json()
        out: dict[str, Any] = {
            "frame": self.frame,
            "n_cosmic_pixels": self.n_cosmic_pixels,
            "n_sources": self.n_sources,
            "fwhm_px": q["fwhm_px"],
            "background": q["background"],
            "background_rms": q["background_rms"],
            "clusters": [c.to_json() for c in self.clusters],
            "products": dict(self.products),
            "elapsed_ms": round(self.elapsed_ms, 1),
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "quality": q,
            "header": self.header,
            "wcs_source": self.wcs_source,
            "cluster_scale": {"eps_px": None if self.eps_px is None else round(self.eps_px, 2),
                              "min_samples": self.min_samples},
            "warnings": list(self.warnings),
            "hfr_px": None if self.hfr is None else self.hfr.to_json()["hfr_px"],
            "hfr": None if self.hfr is None else self.hfr.to_json(),
        }
        if self.solve:
            out.update(self.solve)
        return out


def product_paths(path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Where :func:`process_frame` writes the products of ``path``."""
    stem = frame_stem(path)
    d = Path(out_dir)
    return {
        "clean": d / f"{stem}.clean.fits",
        "mask": d / f"{stem}.mask.fits",
        "sources": d / f"{stem}.sources.ecsv",
        "clusters": d / f"{stem}.clusters.ecsv",
        "regions": d / f"{stem}.reg",
        "preview": d / f"{stem}.preview.png",
    }


def frame_stem(path: str | Path) -> str:
    """The file name without its FITS suffix(es)."""
    name = Path(path).name
    for suf in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(path).stem


def is_fits_name(path: str | Path) -> bool:
    """Whether ``path`` has a FITS file suffix."""
    return Path(path).name.lower().endswith(FITS_SUFFIXES)


def read_frame(path: str | Path, hdu: int | str | None = None) -> tuple[np.ndarray, fits.Header]:
    """Read the image and its header (the primary header merged under the image HDU's).

    Raises:
        VisionError: if the file cannot be read or holds no 2-D image.
    """
    p = Path(path)
    try:
        with fits.open(p, memmap=False, lazy_load_hdus=False) as hdul:
            if hdu is not None:
                try:
                    target = hdul[hdu]
                except (KeyError, IndexError) as exc:
                    raise VisionError(f"{p}: no HDU {hdu!r}") from exc
            else:
                target = next((h for h in hdul if h.data is not None and _squeezed_ndim(h.data) == 2), None)
            if target is None or target.data is None or _squeezed_ndim(target.data) != 2:
                raise VisionError(f"{p}: no 2-D image in the file")
            # Some camera programs write a 1 x ny x nx cube: drop the length-1 axes.
            data = np.asarray(target.data, dtype=np.float32).reshape(
                [n for n in target.data.shape if n != 1] or [1, 1])
            header = hdul[0].header.copy()
            if target is not hdul[0]:
                for card in target.header.cards:
                    if card.keyword not in ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "COMMENT", "HISTORY", ""):
                        header[card.keyword] = (card.value, card.comment)
    except VisionError:
        raise
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise VisionError(f"cannot read FITS frame {p}: {exc}") from exc
    return data, header


def process_frame(
    path: str | Path,
    *,
    out_dir: str | Path,
    settings: PipelineSettings | None = None,
    solver: Solver | None = None,
    masters: cal.Masters | None = None,
) -> FrameResult:
    """Process one frame end to end and write its products.

    Args:
        path: the FITS frame (never modified).
        out_dir: products directory (created if missing); products are written atomically.
        settings: :class:`PipelineSettings`.
        solver: optional plate solver, called as ``solver(image=clean, sources=table,
            header=header)`` after source extraction; it returns an object with ``.wcs``
            (``None`` if unsolved) and ``.to_json()``. A :class:`~tenmon.core.errors.TenmonError`
            it raises becomes a warning; the frame is still processed.
        masters: preloaded calibration masters; loaded from ``settings.calibration.directory``
            when ``None``.

    Returns:
        A :class:`FrameResult`.

    Raises:
        VisionError: unreadable frame, bad calibration masters or sections.
    """
    s = settings or PipelineSettings()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    warnings_: list[str] = []
    path = Path(path)
    out = Path(out_dir)

    t = time.perf_counter()
    raw, header = read_frame(path, s.hdu)
    timings["read"] = _ms(t)

    gain, gkey = _header_value(header, ("GAIN", "EGAIN", "CCDGAIN"), s.gain_e_per_adu, s.fallback_gain_e_per_adu)
    rn, rkey = _header_value(header, ("RDNOISE", "READNOIS", "RON", "READNOISE"), s.read_noise_e, s.fallback_read_noise_e)
    sat, skey = _header_value(header, ("SATURATE", "SATLEVEL", "DATAMAX"), s.saturation_adu, s.fallback_saturation_adu)
    if gkey == "fallback":
        warnings_.append(f"no GAIN in header: using {gain} e-/ADU")
    if rkey == "fallback":
        warnings_.append(f"no RDNOISE in header: using {rn} e-")
    exptime = _float(header.get("EXPTIME", header.get("EXPOSURE")))

    t = time.perf_counter()
    if masters is None:
        masters = cal.load_masters(s.calibration.directory)
    calib = cal.calibrate(raw, header, masters=masters, settings=s.calibration, saturation_adu=sat)
    image = calib.image
    if (s.calibration.bias_level_adu is None and not calib.history) and float(np.median(image)) > 0.6 * sat:
        warnings_.append("frame median is above 60 % of saturation: overexposed or uncalibrated")
    timings["calibrate"] = _ms(t)

    t = time.perf_counter()
    if s.cosmics.enabled:
        crres = cr.clean_cosmics(image, gain=gain, read_noise_e=rn, saturation_adu=calib.saturation_adu,
                                 inmask=calib.bad, saturated=calib.saturated, settings=s.cosmics)
        cr_mask, clean = crres.mask, crres.clean
        timings_cr = crres.timings_ms
    else:
        cr_mask, clean, timings_cr = np.zeros(image.shape, bool), image, {}
    timings["cosmics"] = _ms(t)
    if "lacosmic" in timings_cr:
        timings["lacosmic"] = timings_cr["lacosmic"]

    t = time.perf_counter()
    bkg = src.measure_background(clean, mask=calib.bad | cr_mask | calib.saturated,
                                 box_px=s.sources.background_box_px, filter_px=s.sources.background_filter_px)
    timings["background"] = _ms(t)
    t = time.perf_counter()
    sources = src.extract_sources(clean, mask=calib.bad, cosmic_mask=cr_mask, background=bkg, gain=gain,
                                  saturation_adu=calib.saturation_adu, settings=s.sources)
    timings["sources"] = _ms(t)
    t = time.perf_counter()
    try:  # the focus measure: model-free, so defocused stars and donuts count (vision/frames/hfr.py)
        hfr = hfr_.half_flux_radius(clean, mask=calib.bad | cr_mask,
                                    saturation_adu=calib.saturation_adu, settings=s.hfr)
    except VisionError as exc:
        warnings_.append(f"half-flux radius not measured: {exc}")
        hfr = None
    timings["hfr"] = _ms(t)

    wcs, wcs_source, solve_json = None, None, None
    if solver is not None:
        t = time.perf_counter()
        try:
            solved = solver(image=clean, sources=sources, header=header)
        except TenmonError as exc:
            warnings_.append(f"plate solving failed: {exc}")
            solved = None
        timings["solve"] = _ms(t)
        if solved is not None:
            solve_json = dict(solved.to_json()) if hasattr(solved, "to_json") else None
            if getattr(solved, "wcs", None) is not None:
                wcs, wcs_source = solved.wcs, "solver"
    if wcs is None:
        wcs = header_wcs(header, offset=calib.offset)
        if wcs is not None:
            wcs_source = "header"
    if wcs is not None and len(sources):
        try:
            ra, dec = wcs.all_pix2world(np.asarray(sources["x"]), np.asarray(sources["y"]), 0)
            sources["ra"] = np.mod(ra, 360.0)
            sources["dec"] = dec
            sources["ra"].unit = "deg"
            sources["dec"].unit = "deg"
        except Exception as exc:  # a WCS that does not invert over the frame: say so, keep pixels
            warnings_.append(f"WCS could not place sources on the sky: {exc}")

    t = time.perf_counter()
    found = clu.find_frame_clusters(sources, shape=clean.shape, wcs=wcs, settings=s.clusters)
    timings["clusters"] = _ms(t)

    quality = src.frame_quality(sources, bkg, gain=gain, exposure_s=exptime, zero_point_mag=s.zero_point_mag)

    t = time.perf_counter()
    paths = product_paths(path, out)
    written: dict[str, str | None] = {k: None for k in ("clean", "mask", "sources", "clusters", "regions", "preview")}
    ps = s.products
    mask_bits = prod.build_mask(cr_mask, calib.bad, calib.saturated)
    wcs_header = wcs.to_header(relax=True) if wcs is not None else None
    history = [f"tenmon: {h}" for h in calib.history]
    history.append(f"tenmon: LA Cosmic (astroscrappy) + star protection, {int(cr_mask.sum())} px cleaned")
    if ps.clean_fits:
        written["clean"] = str(prod.write_clean_fits(paths["clean"], clean, mask_bits, header, history=history,
                                                     wcs_header=wcs_header))
    if ps.mask_fits:
        written["mask"] = str(prod.write_mask_fits(paths["mask"], mask_bits, wcs_header=wcs_header))
    ctab = clu.frame_clusters_table(found)
    if ps.sources:
        stab = sources.copy(copy_data=False)
        stab.meta = {"frame": str(path), "fwhm_px": quality.fwhm_px, "wcs_source": wcs_source,
                     "coordinates": "x, y: 0-based pixels (centre of the first pixel is 0,0)"}
        written["sources"] = str(prod.write_table_ecsv(paths["sources"], stab))
    if ps.clusters:
        ctab.meta["frame"] = str(path)
        written["clusters"] = str(prod.write_table_ecsv(paths["clusters"], ctab))
    if ps.regions:
        written["regions"] = str(prod.write_regions(paths["regions"], sources, ctab))
    if ps.preview:
        written["preview"] = str(prod.write_preview(
            paths["preview"], clean, sources=sources, clusters=ctab, max_px=ps.preview_max_px,
            stretch_a=ps.preview_stretch_a, title=path.name))
    timings["products"] = _ms(t)

    return FrameResult(
        frame=str(path),
        n_cosmic_pixels=int(cr_mask.sum()),
        n_sources=len(sources),
        quality=quality,
        clusters=found.clusters,
        products=written,
        elapsed_ms=_ms(t_start),
        timings_ms=timings,
        header={
            "date_obs": header.get("DATE-OBS"),
            "exptime_s": exptime,
            "object": header.get("OBJECT"),
            "filter": header.get("FILTER"),
            "gain_e_per_adu": gain,
            "read_noise_e": rn,
            "gain_from": gkey,
            "read_noise_from": rkey,
            "saturation_from": skey,
        },
        wcs=wcs,
        wcs_source=wcs_source,
        solve=solve_json,
        warnings=warnings_,
        sources=sources,
        eps_px=found.eps_px,
        min_samples=found.min_samples,
        hfr=hfr,
    )


def header_wcs(header: fits.Header, *, offset: tuple[int, int] = (0, 0)) -> WCS | None:
    """A celestial WCS from the header, shifted for a trim ``offset`` ``(y0, x0)``; ``None`` if
    the header has none (a mount's RA/DEC keywords alone are not a WCS)."""
    if "CTYPE1" not in header or "CTYPE2" not in header:
        return None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(header, naxis=2)
    except Exception as exc:  # astropy raises several types for broken WCS keywords
        log.warning("header WCS unusable: %s", exc)
        return None
    if not w.has_celestial:
        return None
    w = w.celestial
    if offset != (0, 0):
        w = w.deepcopy()
        w.wcs.crpix = [w.wcs.crpix[0] - offset[1], w.wcs.crpix[1] - offset[0]]
    return w


def _squeezed_ndim(data) -> int:
    shape = getattr(data, "shape", ())
    return len([n for n in shape if n != 1]) if len(shape) >= 2 else len(shape)


def _header_value(header: fits.Header, keys: tuple[str, ...], override: float | None,
                  fallback: float) -> tuple[float, str]:
    if override is not None:
        return float(override), "settings"
    for k in keys:
        v = _float(header.get(k))
        if v is not None and v > 0:
            return v, k
    return float(fallback), "fallback"


def _float(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        m = re.match(r"\s*([-+]?\d+(\.\d*)?([eE][-+]?\d+)?)", str(v))
        if not m:
            return None
        f = float(m.group(1))
    return f if math.isfinite(f) else None


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


__all__ = [
    "PipelineSettings",
    "FrameResult",
    "Solver",
    "process_frame",
    "read_frame",
    "header_wcs",
    "product_paths",
    "frame_stem",
    "is_fits_name",
    "FITS_SUFFIXES",
]
