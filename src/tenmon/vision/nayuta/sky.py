"""The target's sky position: by solving the slit-viewer frame or through a registration.

Part of :mod:`tenmon.vision.nayuta` (see its docstring for the conventions).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from tenmon.vision.nayuta.register import Registration
from tenmon.vision.nayuta.render import slit_viewer_wcs
from tenmon.vision.solve.base import SolveHint, SolveResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetSky:
    """The target's ICRS position [deg] and how it was found (``method``: ``solve`` or ``register``).

    ``frame_xy`` is the target's pixel in the 60 cm frame when known (``register`` route, or
    ``solve`` mapped through the 60 cm WCS). ``ok`` False with a ``reason`` when no route worked.
    """

    ok: bool
    ra_deg: float = math.nan
    dec_deg: float = math.nan
    method: str = "none"
    frame_xy: tuple[float, float] | None = None
    reason: str | None = None


def sky_by_solving(target_xy: tuple[float, float], sv_sources: Table, sv_shape: tuple[int, int],
                   hint: SolveHint, solver: Any) -> tuple[TargetSky, SolveResult]:
    """Plate-solve the slit-viewer sources (a ``SolverChain`` or any ``Solver``) and map the target.

    ``hint`` carries Nayuta's reported position and the slit viewer's scale. Returns the sky
    position (``ok=False`` with the solver's reason if not solved) and the solve result.
    """
    res = solve_with(solver, sv_sources, sv_shape, hint)
    if not res.solved or res.wcs is None:
        return TargetSky(ok=False, reason=f"slit viewer not solved: {res.reason}"), res
    ra, dec = res.wcs.all_pix2world(np.array([[target_xy[0], target_xy[1]]]), 0)[0]
    return TargetSky(ok=True, ra_deg=float(ra) % 360.0, dec_deg=float(dec), method="solve"), res


def sky_by_registration(target_xy: tuple[float, float], registration: Registration, frame_wcs: WCS,
                        frame_shape: tuple[int, int] | None = None) -> TargetSky:
    """Map the target through the registration into the 60 cm frame, then through its WCS."""
    if not registration.ok:
        return TargetSky(ok=False, reason=registration.reason)
    fx, fy = registration.apply(target_xy[0], target_xy[1])
    fxy = (float(fx[0]), float(fy[0]))
    if frame_shape is not None:
        ny, nx = frame_shape
        if not (-0.5 <= fxy[0] <= nx - 0.5 and -0.5 <= fxy[1] <= ny - 0.5):
            log.info("the target maps outside the 60 cm frame at %s", fxy)
    ra, dec = frame_wcs.all_pix2world(np.array([fxy]), 0)[0]
    return TargetSky(ok=True, ra_deg=float(ra) % 360.0, dec_deg=float(dec), method="register", frame_xy=fxy)


def target_sky_position(
    target_xy: tuple[float, float],
    *,
    route: Literal["auto", "solve", "register"] = "auto",
    sv_sources: Table | None = None,
    sv_shape: tuple[int, int] | None = None,
    sv_hint: SolveHint | None = None,
    solver: Any = None,
    registration: Registration | None = None,
    frame_wcs: WCS | None = None,
) -> TargetSky:
    """The target's sky position by either route.

    ``solve``: plate-solve the slit viewer (needs ``sv_sources``, ``sv_shape``, ``sv_hint`` and
    a ``solver``); ``register``: through a verified ``registration`` and the 60 cm frame's
    ``frame_wcs``; ``auto``: solve when a solver is given, else (or when solving fails)
    register. Never raises for "not found": ``ok=False`` with the reasons.
    """
    reasons = []
    if route in ("auto", "solve"):
        if solver is None or sv_sources is None or sv_shape is None or sv_hint is None:
            reasons.append("solve: no solver, sources or hint")
        else:
            sky, _ = sky_by_solving(target_xy, sv_sources, sv_shape, sv_hint, solver)
            if sky.ok:
                return sky
            reasons.append(f"solve: {sky.reason}")
    if route in ("auto", "register"):
        if registration is None or frame_wcs is None:
            reasons.append("register: no registration or no 60 cm WCS")
        else:
            sky = sky_by_registration(target_xy, registration, frame_wcs)
            if sky.ok:
                return sky
            reasons.append(f"register: {sky.reason}")
    return TargetSky(ok=False, reason="; ".join(reasons))


def offset_on_sky_arcsec(wcs: WCS, from_xy: tuple[float, float], to_xy: tuple[float, float]) -> tuple[float, float]:
    """(east, north) offset ["] on the sky from one pixel to another through ``wcs``."""
    from tenmon.vision.solve.wcsfit import tan_project

    p = wcs.all_pix2world(np.array([from_xy, to_xy]), 0)
    xi, eta = tan_project(p[1:, 0], p[1:, 1], float(p[0, 0]), float(p[0, 1]))
    return float(xi[0]) * 3600.0, float(eta[0]) * 3600.0


def nominal_wcs(*, ra_deg: float, dec_deg: float, shape: tuple[int, int], scale_arcsec: float,
                rotation_deg: float = 0.0, parity: str = "normal") -> WCS:
    """A WCS from what is known without solving: the mount's position at the frame centre, the
    camera's scale, rotation and parity. Offsets through it are right; absolute positions are
    only as good as the mount's pointing."""
    ny, nx = shape
    return slit_viewer_wcs(target_ra_deg=ra_deg, target_dec_deg=dec_deg, target_xy=((nx - 1) / 2.0, (ny - 1) / 2.0),
                           scale_arcsec_px=scale_arcsec, rotation_deg=rotation_deg, parity=parity, shape=shape)

def solve_with(solver: Any, sources: Table, shape: tuple[int, int], hint: SolveHint,
           timeout_s: float = 10.0) -> SolveResult:
    """A ``SolverChain`` (its own timeouts) or a bare ``Solver`` (which takes ``timeout_s``)."""
    import inspect

    if "timeout_s" in inspect.signature(solver.solve).parameters:
        return solver.solve(sources, shape, hint, timeout_s=timeout_s)
    return solver.solve(sources, shape, hint)
