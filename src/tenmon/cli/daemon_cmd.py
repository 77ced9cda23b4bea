"""`tenmon daemon`: run the observatory daemon (a site, or the simulated observatory)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tenmon.config.loader import DEFAULT_PATH, load_config, simulated_config_path
from tenmon.core.errors import ConfigError


def cmd_daemon(args) -> int:
    from tenmon.core import offline

    offline.configure()
    env = dict(os.environ)
    if args.port is not None:
        env["TENMON_API__PORT"] = str(args.port)
    if args.data_dir is not None:
        env["TENMON_PATHS__DATA_DIR"] = str(args.data_dir)
    if args.alpaca_port is not None:  # serve Alpaca on this port (127.0.0.1 when simulated)
        env["TENMON_ALPACA__ENABLED"] = "true"
        env["TENMON_ALPACA__PORT"] = str(args.alpaca_port)
        if args.simulate:
            env["TENMON_ALPACA__HOST"] = '"127.0.0.1"'
    if args.simulate:
        path = Path(args.config) if args.config else simulated_config_path()
        if args.speed is not None:
            env["TENMON_SIM__SPEED"] = str(args.speed)
        if args.seed is not None:
            env["TENMON_SIM__SEED"] = str(args.seed)
    else:
        path = Path(args.config) if args.config else DEFAULT_PATH
        if args.speed is not None or args.seed is not None:
            raise ConfigError("--speed and --seed belong to --simulate")
    cfg = load_config(path, env=env)
    if args.simulate and cfg.mode != "simulated":
        raise ConfigError(f"{path}: --simulate needs a simulated config (mode = 'simulated'); "
                          "this is a site config")
    if cfg.mode == "simulated" and not args.simulate:
        print(f"tenmon: {path} describes a simulated observatory; running it simulated",
              file=sys.stderr)
    from tenmon.cli.main import configure_logging
    from tenmon.daemon.lock import DaemonLock
    from tenmon.daemon.runner import run_daemon

    # Say at once if another daemon runs here (run_daemon takes the lock for good, first thing).
    probe = DaemonLock(cfg.paths.data_dir)
    try:
        probe.acquire()
    except OSError:
        pass  # run_daemon reports it
    else:
        probe.release()

    configure_logging(args.debug, args.log_level)
    if cfg.mode == "simulated":
        url = f"http://{cfg.api.host}:{cfg.api.port}"
        tenmon = "tenmon" if not Path(".venv/bin/tenmon").exists() else ".venv/bin/tenmon"
        port_opt = "" if cfg.api.port == 8470 else f" --url {url}"
        from tenmon.daemon.api.access import default_token_path

        token = (f"${cfg.api.token_env}" if cfg.api.token_env
                 else default_token_path(cfg.api, cfg.paths.data_dir))
        how = ("the CLI run from this directory reads it" if args.data_dir is None
               and args.config is None else "give the CLI the same --config, "
               "TENMON_PATHS__DATA_DIR or --token")
        print(f"""
tenmon: simulated observatory ({cfg.site.name}), time x{cfg.sim.speed:g}, seed {cfg.sim.seed}
  API {url}   data {cfg.paths.data_dir}
  API token {token} (commands need it; {how})
  watch it from another terminal:  {tenmon}{port_opt} status --watch
  try:  {tenmon}{port_opt} slit open --wait
        {tenmon}{port_opt} dome goto 123 --wait
        {tenmon}{port_opt} sim weather rain      (then: {tenmon}{port_opt} events)
  stop: Ctrl-C (the slit closes and the mount parks first; Ctrl-C twice to skip that)
""", file=sys.stderr, flush=True)
    return asyncio.run(run_daemon(cfg, fresh=args.fresh, config_path=path))


def register(sub) -> None:
    p = sub.add_parser(
        "daemon", help="run the observatory daemon (tenmond)",
        description="Run the daemon: a real site from --config (default "
                    "/etc/tenmon/tenmon.toml), or the simulated observatory with --simulate. "
                    "SIGTERM/SIGINT close the slit, close the cover and park the mount before "
                    "exit; a second signal exits at once (relays still switched off). Commands to "
                    "its API need the token it makes at its first start in DATA_DIR/api.token "
                    "(or [api] token_file / token_env); every command is audited (`tenmon "
                    "audit`).")
    p.add_argument("--simulate", action="store_true",
                   help="run the simulated observatory (packaged simulated.toml unless --config)")
    p.add_argument("--speed", type=float, help="simulated time per wall second (e.g. 10)")
    p.add_argument("--seed", type=int, help="seed of the simulated world")
    p.add_argument("--fresh", action="store_true",
                   help="simulated: start a new world instead of resuming the saved one")
    p.add_argument("--port", type=int, help="API port (overrides [api].port)")
    p.add_argument("--alpaca-port", type=int,
                   help="serve ASCOM Alpaca (dome, cover, safety, weather) on this port; with "
                        "--simulate on 127.0.0.1 (overrides [alpaca] enabled and port; "
                        "docs/alpaca.md)")
    p.add_argument("--data-dir", help="data directory (overrides [paths].data_dir)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_daemon, daemon_logs=True)
