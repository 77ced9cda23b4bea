"""Frame products, each written atomically: cleaned FITS + mask, ECSV tables, DS9 regions, PNG preview.

Every writer writes to a temporary file in the destination directory and renames it into place,
so a reader (or a crash) never sees half a product. The PNG preview uses matplotlib's Agg
backend (no display needed): an asinh stretch of a block-averaged image with sources and
candidates drawn on it.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from astropy.io import fits
from astropy.table import Table

from tenmon.core.atomicfile import atomic_write, atomic_write_bytes  # noqa: F401 - re-exported
from tenmon.config.vision import ProductSettings

log = logging.getLogger(__name__)

#: Bits of the mask extension.
MASK_COSMIC = 1
MASK_BAD = 2
MASK_SATURATED = 4


def build_mask(cosmic: np.ndarray, bad: np.ndarray | None = None, saturated: np.ndarray | None = None) -> np.ndarray:
    """Combine masks into the uint8 bit mask of the products (:data:`MASK_COSMIC` etc.)."""
    m = cosmic.astype(np.uint8) * MASK_COSMIC
    if bad is not None:
        m |= bad.astype(np.uint8) * MASK_BAD
    if saturated is not None:
        m |= saturated.astype(np.uint8) * MASK_SATURATED
    return m


def write_clean_fits(path: str | os.PathLike, image: np.ndarray, mask: np.ndarray, header: fits.Header,
                     *, history: Iterable[str] = (), wcs_header: fits.Header | None = None) -> Path:
    """Cleaned image (float32 primary HDU) with the bit mask as extension ``MASK``.

    ``header`` is the input frame's (copied, never modified); ``wcs_header`` replaces any WCS in
    it; ``history`` lines become HISTORY cards.
    """
    h = _clean_header(header)
    if wcs_header is not None:
        _strip_wcs(h)
        h.update(wcs_header)
    for line in history:
        h.add_history(str(line)[:70])
    primary = fits.PrimaryHDU(data=np.asarray(image, dtype=np.float32), header=h)
    mh = fits.Header()
    mh["BITS"] = (f"{MASK_COSMIC}=cosmic ray, {MASK_BAD}=bad pixel, {MASK_SATURATED}=saturated", "mask bits")
    if wcs_header is not None:
        mh.update(wcs_header)
    mask_hdu = fits.ImageHDU(data=np.asarray(mask, dtype=np.uint8), header=mh, name="MASK")
    return atomic_write(path, lambda tmp: fits.HDUList([primary, mask_hdu]).writeto(tmp, overwrite=True))


def write_mask_fits(path: str | os.PathLike, mask: np.ndarray, *, wcs_header: fits.Header | None = None) -> Path:
    """The bit mask alone, tile-compressed (a 2k x 2k mask is a few kB)."""
    h = fits.Header()
    h["BITS"] = (f"{MASK_COSMIC}=cosmic ray, {MASK_BAD}=bad pixel, {MASK_SATURATED}=saturated", "mask bits")
    if wcs_header is not None:
        h.update(wcs_header)
    m = np.asarray(mask, dtype=np.uint8)
    # Large tiles: per-tile overhead dominates with astropy's default one-row tiles.
    hdu = fits.CompImageHDU(data=m, header=h, name="MASK", compression_type="GZIP_2",
                            tile_shape=(min(m.shape[0], 512), m.shape[1]))
    return atomic_write(path, lambda tmp: fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True))


def write_table_ecsv(path: str | os.PathLike, table: Table) -> Path:
    """A table as ECSV, atomically."""
    buf = io.StringIO()
    table.write(buf, format="ascii.ecsv")
    return atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def ds9_regions(sources: Table, clusters: Table | None = None, *, source_radius_px: float = 5.0) -> str:
    """DS9 region text in image coordinates (1-based, as DS9 counts): sources as green circles,
    cluster candidates as red circles labelled with their member count and significance."""
    lines = ["# Region file format: DS9 version 4.1", "# tenmon frame pipeline",
             'global color=green dashlist=8 3 width=1 font="helvetica 10 normal roman" select=1 '
             "highlite=1 dash=0 fixed=0 edit=1 move=1 delete=1 include=1 source=1", "image"]
    for row in sources:
        lines.append(f"circle({row['x'] + 1:.2f},{row['y'] + 1:.2f},{source_radius_px:.1f})")
    if clusters is not None:
        for row in clusters:
            text = f"{int(row['n_members'])} stars {float(row['significance']):.1f} sigma"
            lines.append(f"circle({row['x'] + 1:.2f},{row['y'] + 1:.2f},{max(float(row['radius_px']), 5.0):.1f}) "
                         f"# color=red width=2 text={{{text}}}")
    return "\n".join(lines) + "\n"


def write_regions(path: str | os.PathLike, sources: Table, clusters: Table | None = None) -> Path:
    """Write :func:`ds9_regions` atomically."""
    return atomic_write_bytes(path, ds9_regions(sources, clusters).encode("utf-8"))


def preview_png(image: np.ndarray, *, sources: Table | None = None, clusters: Table | None = None,
                mask: np.ndarray | None = None, max_px: int = 1024, stretch_a: float = 0.1,
                title: str | None = None) -> bytes:
    """A PNG preview: block-averaged image, asinh stretch between the 0.5 and 99.8 percentiles of
    the sky-dominated pixels, sources as small green circles, candidates as red circles.

    Returns:
        PNG bytes.
    """
    # The object-oriented API with the Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    img = np.asarray(image, dtype=np.float32)
    f = max(1, int(np.ceil(max(img.shape) / max_px)))
    small = _block_mean(img, f)
    finite = small[np.isfinite(small)]
    if finite.size == 0:
        finite = np.zeros(1, np.float32)
    lo, hi = np.percentile(finite, [0.5, 99.8])
    if not hi > lo:
        hi = lo + 1.0
    x = np.clip((small - lo) / (hi - lo), 0, 1)
    a = float(stretch_a)
    y = np.arcsinh(x / a) / np.arcsinh(1.0 / a)
    ny, nx = y.shape
    dpi = 100
    fig = Figure(figsize=(nx / dpi, ny / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(y, cmap="gray", origin="lower", interpolation="nearest", vmin=0, vmax=1)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    ax.axis("off")
    if sources is not None and len(sources):
        ax.scatter((np.asarray(sources["x"]) + 0.5) / f - 0.5, (np.asarray(sources["y"]) + 0.5) / f - 0.5,
                   s=max(4.0, 36.0 / f), facecolors="none", edgecolors="lime", linewidths=0.5)
    if clusters is not None and len(clusters):
        from matplotlib.patches import Circle

        for row in clusters:
            cx, cy = (float(row["x"]) + 0.5) / f - 0.5, (float(row["y"]) + 0.5) / f - 0.5
            ax.add_patch(Circle((cx, cy), max(float(row["radius_px"]) / f, 4.0), fill=False, color="red", lw=1.5))
            ax.text(cx, cy + float(row["radius_px"]) / f + 4, f"{int(row['n_members'])}*, {float(row['significance']):.1f}σ",
                    color="red", fontsize=8, ha="center", va="bottom")
    if title:
        ax.text(4, ny - 4, title, color="yellow", fontsize=8, ha="left", va="top")
    buf = io.BytesIO()
    # zlib level 1: a noisy sky barely compresses anyway, and level 6 costs ~0.7 s per 1k x 1k preview.
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def write_preview(path: str | os.PathLike, image: np.ndarray, **kwargs) -> Path:
    """Write :func:`preview_png` atomically."""
    return atomic_write_bytes(path, preview_png(image, **kwargs))


def _block_mean(img: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return img
    ny, nx = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:ny, :nx].reshape(ny // f, f, nx // f, f).mean(axis=(1, 3))


_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO", "BSCALE", "PCOUNT",
               "GCOUNT", "XTENSION", "BLANK"}


def _clean_header(header: fits.Header) -> fits.Header:
    h = fits.Header()
    for card in header.cards:
        if card.keyword in _STRUCTURAL or card.keyword.startswith("NAXIS"):
            continue
        h.append(card)
    return h


def _strip_wcs(h: fits.Header) -> None:
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            keys = WCS(h).to_header(relax=True).keys()
    except Exception:  # an unparseable WCS in the input: leave the header as it is
        return
    for k in list(keys):
        if k in h and k not in ("DATE-OBS", "MJD-OBS", "RADESYS", "EQUINOX"):
            del h[k]


__all__ = [
    "ProductSettings",
    "MASK_COSMIC",
    "MASK_BAD",
    "MASK_SATURATED",
    "atomic_write",
    "atomic_write_bytes",
    "build_mask",
    "write_clean_fits",
    "write_mask_fits",
    "write_table_ecsv",
    "ds9_regions",
    "write_regions",
    "preview_png",
    "write_preview",
]
