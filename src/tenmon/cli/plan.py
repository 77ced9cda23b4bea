"""`tenmon plan` (plan a night standalone) and `tenmon targets` (edit a target queue file)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The simulated site (Nishi-Harima observatory), used unless --site-* say otherwise.
DEFAULT_SITE_LAT_DEG = 35.0253
DEFAULT_SITE_LON_DEG = 134.3356
DEFAULT_SITE_ELEV_M = 449.0
_TWILIGHTS = ("sunset", "civil", "nautical", "astronomical")


def register(subparsers: Any) -> None:
    """Add ``plan`` and ``targets`` to an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "plan",
        help="plan a night from a target file or queue (no daemon needed)",
        description=(
            "Plan one night at the site: targets in priority order (lower number first) at "
            "their best altitude, honouring altitude, horizon mask, airmass, moon, twilight, "
            "time-window and hour-angle limits plus slew and dome time. Prints the scheduled "
            "blocks and every target left out with the reason. Times are UTC."
        ),
    )
    p.add_argument("--night", type=_date, metavar="DATE",
                   help="local date of the evening, YYYY-MM-DD (default: tonight at the site)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--targets", type=Path, metavar="FILE",
                     help="TOML or CSV target file (name, ra, dec, priority, exposure_s, count, "
                          "...)")
    src.add_argument("--db", type=Path, metavar="PATH",
                     help="target queue database: plan its pending targets")
    _site_args(p)
    p.add_argument("--twilight", choices=_TWILIGHTS, default=None,
                   help="sun altitude that bounds the night (default: the settings', "
                        "astronomical)")
    p.add_argument("--plot", type=Path, metavar="PNG",
                   help="also write an altitude-versus-time chart of the plan")
    p.add_argument("--json", action="store_true",
                   help="print the plan as one JSON object (night, scheduled, unscheduled)")
    p.set_defaults(func=plan_handler)

    t = subparsers.add_parser(
        "targets",
        help="add, list, remove or import targets of a queue",
        description=(
            "Manage the target queue kept in a SQLite file (--db). Coordinates are given, "
            "never looked up: RA in degrees or as hours 'hh:mm:ss', Dec in degrees or "
            "'dd:mm:ss'. Priority: lower numbers are observed first."
        ),
    )
    tsub = t.add_subparsers(dest="targets_command", metavar="COMMAND")
    tsub.required = True

    a = tsub.add_parser("add", help="queue one target",
                        description="Queue one target (replace one of the same name with "
                                    "--replace).")
    a.add_argument("name")
    a.add_argument("--ra", required=True, help="right ascension: degrees, or hours as hh:mm:ss")
    a.add_argument("--dec", required=True, help="declination: degrees, or dd:mm:ss")
    a.add_argument("--priority", required=True, type=int, help="0 or 1 = most urgent")
    a.add_argument("--exposure-s", required=True, type=float, help="seconds per exposure")
    a.add_argument("--count", required=True, type=int, help="number of exposures")
    a.add_argument("--filter", default=None)
    a.add_argument("--binning", type=int, default=None)
    a.add_argument("--window-start", default=None, metavar="ISO",
                   help="no exposure before this UTC time (e.g. 2026-11-21T12:00:00Z)")
    a.add_argument("--window-end", default=None, metavar="ISO",
                   help="no exposure after this UTC time")
    a.add_argument("--cadence-s", type=float, default=None,
                   help="repeat the target at least this many seconds apart")
    a.add_argument("--replace", action="store_true", help="overwrite a target of the same name")
    _db_arg(a)
    a.add_argument("--json", action="store_true", help="print the queued target as JSON")
    a.set_defaults(func=targets_add_handler)

    ls = tsub.add_parser("list", help="list queued targets",
                         description="List queued targets by priority, with their state.")
    ls.add_argument("--status", choices=("pending", "observed", "failed"), default=None)
    _db_arg(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per target per line")
    ls.set_defaults(func=targets_list_handler)

    rm = tsub.add_parser("remove", help="remove a target and its history",
                         description="Remove one target (and its observing history) from the "
                                     "queue.")
    rm.add_argument("name")
    _db_arg(rm)
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(func=targets_remove_handler)

    im = tsub.add_parser("import", help="queue every target of a TOML or CSV file",
                         description="Queue every target of a TOML ([[target]] tables) or CSV "
                                     "file; nothing is queued if any entry is invalid.")
    im.add_argument("file", type=Path)
    im.add_argument("--replace", action="store_true",
                    help="overwrite queued targets of the same names")
    _db_arg(im)
    im.add_argument("--json", action="store_true")
    im.set_defaults(func=targets_import_handler)


def _site_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site-lat", type=float, default=DEFAULT_SITE_LAT_DEG, metavar="DEG",
                   help=f"site latitude, degrees north (default {DEFAULT_SITE_LAT_DEG})")
    p.add_argument("--site-lon", type=float, default=DEFAULT_SITE_LON_DEG, metavar="DEG",
                   help=f"site longitude, degrees east (default {DEFAULT_SITE_LON_DEG})")
    p.add_argument("--site-elev", type=float, default=DEFAULT_SITE_ELEV_M, metavar="M",
                   help=f"site height above sea level, metres (default {DEFAULT_SITE_ELEV_M:g})")


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, required=True, metavar="PATH",
                   help="queue database file (SQLite; created if missing)")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


