"""`tenmon config validate FILE`: check a site file; the exit code is honest."""

from __future__ import annotations

import json

from tenmon.config.loader import load_config
from tenmon.core.errors import ConfigError


def cmd_validate(args) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        problems = exc.problems or [("", None, str(exc))]
        if args.json:
            for key, line, msg in problems:
                print(json.dumps({"file": args.file, "valid": False, "key": key, "line": line,
                                  "message": msg}))
        else:
            for key, line, msg in problems:
                where = f"{args.file}:{line}" if line else args.file
                print(f"{where}: {key + ': ' if key else ''}{msg}")
            print(f"{args.file}: INVALID ({len(problems)} problem"
                  f"{'s' if len(problems) != 1 else ''})")
        return 1
    summary = {
        "file": args.file, "valid": True, "mode": cfg.mode, "site": cfg.site.name,
        "relay_banks": {n: b.type for n, b in cfg.relays.items()}, "mount": cfg.mount.type,
        "encoder": cfg.encoder.type, "weather": cfg.weather.type,
        "api": f"{cfg.api.host}:{cfg.api.port}",
        "alpaca": f"{cfg.alpaca.host}:{cfg.alpaca.port}" if cfg.alpaca.enabled else None,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        banks = ", ".join(f"{n} ({t})" for n, t in summary["relay_banks"].items())
        print(f"{args.file}: valid ({cfg.mode} mode, {cfg.site.name}; relays {banks}; mount "
              f"{cfg.mount.type}; encoder {cfg.encoder.type}; weather {cfg.weather.type})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("config", help="check a site configuration file",
                       description="Configuration tools.")
    csub = p.add_subparsers(dest="config_command", metavar="validate", required=True)
    v = csub.add_parser("validate", help="validate a site TOML file",
                        description="Validate FILE: every problem is printed with its line and "
                                    "key; exit 0 only if the file is valid. TENMON_<SECTION>__<KEY> "
                                    "environment variables are applied as the daemon would.")
    v.add_argument("file", metavar="FILE")
    v.add_argument("--json", action="store_true", help="print JSON only (one object per problem)")
    v.set_defaults(func=cmd_validate)
