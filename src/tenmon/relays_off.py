"""`python -m tenmon.relays_off [--config FILE] [--data-dir DIR]`: switch every relay off and exit.

systemd's ExecStopPost runs this after the daemon stops for any reason (clean stop, crash,
watchdog kill, SIGKILL), because a USB relay board keeps its relays latched while it has power.

Which banks: those of the config file and those of the last good device map
(``DATA_DIR/device-map.json``, written by the daemon at every successful start: the boards the
daemon really drove). When the config cannot be read or is invalid (a bad edit is a common reason
for a daemon to die), the device map alone is used, and this says so. A bank named in both with
the same hardware is switched once. Simulated banks are skipped.

Exit 0 if every bank found was switched off, 1 otherwise (each failure named on stderr), 1 also
when neither the config nor the device map names any bank.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tenmon.core.clock import RealClock
from tenmon.config.loader import DEFAULT_PATH, load_config
from tenmon.core.errors import TenmonError


def _identity(bank) -> tuple:
    """What makes two bank configs the same hardware."""
    return (bank.type, getattr(bank, "port", None), tuple(getattr(bank, "pins", ()) or ()),
            getattr(bank, "serial", None), bank.channels)


def _say(msg: str) -> None:
    print(f"relays_off: {msg}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tenmon.relays_off",
        description="Switch every relay of the site off (run by systemd after the daemon stops). "
                    "Reads the relay banks from --config and from the daemon's last good device "
                    "map (DATA_DIR/device-map.json); with an unreadable or invalid config the "
                    "device map alone is used.")
    p.add_argument("--config", default=str(DEFAULT_PATH),
                   help="site config file (default %(default)s)")
    p.add_argument("--data-dir",
                   help="where the device map is (default: the config's [paths] data_dir, else "
                        "$STATE_DIRECTORY, else /var/lib/tenmon)")
    args = p.parse_args(argv)
    from tenmon.lastgood import DEVICE_MAP, default_data_dir, load_device_map

    banks: list[tuple[str, object, str]] = []  # (name, config, where from)
    data_dir = Path(args.data_dir) if args.data_dir else None
    try:
        cfg = load_config(args.config)
    except TenmonError as exc:
        cfg = None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _say(f"cannot use the config ({first}); falling back to the last good device map")
    if cfg is not None:
        data_dir = data_dir or Path(cfg.paths.data_dir)
        banks += [(name, b, "config") for name, b in cfg.relays.items()]
    data_dir = data_dir or default_data_dir()
    try:
        mapped, header = load_device_map(data_dir)
    except TenmonError as exc:
        if cfg is None:
            _say(f"and no device map either: {exc}")
            _say("NO RELAYS SWITCHED OFF: switch the relay boards' power off by hand")
            return 1
        mapped, header = {}, {}
        if not all(b.type == "simulated" for _, b, _ in banks):
            _say(f"note: {exc}")
    if cfg is None and mapped:
        _say(f"using {data_dir / DEVICE_MAP} (written {header.get('written_utc')} from "
             f"{header.get('config') or 'the config of that start'})")
    seen = {(n, _identity(b)) for n, b, _ in banks}
    for name, b in mapped.items():
        if (name, _identity(b)) not in seen:
            banks.append((name, b, "device map"))
            seen.add((name, _identity(b)))
    from tenmon.drivers.relays import make_relay_bank

    ok = True
    done = 0
    for name, bcfg, origin in banks:
        if bcfg.type == "simulated":
            continue
        try:
            bank = make_relay_bank(name, bcfg, RealClock())
            bank.connect()  # connect() switches every relay off
            bank.disconnect()
            done += 1
            print(f"relays.{name}: all relays off ({origin})", file=sys.stderr)
        except TenmonError as exc:
            ok = False
            _say(f"relays.{name} ({origin}): {exc}")
    if done == 0 and not any(b.type == "simulated" for _, b, _ in banks) and ok:
        _say("no relay bank to switch off")
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
