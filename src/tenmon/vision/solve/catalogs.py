"""Star catalogue providers for plate solving: a local file, a Gaia cone with a disk cache, the simulated sky.

Every provider answers ``cone(ra_deg, dec_deg, radius_deg, *, mag_limit=None)`` with an astropy
``Table`` of ``ra``, ``dec`` [deg, ICRS] and ``mag``, brightest first (an empty table with those
columns when nothing is there).

* ``LocalFileCatalog``: an ECSV, FITS or CSV file with ``ra``, ``dec``, ``mag`` columns.
* ``SimulatedSky``: a deterministic star field for any cone, generated tile by tile from a seed
  and the tile's position; the simulated CCD renders these same stars
  (``stars_for_wcs`` + ``tenmon.vision.render.sky.render_star_field``), so the simulation solves
  through the same code as a site.
* ``GaiaCatalog``: Gaia DR3 through astroquery, only when a site configures it; every cone is
  kept on disk and a later cone inside a cached one never reaches the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from tenmon.core.astro import separation_deg
from tenmon.core.atomicfile import atomic_write, atomic_write_text, usual_mode
from tenmon.core.errors import SolveError

log = logging.getLogger(__name__)


class CatalogError(SolveError):
    """A catalogue that cannot be read or queried (names the file or service and the problem)."""


@runtime_checkable
class CatalogProvider(Protocol):
    """Anything that returns catalogue stars in a cone."""

    name: str

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, mag_limit: float | None = None) -> Table:
        """Stars within ``radius_deg`` of (ra, dec), brightest first: columns ra, dec, mag."""
        ...


def empty_catalog() -> Table:
    """The empty result: columns ``ra``, ``dec``, ``mag`` of length 0."""
    return Table({"ra": np.zeros(0), "dec": np.zeros(0), "mag": np.zeros(0)})


def select_cone(ra: np.ndarray, dec: np.ndarray, mag: np.ndarray, ra0: float, dec0: float, radius: float,
            mag_limit: float | None) -> Table:
    """The stars of these arrays within ``radius`` deg of (ra0, dec0), brightest first."""
    keep = separation_deg(ra, dec, ra0, dec0) <= radius
    if mag_limit is not None:
        keep &= mag <= mag_limit
    order = np.argsort(mag[keep], kind="stable")
    return Table({"ra": ra[keep][order], "dec": dec[keep][order], "mag": mag[keep][order]})


def frame_cone(wcs: WCS, shape: tuple[int, int], *, margin_px: float = 20.0) -> tuple[float, float, float]:
    """The cone (ra, dec, radius deg) around a frame's centre reaching its corners plus
    ``margin_px``, for this WCS and ``(ny, nx)`` shape."""
    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    corners = np.array([[-margin_px, -margin_px], [nx - 1 + margin_px, -margin_px],
                        [-margin_px, ny - 1 + margin_px], [nx - 1 + margin_px, ny - 1 + margin_px]])
    c = wcs.all_pix2world(np.array([[cx, cy]]), 0)[0]
    cs = wcs.all_pix2world(corners, 0)
    radius = float(np.max(separation_deg(cs[:, 0], cs[:, 1], c[0], c[1])))
    return float(c[0]), float(c[1]), radius


def _check_cone(ra_deg: float, dec_deg: float, radius_deg: float) -> None:
    if not (math.isfinite(ra_deg) and math.isfinite(dec_deg) and -90.0 <= dec_deg <= 90.0):
        raise CatalogError(f"bad cone centre ({ra_deg}, {dec_deg})")
    if not 0.0 < radius_deg <= 10.0:
        raise CatalogError(f"cone radius {radius_deg} deg out of range (0, 10]")


# ------------------------------------------------------------------------------------ local file


class LocalFileCatalog:
    """A star list on disk: ECSV (``.ecsv``), FITS (``.fits``, ``.fit``, ``.fits.gz``) or CSV (``.csv``).

    Columns ``ra``, ``dec`` (deg, ICRS) and ``mag`` (any band; only the order matters), names
    case-insensitive. Read once, on the first cone. Raises ``CatalogError`` naming the file for
    a missing file, an unknown format or missing columns.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.name = f"file:{self.path.name}"
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is not None:
            return self._arrays
        p = self.path
        if not p.is_file():
            raise CatalogError(f"{p}: catalogue file not found")
        name = p.name.lower()
        if name.endswith(".ecsv"):
            fmt = "ascii.ecsv"
        elif name.endswith((".fits", ".fit", ".fits.gz", ".fit.gz", ".fts")):
            fmt = "fits"
        elif name.endswith(".csv"):
            fmt = "ascii.csv"
        else:
            raise CatalogError(f"{p}: unknown catalogue format (use .ecsv, .fits or .csv)")
        try:
            t = Table.read(p, format=fmt)
        except Exception as exc:  # astropy raises many kinds for a corrupt file
            raise CatalogError(f"{p}: cannot read catalogue: {exc}") from exc
        cols = {c.lower(): c for c in t.colnames}
        missing = [c for c in ("ra", "dec", "mag") if c not in cols]
        if missing:
            raise CatalogError(f"{p}: catalogue lacks column(s) {', '.join(missing)} (has {', '.join(t.colnames)})")
        ra = np.asarray(t[cols["ra"]], dtype=float) % 360.0
        dec = np.asarray(t[cols["dec"]], dtype=float)
        mag = np.asarray(t[cols["mag"]], dtype=float)
        ok = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(mag) & (np.abs(dec) <= 90)
        self._arrays = (ra[ok], dec[ok], mag[ok])
        log.info("catalogue %s: %d stars", p, int(ok.sum()))
        return self._arrays

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, mag_limit: float | None = None) -> Table:
        _check_cone(ra_deg, dec_deg, radius_deg)
        ra, dec, mag = self._load()
        return select_cone(ra, dec, mag, ra_deg, dec_deg, radius_deg, mag_limit)


