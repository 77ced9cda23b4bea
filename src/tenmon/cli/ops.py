"""Operator commands: status, dome, slit, cover, mount, stop, resume, events, audit, sim."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from tenmon.cli.client import ApiClient, client_for
from tenmon.core.errors import ApiError, TenmonError
from tenmon.statusview import format_text
from tenmon.core.timefmt import parse_utc, utc_iso


class WaitFailed(TenmonError):
    """A --wait ended in a state other than the one asked for (error, unknown, closed but not
    verified, stopped on the way) or ran out of time."""

    def __init__(self, message: str, *, status: dict | None = None):
        super().__init__(message)
        self.status = status


def _client(args) -> ApiClient:
    return client_for(args)


def _emit(args, obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


# --------------------------------------------------------------------------- status


def _deg(v, fmt="{:.1f}°") -> str:
    return "—" if v is None else fmt.format(v)


def format_status(s: dict[str, Any]) -> str:
    """The status snapshot as a few aligned lines for a person: the one status model
    (``tenmon.statusview``), which the operator page shows too."""
    return format_text(s)


def cmd_status(args) -> int:
    client = _client(args)
    if args.watch is None:
        s = client.get("/status")
        if args.json:
            _emit(args, s)
        else:
            print(format_status(s))
        return 0
    tty = sys.stdout.isatty() and not args.json
    while True:
        try:
            s = client.get("/status")
            out = json.dumps(s) if args.json else format_status(s)
        except ApiError as exc:
            if args.json:
                raise
            out = f"tenmon: {exc}"
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J")
        print(out, flush=True)
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0


# --------------------------------------------------------------------------- commands + --wait


def _wait(client: ApiClient, args, done: Callable[[dict], str | None],
          failed: Callable[[dict], str | None], what: str) -> dict:
    """Poll status until ``done`` returns a text (success) or ``failed`` returns one: every
    terminal state that is not the one asked for (error, unknown, closed but not verified,
    stopped on the way) ends the wait at once."""
    deadline = time.monotonic() + args.timeout
    while True:
        s = client.get("/status")
        bad = failed(s)
        if bad:
            raise WaitFailed(f"{what}: {bad}", status=s)
        ok = done(s)
        if ok:
            return s
        if time.monotonic() > deadline:
            raise WaitFailed(f"{what}: not done after {args.timeout:g} s of waiting", status=s)
        time.sleep(args.poll)


def _run(args, path: str, body: dict | None, what: str,
         done: Callable[[dict], str | None] | None = None,
         failed: Callable[[dict], str | None] | None = None,
         result: Callable[[dict], dict] | None = None) -> int:
    client = _client(args)
    t0 = time.monotonic()
    reply = client.post(path, body)
    s = reply["status"]
    if not args.json:
        print(f"{what}: started", flush=True)
    if getattr(args, "wait", False) and done is not None:
        try:
            s = _wait(client, args, done, failed or (lambda s: None), what)
        except WaitFailed as exc:
            if not args.json:
                raise
            _emit(args, {"ok": False, "command": what, "error": str(exc),
                         "elapsed_s": round(time.monotonic() - t0, 1),
                         **(result(exc.status) if result and exc.status else {})})
            return 1
    out = result(s) if result else {}
    if args.json:
        _emit(args, {"ok": True, "command": what, "elapsed_s": round(time.monotonic() - t0, 1),
                     **out})
    elif getattr(args, "wait", False) and done is not None:
        print(f"{what}: {done(s)}")
    return 0


def _dome_failed(s):
    d = s["dome"]
    if d["state"] == "error":
        return f"dome error: {d['error']}"
    if d["state"] == "unknown":
        return "dome position unknown (no trusted encoder reading)"
    if d.get("uncommanded"):
        return "the dome is turning with no motion commanded: " + "; ".join(
            f["message"] for f in s["safety"].get("faults") or [])
    return None


def cmd_dome(args) -> int:
    target = args.target
    if target == "abort":
        return _run(args, "/dome/abort", None, "dome abort")
    if target in ("home", "park"):
        key = "at_home" if target == "home" else "at_park"

        def failed(s):
            d = s["dome"]
            if not d["slewing"] and d["state"] == "idle" and not d[key]:
                return f"stopped at {_deg(d['azimuth_deg'])}, not at {target}"
            return _dome_failed(s)
        return _run(args, f"/dome/{target}", None, f"dome {target}",
                    done=lambda s: (f"at {target}, azimuth {s['dome']['azimuth_deg']:.1f}°"
                                    if not s["dome"]["slewing"] and s["dome"][key] else None),
                    failed=failed, result=lambda s: {"dome": s["dome"]})
    try:
        az = float(target)
    except ValueError:
        raise TenmonError(f"dome: {target!r} is not an azimuth in degrees, home, park or "
                          "abort") from None
    return _run(args, "/dome/goto", {"azimuth_deg": az}, f"dome goto {az:g}",
                done=lambda s: (f"azimuth {s['dome']['azimuth_deg']:.1f}°"
                                if not s["dome"]["slewing"] and s["dome"]["state"] == "idle"
                                else None),
                failed=_dome_failed, result=lambda s: {"dome": s["dome"]})


def shutter_outcome(device: str, want: str, s: dict) -> tuple[str, str] | None:
    """Where a wait for ``device`` (slit or cover) to be ``want`` (open or closed) stands:
    ``("done", text)``, ``("failed", text)`` for every other terminal state, or ``None``
    while it is still on its way (opening towards open, closing towards closed)."""
    x = s[device]
    state = x["state"]
    moving_towards = "opening" if want == "open" else "closing"
    if x.get("uncommanded"):
        return "failed", f"{device} is moving with no motion commanded (actuator fault)"
    if state == want:
        if want == "closed" and not x.get("verified", True):
            if device == "cover" and not x.get("limit_switches", True):
                return "done", "closed (timed: the cover has no limit switches)"
            return "failed", (f"{device} closed but NOT VERIFIED (blind close: the encoder did "
                              "not see it closed); it is not the safe state: check it")
        return "done", want
    if state == moving_towards:
        return None
    if state == "error":
        return "failed", f"{device} error: {x.get('error')}"
    if state == "unknown":
        return "failed", (f"{device} state unknown (the encoder cannot tell it"
                          + (f": {x['error']}" if x.get("error") else "") + ")")
    if not s["safety"]["safe"] and state in ("closing", "closed") and want == "open":
        return "failed", (f"{device} is being closed by the safety supervisor: "
                          + "; ".join(s["safety"]["reasons"]))
    return "failed", f"{device} stopped {state}, not {want}"


def _shutter(device: str):
    def cmd(args) -> int:
        want = "open" if args.action == "open" else "closed"

        def outcome(kind: str):
            def pick(s):
                o = shutter_outcome(device, want, s)
                return o[1] if o is not None and o[0] == kind else None
            return pick

        return _run(args, f"/{device}/{args.action}", None, f"{device} {args.action}",
                    done=outcome("done"), failed=outcome("failed"),
                    result=lambda s: {device: s[device]})
    return cmd


def _mount_failed(s):
    m = s["mount"]
    if m["state"] == "error":
        return f"mount error: {m['error']}"
    if m["state"] == "unknown":
        return "mount state unknown (not connected?)"
    return None


def cmd_mount(args) -> int:
    if args.action == "goto":
        if args.ra is None or args.dec is None:
            raise TenmonError("mount goto needs RA_DEG and DEC_DEG")

        def done(s):
            m = s["mount"]
            return (f"tracking at RA {m['ra_deg']:.4f}° Dec {m['dec_deg']:+.4f}°"
                    if not m["slewing"] and m["state"] == "tracking" else None)
        return _run(args, "/mount/goto", {"ra_deg": args.ra, "dec_deg": args.dec},
                    f"mount goto {args.ra:g} {args.dec:g}", done=done,
                    failed=_mount_failed, result=lambda s: {"mount": s["mount"]})
    if args.action == "park":
        return _run(args, "/mount/park", None, "mount park",
                    done=lambda s: "parked" if s["mount"]["parked"] else None,
                    failed=_mount_failed,
                    result=lambda s: {"mount": s["mount"]})
    return _run(args, "/mount/abort", None, "mount abort")


def cmd_stop(args) -> int:
    _run(args, "/stop", {"reason": args.reason}, "EMERGENCY STOP")
    if not args.json:
        print("all motion stopped, slit closing; clear with `tenmon resume`")
    return 0


def cmd_resume(args) -> int:
    return _run(args, "/resume", None, "resume")


# --------------------------------------------------------------------------- events

_REL = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO time (UTC if no zone) or a span back from now: ``90s``, ``10m``, ``2h``, ``1d``."""
    m = _REL.match(text.strip())
    if m:
        n, unit = float(m.group(1)), m.group(2)
        span = timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})
        return (now or datetime.now(timezone.utc)) - span
    try:
        return parse_utc(text)
    except ValueError:
        raise TenmonError(f"--since {text!r}: give an ISO time (2026-11-21T13:00) or a span "
                          "(90s, 10m, 2h, 1d)") from None


