"""`tenmon alerts test|send`: send a message to the site's alert targets now, without the daemon.

``test`` is for the installer: does a message reach every target of ``[alerts] urls``? ``send`` is
what systemd's ``tenmon-alert@.service`` runs when ``tenmond`` fails for good (``OnFailure=``):
the daemon is not there to tell anyone, so this does. Both read the site config; when it cannot be
read (a bad edit is a common reason for the daemon to fail), they use the alert targets of the
daemon's last good start (``DATA_DIR/alerts.json``) and say so.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tenmon.core.errors import ConfigError, TenmonError


def _settings(args):
    """``(alerts settings, site name, where from)`` from the config, else the last good start."""
    from tenmon.config.loader import DEFAULT_PATH, load_config
    from tenmon.lastgood import default_data_dir, load_alerts

    path = Path(args.config) if args.config else DEFAULT_PATH
    try:
        cfg = load_config(path)
        return cfg.alerts, cfg.site.name, str(path)
    except TenmonError as exc:
        data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
        try:
            alerts, header = load_alerts(data_dir)
        except TenmonError as exc2:
            raise ConfigError(f"cannot read the alert targets: {str(exc).splitlines()[0]}; and "
                              f"{exc2}") from None
        print(f"tenmon: {str(exc).splitlines()[0]}; using the alert targets of the last good "
              f"start ({data_dir / 'alerts.json'}, written {header.get('written_utc')})",
              file=sys.stderr)
        return alerts, header.get("site") or "site", str(data_dir / "alerts.json")


def _report(args, results, what: str) -> int:
    if args.json:
        for r in results:
            print(json.dumps(r))
    else:
        for r in results:
            state = "sent" if r["ok"] else f"FAILED: {r['error']}"
            print(f"target {r['index'] + 1} {r['url']}: {state}")
        ok = sum(r["ok"] for r in results)
        print(f"{what}: {ok} of {len(results)} target{'s' if len(results) != 1 else ''} reached")
    return 0 if results and all(r["ok"] for r in results) else 1


def cmd_test(args) -> int:
    from tenmon.daemon.alerts import send_now

    settings, site, source = _settings(args)
    if not settings.urls:
        raise ConfigError(f"{source}: no [alerts] urls: nothing to test")
    if args.no_retry:
        settings = settings.model_copy(update={"retries": 0})
    host = socket.gethostname()
    title = f"[tenmon {settings.site_name or site}] test alert"
    body = (f"A test message from `tenmon alerts test` on {host}.\n\nIf you read this, the "
            "observatory's alarms (safe state not reached, storage failure, sensor lost, unclean "
            "restart, the daemon failing for good) reach you here.")
    results = send_now(settings, title=title, body=body, level="info")
    return _report(args, results, "test alert")


def _journal_tail(unit: str, lines: int) -> str:
    """The unit's last journal lines, when journalctl is there and may read them (best effort)."""
    if lines <= 0 or shutil.which("journalctl") is None:
        return ""
    try:
        r = subprocess.run(["journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines),
                            "-u", unit], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def cmd_send(args) -> int:
    from tenmon.daemon.alerts import send_now

    settings, site, source = _settings(args)
    if not settings.urls:
        raise ConfigError(f"{source}: no [alerts] urls: nobody can be told")
    name = settings.site_name or site
    host = socket.gethostname()
    if args.unit:
        title = f"[tenmon {name}] ALARM: {args.unit} failed; nothing is watching the dome"
        body = (f"systemd on {host} reports that {args.unit} has failed and will not be restarted "
                "(it failed again and again, or could not start at all).\n\n"
                "Nothing is watching the observatory now: the slit may be open. Close it by "
                "hand if it is, then look at why the daemon fails:\n"
                f"  systemctl status {args.unit}\n  journalctl -u {args.unit} -n 200\n"
                f"and start it again: systemctl reset-failed {args.unit}; "
                f"systemctl start {args.unit}")
        if args.message:
            body = args.message + "\n\n" + body
        tail = _journal_tail(args.unit, args.journal_lines)
        if tail:
            body += f"\n\nThe last lines of its journal:\n{tail}"
    else:
        if not args.message:
            raise ConfigError("alerts send needs --unit UNIT or --message TEXT")
        title = f"[tenmon {name}] {args.level.upper()}: {args.message}"
        body = f"{args.message}\n\n(sent by `tenmon alerts send` on {host})"
    print(f"tenmon: alert: {title}", file=sys.stderr)  # the journal keeps it too
    results = send_now(settings, title=title, body=body, level=args.level)
    return _report(args, results, "alert")


def register(sub) -> None:
    p = sub.add_parser(
        "alerts", help="send a test or an alarm to the site's alert targets ([alerts] urls)",
        description="Send messages to the alert targets of the site config ([alerts] urls: "
                    "apprise URLs such as mailtos://, ntfys://, tgram://, json://) directly, "
                    "without the daemon. The running daemon sends its own alerts by itself. "
                    "The config is the global --config (default /etc/tenmon/tenmon.toml); if it "
                    "cannot be read, the targets of the daemon's last good start are used "
                    "(DATA_DIR/alerts.json).")
    asub = p.add_subparsers(dest="alerts_command", metavar="test|send", required=True)
    t = asub.add_parser(
        "test", help="send a test message to every target and report each one",
        description="Send a test message to every target of [alerts] urls and report, per target, "
                    "whether it was accepted. Exit 0 only if every target was reached. Use it "
                    "after installing, and after changing the firewall or the unit's "
                    "IPAddressAllow= (docs/install.md).")
    t.add_argument("--json", action="store_true",
                   help="one JSON object per target: index, url (secrets masked), ok, error")
    t.add_argument("--no-retry", action="store_true",
                   help="one attempt per target (default: [alerts] retries)")
    t.add_argument("--data-dir", help="where the last good alerts.json is (default "
                   "$STATE_DIRECTORY or /var/lib/tenmon)")
    t.set_defaults(func=cmd_test)
    s = asub.add_parser(
        "send", help="send an alarm now (systemd's tenmon-alert@.service runs this)",
        description="Send an alarm to every target. With --unit UNIT (what systemd's "
                    "tenmon-alert@.service passes when tenmond fails for good) the message says "
                    "the daemon is down and nothing watches the dome, with the unit's last "
                    "journal lines when they can be read. Exit 0 only if every target was "
                    "reached.")
    s.add_argument("--unit", help="the systemd unit that failed (systemd's %%i)")
    s.add_argument("--message", help="the text to send (with --unit: put before the standard "
                   "text)")
    s.add_argument("--level", default="alarm", choices=["info", "warning", "error", "alarm"])
    s.add_argument("--journal-lines", type=int, default=20,
                   help="journal lines of --unit to include (default %(default)s; 0: none)")
    s.add_argument("--data-dir", help="where the last good alerts.json is (default "
                   "$STATE_DIRECTORY or /var/lib/tenmon)")
    s.add_argument("--json", action="store_true", help="one JSON object per target")
    s.set_defaults(func=cmd_send)
