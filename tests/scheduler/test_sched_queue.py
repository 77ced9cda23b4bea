"""The SQLite target queue: add/list/remove/import, outcomes, cadence, WAL, shared connections."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from tenmon.scheduler.errors import DuplicateTargetError, TargetFileError, UnknownTargetError
from tenmon.scheduler.queue import SCHEMA, TargetQueue
from tenmon.scheduler.targets import Target

T0 = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)


def _t(name: str, priority: int = 1, **kw) -> Target:
    return Target(name=name, ra_deg=kw.pop("ra", 10.0), dec_deg=kw.pop("dec", 20.0),
                  priority=priority, exposure_s=60, count=2, **kw)


def test_add_list_remove_roundtrip(tmp_path):
    db = tmp_path / "q.sqlite"
    with TargetQueue(db) as q:
        q.add(_t("b", 2, filter="R", window_end=T0 + timedelta(hours=3)))
        q.add(_t("a", 1))
        q.add(_t("c", 1))
        names = [e.target.name for e in q.list()]
        assert names == ["a", "c", "b"]  # priority, then name
        with pytest.raises(DuplicateTargetError):
            q.add(_t("a", 5))
        q.add(_t("a", 5), replace=True)
        assert q.get("a").target.priority == 5
        q.remove("c")
        with pytest.raises(UnknownTargetError):
            q.remove("c")
    # Persisted, with every field intact.
    with TargetQueue(db) as q:
        b = q.get("b")
        assert b.target == _t("b", 2, filter="R", window_end=T0 + timedelta(hours=3))
        assert b.status == "pending" and b.n_observed == 0
        assert [e.target.name for e in q.list()] == ["b", "a"]
        mode = q._conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_outcomes_and_pending(tmp_path):
    with TargetQueue(tmp_path / "q.sqlite") as q:
        q.add_many([_t("once"), _t("often", cadence_s=3600), _t("flaky"),
                    _t("late", window_end=T0 - timedelta(minutes=1))])
        assert {t.name for t in q.pending(T0)} == {"once", "often", "flaky"}  # late: window over
        q.mark_observed("once", T0)
        q.mark_observed("often", T0, detail="frames 1-2")
        q.mark_failed("flaky", T0, reason="guide star lost")
        assert q.get("once").status == "observed"
        assert q.get("often").status == "pending" and q.get("often").n_observed == 1
        flaky = q.get("flaky")
        assert flaky.status == "failed" and flaky.last_error == "guide star lost"
        assert [t.name for t in q.pending(T0 + timedelta(minutes=30))] == []
        assert [t.name for t in q.pending(T0 + timedelta(hours=1))] == ["often"]
        q.reset("flaky")
        assert {t.name for t in q.pending(T0 + timedelta(hours=2))} == {"often", "flaky"}
        hist = q.history("often")
        assert hist == [(T0, "observed", "frames 1-2")]
        with pytest.raises(UnknownTargetError):
            q.mark_observed("nobody", T0)


def test_import_is_all_or_nothing(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("name,ra,dec,priority,exposure_s,count\nA,1,2,1,60,1\nB,3,4,2,30,3\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,ra,dec,priority,exposure_s,count\nC,1,2,1,60,1\nD,3,400,2,30,3\n")
    with TargetQueue(tmp_path / "q.sqlite") as q:
        assert q.import_file(good) == 2
        with pytest.raises(TargetFileError, match="line 3"):
            q.import_file(bad)
        assert [e.target.name for e in q.list()] == ["A", "B"]
        with pytest.raises(DuplicateTargetError, match="'A'"):
            q.import_file(good)
        assert len(q.list()) == 2
        assert q.import_file(good, replace=True) == 2


def test_queue_on_a_shared_connection(tmp_path):
    conn = sqlite3.connect(tmp_path / "state.sqlite")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
    q = TargetQueue(conn)
    q.add(_t("x"))
    q.close()  # does not close a connection it did not open
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "scheduler_targets", "scheduler_history"} <= tables
    assert conn.execute("SELECT name FROM scheduler_targets").fetchall() == [("x",)]
    conn.close()
    assert "CREATE TABLE IF NOT EXISTS scheduler_targets" in SCHEMA


def test_naive_time_refused(tmp_path):
    from tenmon.scheduler.errors import QueueError

    with TargetQueue(tmp_path / "q.sqlite") as q:
        q.add(_t("x"))
        with pytest.raises(QueueError, match="no timezone"):
            q.mark_observed("x", datetime(2026, 11, 21, 12))
