"""Plate solving: one interface (``Solver``), the built-in hinted solver, astrometry.net, a chain.

Modules: ``base`` (hint, result, protocol, FITS/SQLite records), ``hinted`` (built-in solver),
``catalogs`` (local file, simulated sky, Gaia), ``astrometry_net`` (solve-field, web API),
``chain`` (ordered solvers, ``SolverSettings``), ``centering`` (the centring arithmetic),
``frames`` (FITS in/out, header hints), ``detect`` (sources for solving), ``wcsfit`` (TAN/SIP fits).
"""

from tenmon.vision.solve.base import (
    RESULT_FIELDS,
    Attempt,
    SolveHint,
    SolveResult,
    Solver,
    describe_wcs,
    insert_solve,
    solve_row,
)

__all__ = [
    "RESULT_FIELDS",
    "Attempt",
    "SolveHint",
    "SolveResult",
    "Solver",
    "describe_wcs",
    "insert_solve",
    "solve_row",
]
