"""The pipeline's plate solver from header hints: ``header_solver(settings)`` -> a ``solver=`` callable.

``vision.pipeline.process_frame`` takes an optional solver callable; this builds the one the
daemon's frame service and the archive both use: the hint (position, pixel scale) comes from
the frame's header (``frames.hint_from_header``; the configured ``pixel_scale_arcsec`` wins over
the header's scale), the radius from ``pointing_error_deg``, and the configured chain
(``chain.build_chain``: the hinted solver with its catalogue, then ``solve-field`` ...) solves
the frame's clean sources. The chain is built once per process and per settings (catalogue
providers keep their caches), so a worker process reuses it frame after frame.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from tenmon.vision.solve.chain import SolverChain
from tenmon.config.vision import SolverSettings

_CHAINS: dict[str, SolverChain] = {}


class SolvedFrame:
    """What the pipeline expects of a solver's answer: ``.wcs`` and ``.to_json()``.

    The solve's own fields go under ``"solve"`` so that they do not overwrite the frame's (both
    have ``elapsed_ms``); the hint and the mount position read from the header come with them.
    """

    def __init__(self, result, hint, mount: tuple[float | None, float | None], lst: float | None):
        self.result = result
        self.wcs = result.wcs
        self.hint = hint
        self.mount = mount
        self.lst = lst

    def to_json(self) -> dict[str, Any]:
        d = self.result.to_json(include_wcs=True)
        d["hint"] = self.hint.to_json()
        d["mount_ra_deg"], d["mount_dec_deg"] = self.mount
        d["lst_deg"] = self.lst
        return {"solved": bool(self.result.solved), "solve": d}


def chain_for(settings: SolverSettings) -> SolverChain:
    """The solver chain of ``settings``, built once per process (the last settings are kept)."""
    key = settings.model_dump_json()
    chain = _CHAINS.get(key)
    if chain is None:
        from tenmon.vision.solve.chain import build_chain

        _CHAINS.clear()
        chain = _CHAINS[key] = build_chain(settings)
    return chain


def header_solver(settings: SolverSettings, *, longitude_deg: float = 0.0) -> Callable[..., SolvedFrame]:
    """A ``solver(image=, sources=, header=)`` for ``process_frame`` (see the module doc).

    ``longitude_deg`` (east positive) gives the row its local apparent sidereal time.
    """
    from tenmon.vision.solve.base import SolveHint
    from tenmon.vision.solve.frames import hint_from_header

    chain = chain_for(settings)
    s = settings

    def solve(*, image, sources, header) -> SolvedFrame:
        h = hint_from_header(header, image.shape)
        hint = SolveHint(ra_deg=h.ra_deg, dec_deg=h.dec_deg, radius_deg=s.pointing_error_deg,
                         scale_arcsec=s.pixel_scale_arcsec or h.scale_arcsec,
                         scale_tolerance=s.scale_tolerance)
        result = chain.solve(for_solving(sources), image.shape, hint)
        mra, mdec = _num(header.get("RA")), _num(header.get("DEC"))
        return SolvedFrame(result, hint, (mra, mdec), apparent_lst(header, longitude_deg))

    return solve


#: Source flags that make a position useless for matching: saturated cores (and the pieces of
#: their bleed trails), blends, elongated or extended shapes, cosmic-ray residue. In long
#: exposures the brightest stars, which a solver tries first, are exactly the saturated ones.
UNFIT_FOR_SOLVING = 1 | 4 | 8 | 32 | 64


def for_solving(sources):
    """The sources a solver should use (clean ones; all of them if too few are clean)."""
    if sources is None or "flags" not in sources.colnames or len(sources) == 0:
        return sources
    import numpy as np

    clean = (np.asarray(sources["flags"], dtype=int) & UNFIT_FOR_SOLVING) == 0
    return sources[clean] if clean.sum() >= 20 else sources


def apparent_lst(header, longitude_deg: float) -> float | None:
    """Local apparent sidereal time at mid-exposure (degrees), from DATE-OBS and EXPTIME."""
    try:
        from tenmon.core import offline

        offline.configure()
        import astropy.units as u
        from astropy.time import Time

        t = Time(str(header["DATE-OBS"]), scale="utc") + float(header.get("EXPTIME", 0.0)) / 2 * u.s
        return float(t.sidereal_time("apparent", longitude=longitude_deg * u.deg).deg)
    except Exception:  # noqa: BLE001 - no usable date: the row simply has no LST
        return None


def _num(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    return None


__all__ = ["SolvedFrame", "UNFIT_FOR_SOLVING", "apparent_lst", "chain_for", "for_solving", "header_solver"]
