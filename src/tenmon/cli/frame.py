"""`tenmon frame process FILE|DIR...`: run the frame pipeline here on frames at hand (no daemon needed)."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import sys
from pathlib import Path

from tenmon.core.errors import TenmonError, VisionError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tenmon frame process`` to a sub-parsers object."""
    p = subparsers.add_parser(
        "frame",
        help="process CCD frames at hand (LA Cosmic, sources, clusters, products)",
        description="Frame pipeline on files at hand, without the daemon.",
    )
    sub = p.add_subparsers(dest="frame_command", metavar="SUBCOMMAND")
    pp = sub.add_parser(
        "process",
        help="clean, measure and search FITS frames; write products",
        description=(
            "Process FITS frames: calibration (overscan/trim from the header, masters from "
            "--calibration), LA Cosmic with star protection, background and sources, cluster "
            "candidates (DBSCAN), and products written atomically to --out: cleaned FITS with the "
            "mask as an extension, a compressed mask, sources and candidates as ECSV, a DS9 "
            "region file and a PNG preview. Input files are never modified. Gain and read noise "
            "come from the header (GAIN, RDNOISE) unless given here. Directories are scanned for "
            "FITS files (*.fits, *.fit, *.fts, .fz/.gz). Exit status 0 if every frame was "
            "processed, 1 otherwise."
        ),
    )
    pp.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR", help="FITS frames or directories of them")
    pp.add_argument("--out", type=Path, default=Path("products"), metavar="DIR",
                    help="products directory (default ./products; created if missing)")
    pp.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                    help="frames processed in parallel, one process each (default 1)")
    pp.add_argument("--json", action="store_true", help="print one JSON object per frame, nothing else")
    pp.add_argument("--gain", type=float, metavar="E_PER_ADU", help="gain, overriding the header's GAIN")
    pp.add_argument("--read-noise", type=float, metavar="E", help="read noise, overriding the header's RDNOISE")
    pp.add_argument("--saturation", type=float, metavar="ADU", help="saturation level, overriding SATURATE")
    pp.add_argument("--calibration", type=Path, metavar="DIR",
                    help="directory with bias.fits, dark.fits, flat[_FILTER].fits, bpm.fits")
    pp.add_argument("--bias-level", type=float, metavar="ADU",
                    help="constant bias to subtract when there is neither overscan nor a master bias")
    pp.add_argument("--no-cosmics", action="store_true", help="skip LA Cosmic")
    pp.add_argument("--no-clusters", action="store_true", help="skip the cluster-candidate search")
    pp.add_argument("--no-preview", action="store_true", help="do not write the PNG preview")
    pp.add_argument("--recursive", "-r", action="store_true", help="scan directories recursively")
    pp.add_argument("--settings", type=Path, metavar="JSON",
                    help="a JSON file with PipelineSettings (options above override it)")
    pp.set_defaults(func=_process)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def collect_frames(paths: list[Path], *, recursive: bool = False) -> list[Path]:
    """Expand directories into their FITS files (sorted); files are kept as given.

    Raises:
        VisionError: for a path that does not exist, or when no frame is found.
    """
    from tenmon.vision.frames.pipeline import is_fits_name

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(f for f in it if f.is_file() and is_fits_name(f) and not f.name.startswith("."))
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise VisionError(f"{p}: no such file or directory")
    if not out:
        raise VisionError(f"no FITS frames in {', '.join(str(p) for p in paths)}")
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def build_settings(args: argparse.Namespace):
    """PipelineSettings from --settings and the command-line options."""
    from pydantic import ValidationError

    from tenmon.config.vision import PipelineSettings

    data: dict = {}
    if args.settings:
        try:
            data = json.loads(Path(args.settings).read_text())
        except (OSError, ValueError) as exc:
            raise TenmonError(f"--settings {args.settings}: {exc}") from exc
    try:
        s = PipelineSettings.model_validate(data)
        if args.gain is not None:
            s.gain_e_per_adu = args.gain
        if args.read_noise is not None:
            s.read_noise_e = args.read_noise
        if args.saturation is not None:
            s.saturation_adu = args.saturation
        if args.calibration is not None:
            if not args.calibration.is_dir():
                raise TenmonError(f"--calibration {args.calibration}: not a directory")
            s.calibration.directory = args.calibration
        if args.bias_level is not None:
            s.calibration.bias_level_adu = args.bias_level
        if args.no_cosmics:
            s.cosmics.enabled = False
        if args.no_clusters:
            s.clusters.enabled = False
        if args.no_preview:
            s.products.preview = False
        return PipelineSettings.model_validate(s.model_dump())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise TenmonError(f"pipeline settings: {where}: {first['msg']}") from exc


