"""`tenmon archive ingest|query|coverage|failures|stats`: reprocess a tree of frames and ask it questions."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from tenmon.core.errors import ArchiveError, TenmonError

DEFAULT_ARCHIVE = Path("archive")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tenmon archive`` and its sub-commands."""
    p = subparsers.add_parser(
        "archive",
        help="reprocess a tree of frames (Dask) and query it: light curves, coverage, failures",
        description=(
            "The frame archive: `ingest` runs the frame pipeline (calibration where masters exist, LA "
            "Cosmic, sources, plate solving from header hints) over a tree of FITS frames on a local "
            "Dask cluster or an existing one, and keeps a per-frame index (SQLite) and every detection "
            "(Parquet, partitioned by night) in the archive directory (--db). The other commands ask it "
            "questions. Storage layout and direct DuckDB/pyarrow queries: docs/archive.md."),
        epilog="Example: tenmon archive ingest /data/frames --db /data/archive --catalog stars.ecsv --workers 4; "
               "tenmon archive query --db /data/archive --ra 10:00:01.0 --dec +20:00:11 --radius 3 --plot lc.png")
    sub = p.add_subparsers(dest="archive_command", metavar="SUBCOMMAND")

    def db(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", type=Path, default=DEFAULT_ARCHIVE, metavar="ARCHIVE",
                        help="the archive directory (index.sqlite and detections/; default ./archive)")
        sp.add_argument("--json", action="store_true", help="JSON only on stdout (one object per line for lists)")

    pi = sub.add_parser(
        "ingest", help="process every new or changed frame under ROOT into the archive",
        description=(
            "Walk ROOT for FITS frames (.fits/.fit/.fts, .gz, tile-compressed .fz), read each header "
            "(any observatory's keywords; what could not be read is recorded, never guessed), and run "
            "the frame pipeline on each new or changed frame: calibration with the masters of the nearest "
            "'masters/' (or 'calib/') directory at or above the frame (else --masters), LA Cosmic, "
            "sources, plate solving from the header's pointing and pixel scale against --catalog "
            "(and blind with local solve-field with --blind). Resumable and idempotent: a frame already "
            "done with the same pipeline version, settings and masters is skipped (failures too, unless "
            "--retry-failed); a changed file is redone and its old detections replaced. Every failure "
            "is recorded with its reason (`tenmon archive failures`). Ctrl-C leaves a consistent archive; "
            "run again to carry on. Exit status 0 when the walk finished (failed frames are data), "
            "130 when interrupted."),
        epilog="A frame is redone when its size, time and content change, or the pipeline's code, the "
               "settings or its masters change. --json prints one summary object at the end.")
    pi.add_argument("root", type=Path, metavar="ROOT", help="a directory of frames (walked recursively) or one frame")
    db(pi)
    eng = pi.add_mutually_exclusive_group()
    eng.add_argument("--workers", "-j", type=int, default=None, metavar="N",
                     help="local Dask cluster of N worker processes, one thread each (default: CPU count)")
    eng.add_argument("--scheduler", metavar="ADDRESS",
                     help="an existing Dask scheduler, e.g. tcp://head:8786 (workers must run this tenmon "
                          "and see ROOT under the same path)")
    pi.add_argument("--memory-limit", default="2GiB", metavar="SIZE",
                    help="memory per local worker (Dask pauses it at 80%%, restarts it at 95%%; default 2GiB)")
    pi.add_argument("--catalog", metavar="FILE|simulated[:SEED]",
                    help="stars for the hinted solver: an ECSV/FITS/CSV with ra, dec, mag, or the simulated sky")
    pi.add_argument("--pixel-scale", type=float, metavar="ARCSEC",
                    help="pixel scale when headers lack PIXSCALE/SECPIX or XPIXSZ+FOCALLEN")
    pi.add_argument("--blind", action="store_true",
                    help="also try local solve-field (blind when a header has no pointing); Debian's "
                         "Tycho-2 indexes solve only fields wider than ~22'")
    pi.add_argument("--masters", type=Path, metavar="DIR",
                    help="calibration masters for frames with no masters/ directory of their own")
    pi.add_argument("--longitude", type=float, metavar="DEG",
                    help="site longitude (east +) that divides nights at local noon (default: the header's, else 0)")
    pi.add_argument("--settings", type=Path, metavar="FILE",
                    help="TOML or JSON: [pipeline], [solver] (tenmon's site-file sections), blind, longitude_deg")
    pi.add_argument("--batch-frames", type=int, default=64, metavar="N",
                    help="frames per atomic write to the archive (default 64)")
    pi.add_argument("--retry-failed", action="store_true", help="process frames that failed before again")
    pi.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar with rate and ETA on stderr (default: when stderr is a terminal)")
    pi.set_defaults(func=_ingest)

    pq = sub.add_parser(
        "query", help="detections within a radius of a position, over time: a light curve",
        description=(
            "Every detection within --radius of (--ra, --dec) in every frame, sorted by time: one row per "
            "frame (the nearest detection; --all for every one) with MJD (mid-exposure, UTC), night, "
            "filter, instrumental magnitude -2.5 log10(e-/s) and error, flux [ADU], separation, pixel "
            "position, flags and the frame. --plot writes the light curve as a PNG."))
    db(pq)
    _position(pq)
    pq.add_argument("--radius", type=float, default=5.0, metavar="ARCSEC", help="cone radius (default 5 arcsec)")
    pq.add_argument("--filter", dest="filter_name", metavar="NAME", help="only this filter (as the headers name it)")
    pq.add_argument("--all", action="store_true", help="every detection in the cone, not the nearest per frame")
    pq.add_argument("--plot", type=Path, metavar="PNG", help="write the light curve to this PNG")
    pq.set_defaults(func=_query)

    pc = sub.add_parser("coverage", help="frames whose footprint covers a position",
                        description="Frames whose plate solution (WCS) puts the position on the frame, by time.")
    db(pc)
    _position(pc)
    pc.set_defaults(func=_coverage)

    pf = sub.add_parser("failures", help="frames that failed or were processed only in part, and why",
                        description="Every frame whose status is failed (nothing measured: unreadable, no image, "
                                    "pipeline error) or partial (measured, but e.g. not solved or no date), with "
                                    "its reasons and the header keywords that could not be read.")
    db(pf)
    pf.set_defaults(func=_failures)

    ps = sub.add_parser("stats", help="what the archive holds; --check verifies the index against the Parquet",
                        description="Frames by status, nights, detections, files, pipeline versions, last runs.")
    db(ps)
    ps.add_argument("--check", action="store_true",
                    help="also check integrity: SQLite's check, every frame's detections present exactly once")
    ps.set_defaults(func=_stats)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _position(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--ra", required=True, metavar="RA", help="degrees, or hours as HH:MM:SS.s")
    sp.add_argument("--dec", required=True, metavar="DEC", help="degrees, or +DD:MM:SS.s")


def parse_ra(text: str) -> float:
    """RA in degrees from degrees or sexagesimal hours (``10:00:00``, ``10h00m00s``)."""
    return _parse_angle(text, hours=True, name="--ra") % 360.0


def parse_dec(text: str) -> float:
    d = _parse_angle(text, hours=False, name="--dec")
    if not -90.0 <= d <= 90.0:
        raise TenmonError(f"--dec {text}: outside -90..+90")
    return d


def _parse_angle(text: str, *, hours: bool, name: str) -> float:
    t = str(text).strip()
    try:
        if any(c in t for c in ":hdms ") and not t.replace(".", "").replace("-", "").replace("+", "").isdigit():
            parts = t.replace("h", " ").replace("d", " ").replace("m", " ").replace("s", " ").replace(":", " ").split()
            vals = [float(x) for x in parts]
            sign = -1.0 if parts[0].startswith("-") else 1.0
            v = abs(vals[0]) + sum(x / 60.0**i for i, x in enumerate(vals[1:3], start=1))
            return sign * v * (15.0 if hours else 1.0)
        v = float(t)
    except (ValueError, IndexError):
        raise TenmonError(f"{name} {text}: not an angle (degrees, or {'HH:MM:SS' if hours else '+DD:MM:SS'})") from None
    if not math.isfinite(v):
        raise TenmonError(f"{name} {text}: not finite")
    return v


def build_settings(args: argparse.Namespace):
    """ArchiveSettings from --settings and the options."""
    from pydantic import ValidationError

    from tenmon.archive.work import ArchiveSettings

    data: dict = {}
    if args.settings:
        try:
            text = Path(args.settings).read_text()
            if args.settings.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import tomllib

                data = tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise TenmonError(f"--settings {args.settings}: {exc}") from exc
        data = {k: v for k, v in data.items() if k in ("pipeline", "solver", "blind", "longitude_deg", "keep_flags")}
    try:
        s = ArchiveSettings.model_validate(data)
        solver = s.solver
        if args.catalog:
            cat = args.catalog
            if cat.startswith("simulated"):
                seed = int(cat.split(":", 1)[1]) if ":" in cat else 0
                solver.catalog = solver.catalog.model_copy(update={"provider": "simulated", "sim_seed": seed})
            else:
                if not Path(cat).is_file():
                    raise TenmonError(f"--catalog {cat}: no such file")
                solver.catalog = solver.catalog.model_copy(update={"provider": "file",
                                                                   "path": Path(cat).resolve()})
        if args.pixel_scale is not None:
            solver.pixel_scale_arcsec = args.pixel_scale
        if args.blind:
            s.blind = True
        if args.longitude is not None:
            s.longitude_deg = args.longitude
        return ArchiveSettings.model_validate(s.model_dump())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise TenmonError(f"archive settings: {where}: {first['msg']}") from exc


def _ingest(args: argparse.Namespace) -> int:
    import os

    from tenmon.archive.ingest import ingest

    if not args.root.exists():
        raise ArchiveError(f"{args.root}: no such file or directory")
    if args.masters is not None and not args.masters.is_dir():
        raise ArchiveError(f"--masters {args.masters}: not a directory")
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if args.scheduler is None and workers < 1:
        raise ArchiveError(f"--workers {workers}: at least one")
    settings = build_settings(args)
    rep = ingest(args.root, args.db, settings=settings, workers=workers, scheduler=args.scheduler,
                 memory_limit=args.memory_limit, masters=args.masters, retry_failed=args.retry_failed,
                 progress=args.progress, batch_frames=max(1, args.batch_frames))
    if args.json:
        print(json.dumps(rep.to_json()), flush=True)
    else:
        rate = f", {rep.frames_per_min:.1f} frames/min" if rep.frames_per_min else ""
        print(f"{rep.archive}: {rep.seen} frame file(s) seen, {rep.skipped} already done, {rep.submitted} "
              f"processed: {rep.ok} ok, {rep.partial} partial, {rep.failed} failed, {rep.unchanged} unchanged; "
              f"{rep.detections} detections; {rep.elapsed_s:.1f} s{rate} ({rep.engine})")
        if rep.partial or rep.failed:
            print(f"why: tenmon archive failures --db {args.db}")
        if rep.interrupted:
            print("interrupted: the archive is consistent; run the same command again to carry on")
        if rep.version_mismatch:
            print(f"warning: {rep.version_mismatch} frame(s) were processed by workers running other tenmon code")
    return 130 if rep.interrupted else 0


def _open(args: argparse.Namespace) -> Path:
    from tenmon.archive import require
    from tenmon.archive.queries import ensure_archive

    require("pyarrow", "astropy_healpix")
    return ensure_archive(args.db)


def _query(args: argparse.Namespace) -> int:
    from tenmon.archive.queries import light_curve, plot_light_curve

    archive = _open(args)
    ra, dec = parse_ra(args.ra), parse_dec(args.dec)
    if not args.radius > 0:
        raise TenmonError(f"--radius {args.radius}: must be positive")
    rows = light_curve(archive, ra, dec, args.radius, filter_name=args.filter_name, nearest=not args.all)
    if args.plot:
        plot_light_curve([r for r in rows if r["mjd"] is not None], args.plot,
                         title=f"RA {ra:.5f} Dec {dec:+.5f}, r = {args.radius:g}\" ({len(rows)} detections)")
    if args.json:
        for r in rows:
            print(json.dumps(r), flush=True)
        return 0
    if not rows:
        print(f"no detections within {args.radius:g}\" of RA {ra:.5f} Dec {dec:+.5f}")
    else:
        print(f"{'MJD':>13} {'night':>10} {'filter':>6} {'mag':>8} {'err':>6} {'flux':>10} {'sep':>5}  frame")
        for r in rows:
            print(f"{_f(r['mjd'], 5):>13} {r['night'] or '?':>10} {r['filter'] or '?':>6} {_f(r['mag'], 3):>8} "
                  f"{_f(r['mag_err'], 3):>6} {_f(r['flux'], 1):>10} {_f(r['sep_arcsec'], 2):>5}  {r['path']}")
    if args.plot:
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


def _coverage(args: argparse.Namespace) -> int:
    from tenmon.archive.queries import coverage

    archive = _open(args)
    ra, dec = parse_ra(args.ra), parse_dec(args.dec)
    rows = coverage(archive, ra, dec)
    if args.json:
        for r in rows:
            print(json.dumps(r), flush=True)
        return 0
    print(f"{len(rows)} frame(s) cover RA {ra:.5f} Dec {dec:+.5f}")
    for r in rows:
        print(f"{r['date_obs'] or '?':>23} {r['filter'] or '?':>6} {_f(r['exptime_s'], 1):>7}s  x {r['x']:8.1f} "
              f"y {r['y']:8.1f}  {r['path']}")
    return 0


def _failures(args: argparse.Namespace) -> int:
    from tenmon.archive.queries import failures

    rows = failures(_open(args))
    if args.json:
        for r in rows:
            print(json.dumps(r), flush=True)
        return 0
    print(f"{len(rows)} frame(s) failed or partly processed")
    for r in rows:
        print(f"{r['status']:>7}  {r['path']}")
        for why in r["reasons"]:
            print(f"         {why}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from tenmon.archive.queries import check_integrity, stats

    archive = _open(args)
    s = stats(archive)
    if args.check:
        s["integrity"] = check_integrity(archive)
    if args.json:
        print(json.dumps(s), flush=True)
    else:
        print(f"{s['archive']}: {s['frames']} frames ({s['ok']} ok, {s['partial']} partial, {s['failed']} failed; "
              f"{s['with_wcs']} with a WCS), {s['nights']} nights {s['first_date_obs'] or ''} .. "
              f"{s['last_date_obs'] or ''}, {s['detections']} detections in {s['parquet_files']} Parquet files "
              f"({s['parquet_bytes'] / 2**20:.1f} MiB)")
        for v, n in s["versions"].items():
            print(f"  pipeline {v}: {n} frames")
        if args.check:
            i = s["integrity"]
            print("integrity: ok" if i["ok"] else "integrity: PROBLEMS\n  " + "\n  ".join(i["problems"]))
    if args.check and not s["integrity"]["ok"]:
        return 1
    return 0


def _f(v, nd: int) -> str:
    return "-" if v is None else f"{float(v):.{nd}f}"