# ------------------------------------------------------------------------------------ simulated


class SimulatedSky:
    """A deterministic random sky: the same stars for the same place, whatever the cone.

    The sphere is cut into tiles ``tile_deg`` high (declination bands) and about as wide; each
    tile's stars come from a random generator seeded by ``(seed, band, column)``, so any cone
    gets exactly the stars of the tiles it touches, and overlapping cones agree. Positions are
    uniform on the sphere; magnitudes follow ``dN/dm ~ 10**(count_slope m)`` between
    ``mag_bright`` and ``mag_faint`` with ``density_per_deg2`` stars in all (the defaults match
    ``skyrender.random_star_catalog``). A bounded cache keeps recently used tiles.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        density_per_deg2: float = 30000.0,
        mag_bright: float = 10.0,
        mag_faint: float = 21.0,
        count_slope: float = 0.3,
        tile_deg: float = 0.1,
        cache_tiles: int = 2048,
    ):
        if density_per_deg2 <= 0 or mag_bright >= mag_faint or tile_deg <= 0 or tile_deg > 10:
            raise ValueError("need density > 0, mag_bright < mag_faint and 0 < tile_deg <= 10")
        self.seed = int(seed)
        self.density = float(density_per_deg2)
        self.mag_bright, self.mag_faint, self.slope = float(mag_bright), float(mag_faint), float(count_slope)
        self.tile = float(tile_deg)
        self.n_bands = int(math.ceil(180.0 / self.tile))
        self.name = f"simulated(seed={self.seed})"
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_max = int(cache_tiles)
        self._lock = threading.Lock()

    def _band_edges(self, band: int) -> tuple[float, float]:
        d0 = -90.0 + band * self.tile
        return d0, min(90.0, d0 + self.tile)

    def _n_cols(self, band: int) -> int:
        d0, d1 = self._band_edges(band)
        mid = math.radians(0.5 * (d0 + d1))
        return max(1, int(round(360.0 * math.cos(mid) / self.tile)))

    def _tile_stars(self, band: int, col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (band, col)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        d0, d1 = self._band_edges(band)
        ncol = self._n_cols(band)
        w = 360.0 / ncol
        area = math.radians(w) * (math.sin(math.radians(d1)) - math.sin(math.radians(d0))) * (180 / math.pi) ** 2
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, band, col, 0x7E6]))
        n = int(rng.poisson(self.density * area))
        ra = col * w + rng.uniform(0.0, w, n)
        dec = np.degrees(np.arcsin(rng.uniform(math.sin(math.radians(d0)), math.sin(math.radians(d1)), n)))
        k = self.slope * math.log(10.0)
        u = rng.uniform(0.0, 1.0, n)
        e1, e2 = math.exp(k * self.mag_bright), math.exp(k * self.mag_faint)
        mag = np.log(e1 + u * (e2 - e1)) / k
        out = (ra, dec, mag)
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > self._cache_max:
                self._cache.popitem(last=False)
        return out

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, mag_limit: float | None = None) -> Table:
        _check_cone(ra_deg, dec_deg, radius_deg)
        ra_deg %= 360.0
        lo, hi = max(-90.0, dec_deg - radius_deg), min(90.0, dec_deg + radius_deg)
        b0 = max(0, int(math.floor((lo + 90.0) / self.tile)))
        b1 = min(self.n_bands - 1, int(math.floor((hi + 90.0) / self.tile)))
        near_pole = max(abs(lo), abs(hi))
        s = math.sin(math.radians(radius_deg)) / max(1e-9, math.cos(math.radians(near_pole)))
        half = 180.0 if (s >= 1.0 or near_pole >= 89.999) else math.degrees(math.asin(s))
        parts = []
        for band in range(b0, b1 + 1):
            ncol = self._n_cols(band)
            w = 360.0 / ncol
            if half >= 180.0 or ncol == 1:
                cols = range(ncol)
            else:
                c0 = int(math.floor((ra_deg - half) / w))
                c1 = int(math.floor((ra_deg + half) / w))
                cols = sorted({c % ncol for c in range(c0, c1 + 1)})
            for col in cols:
                parts.append(self._tile_stars(band, col))
        if not parts:
            return empty_catalog()
        ra = np.concatenate([p[0] for p in parts])
        dec = np.concatenate([p[1] for p in parts])
        mag = np.concatenate([p[2] for p in parts])
        return select_cone(ra, dec, mag, ra_deg, dec_deg, radius_deg, mag_limit)

    def stars_for_wcs(self, wcs: WCS, shape: tuple[int, int], *, margin_px: float = 20.0,
                      mag_limit: float | None = None) -> Table:
        """The stars a CCD with this (true) WCS and ``(ny, nx)`` shape sees, for the renderer.

        A cone around the frame centre reaching its corners plus ``margin_px``; columns ``ra``,
        ``dec``, ``mag``. Pass the table to ``skyrender.render_star_field(wcs=wcs, stars=...)``.
        """
        ra0, dec0, radius = frame_cone(wcs, shape, margin_px=margin_px)
        return self.cone(ra0, dec0, radius, mag_limit=mag_limit)


# ------------------------------------------------------------------------------------ Gaia


class GaiaCatalog:
    """Gaia DR3 cones through astroquery, cached on disk; used only when a site configures it.

    Each network answer is written to ``cache_dir`` (ECSV, atomically) with the cone in its
    metadata; a later cone that lies inside a cached one (same or brighter ``mag_limit``) is
    answered from disk. The network call is bounded by ``timeout_s`` (astroquery passes none):
    it runs in a worker thread that is abandoned on timeout. Positions are Gaia's (epoch 2016.0,
    no proper motion applied: at most a fraction of an arcsec for a decade for most stars).
    ``mag`` is Gaia G.
    """

    name = "gaia-dr3"
    TABLE = "gaiadr3.gaia_source"

    def __init__(self, cache_dir: str | os.PathLike[str], *, mag_limit: float = 19.0, timeout_s: float = 60.0,
                 row_limit: int = 20000, min_radius_deg: float = 0.25):
        self.cache_dir = Path(cache_dir)
        self.mag_limit = float(mag_limit)
        self.timeout_s = float(timeout_s)
        self.row_limit = int(row_limit)
        self.min_radius_deg = float(min_radius_deg)

    def _cached(self, ra: float, dec: float, radius: float, mag_limit: float) -> Table | None:
        if not self.cache_dir.is_dir():
            return None
        for f in sorted(self.cache_dir.glob("gaia-*.ecsv")):
            try:
                meta = json.loads(f.with_suffix(".json").read_text())
            except (OSError, ValueError):
                continue
            inside = separation_deg(np.array([ra]), np.array([dec]), meta["ra_deg"], meta["dec_deg"])[0]
            covers = inside + radius <= meta["radius_deg"] + 1e-9 and mag_limit <= meta["mag_limit"]
            if covers and not meta["truncated"]:
                t = Table.read(f, format="ascii.ecsv")
                return select_cone(np.asarray(t["ra"], float), np.asarray(t["dec"], float),
                               np.asarray(t["mag"], float), ra, dec, radius, mag_limit)
        return None

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, mag_limit: float | None = None) -> Table:
        _check_cone(ra_deg, dec_deg, radius_deg)
        ml = self.mag_limit if mag_limit is None else min(mag_limit, self.mag_limit)
        hit = self._cached(ra_deg, dec_deg, radius_deg, ml)
        if hit is not None:
            return hit
        # Ask for a generous cone so that nearby pointings are served from the cache.
        r = max(radius_deg, self.min_radius_deg)
        t, truncated = self._query(ra_deg, dec_deg, r, self.mag_limit)
        self._store(t, ra_deg, dec_deg, r, self.mag_limit, truncated)
        return select_cone(np.asarray(t["ra"], float), np.asarray(t["dec"], float), np.asarray(t["mag"], float),
                       ra_deg, dec_deg, radius_deg, ml)

    def _query(self, ra: float, dec: float, radius: float, mag_limit: float) -> tuple[Table, bool]:
        query = (
            f"SELECT TOP {self.row_limit} ra, dec, phot_g_mean_mag AS mag FROM {self.TABLE} "
            f"WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra:.6f}, {dec:.6f}, {radius:.6f})) "
            f"AND phot_g_mean_mag <= {mag_limit:.2f} ORDER BY phot_g_mean_mag"
        )
        box: dict[str, object] = {}

        def work() -> None:
            try:
                from astroquery.gaia import Gaia

                box["table"] = Gaia.launch_job(query).get_results()
            except Exception as exc:  # network, TAP or parsing failure: reported below
                box["error"] = exc

        th = threading.Thread(target=work, name="gaia-cone", daemon=True)
        th.start()
        th.join(self.timeout_s)
        if th.is_alive():
            raise CatalogError(f"Gaia archive did not answer within {self.timeout_s:.0f} s")
        if "error" in box:
            raise CatalogError(f"Gaia cone search failed: {box['error']}")
        t = box["table"]
        out = Table({"ra": np.asarray(t["ra"], float), "dec": np.asarray(t["dec"], float),
                     "mag": np.asarray(t["mag"], float)})
        return out, len(out) >= self.row_limit

    def _store(self, t: Table, ra: float, dec: float, radius: float, mag_limit: float, truncated: bool) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha1(f"{ra:.5f},{dec:.5f},{radius:.5f},{mag_limit:.2f}".encode()).hexdigest()[:16]
        meta = {"ra_deg": ra, "dec_deg": dec, "radius_deg": radius, "mag_limit": mag_limit, "truncated": truncated,
                "n": len(t), "table": self.TABLE}
        target = self.cache_dir / f"gaia-{key}.ecsv"
        atomic_write(target, lambda tmp: t.write(tmp, format="ascii.ecsv", overwrite=True),
                     mode=0o644)
        # The metadata file is written last: a cone is only used once both exist.
        atomic_write_text(target.with_suffix(".json"), json.dumps(meta), mode=usual_mode())