def _print_event(args, e: dict) -> None:
    if args.json:
        _emit(args, e)
    else:
        print(f"{e['time_utc'][:23].replace('T', ' ')}  {e['level']:<7} {e['kind']:<9} "
              f"{e['message']}", flush=True)


#: Rows per request (the daemon caps a page at 1000).
PAGE = 1000


def newest(client: ApiClient, path: str, key: str, limit: int, **query) -> list[dict]:
    """The newest ``limit`` rows of a paged read (``/events``, ``/audit``), oldest first,
    fetched a page at a time backwards."""
    rows: list[dict] = []
    before = None
    while len(rows) < limit:
        page = client.get(path, limit=min(PAGE, limit - len(rows)), before_id=before, **query)
        rows[:0] = page[key]
        if not page["more"] or not page[key]:
            break
        before = page["next_before_id"]
    return rows


def cmd_events(args) -> int:
    if args.limit < 1:
        raise TenmonError(f"--limit {args.limit}: must be 1 or more")
    client = _client(args)
    since = None
    if args.since:
        since = parse_since(args.since)
    rows = newest(client, "/events", "events", args.limit,
                  since=utc_iso(since, timespec="auto") if since else None)
    for e in rows:
        _print_event(args, e)
    last = rows[-1]["id"] if rows else 0
    while args.follow:
        try:
            time.sleep(1.0)
        except KeyboardInterrupt:
            return 0
        page = client.get("/events", after_id=last, limit=PAGE)
        for e in page["events"]:
            _print_event(args, e)
        last = page["next_after_id"]
    return 0


