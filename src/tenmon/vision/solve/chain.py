"""The solver chain: the configured solvers in order, each with its timeout; the first verified answer wins.

Every answer is checked the same way whoever produced it (a solver can be confidently wrong, as
astrometry.net is with relaxed odds and no hint): rms within ``max_rms_px`` pixels and, when the
hint has a pixel scale, the solved scale within its tolerance. The result records every attempt
(solver, solved, time, reason) and which solver solved.

``SolverSettings`` is the ``[solver]`` section of the site config; ``build_chain`` turns it into
a chain (catalogue provider included).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace

from astropy.table import Table

from tenmon.core.errors import SolveError
from tenmon.vision.solve.astrometry_net import AstrometryNetWeb, LocalAstrometryNet
from tenmon.config.vision import CatalogSettings, SolverSettings
from tenmon.vision.solve.base import Attempt, SolveHint, SolveResult, Solver
from tenmon.vision.solve.catalogs import CatalogProvider, GaiaCatalog, LocalFileCatalog, SimulatedSky
from tenmon.vision.solve.hinted import HintedSolver

log = logging.getLogger(__name__)


def make_catalog(settings: CatalogSettings) -> CatalogProvider | None:
    """The configured catalogue provider, or ``None`` for ``provider = "none"``.

    Raises ``SolveError`` for ``file`` without a path.
    """
    if settings.provider == "none":
        return None
    if settings.provider == "file":
        if settings.path is None:
            raise SolveError("solver.catalog.provider = 'file' needs solver.catalog.path")
        return LocalFileCatalog(settings.path)
    if settings.provider == "simulated":
        return SimulatedSky(seed=settings.sim_seed, density_per_deg2=settings.sim_density_per_deg2,
                            mag_faint=settings.sim_mag_faint)
    return GaiaCatalog(settings.gaia_cache_dir, mag_limit=settings.gaia_mag_limit, timeout_s=settings.gaia_timeout_s)


class SolverChain:
    """Solvers tried in order, each with a timeout; the first verified answer is returned."""

    name = "chain"

    def __init__(self, solvers: Sequence[tuple[Solver, float]], *, max_rms_px: float = 1.0,
                 skipped: Sequence[Attempt] = ()):
        self.solvers = list(solvers)
        self.max_rms_px = float(max_rms_px)
        self.skipped = tuple(skipped)

    def solve(self, sources: Table, shape: tuple[int, int], hint: SolveHint, *,
              image_path: str | os.PathLike[str] | None = None) -> SolveResult:
        """Try each solver; return the first verified solution, or ``solved=False`` with every reason.

        Never raises for a solver that fails to run: its ``SolveError`` becomes that attempt's
        reason and the next solver is tried. ``elapsed_ms`` is the whole chain's time.
        """
        t0 = time.perf_counter()
        attempts: list[Attempt] = list(self.skipped)
        for solver, timeout_s in self.solvers:
            t1 = time.perf_counter()
            try:
                if image_path is not None and isinstance(solver, (LocalAstrometryNet, AstrometryNetWeb)):
                    res = solver.solve(sources, shape, hint, timeout_s=timeout_s, image_path=image_path)
                else:
                    res = solver.solve(sources, shape, hint, timeout_s=timeout_s)
            except SolveError as exc:
                attempts.append(Attempt(solver.name, False, _ms(t1), f"could not run: {exc}"))
                log.warning("solver %s could not run: %s", solver.name, exc)
                continue
            if res.solved:
                problem = self._check(res, hint)
                if problem is None:
                    attempts.append(Attempt(solver.name, True, _ms(t1)))
                    log.info("solved by %s in %.0f ms: %d stars, rms %s\"", solver.name, _ms(t1),
                             res.n_matched, f"{res.rms_arcsec:.2f}" if res.rms_arcsec is not None else "?")
                    return replace(res, elapsed_ms=_ms(t0), attempts=tuple(attempts))
                attempts.append(Attempt(solver.name, False, _ms(t1), f"answer rejected: {problem}"))
                continue
            attempts.append(Attempt(solver.name, False, _ms(t1), res.reason))
        reason = "; ".join(f"{a.solver}: {a.reason}" for a in attempts) or "no solver configured"
        return SolveResult.failure(self.name, reason, _ms(t0), attempts=tuple(attempts))

    def _check(self, res: SolveResult, hint: SolveHint) -> str | None:
        if res.rms_arcsec is not None and res.scale_arcsec:
            rms_px = res.rms_arcsec / res.scale_arcsec
            if rms_px > self.max_rms_px:
                return f"rms {res.rms_arcsec:.2f}\" is {rms_px:.2f} px (limit {self.max_rms_px} px)"
        if hint.scale_arcsec and res.scale_arcsec:
            tol = max(hint.scale_tolerance, 0.02) + 0.01
            if abs(res.scale_arcsec / hint.scale_arcsec - 1.0) > tol:
                return f"scale {res.scale_arcsec:.4f}\"/px is not {hint.scale_arcsec}\"/px +- {tol:.0%}"
        return None


def build_chain(settings: SolverSettings, *, catalog: CatalogProvider | None = None) -> SolverChain:
    """A chain from ``SolverSettings``; ``catalog`` overrides the configured provider.

    Solvers that cannot be built (no catalogue for ``hinted``, no ``solve-field`` on the machine,
    no API key for ``web``) are left out and recorded as skipped attempts with the reason.
    """
    solvers: list[tuple[Solver, float]] = []
    skipped: list[Attempt] = []
    cat = catalog if catalog is not None else make_catalog(settings.catalog)
    for name in settings.order:
        if name == "hinted":
            if cat is None:
                skipped.append(Attempt("hinted", False, 0.0, "skipped: no catalogue configured"))
                continue
            solvers.append((HintedSolver(cat, settings.hinted), settings.hinted.timeout_s))
        elif name == "astrometry_net":
            local = LocalAstrometryNet(settings.astrometry_net)
            if not local.available():
                skipped.append(Attempt("astrometry_net", False, 0.0,
                                       f"skipped: {settings.astrometry_net.command} not installed"))
                continue
            solvers.append((local, settings.astrometry_net.timeout_s))
        elif name == "web":
            if settings.web.api_key is None:
                skipped.append(Attempt("astrometry_net_web", False, 0.0, "skipped: no api_key configured"))
                continue
            solvers.append((AstrometryNetWeb(settings.web), settings.web.timeout_s))
    return SolverChain(solvers, max_rms_px=settings.max_rms_px, skipped=skipped)


def hint_from_settings(settings: SolverSettings, ra_deg: float | None, dec_deg: float | None) -> SolveHint:
    """A hint from the mount's (or header's) position and the configured scale and pointing error."""
    return SolveHint(ra_deg=ra_deg, dec_deg=dec_deg, radius_deg=settings.pointing_error_deg,
                     scale_arcsec=settings.pixel_scale_arcsec, scale_tolerance=settings.scale_tolerance)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
