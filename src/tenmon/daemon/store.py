"""The daemon's SQLite store (WAL): events, device state history, and small persistent daemon state.

One connection, used from the event-loop thread only. Every write commits at once, so a
``kill -9`` loses at most the statement in flight and leaves the database consistent (SQLite's
journal guarantees that; the tests check ``PRAGMA integrity_check`` after a SIGKILL).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('info', 'warning', 'error', 'alarm')),
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_utc);
CREATE TABLE IF NOT EXISTS device_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    device TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS device_history_time ON device_history (device, time_utc);
CREATE TABLE IF NOT EXISTS daemon_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

LEVELS = ("info", "warning", "error", "alarm")


def utc_iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """SQLite-backed record of what happened. Opens (creating) ``path``; WAL mode."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add_schema(self, sql: str) -> None:
        """Create another component's tables (frames, solves, queue) in the same database."""
        self.db.executescript(sql)

    # ------------------------------------------------------------------ events

    def add_event(self, when: datetime, level: str, kind: str, message: str,
                  data: dict[str, Any] | None = None) -> int:
        if level not in LEVELS:
            raise ValueError(f"event level {level!r} is not one of {LEVELS}")
        cur = self.db.execute(
            "INSERT INTO events (time_utc, level, kind, message, data) VALUES (?, ?, ?, ?, ?)",
            (utc_iso(when), level, kind, message, json.dumps(data or {}, default=str)))
        return int(cur.lastrowid)

    def events(self, *, since: datetime | None = None, after_id: int | None = None,
               limit: int = 200, level: str | None = None) -> list[dict[str, Any]]:
        """Events oldest first; ``since`` filters by time, ``after_id`` by id (for following)."""
        sql = "SELECT * FROM events WHERE 1=1"
        args: list[Any] = []
        if since is not None:
            sql += " AND time_utc >= ?"
            args.append(utc_iso(since))
        if after_id is not None:
            sql += " AND id > ?"
            args.append(after_id)
        if level is not None:
            sql += " AND level = ?"
            args.append(level)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = self.db.execute(sql, args).fetchall()
        return [{"id": r["id"], "time_utc": r["time_utc"], "level": r["level"], "kind": r["kind"],
                 "message": r["message"], "data": json.loads(r["data"])} for r in reversed(rows)]

    # ------------------------------------------------------------------ history

    def add_history(self, when: datetime, device: str, state: dict[str, Any]) -> None:
        self.db.execute("INSERT INTO device_history (time_utc, device, state) VALUES (?, ?, ?)",
                        (utc_iso(when), device, json.dumps(state, default=str)))

    def history(self, device: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT time_utc, state FROM device_history WHERE device = ? ORDER BY id DESC LIMIT ?",
            (device, limit)).fetchall()
        return [{"time_utc": r["time_utc"], **json.loads(r["state"])} for r in reversed(rows)]

    # ------------------------------------------------------------------ key/value

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM daemon_state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def set_state(self, key: str, value: Any) -> None:
        self.db.execute("INSERT INTO daemon_state (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (key, json.dumps(value, default=str)))

    def prune_history(self, before: datetime) -> int:
        """Delete device-history rows older than ``before`` (events are kept); returns the count."""
        cur = self.db.execute("DELETE FROM device_history WHERE time_utc < ?", (utc_iso(before),))
        return cur.rowcount

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