def _run(path: str, out: str, settings_json: str) -> dict:
    from tenmon.vision.frames.pipeline import process_frame
    from tenmon.config.vision import PipelineSettings

    s = PipelineSettings.model_validate_json(settings_json)
    return process_frame(path, out_dir=out, settings=s).to_json()


def _process(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise TenmonError(f"--jobs {args.jobs}: must be at least 1")
    frames = collect_frames(args.paths, recursive=args.recursive)
    settings = build_settings(args)
    sj = settings.model_dump_json()
    out = str(args.out)
    show_bar = sys.stderr.isatty()
    failures = 0
    bar = None
    if show_bar and len(frames) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(frames), unit="frame", file=sys.stderr, desc="frames")

    def report(path: Path, result: dict | None, error: str | None) -> None:
        nonlocal failures
        if error is not None:
            failures += 1
            if args.json:
                print(json.dumps({"frame": str(path), "error": error}), flush=True)
            else:
                _emit(f"{path}: FAILED: {error}", bar)
        elif args.json:
            print(json.dumps(result), flush=True)
        else:
            _emit(_human(result), bar)
        if bar is not None:
            bar.update(1)

    try:
        if args.jobs == 1 or len(frames) == 1:
            for f in frames:
                try:
                    report(f, _run(str(f), out, sj), None)
                except TenmonError as exc:
                    if len(frames) == 1:
                        raise
                    report(f, None, str(exc))
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
                futs = {pool.submit(_run, str(f), out, sj): f for f in frames}
                for fut in concurrent.futures.as_completed(futs):
                    f = futs[fut]
                    try:
                        report(f, fut.result(), None)
                    except TenmonError as exc:
                        report(f, None, str(exc))
                    except concurrent.futures.process.BrokenProcessPool as exc:
                        report(f, None, f"worker process died: {exc}")
    finally:
        if bar is not None:
            bar.close()
    return 1 if failures else 0


def _emit(line: str, bar) -> None:
    if bar is not None:
        bar.write(line, file=sys.stdout)
    else:
        print(line, flush=True)


def _human(r: dict) -> str:
    fwhm = f"{r['fwhm_px']:.2f} px" if r.get("fwhm_px") is not None else "n/a"
    parts = [
        f"{r['frame']}: {r['n_sources']} sources, FWHM {fwhm}, sky {r['background']:.1f} "
        f"± {r['background_rms']:.1f} ADU, {r['n_cosmic_pixels']} cosmic-ray px, "
        f"{len(r['clusters'])} cluster candidate(s), {r['elapsed_ms'] / 1000:.1f} s"
    ]
    for c in r["clusters"]:
        sky = f" (RA {c['ra']:.5f}, Dec {c['dec']:+.5f})" if "ra" in c else ""
        parts.append(f"  candidate at x {c['x']:.1f}, y {c['y']:.1f}{sky}: {c['n_members']} stars within "
                     f"{c['radius_px']:.0f} px, {c['significance']:.1f} sigma")
    for w in r.get("warnings", []):
        parts.append(f"  warning: {w}")
    parts.append(f"  products in {Path(r['products']['sources'] or r['products']['clean'] or '.').parent}")
    return "\n".join(parts)


__all__ = ["register", "collect_frames", "build_settings"]