# ---------------------------------------------------------------------------- plan
def plan_handler(args: argparse.Namespace) -> int:
    """Plan a night and print it. Returns the exit code (0)."""
    from tenmon.core.errors import ConfigError
    from tenmon.scheduler.errors import SchedulerError
    from tenmon.scheduler.night import local_night_date, night_for_date
    from tenmon.scheduler.planner import plan_night
    from tenmon.config.services import SchedulerSettings

    site = _site(args)
    settings = SchedulerSettings()
    if args.twilight:
        settings = settings.model_copy(update={"observe_twilight": args.twilight})
    if args.targets is not None:
        from tenmon.scheduler.targets import load_targets

        targets = load_targets(args.targets)
    elif args.db is not None:
        from tenmon.scheduler.queue import TargetQueue

        if not args.db.exists():
            raise ConfigError(f"{args.db}: no such queue database")
        with TargetQueue(args.db) as queue:
            targets = queue.pending()
    else:
        raise SchedulerError("nothing to plan: give --targets FILE or --db PATH")
    night_date = args.night or local_night_date(datetime.now(timezone.utc), site)
    night = night_for_date(night_date, site, settings.observe_twilight)
    with _progress(len(targets), "planning") as progress:
        plan = plan_night(targets, night, site, settings, progress=progress)
    if args.plot is not None:
        from tenmon.scheduler.plot import plot_plan

        plot_plan(plan, args.plot)
    if args.json:
        print(json.dumps(plan.to_dict()))
        return 0
    _print_plan(plan, args.plot)
    return 0


def _print_plan(plan: Any, plot: Path | None) -> None:
    night = plan.night
    print(f"Night of {night.date.isoformat()} ({night.twilight} twilight): "
          f"{night.start:%H:%M}-{night.end:%H:%M} UTC, {night.duration_s / 60:.0f} min")
    print(f"Scheduled: {len(plan.scheduled)} block(s), "
          f"{plan.exposure_time_s / 3600:.2f} h of exposure")
    if plan.scheduled:
        width = max(4, max(len(b.name) for b in plan.scheduled))
        print(f"  {'start':8}  {'end':8}  {'name':{width}}  {'RA':>8}  {'Dec':>7}  prio  "
              f"exposures")
        for b in plan.scheduled:
            filt = f" {b.filter}" if b.filter else ""
            print(f"  {b.start:%H:%M:%S}  {b.end:%H:%M:%S}  {b.name:{width}}  "
                  f"{b.ra_deg:8.3f}  {b.dec_deg:+7.3f}  {b.priority:4d}  "
                  f"{b.count} x {b.exposure_s:g} s{filt}")
    if plan.unscheduled:
        print(f"Unscheduled: {len(plan.unscheduled)}")
        for x in plan.unscheduled:
            print(f"  {x.name}: {x.reason}")
    if plot is not None:
        print(f"Plot: {plot}")


