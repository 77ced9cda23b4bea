"""`tenmon center RA_DEG DEC_DEG`: have the daemon centre the 60 cm on a position by plate solving, try by try."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tenmon.cli.client import client_for, resolve_url
from tenmon.core.errors import ApiError, TenmonError

PATH = "/center"
FINAL = ("done", "failed", "aborted")


class CentringFailed(TenmonError):
    """The centring job ended outside the tolerance (or was refused, or timed out)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tenmon center`` to a sub-parsers object."""
    p = subparsers.add_parser(
        "center",
        help="centre the 60 cm on RA/Dec by plate solving (goto, frame, solve, correct, repeat)",
        description=(
            "Ask the running daemon to centre the telescope on RA_DEG DEC_DEG (ICRS degrees): "
            "it slews, slaves the dome, takes a frame, plate-solves it, then syncs the mount and "
            "slews again (or slews by the offset), until the frame centre is within the "
            "tolerance or the tries run out. Each try is printed as it comes (frame, separation "
            "from the target, what was done). The slit and the mirror cover must already be "
            "open (`tenmon slit open`, `tenmon cover open`); the daemon refuses when unsafe or "
            "busy. Exit status 0 when centred within the tolerance, 1 otherwise (with the "
            "reason on one line)."),
    )
    p.add_argument("ra_deg", type=float, metavar="RA_DEG", help="right ascension, degrees (0..360)")
    p.add_argument("dec_deg", type=float, metavar="DEC_DEG", help="declination, degrees (-90..90)")
    p.add_argument("--tolerance", type=float, metavar="ARCSEC",
                   help="centred within this many arcsec (default: the daemon's, e.g. 10)")
    p.add_argument("--max-tries", type=int, metavar="N",
                   help="frames taken before giving up (default: the daemon's)")
    p.add_argument("--exposure", type=float, metavar="S",
                   help="exposure of each frame, seconds (default: the daemon's)")
    p.add_argument("--url", default=argparse.SUPPRESS,
                   help="the daemon's API URL (else as `tenmon --url`)")
    p.add_argument("--token", default=argparse.SUPPRESS,
                   help="the daemon's API token (else as `tenmon --token`)")
    p.add_argument("--timeout", type=float, default=900.0, metavar="S",
                   help="give up waiting after this many seconds (default 900); the job itself "
                        "goes on in the daemon (POST /api/v1/center/abort ends it)")
    p.add_argument("--poll", type=float, default=1.0, metavar="S", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true",
                   help="print JSON only: one object per try, then the final job")
    p.add_argument("--no-wait", action="store_true",
                   help="start the job and return at once (then poll with `GET /api/v1/center`)")
    p.set_defaults(func=cmd_center)


def _validate(args: argparse.Namespace) -> None:
    if not 0.0 <= args.ra_deg < 360.0:
        raise TenmonError(f"RA_DEG {args.ra_deg}: must be within 0..360 degrees")
    if not -90.0 <= args.dec_deg <= 90.0:
        raise TenmonError(f"DEC_DEG {args.dec_deg}: must be within -90..90 degrees")
    if args.tolerance is not None and not args.tolerance > 0:
        raise TenmonError(f"--tolerance {args.tolerance}: must be positive")
    if args.max_tries is not None and not 1 <= args.max_tries <= 50:
        raise TenmonError(f"--max-tries {args.max_tries}: must be 1..50")
    if args.exposure is not None and not 0 < args.exposure <= 600:
        raise TenmonError(f"--exposure {args.exposure}: must be in (0, 600] s")


def cmd_center(args: argparse.Namespace) -> int:
    """POST /center, then follow ``GET /center`` until the job ends. Returns the exit code."""
    _validate(args)
    url = resolve_url(getattr(args, "url", None), getattr(args, "config", None))
    client = client_for(args, timeout_s=30.0)
    body: dict[str, Any] = {"ra_deg": args.ra_deg, "dec_deg": args.dec_deg}
    for key, value in (("tolerance_arcsec", args.tolerance), ("max_tries", args.max_tries),
                       ("exposure_s", args.exposure)):
        if value is not None:
            body[key] = value
    try:
        job = client.post(PATH, body)["job"]
    except ApiError as exc:
        if exc.status == 404 and exc.code in ("not_found", "http_error"):
            raise CentringFailed(f"the daemon at {url} has no centring (POST /api/v1{PATH} "
                                 "answered 404): update and restart tenmond") from None
        raise
    out = sys.stdout
    if not args.json:
        t = job["target"]
        print(f"centring {job['id']} on RA {t['ra_deg']:.5f} Dec {t['dec_deg']:+.5f}: within "
              f"{job['tolerance_arcsec']:g}\", at most {job['max_tries']} tries, "
              f"{job['exposure_s']:g} s frames ({job['method']})", file=out, flush=True)
    if args.no_wait:
        if args.json:
            print(json.dumps(job), file=out, flush=True)
        return 0
    shown = 0
    deadline = time.monotonic() + args.timeout
    while True:
        shown = _show_tries(job, shown, args.json)
        if job["state"] in FINAL:
            break
        if time.monotonic() > deadline:
            raise CentringFailed(f"{job['id']}: still {job.get('phase')} after "
                                 f"{args.timeout:g} s of waiting (the job goes on in the daemon)")
        time.sleep(args.poll)
        got = client.get(PATH, id=job["id"])["job"]
        if got is not None:
            job = got
    if args.json:
        print(json.dumps(job), file=out, flush=True)
    else:
        sep = job.get("final_separation_arcsec")
        print(f"{job['state']}: {job['reason']}"
              + (f" (final separation {sep:.1f}\")" if sep is not None else ""), file=out)
    if job["state"] == "done":
        return 0
    if args.json:
        return 1
    raise CentringFailed(f"not centred: {job['reason']}")


def _show_tries(job: dict[str, Any], shown: int, as_json: bool) -> int:
    """Print the tries of ``job`` not printed yet (a try is printed once it has an action)."""
    tries = [t for t in job.get("tries", []) if t.get("action")]
    for t in tries[shown:]:
        if as_json:
            print(json.dumps({"job": job["id"], **t}), flush=True)
            continue
        if t.get("solved"):
            line = (f"  try {t['try']}: {t['frame']}: {t['separation_arcsec']:.1f}\" from the "
                    f"target (E {t['east_arcsec']:+.1f}\", N {t['north_arcsec']:+.1f}\"; solved "
                    f"by {t['solver']}) -> {_action(t['action'])}")
        else:
            line = f"  try {t['try']}: {t.get('frame') or 'no frame'}: {t['reason']} -> " \
                   f"{_action(t['action'])}"
        print(line, flush=True)
    return max(shown, len(tries))


def _action(a: str) -> str:
    return {"done": "centred", "sync_and_goto": "synced the mount, slewing again",
            "goto": "slewing by the offset", "give_up": "giving up",
            "retry": "trying again"}.get(a, a)
