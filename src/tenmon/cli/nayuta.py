"""`tenmon nayuta locate|sync`: find Nayuta's target in a slit-viewer frame here, or have the daemon follow Nayuta."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from tenmon.cli.client import client_for, resolve_url
from tenmon.core.errors import ApiError, TenmonError

#: Exit status when the frames were read but the target was not located (1 is kept for errors).
EXIT_NOT_LOCATED = 2

#: The fields ``tenmon nayuta locate --json`` prints first, in this order.
LOCATE_FIELDS = ("target_ra_deg", "target_dec_deg", "method", "slit_angle_deg", "target_xy",
                 "mag_slit_viewer", "mag_60cm", "elapsed_ms")

SYNC_PATH = "/nayuta/sync"
STOP_PATH = "/nayuta/stop"
STATE_PATH = "/nayuta"
#: How long the daemon holds a --once answer by default (``NayutaDaemonSettings.answer_wait_s``).
DAEMON_ANSWER_WAIT_S = 100.0


class NayutaSyncUnavailable(ApiError):
    """The daemon has no Nayuta sync endpoint (it answered 404)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tenmon nayuta locate`` and ``tenmon nayuta sync`` to a sub-parsers object."""
    p = subparsers.add_parser(
        "nayuta",
        help="follow the 2 m Nayuta: locate its target in a slit-viewer frame, or sync the 60 cm to it",
        description=(
            "Nayuta's slit viewer shows its target on the dark spectrograph slit. `locate` finds "
            "the slit and the target in a slit-viewer FITS frame here and gives the target's sky "
            "position (by plate-solving the slit viewer, or by registering it inside a 60 cm "
            "frame) and its brightness; `sync` asks the running daemon to point the 60 cm at "
            "Nayuta's target and centre it."
        ),
    )
    sub = p.add_subparsers(dest="nayuta_command", metavar="locate|sync", required=True)

    loc = sub.add_parser(
        "locate",
        help="find Nayuta's target in a slit-viewer frame (files at hand, no daemon needed)",
        description=(
            "Find the slit and the target on it in SV_FRAME, then the target's ICRS position: "
            "by solving the slit-viewer frame (needs --catalog and a position and scale: the "
            "header's RA/DEC and PIXSCALE, or --ra/--dec/--sv-scale) and/or by registering it "
            "inside the 60 cm frame --frame60 (its WCS from its header, else solved with "
            "--catalog and its header's RA/DEC and scale). Prints target_ra_deg, target_dec_deg, "
            "method, slit_angle_deg, target_xy, mag_slit_viewer (from the wings beside the slit: "
            "a faint limit, the star is at least this bright), mag_60cm and elapsed_ms. "
            "Instrumental magnitudes, per second when EXPTIME is known. Exit status 0 located, "
            "2 not located, 1 error. Frames are only read."
        ),
    )
    loc.add_argument("sv_frame", type=Path, metavar="SV_FRAME", help="slit-viewer FITS frame")
    loc.add_argument("--frame60", type=Path, metavar="FRAME", help="a 60 cm FITS frame of the same field")
    loc.add_argument("--catalog", metavar="CAT",
                     help="star catalogue for solving: an ECSV/FITS/CSV file with ra, dec, mag, or "
                          "'sim[:SEED]' for the simulated sky")
    loc.add_argument("--ra", type=float, metavar="DEG", help="Nayuta's position, RA degrees (else the header's)")
    loc.add_argument("--dec", type=float, metavar="DEG", help="Nayuta's position, Dec degrees (else the header's)")
    loc.add_argument("--radius", type=float, default=0.05, metavar="DEG",
                     help="how far the slit viewer's centre may be from that position (default 0.05)")
    loc.add_argument("--sv-scale", type=float, metavar="ARCSEC",
                     help="slit-viewer pixel scale, arcsec/px (else the header's PIXSCALE; default 0.4)")
    loc.add_argument("--frame60-scale", type=float, metavar="ARCSEC",
                     help="60 cm pixel scale, arcsec/px (else from its header)")
    loc.add_argument("--route", choices=["auto", "solve", "register"], default="auto",
                     help="solve the slit viewer, register it in --frame60, or auto (default: both "
                          "when possible, the solve route's answer reported)")
    loc.add_argument("--json", action="store_true", help="print one JSON object only")
    loc.set_defaults(func=_locate)

    syn = sub.add_parser(
        "sync",
        help="ask the daemon to point the 60 cm at Nayuta's target and centre it",
        description=(
            "Ask the running daemon (POST /api/v1/nayuta/sync) to read Nayuta's newest "
            "slit-viewer frame, find its target, slew the 60 cm there and centre it, then "
            "measure the target's brightness in both telescopes. --once (the default) does it "
            "once and waits for the result (up to --timeout); --follow makes the daemon keep "
            "following Nayuta, re-syncing when its target moves, and returns at once; --stop "
            "ends following. The slit and cover must be open. Exit status 0 synced, 2 not "
            "synced (target not located, not centred), 1 error."
        ),
    )
    mode = syn.add_mutually_exclusive_group()
    mode.add_argument("--once", dest="mode", action="store_const", const="once", help="sync once (default)")
    mode.add_argument("--follow", dest="mode", action="store_const", const="follow", help="keep following Nayuta")
    mode.add_argument("--stop", dest="mode", action="store_const", const="stop",
                      help="stop following Nayuta (and a sync in progress)")
    syn.add_argument("--url", default=argparse.SUPPRESS, help="the daemon's API URL (else as `tenmon --url`)")
    syn.add_argument("--token", default=argparse.SUPPRESS,
                     help="the daemon's API token (else as `tenmon --token`)")
    syn.add_argument("--timeout", type=float, default=600.0, metavar="S",
                     help="how long to wait for the result of --once (default 600 s: a sync slews, takes "
                          "frames and centres); the sync goes on in the daemon after that")
    syn.add_argument("--json", action="store_true", help="print the daemon's answer as JSON only")
    syn.set_defaults(func=_sync, mode="once")


# --------------------------------------------------------------------------- locate


def _catalog(spec: str | None):
    from tenmon.vision.solve.catalogs import LocalFileCatalog, SimulatedSky

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


def _header_number(header, *keys: str) -> float | None:
    for k in keys:
        v = header.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)) and float(v) > 0:
            return float(v)
    return None


def _locate(args: argparse.Namespace) -> int:
    from tenmon.vision.nayuta import Frame60, locate_target, slit_viewer_chain
    from tenmon.config.vision import NayutaSettings
    from tenmon.vision.solve.base import SolveHint
    from tenmon.vision.solve.chain import build_chain
    from tenmon.config.vision import SolverSettings
    from tenmon.vision.solve.frames import header_wcs, hint_from_header, read_frame

    if (args.ra is None) != (args.dec is None):
        raise TenmonError("give both --ra and --dec, or neither")
    if args.dec is not None and not -90 <= args.dec <= 90:
        raise TenmonError(f"--dec {args.dec}: must be within -90..90")
    if not 0 < args.radius <= 5:
        raise TenmonError(f"--radius {args.radius}: must be in (0, 5] degrees")
    for name in ("sv_scale", "frame60_scale"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise TenmonError(f"--{name.replace('_', '-')} {v}: must be positive")
    if args.route == "register" and args.frame60 is None:
        raise TenmonError("--route register needs --frame60")
    image, header = read_frame(args.sv_frame)
    h = hint_from_header(header, image.shape)
    ra = args.ra if args.ra is not None else h.ra_deg
    dec = args.dec if args.dec is not None else h.dec_deg
    settings = NayutaSettings(route=args.route)
    sv_scale = args.sv_scale or h.scale_arcsec or settings.sv_scale_arcsec
    settings = settings.model_copy(update={"sv_scale_arcsec": sv_scale})
    sv_hint = SolveHint(ra_deg=ra, dec_deg=dec, radius_deg=args.radius, scale_arcsec=sv_scale,
                        scale_tolerance=settings.scale_tolerance)
    catalog = _catalog(args.catalog)
    chain = frame_chain = None
    if catalog is not None:
        chain = slit_viewer_chain(SolverSettings(), catalog=catalog, sv_scale_arcsec=sv_scale,
                                  max_rms_arcsec=settings.sv_max_rms_arcsec)
        frame_chain = build_chain(SolverSettings(), catalog=catalog)
    frame60 = None
    if args.frame60 is not None:
        img60, h60 = read_frame(args.frame60)
        hint60 = hint_from_header(h60, img60.shape)
        scale60 = args.frame60_scale or hint60.scale_arcsec
        wcs60 = header_wcs(h60)
        if scale60 is None:
            raise TenmonError(f"{args.frame60}: no pixel scale in its header; give --frame60-scale")
        frame60 = Frame60(image=img60, scale_arcsec=scale60, wcs=wcs60,
                          hint=SolveHint(ra_deg=hint60.ra_deg, dec_deg=hint60.dec_deg, radius_deg=0.15,
                                         scale_arcsec=scale60) if hint60.has_position else None,
                          exposure_s=_header_number(h60, "EXPTIME", "EXPOSURE"),
                          gain=_header_number(h60, "GAIN", "EGAIN"), saturation_adu=_header_number(h60, "SATURATE"))
    loc = locate_target(image, sv_hint=sv_hint if sv_hint.has_position else None,
                        sv_exposure_s=_header_number(header, "EXPTIME", "EXPOSURE"),
                        sv_gain=_header_number(header, "GAIN", "EGAIN"),
                        sv_saturation_adu=_header_number(header, "SATURATE"), solver=chain, frame60=frame60,
                        frame_solver=frame_chain,
                        settings=settings)
    rep = loc.to_json()
    out = {"file": str(args.sv_frame), **{k: rep[k] for k in LOCATE_FIELDS},
           **{k: v for k, v in rep.items() if k not in LOCATE_FIELDS}}
    if args.frame60 is not None:
        out["frame60"] = str(args.frame60)
    if args.json:
        print(json.dumps(out))
    else:
        _print_locate(out)
    return 0 if loc.located else EXIT_NOT_LOCATED


def _f(v: Any, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _print_locate(r: dict[str, Any]) -> None:
    out = sys.stdout
    slit = r["slit"]
    tgt = r["target"]
    if r["located"]:
        print(f"{r['file']}: target located by {r['method']} in {r['elapsed_ms']:.0f} ms", file=out)
        print(f"  target   RA {r['target_ra_deg']:.6f}  Dec {r['target_dec_deg']:+.6f} deg", file=out)
    else:
        print(f"{r['file']}: target not located: {r['reason']}", file=out)
    if slit.get("found"):
        print(f"  slit     angle {slit['angle_deg']:.2f} deg, width {slit['width_px']:.2f} px, "
              f"confidence {slit['confidence']:.2f}", file=out)
    if tgt.get("found"):
        xy = r["target_xy"]
        print(f"  on slit  x {xy[0]:.2f}  y {xy[1]:.2f} px (across the slit {tgt['t_px']:+.2f} px)", file=out)
    if r.get("mag_slit_viewer") is not None:
        model = r.get("mag_slit_viewer_model")
        print(f"  mag      slit viewer {_f(r['mag_slit_viewer'], '.3f')} (wings: at least this bright)"
              + (f", {model:.3f} corrected for the slit" if model is not None else ""), file=out)
    if r.get("mag_60cm") is not None:
        print(f"           60 cm {r['mag_60cm']:.3f}, difference {_f(r.get('mag_difference'), '+.3f')}", file=out)
    for where, sat in (r.get("saturated") or {}).items():
        if sat:
            print(f"  warning  the target is saturated on the {where.replace('_', ' ')}: its magnitude there is a "
                  "faint limit", file=out)
    routes = r.get("routes") or {}
    if len(routes) > 1 and r.get("route_disagreement_arcsec") is not None:
        print(f"  routes   {', '.join(routes)} agree within {r['route_disagreement_arcsec']:.2f} arcsec", file=out)
    for w in r.get("warnings", []):
        print(f"  warning  {w}", file=out)


# --------------------------------------------------------------------------- sync


def _sync(args: argparse.Namespace) -> int:
    import time

    url = resolve_url(getattr(args, "url", None), getattr(args, "config", None))
    mode = getattr(args, "mode", None) or ("follow" if getattr(args, "follow", False) else "once")
    if not args.timeout > 0:
        raise TenmonError(f"--timeout {args.timeout}: must be positive")
    # The daemon holds the answer of a --once sync until it is done or for up to its
    # [nayuta] answer_wait_s (default 100 s), then answers 202 with the sync in progress, which
    # is then polled (GET /nayuta) until --timeout. The HTTP timeout covers that hold.
    client = client_for(args, timeout_s=max(args.timeout, DAEMON_ANSWER_WAIT_S) + 30.0)
    try:
        if mode == "stop":
            answer = client.post(STOP_PATH, {})
        else:
            answer = client.post(SYNC_PATH, {"once": mode == "once"})
            deadline = time.monotonic() + args.timeout
            while (mode == "once" and isinstance(answer, dict) and answer.get("state") == "running"
                   and time.monotonic() < deadline):
                time.sleep(1.0)  # the daemon answered 202: the sync goes on; poll for its result
                answer = client.get(STATE_PATH)
    except ApiError as exc:
        if exc.status == 404 and exc.code in ("not_found", "http_error"):
            raise NayutaSyncUnavailable(
                "not_found",
                f"the daemon at {url} has no Nayuta sync (POST /api/v1{SYNC_PATH} answered 404): it is older "
                "than this tenmon, or following Nayuta is not built in; update and restart tenmond",
                404,
            ) from None
        raise
    if args.json:
        print(json.dumps(answer))
    else:
        _print_sync(answer, mode=mode)
    if mode == "once" and isinstance(answer, dict) and answer.get("state") == "running":
        raise TenmonError(f"Nayuta sync {answer.get('id')}: still {answer.get('phase')} after "
                          f"{args.timeout:g} s of waiting (it goes on in the daemon; `tenmon nayuta "
                          "sync --stop` ends it)")
    ok = answer.get("ok", answer.get("located", True)) if isinstance(answer, dict) else True
    return 0 if ok is not False else EXIT_NOT_LOCATED


#: The fields ``tenmon nayuta sync`` prints first, in this order (the rest follows).
SYNC_FIELDS = ("ok", "state", "reason", "target_ra_deg", "target_dec_deg", "route", "tries",
               "final_separation_arcsec", "mag_slit_viewer", "mag_60cm", "mag_slit_viewer_calibrated",
               "mag_60cm_calibrated", "elapsed_s")


def _print_sync(answer: Any, *, mode: str) -> None:
    out = sys.stdout
    print("Nayuta sync: " + {"follow": "following", "stop": "stop"}.get(mode, "once"), file=out)
    if not isinstance(answer, dict):
        print(f"  {answer}", file=out)
        return
    if isinstance(answer.get("tries"), list):
        answer = dict(answer)
        answer["tries"] = [t.get("separation_arcsec") if isinstance(t, dict) else t for t in answer["tries"]]
    keys = [k for k in SYNC_FIELDS if k in answer] + [k for k in answer if k not in SYNC_FIELDS]
    for k in keys:
        v = answer[k]
        if isinstance(v, float):
            v = f"{v:.6g}"
        elif isinstance(v, (dict, list)):
            v = json.dumps(v)
        print(f"  {k:<22} {v}", file=out)