def _site(args: argparse.Namespace) -> Any:
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    from tenmon.core.errors import ConfigError

    if not -90.0 <= args.site_lat <= 90.0:
        raise ConfigError(f"--site-lat {args.site_lat} is outside -90..90 deg")
    if not -180.0 <= args.site_lon <= 360.0:
        raise ConfigError(f"--site-lon {args.site_lon} is outside -180..360 deg")
    return EarthLocation.from_geodetic(args.site_lon * u.deg, args.site_lat * u.deg,
                                       args.site_elev * u.m)


class _progress:
    """A tqdm bar on stderr when it is a terminal; a no-op callback otherwise."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.bar = total, desc, None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, unit="target", file=sys.stderr,
                        leave=False)

        def update(done: int, total: int) -> None:
            self.bar.n = done  # type: ignore[union-attr]
            self.bar.refresh()  # type: ignore[union-attr]

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------- targets
def targets_add_handler(args: argparse.Namespace) -> int:
    """Queue one target. Returns 0."""
    from tenmon.scheduler.queue import TargetQueue
    from tenmon.scheduler.targets import target_from_record

    record: dict[str, Any] = {
        "name": args.name, "ra": args.ra, "dec": args.dec, "priority": args.priority,
        "exposure_s": args.exposure_s, "count": args.count, "filter": args.filter,
        "binning": args.binning, "window_start": args.window_start,
        "window_end": args.window_end, "cadence_s": args.cadence_s,
    }
    target = target_from_record({k: v for k, v in record.items() if v is not None})
    with TargetQueue(args.db) as queue:
        queue.add(target, replace=args.replace)
        entry = queue.get(target.name)
    if args.json:
        print(json.dumps(entry.to_dict()))
    else:
        print(f"queued {target.name} (RA {target.ra_deg:.4f} deg, Dec {target.dec_deg:+.4f} deg, "
              f"priority {target.priority}, {target.count} x {target.exposure_s:g} s) in {args.db}")
    return 0


def targets_list_handler(args: argparse.Namespace) -> int:
    """List the queue. Returns 0."""
    from tenmon.scheduler.queue import TargetQueue

    with TargetQueue(args.db) as queue:
        entries = queue.list(args.status)
    if args.json:
        for e in entries:
            print(json.dumps(e.to_dict()))
        return 0
    if not entries:
        print(f"no targets in {args.db}" + (f" with status {args.status}" if args.status else ""))
        return 0
    width = max(4, max(len(e.target.name) for e in entries))
    print(f"{'name':{width}}  {'RA':>8}  {'Dec':>7}  prio  {'exposures':14}  {'status':8}  "
          f"observed  failed")
    for e in entries:
        t = e.target
        expo = f"{t.count} x {t.exposure_s:g} s" + (f" {t.filter}" if t.filter else "")
        print(f"{t.name:{width}}  {t.ra_deg:8.3f}  {t.dec_deg:+7.3f}  {t.priority:4d}  "
              f"{expo:14}  {e.status:8}  {e.n_observed:8d}  {e.n_failed:6d}")
    return 0


def targets_remove_handler(args: argparse.Namespace) -> int:
    """Remove one target. Returns 0 (an unknown name raises, so main returns 1)."""
    from tenmon.scheduler.queue import TargetQueue

    with TargetQueue(args.db) as queue:
        queue.remove(args.name)
    if args.json:
        print(json.dumps({"removed": args.name}))
    else:
        print(f"removed {args.name} from {args.db}")
    return 0


def targets_import_handler(args: argparse.Namespace) -> int:
    """Queue a file's targets. Returns 0."""
    from tenmon.scheduler.queue import TargetQueue

    with TargetQueue(args.db) as queue:
        n = queue.import_file(args.file, replace=args.replace)
    if args.json:
        print(json.dumps({"imported": n, "file": str(args.file)}))
    else:
        print(f"queued {n} target(s) from {args.file} in {args.db}")
    return 0
