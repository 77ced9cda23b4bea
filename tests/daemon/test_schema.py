"""Every table of the daemon's database is defined in daemon/schema.py (the queue's by the queue),
and a database written by an older tenmon (times with +00:00) opens and reads as before."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from tenmon.daemon import schema
from tenmon.daemon.store import Store

SRC = Path(__file__).resolve().parents[2] / "src" / "tenmon"


def test_create_table_lives_in_the_schema_module():
    owners = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                    if "CREATE TABLE" in p.read_text(encoding="utf-8"))
    # the queue opens the daemon's database without a daemon (tenmon plan); the archive's index
    # is another database
    assert owners == ["archive/index.py", "daemon/schema.py", "scheduler/queue.py"]


def test_every_table_is_listed_once():
    tables = [t for sql in schema.ALL_SCHEMAS
              for t in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", sql)]
    assert sorted(tables) == sorted(set(tables)) == sorted(
        ["events", "device_history", "daemon_state", "audit", "frames", "solves", "night_log",
         "night_jobs", "scheduler_targets", "scheduler_history"])
    assert all("CREATE TABLE " not in sql.replace("CREATE TABLE IF NOT EXISTS", "")
               for sql in schema.ALL_SCHEMAS)


def test_an_older_database_opens_with_every_schema(tmp_path):
    db = tmp_path / "tenmon.sqlite"
    con = sqlite3.connect(db)
    for sql in schema.ALL_SCHEMAS:
        con.executescript(sql)
    con.execute("INSERT INTO events (time_utc, level, kind, message) VALUES "
                "('2026-11-21T13:00:00.000+00:00', 'info', 'old', 'written before Z')")
    con.execute("INSERT INTO solves (time_utc, solved) VALUES ('2026-11-21T13:00:00+00:00', 0)")
    con.commit()
    con.close()
    store = Store(db)
    try:
        for sql in schema.ALL_SCHEMAS:
            store.add_schema(sql)
        store.add_event(datetime(2026, 11, 21, 14, tzinfo=timezone.utc), "info", "new", "with Z")
        assert store.flush()
        rows = store.query("SELECT time_utc, kind FROM events ORDER BY id")
        assert [tuple(r) for r in rows] == [("2026-11-21T13:00:00.000+00:00", "old"),
                                            ("2026-11-21T14:00:00.000Z", "new")]
        assert store.query("SELECT COUNT(*) FROM solves")[0][0] == 1
    finally:
        store.close()
