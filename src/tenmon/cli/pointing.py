"""`tenmon pointing fit|evaluate`: fit a TPOINT-style pointing model and test it on another run."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from tenmon.core.errors import TenmonError
from tenmon.pointing import model as P


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tenmon pointing`` (with ``fit`` and ``evaluate``) to a sub-parsers object."""
    parser = subparsers.add_parser(
        "pointing",
        help="fit and evaluate the mount's pointing model (TPOINT terms)",
        description=(
            "Fit TPOINT-style pointing terms (IH ID CH NP MA ME TF FO DAF by default) to a pointing "
            "run: a TPOINT input file (e.g. exported by TheSkyX) or the plate solves the daemon "
            "logged. The model corrects gotos once a site sets pointing.model_path and "
            "pointing.apply_to_gotos."
        ),
    )
    sub = parser.add_subparsers(dest="pointing_command", metavar="COMMAND")
    sub.required = True

    fit_p = sub.add_parser(
        "fit",
        help="fit a model to a TPOINT file or to the solve log",
        description=(
            "Least-squares fit of pointing terms with each term's sigma. Prints the terms in "
            "arcsec, the sky rms before and after, and the number of observations. Beyond-the-pole "
            "rows (mount Dec > 90) are the other side of the pier and are modelled as such."
        ),
    )
    src = fit_p.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", type=Path, help="TPOINT input file (INDAT format)")
    src.add_argument(
        "--from-log",
        action="store_true",
        help="use the solved frames in the daemon's database (table 'solves'); needs --db and --latitude",
    )
    fit_p.add_argument("--db", type=Path, help="the daemon's SQLite database (with --from-log)")
    fit_p.add_argument("--latitude", type=float, metavar="DEG", help="site latitude, degrees (with --from-log)")
    fit_p.add_argument("--mount-frame", choices=["icrs", "apparent"], default="icrs",
                       help="with --from-log: the mount reports ICRS/J2000 (default) or apparent (JNow) "
                       "coordinates; solved positions are converted to match")
    fit_p.add_argument(
        "--terms",
        default=",".join(P.DEFAULT_TERMS),
        metavar="T,...",
        help=(
            f"terms to fit (default {','.join(P.DEFAULT_TERMS)}; "
            f"also {','.join(t for t in P.TERMS if t not in P.DEFAULT_TERMS)})"
        ),
    )
    fit_p.add_argument("--clip", type=float, metavar="SIGMA", help="drop observations beyond SIGMA x rms and refit")
    fit_p.add_argument("--out", type=Path, metavar="MODEL.json", help="write the model here (atomically)")
    fit_p.add_argument("--plot", type=Path, metavar="PNG", help="write a residual plot here")
    fit_p.add_argument("--json", action="store_true", help="print one JSON object only")
    fit_p.set_defaults(func=_fit)

    ev_p = sub.add_parser(
        "evaluate",
        help="apply a saved model to another run and report the rms",
        description=(
            "Apply MODEL.json (from `tenmon pointing fit --out`) to another TPOINT run of the same "
            "mount and report the sky rms before (no model) and after, in arcsec."
        ),
    )
    ev_p.add_argument("model", type=Path, metavar="MODEL.json")
    ev_p.add_argument("file", type=Path, metavar="FILE", help="TPOINT input file")
    ev_p.add_argument("--plot", type=Path, metavar="PNG", help="write a residual plot here")
    ev_p.add_argument("--json", action="store_true", help="print one JSON object only")
    ev_p.set_defaults(func=_evaluate)


def _load_data(args: argparse.Namespace) -> P.PointingData:
    if args.from_log:
        if args.db is None:
            raise TenmonError("--from-log needs --db PATH (the daemon's SQLite database)")
        if args.latitude is None:
            raise TenmonError("--from-log needs --latitude DEG (the site's latitude)")
        return P.read_solve_log(args.db, latitude_deg=args.latitude, mount_frame=args.mount_frame)
    return P.read_tpoint(args.file)


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 3)


def _fit(args: argparse.Namespace) -> int:
    terms = P.parse_terms(args.terms)
    data = _load_data(args)
    result = P.fit(data, terms, clip_sigma=args.clip)
    model = result.model
    if args.out is not None:
        model.save(args.out)
    if args.plot is not None:
        P.plot_residuals(result.residuals, args.plot, title=f"pointing fit: {Path(data.source).name}")
    report = {
        "source": data.source,
        "n": model.n,
        "n_clipped": result.n_clipped,
        "latitude_deg": model.latitude_deg,
        "rms_before_arcsec": _num(model.rms_before_arcsec),
        "rms_after_arcsec": _num(model.rms_after_arcsec),
        "terms": {
            t: {"value_arcsec": _num(model.coefficients_arcsec[t]), "sigma_arcsec": _num(model.sigmas_arcsec[t])}
            for t in model.terms
        },
        "out": str(args.out) if args.out else None,
        "plot": str(args.plot) if args.plot else None,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    out = sys.stdout
    print(f"{data.source}: {model.n} observations, latitude {model.latitude_deg:+.4f} deg", file=out)
    if result.n_clipped:
        print(f"  {result.n_clipped} observations clipped beyond {args.clip} x rms", file=out)
    print("  term        value\"    sigma\"  description", file=out)
    for t in model.terms:
        c, s = model.coefficients_arcsec[t], model.sigmas_arcsec[t]
        print(f"  {t:<5} {c:11.1f} {s:9.1f}  {P.TERMS[t].description}", file=out)
    print(
        f"  sky rms: {model.rms_before_arcsec:.1f}\" before, {model.rms_after_arcsec:.1f}\" after",
        file=out,
    )
    if args.out:
        print(f"  model written to {args.out}", file=out)
    if args.plot:
        print(f"  residual plot written to {args.plot}", file=out)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    model = P.PointingModel.load(args.model)
    data = P.read_tpoint(args.file)
    ev = P.evaluate(model, data)
    if args.plot is not None:
        P.plot_residuals(ev.residuals, args.plot, title=f"{args.model.name} on {args.file.name}")
    report = {
        "model": str(args.model),
        "source": data.source,
        "n": ev.n,
        "rms_before_arcsec": _num(ev.rms_before_arcsec),
        "rms_after_arcsec": _num(ev.rms_after_arcsec),
        "plot": str(args.plot) if args.plot else None,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    ratio = ev.rms_before_arcsec / ev.rms_after_arcsec if ev.rms_after_arcsec > 0 else float("inf")
    verdict = f"{ratio:.1f}x better" if ratio >= 1 else f"{1 / ratio:.1f}x WORSE: another mount or a changed one?"
    print(
        f"{args.model} on {data.source}: {ev.n} observations, sky rms {ev.rms_before_arcsec:.1f}\" "
        f"before, {ev.rms_after_arcsec:.1f}\" after ({verdict})"
    )
    if args.plot:
        print(f"  residual plot written to {args.plot}")
    return 0