def cmd_audit(args) -> int:
    if args.limit < 1:
        raise TenmonError(f"--limit {args.limit}: must be 1 or more")
    rows = newest(_client(args), "/audit", "audit", args.limit)
    for a in rows:
        if args.json:
            _emit(args, a)
        else:
            print(f"{a['time_utc'][:19].replace('T', ' ')}  {a['client']:<15} {a['method']} "
                  f"{a['route']}  -> {a['status']} {a['code']}  (token {a['auth']})"
                  + (f"  {a['body']}" if a["body"] else ""), flush=True)
    return 0


# --------------------------------------------------------------------------- sim


def cmd_sim(args) -> int:
    if args.sim_command == "weather":
        body: dict[str, Any] = {"condition": args.condition}
        if args.wind_ms is not None:
            body["wind_ms"] = args.wind_ms
        return _run(args, "/sim/weather", body, f"sim weather {args.condition}")
    if args.name == "clear":
        return _run(args, "/sim/fault", {"name": args.which or "all", "clear": True},
                    f"sim fault clear {args.which or 'all'}")
    return _run(args, "/sim/fault", {"name": args.name}, f"sim fault {args.name}")


# --------------------------------------------------------------------------- parsers

#: The simulated world's faults (``tenmon.drivers.sim.world.FAULTS``; the CLI does not import the
#: simulator, a test keeps the two lists equal).
SIM_FAULTS = {
    "dome-stall": "the dome motor runs but the dome does not turn",
    "slit-stall": "the shutter motor runs but the shutter does not move",
    "cover-stall": "the cover motor runs but the cover does not move",
    "encoder-dropout": "the encoder sees nothing",
    "slit-state-hidden": "the encoder sees the slit but not its state",
    "relay-unplugged": "the relay board's USB cable is pulled",
    "relay-stuck:CHANNEL": "a relay contact is welded on",
    "mount-disconnect": "the mount's serial link is lost",
    "weather-stale": "the weather station stops reporting",
    "weather-nan": "the weather station reports its wind as NaN",
    "rain-cable-cut": "the rain sensor's cable is cut (fail-safe wiring reads wet)",
}



def _common(p: argparse.ArgumentParser, wait: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="print JSON only")
    # also accepted after the command (tenmon status --url ...); default: the global option
    p.add_argument("--url", default=argparse.SUPPRESS, help="the daemon's API URL")
    p.add_argument("--config", default=argparse.SUPPRESS,
                   help="site config (for the API address and token)")
    p.add_argument("--token", default=argparse.SUPPRESS,
                   help="the API token (default: $TENMON_TOKEN, else the daemon's api.token)")
    if wait:
        p.add_argument("--wait", action="store_true",
                       help="wait until the motion has finished; exit 1 at once if it ends "
                            "any other way (error, unknown, closed but not verified, stopped)")
        p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                       help="give up waiting after S seconds of wall time (default 600)")
        p.add_argument("--poll", type=float, default=0.5, help=argparse.SUPPRESS)


