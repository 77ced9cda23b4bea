"""The `tenmon` command: the operator CLI. `main()` returns an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from tenmon import __version__
from tenmon.errors import TenmonError

#: Modules that add sub-commands, in --help order. Each has register(subparsers).
COMMAND_MODULES = [
    "tenmon.cli.ops",        # status, dome, slit, cover, mount, stop, resume, events, sim
    "tenmon.cli.daemon_cmd",  # daemon
    "tenmon.cli.config_cmd", # config validate
    "tenmon.cli.encoder",    # encoder estimate|calibrate|watch|train
    "tenmon.cli.frame",      # frame process
    "tenmon.cli.clusters",   # clusters
    "tenmon.cli.solve",      # solve
    "tenmon.cli.pointing",   # pointing fit|evaluate
    "tenmon.cli.plan",       # plan, targets
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenmon",
        description="tenmon: observatory automation. Operator commands talk to the running "
                    "daemon (tenmond) over its local HTTP API; `tenmon daemon` runs it.",
        epilog="Every reporting command takes --json (JSON only on stdout). "
               "The daemon's address: --url, $TENMON_URL, or [api] of --config "
               "(default /etc/tenmon/tenmon.toml, else http://127.0.0.1:8470).")
    parser.add_argument("--version", action="version", version=f"tenmon {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--url", help="the daemon's API URL (default: see below)")
    parser.add_argument("--config", help="site config file (default /etc/tenmon/tenmon.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command module not present in this build
                continue
            raise
        module.register(sub)
    return parser


def configure_logging(debug: bool = False, level: str | None = None) -> None:
    lvl = logging.DEBUG if debug else getattr(logging, (level or "INFO").upper(), logging.INFO)
    # journald adds its own timestamps
    fmt = ("%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM")
           else "%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.basicConfig(level=lvl, format=fmt, stream=sys.stderr, force=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
