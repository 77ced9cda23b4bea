"""Plate-solver interface: the hint, the result (with WCS), the protocol every solver follows.

Conventions shared by all solvers:

* Sources are an astropy ``Table`` with ``x``, ``y`` (0-based pixel centres, x = column) and
  ``flux`` (any positive unit; brighter is larger). ``shape`` is the image's ``(ny, nx)``.
* ``ra_deg``/``dec_deg`` of a result are the sky position of the image centre (pixel
  ``((nx - 1) / 2, (ny - 1) / 2)``), ICRS.
* ``rotation_deg`` is the position angle of the image's +y axis ("up"), from north through
  east, in [0, 360): astrometry.net's "up is N degrees E of N".
* ``parity`` is ``"normal"`` when the image shows the sky as seen (north up puts east left;
  ``det(CD) < 0``) and ``"flipped"`` when mirrored.
* "Could not solve" is a result with ``solved=False`` and a ``reason``, never an exception.
  ``SolveError`` means a solver could not run at all (missing program, bad input).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from tenmon.core.errors import SolveError
from tenmon.core.timefmt import utc_iso

#: The fields ``tenmon solve --json`` prints (and a frame's JSON gains when it is solved).
RESULT_FIELDS = (
    "solved",
    "ra_deg",
    "dec_deg",
    "rotation_deg",
    "scale_arcsec",
    "parity",
    "rms_arcsec",
    "n_matched",
    "solver",
    "elapsed_ms",
    "reason",
)


@dataclass(frozen=True)
class SolveHint:
    """What is known before solving. Any field may be ``None`` (a blind solve).

    ``ra_deg``/``dec_deg``: approximate centre (from the header or the mount), ICRS.
    ``radius_deg``: how far the true centre may be from it (the pointing error).
    ``scale_arcsec``: pixel scale ["/px], known to ``scale_tolerance`` (fraction, 0.05 = 5 %).
    """

    ra_deg: float | None = None
    dec_deg: float | None = None
    radius_deg: float | None = None
    scale_arcsec: float | None = None
    scale_tolerance: float = 0.05

    @property
    def has_position(self) -> bool:
        return self.ra_deg is not None and self.dec_deg is not None

    def to_json(self) -> dict[str, float | None]:
        return {
            "ra_deg": self.ra_deg,
            "dec_deg": self.dec_deg,
            "radius_deg": self.radius_deg,
            "scale_arcsec": self.scale_arcsec,
            "scale_tolerance": self.scale_tolerance,
        }


@dataclass(frozen=True)
class Attempt:
    """One solver's try inside a chain."""

    solver: str
    solved: bool
    elapsed_ms: float
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"solver": self.solver, "solved": self.solved, "elapsed_ms": round(self.elapsed_ms, 1),
                "reason": self.reason}