def register(sub) -> None:
    p = sub.add_parser("status", help="show the observatory's state",
                       description="Show dome, slit, cover, mount, safety, weather and encoder.")
    _common(p)
    p.add_argument("--watch", nargs="?", type=float, const=1.0, metavar="SECONDS",
                   help="refresh every SECONDS (default 1) until Ctrl-C")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("dome", help="rotate the dome: goto AZ|home|park, abort",
                       description="Rotate the dome. AZ in degrees (north 0, east 90); the dome "
                                   "takes the shortest way round.")
    dsub = p.add_subparsers(dest="dome_command", metavar="goto|abort", required=True)
    g = dsub.add_parser("goto", help="go to an azimuth, home or park",
                        description="Rotate to AZ degrees (north 0, east 90), or to the "
                                    "configured home or park azimuth.")
    g.add_argument("target", metavar="AZ|home|park")
    _common(g, wait=True)
    g.set_defaults(func=cmd_dome)
    a = dsub.add_parser("abort", help="stop the dome now (it coasts to a stop)")
    _common(a)
    a.set_defaults(func=cmd_dome, target="abort")

    for device in ("slit", "cover"):
        what = "the slit (shutter)" if device == "slit" else "the mirror cover"
        p = sub.add_parser(device, help=f"open or close {what}",
                           description=f"Open or close {what}. Opening is refused while unsafe, "
                                       "while the safety supervisor is closing, and during the "
                                       "reopen hold-off (safety.reopen_after_s after any unsafe "
                                       "condition; `tenmon status` shows what remains); closing "
                                       "is always allowed. A close counts only when verified "
                                       "(encoder or limit switch): `--wait` exits 1 on 'closed, "
                                       "not verified'.")
        p.add_argument("action", choices=["open", "close"])
        _common(p, wait=True)
        p.set_defaults(func=_shutter(device))

    p = sub.add_parser("mount", help="move the mount: goto RA_DEG DEC_DEG | park | abort",
                       description="Move the mount. goto takes ICRS RA and Dec in degrees and "
                                   "is refused while unsafe or below the horizon.")
    p.add_argument("action", choices=["goto", "park", "abort"])
    p.add_argument("ra", nargs="?", type=float, metavar="RA_DEG")
    p.add_argument("dec", nargs="?", type=float, metavar="DEC_DEG")
    _common(p, wait=True)
    p.set_defaults(func=cmd_mount)

    p = sub.add_parser("stop", help="EMERGENCY: stop all motion and close the slit",
                       description="Emergency stop: aborts dome and mount motion and closes the "
                                   "slit; latched until `tenmon resume`.")
    p.add_argument("--reason", default="operator", help="recorded in the event log")
    _common(p)
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("resume", help="clear a latched emergency stop and actuator faults",
                       description="Clear a latched emergency stop and any actuator fault "
                                   "(motion nobody commanded, a relay whose read-back disagrees); "
                                   "a fault still going on is found again at once. Opening then "
                                   "still waits out the reopen hold-off.")
    _common(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("events", help="show the event log",
                       description="Show the daemon's event log, oldest first.")
    p.add_argument("--since", metavar="T", help="ISO time (UTC) or a span back: 90s, 10m, 2h, 1d")
    p.add_argument("--limit", type=int, default=200, help="the newest this many (default 200)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    _common(p)
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("audit", help="show who commanded what through the API",
                       description="Show the daemon's audit trail, oldest first: every command "
                                   "sent to its API (refused ones too) with the time, the "
                                   "client's address, the route, the body, the answer (HTTP "
                                   "status and code) and whether the token was right. Needs the "
                                   "API token.")
    p.add_argument("--limit", type=int, default=50, help="the newest this many (default 50)")
    _common(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("sim", help="simulated observatory only: weather and faults",
                       description="Change the simulated world (refused by a real site).")
    simsub = p.add_subparsers(dest="sim_command", metavar="weather|fault", required=True)
    w = simsub.add_parser("weather", help="set the weather: rain | clear | wind MS | humid")
    w.add_argument("condition", choices=["rain", "clear", "wind", "humid"])
    w.add_argument("wind_ms", nargs="?", type=float, metavar="MS", help="wind speed (m/s)")
    _common(w)
    w.set_defaults(func=cmd_sim)
    f = simsub.add_parser("fault", help="inject a fault, or `clear [NAME]`",
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="Inject a fault into the simulated world, or `clear` one "
                                      "(or all).\n\nFaults:\n" + "\n".join(
                                          f"  {n:<20} {d}" for n, d in SIM_FAULTS.items()))
    f.add_argument("name", metavar="NAME|clear")
    f.add_argument("which", nargs="?", metavar="NAME", help="with clear: the fault to clear")
    _common(f)
    f.set_defaults(func=cmd_sim)
