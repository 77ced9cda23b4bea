"""`tenmon solve FILE`: plate-solve one FITS frame here, with the solver chain, and print the result."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from tenmon.core.errors import TenmonError
from tenmon.vision.solve.base import RESULT_FIELDS, SolveHint
from tenmon.vision.solve.catalogs import CatalogProvider, LocalFileCatalog, SimulatedSky
from tenmon.vision.solve.chain import build_chain
from tenmon.config.vision import SolverSettings
from tenmon.vision.solve.detect import detect_sources
from tenmon.vision.solve.frames import hint_from_header, read_frame, write_solved_copy

#: Exit status when the frame was read but not solved (1 is kept for errors).
EXIT_NOT_SOLVED = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tenmon solve`` to a sub-parsers object."""
    p = subparsers.add_parser(
        "solve",
        help="plate-solve a FITS frame (built-in hinted solver, then astrometry.net)",
        description=(
            "Find where a FITS frame points: sources are extracted, then the solvers are tried in "
            "order (--solver): the built-in hinted solver needs a catalogue (--catalog) and a "
            "position and pixel-scale hint (from the header, or --ra/--dec/--scale); local "
            "astrometry.net (solve-field) also solves blind. Prints the centre, rotation, scale, "
            "parity, rms and which solver answered. Exit status 0 solved, 2 not solved, 1 error."
        ),
    )
    p.add_argument("file", type=Path, help="FITS frame (not modified)")
    p.add_argument(
        "--catalog",
        metavar="CAT",
        help="star catalogue for the hinted solver: an ECSV/FITS/CSV file with ra, dec, mag, "
        "or 'sim[:SEED]' for the simulated sky",
    )
    p.add_argument("--ra", type=float, metavar="DEG", help="approximate centre RA, degrees (else the header's)")
    p.add_argument("--dec", type=float, metavar="DEG", help="approximate centre Dec, degrees (else the header's)")
    p.add_argument("--radius", type=float, metavar="DEG", default=None,
                   help="how far the true centre may be from the hint, degrees (default 0.1)")
    p.add_argument("--scale", type=float, metavar="ARCSEC", help="pixel scale, arcsec/px (else from the header)")
    p.add_argument("--scale-tolerance", type=float, default=0.05, metavar="FRAC",
                   help="fractional uncertainty of the scale (default 0.05)")
    p.add_argument("--solver", default="hinted,astrometry_net", metavar="S,...",
                   help="solvers in order: hinted, astrometry_net (default both)")
    p.add_argument("--timeout", type=float, metavar="S", help="timeout of each solver, seconds")
    p.add_argument("--odds", type=float, metavar="ODDS",
                   help="astrometry.net's odds to accept a solution (default 1e9; lower only with a hint)")
    p.add_argument("--out", type=Path, metavar="FITS", help="write a copy of the frame with the WCS here")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    p.set_defaults(func=_solve)


def _catalog(spec: str | None) -> CatalogProvider | None:
    if spec is None:
        return None
    if spec == "sim" or spec.startswith("sim:"):
        seed = spec.split(":", 1)[1] if ":" in spec else "0"
        try:
            return SimulatedSky(seed=int(seed))
        except ValueError as exc:
            raise TenmonError(f"--catalog {spec!r}: the simulated sky's seed must be an integer") from exc
    path = Path(spec)
    if not path.is_file():
        raise TenmonError(f"--catalog {spec}: file not found")
    return LocalFileCatalog(path)


def _settings(args: argparse.Namespace) -> SolverSettings:
    order = [s.strip() for s in args.solver.split(",") if s.strip()]
    known = {"hinted", "astrometry_net"}
    bad = [s for s in order if s not in known]
    if bad or not order:
        raise TenmonError(f"--solver {args.solver!r}: choose from {', '.join(sorted(known))}")
    data: dict = {"order": order, "scale_tolerance": args.scale_tolerance}
    if args.radius is not None:
        if not 0 < args.radius <= 10:
            raise TenmonError(f"--radius {args.radius}: must be in (0, 10] degrees")
        data["pointing_error_deg"] = args.radius
    if args.timeout is not None:
        data["hinted"] = {"timeout_s": args.timeout}
        data["astrometry_net"] = {"timeout_s": args.timeout}
    if args.odds is not None:
        data.setdefault("astrometry_net", {})["odds_to_solve"] = args.odds
    try:
        return SolverSettings(**data)
    except ValueError as exc:
        raise TenmonError(f"bad solver option: {exc}") from exc


def _solve(args: argparse.Namespace) -> int:
    if (args.ra is None) != (args.dec is None):
        raise TenmonError("give both --ra and --dec, or neither")
    if args.dec is not None and not -90 <= args.dec <= 90:
        raise TenmonError(f"--dec {args.dec}: must be within -90..90")
    settings = _settings(args)
    catalog = _catalog(args.catalog)
    image, header = read_frame(args.file)
    shape = image.shape
    from_header = hint_from_header(header, shape)
    ra = args.ra if args.ra is not None else from_header.ra_deg
    dec = args.dec if args.dec is not None else from_header.dec_deg
    scale = args.scale if args.scale is not None else from_header.scale_arcsec
    hint = SolveHint(ra_deg=ra, dec_deg=dec, radius_deg=settings.pointing_error_deg, scale_arcsec=scale,
                     scale_tolerance=settings.scale_tolerance)
    sources = detect_sources(image, header=header)  # the frame pipeline's extraction, gain and saturation
    chain = build_chain(settings, catalog=catalog) if catalog is not None else build_chain(settings)
    result = chain.solve(sources, shape, hint, image_path=args.file)
    if args.out is not None and result.solved:
        write_solved_copy(args.file, args.out, result)
    report = result.to_json(include_wcs=False)
    report = {"file": str(args.file), **{k: report[k] for k in RESULT_FIELDS}, "n_sources": len(sources),
              "fwhm_px": _round(sources.meta.get("fwhm_px")), "hint": hint.to_json(), "attempts": report.get("attempts", [])}
    if args.json:
        print(json.dumps(report))
    else:
        _print_human(report, args, result.solved)
    return 0 if result.solved else EXIT_NOT_SOLVED


def _round(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 3)


def _print_human(rep: dict, args: argparse.Namespace, solved: bool) -> None:
    out = sys.stdout
    if solved:
        print(f"{rep['file']}: solved by {rep['solver']} in {rep['elapsed_ms']:.0f} ms", file=out)
        print(f"  centre   RA {rep['ra_deg']:.6f}  Dec {rep['dec_deg']:+.6f} deg", file=out)
        print(f"  rotation {rep['rotation_deg']:.2f} deg (up, E of N), parity {rep['parity']}", file=out)
        print(f"  scale    {rep['scale_arcsec']:.4f} arcsec/px", file=out)
        rms = rep["rms_arcsec"]
        print(f"  matched  {rep['n_matched']} stars, rms {rms:.3f} arcsec" if rms is not None and math.isfinite(rms)
              else f"  matched  {rep['n_matched']} stars", file=out)
        fw = rep.get("fwhm_px")
        print(f"  sources  {rep['n_sources']}" + (f", frame FWHM {fw:.2f} px" if fw else ""), file=out)
        if args.out:
            print(f"  written  {args.out}", file=out)
    else:
        print(f"{rep['file']}: not solved ({rep['n_sources']} sources): {rep['reason']}", file=out)