@dataclass(frozen=True)
class SolveResult:
    """The answer of a solver (or a chain). See the module docstring for the conventions."""

    solved: bool
    solver: str
    elapsed_ms: float
    reason: str | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    rotation_deg: float | None = None
    scale_arcsec: float | None = None
    parity: str | None = None
    rms_arcsec: float | None = None
    n_matched: int = 0
    wcs: WCS | None = field(default=None, repr=False, compare=False)
    attempts: tuple[Attempt, ...] = ()

    @classmethod
    def failure(cls, solver: str, reason: str, elapsed_ms: float, **kw: Any) -> SolveResult:
        """A clean "could not solve" answer."""
        return cls(solved=False, solver=solver, elapsed_ms=elapsed_ms, reason=reason, **kw)

    @classmethod
    def from_wcs(
        cls,
        wcs: WCS,
        shape: tuple[int, int],
        *,
        solver: str,
        elapsed_ms: float,
        rms_arcsec: float | None,
        n_matched: int,
    ) -> SolveResult:
        """A solved result, with centre, rotation, scale and parity derived from ``wcs``."""
        geo = describe_wcs(wcs, shape)
        return cls(
            solved=True,
            solver=solver,
            elapsed_ms=elapsed_ms,
            rms_arcsec=rms_arcsec,
            n_matched=n_matched,
            wcs=wcs,
            **geo,
        )

    def with_timing(self, elapsed_ms: float, attempts: tuple[Attempt, ...] | None = None) -> SolveResult:
        return replace(self, elapsed_ms=elapsed_ms, attempts=self.attempts if attempts is None else attempts)

    def wcs_header(self) -> fits.Header:
        """The WCS as FITS cards (TAN or TAN-SIP); an empty header when not solved."""
        if self.wcs is None:
            return fits.Header()
        return self.wcs.to_header(relax=True)

    def to_json(self, *, include_wcs: bool = True) -> dict[str, Any]:
        """JSON-ready dict: the CLI fields, then ``wcs`` (header cards as a dict) and ``attempts``."""
        out: dict[str, Any] = {}
        for k in RESULT_FIELDS:
            v = getattr(self, k)
            if isinstance(v, float):
                v = None if not math.isfinite(v) else round(v, 7 if k in ("ra_deg", "dec_deg") else 4)
            out[k] = v
        if include_wcs:
            out["wcs"] = _header_to_dict(self.wcs_header()) if self.wcs is not None else None
        if self.attempts:
            out["attempts"] = [a.to_json() for a in self.attempts]
        return out

    def annotate_header(self, header: fits.Header) -> fits.Header:
        """Return a copy of ``header`` with this solution's WCS and a record of the solve.

        Removes any previous celestial WCS cards first (so a stale WCS never survives), adds the
        new one, ``SOLVED``/``SOLVER``/``SOLVRMS``/``SOLVNMAT`` and a HISTORY line. Unsolved:
        only ``SOLVED = F`` and the reason in HISTORY.
        """
        out = header.copy()
        strip_wcs(out)
        out["SOLVED"] = (bool(self.solved), "plate solved by tenmon")
        if self.solved and self.wcs is not None:
            out.update(self.wcs_header())
            out["SOLVER"] = (self.solver, "solver that found the WCS")
            if self.rms_arcsec is not None:
                out["SOLVRMS"] = (round(float(self.rms_arcsec), 4), "[arcsec] rms of matched stars")
            out["SOLVNMAT"] = (int(self.n_matched), "matched catalogue stars")
            out.add_history(
                f"tenmon solve: {self.solver}, {self.n_matched} stars, rms {self.rms_arcsec or 0:.3f} arcsec"
            )
        else:
            out.add_history(f"tenmon solve: not solved: {self.reason}"[:70])
        return out


@runtime_checkable
class Solver(Protocol):
    """A plate solver. ``solve`` never raises for "could not solve"; it returns ``solved=False``.

    ``timeout_s`` bounds the call (wall clock); a solver that runs out of time returns
    ``solved=False`` with a reason saying so. Raises ``SolveError`` only when it cannot run at
    all (e.g. ``solve-field`` not installed, malformed sources).
    """

    name: str

    def solve(
        self,
        sources: Table,
        shape: tuple[int, int],
        hint: SolveHint,
        *,
        timeout_s: float,
    ) -> SolveResult: ...


def describe_wcs(wcs: WCS, shape: tuple[int, int]) -> dict[str, Any]:
    """Centre (deg), rotation (deg E of N of +y), scale ("/px) and parity of a celestial WCS."""
    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    pts = wcs.all_pix2world(np.array([[cx, cy], [cx, cy + 1.0], [cx + 1.0, cy]]), 0)
    ra0, dec0 = (float(v) for v in pts[0])
    up = _offset_arcsec(pts[0], pts[1])
    right = _offset_arcsec(pts[0], pts[2])
    # PA of +y: atan2(east, north). Parity: cross product of +x and +y in (east, north) axes:
    # positive = +x to the east of +y counter-clockwise ... i.e. mirrored sky.
    rot = math.degrees(math.atan2(up[0], up[1])) % 360.0
    cross = right[0] * up[1] - right[1] * up[0]
    scale = math.sqrt(abs(cross))
    return {
        "ra_deg": ra0 % 360.0,
        "dec_deg": dec0,
        "rotation_deg": rot,
        "scale_arcsec": scale,
        "parity": "flipped" if cross > 0 else "normal",
    }


def _offset_arcsec(p0: np.ndarray, p1: np.ndarray) -> tuple[float, float]:
    """Small offset from p0 to p1 (deg) as (east, north) arcsec on the tangent plane at p0."""
    ra0, dec0 = np.radians(p0)
    ra1, dec1 = np.radians(p1)
    cosc = math.sin(dec0) * math.sin(dec1) + math.cos(dec0) * math.cos(dec1) * math.cos(ra1 - ra0)
    xi = math.cos(dec1) * math.sin(ra1 - ra0) / cosc
    eta = (math.cos(dec0) * math.sin(dec1) - math.sin(dec0) * math.cos(dec1) * math.cos(ra1 - ra0)) / cosc
    k = 180.0 / math.pi * 3600.0
    return xi * k, eta * k


