"""`tenmon devices discover`: the Alpaca devices on the LAN (and an indiserver's), with the
site-file lines that would use them. A local network tool: it talks to the devices' servers,
not to the daemon."""

from __future__ import annotations

import importlib
import importlib.util
import json


def _indi(spec: str, as_json: bool) -> int:
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit():
        host, port = spec, "7624"
    if importlib.util.find_spec("tenmon.drivers.indi") is None:
        msg = "INDI listing is not available in this build (tenmon.drivers.indi is missing)"
        print(json.dumps({"indi": spec, "error": msg}) if as_json else f"tenmon: {msg}")
        return 1
    mod = importlib.import_module("tenmon.drivers.indi")
    discover = getattr(mod, "discover_indi", None)
    if discover is None:
        msg = "INDI listing is not available in this build (no discover_indi)"
        print(json.dumps({"indi": spec, "error": msg}) if as_json else f"tenmon: {msg}")
        return 1
    rows = discover(host, int(port))
    for row in rows:
        if as_json:
            print(json.dumps(row, default=str))
        else:
            name = row.get("device") or row.get("name")
            print(f"INDI {host}:{port}: {name}" + (f" ({row.get('kind')})" if row.get("kind")
                                                    else ""))
            if row.get("config"):
                print("    " + str(row["config"]).replace("\n", "\n    "))
    if not rows and not as_json:
        print(f"INDI {host}:{port}: no devices")
    return 0


def cmd_discover(args) -> int:
    import requests

    from tenmon.drivers.alpaca.discovery import (DISCOVERY_PORT, discover_servers,
                                                 server_devices)

    code = 0
    if args.indi:
        code = _indi(args.indi, args.json)
        if not args.alpaca and not args.server and not args.target:
            return code
    servers = list(args.server or [])
    if not args.server or args.target:
        servers += discover_servers(targets=args.target or None, port=args.port or
                                    DISCOVERY_PORT, timeout_s=args.timeout)
    servers = sorted(set(servers))
    if not servers and not args.json:
        print("no Alpaca server answered discovery (UDP 32227): is the server on this LAN "
              "and its discovery responder on? Name it with --server HOST:PORT")
    for address in servers:
        try:
            desc, devices = server_devices(address, timeout_s=args.timeout)
        except requests.RequestException as exc:
            code = 1
            if args.json:
                print(json.dumps({"address": address, "error": str(exc)}))
            else:
                print(f"Alpaca server {address}: does not answer ({exc})")
            continue
        if args.json:
            for d in devices:
                print(json.dumps(d.to_json()))
            continue
        how = ("management API" if any(d.source == "management" for d in devices)
               else "no management API: probed")
        print(f"Alpaca server {address}" + (f" ({desc})" if desc else "") + f": "
              f"{len(devices)} device(s) [{how}]")
        for d in devices:
            print(f"  {d.device_type} {d.device_number}: {d.name}")
            lines = d.to_json()["config"]
            if lines:
                print("    " + lines.replace("\n", "\n    "))
            else:
                print("    (not used by tenmon)")
    return code


def register(sub) -> None:
    p = sub.add_parser("devices", help="find Alpaca and INDI devices and print their config "
                       "lines", description="Device tools (they talk to the devices' servers, "
                       "not to the daemon).")
    dsub = p.add_subparsers(dest="devices_command", metavar="discover", required=True)
    d = dsub.add_parser(
        "discover", help="list Alpaca devices on the LAN (and an indiserver's) with config lines",
        description="Broadcast the Alpaca discovery query (UDP 32227), list each server's "
                    "devices through its management API (or by probing, for servers without "
                    "one) and print the [ccd]/[mount]/[focuser]/[filter_wheel]/[weather] lines "
                    "that would use them. --indi HOST:PORT lists an indiserver's devices.")
    d.add_argument("--server", action="append", metavar="HOST:PORT",
                   help="ask this Alpaca server directly (no broadcast); repeatable")
    d.add_argument("--target", action="append", metavar="ADDRESS",
                   help="send the discovery query here instead of every interface's broadcast "
                        "address; repeatable")
    d.add_argument("--port", type=int, default=None, help="discovery port (default 32227)")
    d.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for answers")
    d.add_argument("--indi", metavar="HOST:PORT", help="also list this indiserver's devices")
    d.add_argument("--alpaca", action="store_true",
                   help="with --indi: run the Alpaca discovery too")
    d.add_argument("--json", action="store_true", help="JSON only: one object per device")
    d.set_defaults(func=cmd_discover)
