"""The `tenmon` command: the operator CLI. `main()` returns an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from tenmon import __version__
from tenmon.core.errors import TenmonError

#: Each command, the module whose ``register(subparsers)`` adds it, and its one-line help.
#: Only the module of the command being run is imported, so `tenmon status` at 3 a.m. does
#: not wait for astropy and scipy to load (they take seconds on a Pi).
COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("tenmon.cli.ops", "show the observatory's state"),
    "dome": ("tenmon.cli.ops", "rotate the dome: goto AZ|home|park, abort"),
    "slit": ("tenmon.cli.ops", "open or close the slit (shutter)"),
    "cover": ("tenmon.cli.ops", "open or close the mirror cover"),
    "mount": ("tenmon.cli.ops", "move the mount: goto RA_DEG DEC_DEG | park | abort"),
    "stop": ("tenmon.cli.ops", "EMERGENCY: stop all motion and close the slit"),
    "resume": ("tenmon.cli.ops", "clear a latched emergency stop"),
    "events": ("tenmon.cli.ops", "show the event log"),
    "audit": ("tenmon.cli.ops", "show who commanded what through the API"),
    "sim": ("tenmon.cli.ops", "simulated observatory only: weather and faults"),
    "daemon": ("tenmon.cli.daemon_cmd", "run the observatory daemon (tenmond)"),
    "config": ("tenmon.cli.config_cmd", "check a site configuration file"),
    "alerts": ("tenmon.cli.alerts_cmd", "send a test or an alarm to the site's alert targets"),
    "encoder": ("tenmon.cli.encoder", "the optical slit encoder: estimate, calibrate, watch, train"),
    "frame": ("tenmon.cli.frame", "clean, measure and search CCD frames"),
    "clusters": ("tenmon.cli.clusters", "find star-cluster candidates in a catalogue table"),
    "solve": ("tenmon.cli.solve", "plate-solve a FITS frame"),
    "pointing": ("tenmon.cli.pointing", "fit and evaluate the mount's pointing model"),
    "plan": ("tenmon.cli.plan", "plan a night's observations"),
    "targets": ("tenmon.cli.plan", "the target queue: add, list, remove, import"),
    "simulate": ("tenmon.cli.simulate", "run a whole simulated night and report it"),
    "center": ("tenmon.cli.center", "centre the 60 cm on RA/Dec by plate solving"),
    "nayuta": ("tenmon.cli.nayuta", "follow the 2 m Nayuta's target"),
    "archive": ("tenmon.cli.archive", "reprocess a tree of frames and query it: light curves, coverage"),
    "devices": ("tenmon.cli.devices", "find Alpaca and INDI devices and print their config lines"),
}


def _module_present(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command`` names the one sub-command to build fully (others are listed)."""
    parser = argparse.ArgumentParser(
        prog="tenmon",
        description="tenmon: observatory automation. Operator commands talk to the running "
                    "daemon (tenmond) over its local HTTP API; `tenmon daemon` runs it.",
        epilog="`tenmon COMMAND --help` tells more. Every reporting command takes --json (JSON "
               "only on stdout). The daemon's address: --url, $TENMON_URL, or [api] of --config "
               "(default /etc/tenmon/tenmon.toml, else http://127.0.0.1:8470). Commands send the "
               "daemon's API token: --token, $TENMON_TOKEN, or the file the daemon made, "
               "api.token in [paths] data_dir of that config (without one, the simulated "
               "observatory's: var/tenmon-sim/api.token under the current directory).")
    parser.add_argument("--version", action="version", version=f"tenmon {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--url", help="the daemon's API URL (default: see below)")
    parser.add_argument("--config", help="site config file (default /etc/tenmon/tenmon.toml)")
    parser.add_argument("--token", help="the daemon's API token (default: $TENMON_TOKEN, else "
                        "read from the daemon's data directory)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registered: set[str] = set()
    for name, (module_name, help_text) in COMMANDS.items():
        if name in registered:
            continue
        if command is not None and COMMANDS.get(command, ("",))[0] == module_name:
            importlib.import_module(module_name).register(sub)
            registered.update(n for n, (m, _) in COMMANDS.items() if m == module_name)
        elif _module_present(module_name):
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (skipping global options and their values)."""
    takes_value = {"--url", "--config", "--token"}
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in takes_value:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return arg if arg in COMMANDS else None
    return None


def configure_logging(debug: bool = False, level: str | None = None) -> None:
    lvl = logging.DEBUG if debug else getattr(logging, (level or "INFO").upper(), logging.INFO)
    # journald adds its own timestamps
    fmt = ("%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM")
           else "%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.basicConfig(level=lvl, format=fmt, stream=sys.stderr, force=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args.debug, "WARNING" if not getattr(args, "daemon_logs", False) else
                      getattr(args, "log_level", "INFO"))
    try:
        return int(args.func(args) or 0)
    except TenmonError as exc:
        if args.debug:
            raise
        print(f"tenmon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