_WCS_PREFIXES = ("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT", "CD1_", "CD2_", "PC1_", "PC2_", "CROTA",
                 "A_", "B_", "AP_", "BP_", "PV1_", "PV2_")
_WCS_KEYS = {"WCSAXES", "RADESYS", "EQUINOX", "LONPOLE", "LATPOLE", "MJDREF", "WCSNAME", "IMAGEW", "IMAGEH"}


def strip_wcs(header: fits.Header) -> None:
    """Remove celestial WCS cards (TAN, SIP, PC/CD/CDELT) from ``header`` in place."""
    for key in list(header.keys()):
        k = key.upper()
        if k in _WCS_KEYS or k.startswith(_WCS_PREFIXES) or k in ("A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER"):
            del header[key]


def _header_to_dict(h: fits.Header) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for card in h.cards:
        if card.keyword in ("COMMENT", "HISTORY", ""):
            continue
        v = card.value
        if isinstance(v, (np.floating, np.integer, np.bool_)):
            v = v.item()
        out[card.keyword] = v
    return out


def wcs_from_json(cards: dict[str, Any]) -> WCS:
    """Rebuild a WCS from ``to_json()["wcs"]``."""
    h = fits.Header()
    for k, v in cards.items():
        h[k] = v
    return WCS(h, relax=True)


def check_sources(sources: Table, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``(x, y, flux)`` arrays of finite sources on the image, brightest first.

    Raises ``SolveError`` if the table lacks ``x``/``y`` or ``shape`` is not two positive ints.
    """
    if len(shape) != 2 or min(shape) <= 0:
        raise SolveError(f"image shape must be (ny, nx) > 0, got {shape!r}")
    for col in ("x", "y"):
        if col not in sources.colnames:
            raise SolveError(f"source table has no {col!r} column (columns: {', '.join(sources.colnames)})")
    x = np.asarray(sources["x"], dtype=float)
    y = np.asarray(sources["y"], dtype=float)
    flux = np.asarray(sources["flux"], dtype=float) if "flux" in sources.colnames else np.ones_like(x)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux)
    ny, nx = shape
    ok &= (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    x, y, flux = x[ok], y[ok], flux[ok]
    order = np.argsort(-flux, kind="stable")
    return x[order], y[order], flux[order]


def solve_row(
    result: SolveResult,
    *,
    time_utc: datetime,
    hint: SolveHint | None = None,
    frame: str | None = None,
    mount_ra_deg: float | None = None,
    mount_dec_deg: float | None = None,
    lst_deg: float | None = None,
    pier_side: str | None = None,
) -> dict[str, Any]:
    """One row of the ``solves`` table (``tenmon.daemon.schema.SOLVES_SCHEMA``) for a result.

    ``time_utc`` must be timezone-aware (mid-exposure). The mount fields are what the mount
    reported (used later by ``tenmon pointing fit --from-log``). Raises ``ValueError`` on a
    naive time or a pier side other than ``east``/``west``/``None``.
    """
    if time_utc.tzinfo is None:
        raise ValueError("time_utc must be timezone-aware")
    if pier_side not in (None, "east", "west"):
        raise ValueError(f"pier_side must be 'east', 'west' or None, got {pier_side!r}")
    h = hint or SolveHint()
    return {
        "time_utc": utc_iso(time_utc),
        "frame": frame,
        "solved": int(result.solved),
        "reason": result.reason,
        "solver": result.solver,
        "elapsed_ms": result.elapsed_ms,
        "hint_ra_deg": h.ra_deg,
        "hint_dec_deg": h.dec_deg,
        "hint_radius_deg": h.radius_deg,
        "ra_deg": result.ra_deg,
        "dec_deg": result.dec_deg,
        "rotation_deg": result.rotation_deg,
        "scale_arcsec": result.scale_arcsec,
        "parity": result.parity,
        "rms_arcsec": result.rms_arcsec,
        "n_matched": result.n_matched,
        "wcs_json": json.dumps(_header_to_dict(result.wcs_header())) if result.wcs is not None else None,
        "mount_ra_deg": mount_ra_deg,
        "mount_dec_deg": mount_dec_deg,
        "lst_deg": lst_deg,
        "pier_side": pier_side,
    }


def insert_solve(connection: Any, row: dict[str, Any]) -> int:
    """Insert a ``solve_row`` into the ``solves`` table of an open sqlite3 connection; returns its id."""
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cur = connection.execute(f"INSERT INTO solves ({cols}) VALUES ({marks})", tuple(row.values()))
    return int(cur.lastrowid)
