"""`python -m tenmon.relays_off --config FILE`: switch every configured relay off and exit.

systemd's ExecStopPost runs this after the daemon stops for any reason (clean stop, crash,
watchdog kill, SIGKILL), because a USB relay board keeps its relays latched while it has power.
Exit 0 if every bank was switched off, 1 otherwise (each failure named on stderr).
"""

from __future__ import annotations

import argparse
import sys

from tenmon.clock import RealClock
from tenmon.config.loader import DEFAULT_PATH, load_config
from tenmon.errors import TenmonError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tenmon.relays_off", description=__doc__)
    p.add_argument("--config", default=str(DEFAULT_PATH))
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except TenmonError as exc:
        print(f"relays_off: {exc}", file=sys.stderr)
        return 1
    from tenmon.drivers.relays import make_relay_bank

    ok = True
    for name, bcfg in cfg.relays.items():
        if bcfg.type == "simulated":
            continue
        try:
            bank = make_relay_bank(name, bcfg, RealClock())
            bank.connect()  # connect() switches every relay off
            bank.disconnect()
            print(f"relays.{name}: all relays off", file=sys.stderr)
        except TenmonError as exc:
            ok = False
            print(f"relays_off: relays.{name}: {exc}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
