"""The target queue: targets and their observing history in SQLite (WAL), shared with the daemon."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from tenmon.scheduler.errors import DuplicateTargetError, QueueError, UnknownTargetError
from tenmon.scheduler.targets import Target, load_targets
from tenmon.core.timefmt import parse_utc, utc_iso

log = logging.getLogger(__name__)

Status = Literal["pending", "observed", "failed"]

#: The queue's tables. Names are prefixed so the queue can live in the daemon's state database.
SCHEMA = """
CREATE TABLE IF NOT EXISTS scheduler_targets (
    name              TEXT PRIMARY KEY,
    ra_deg            REAL NOT NULL CHECK (ra_deg >= 0 AND ra_deg < 360),
    dec_deg           REAL NOT NULL CHECK (dec_deg >= -90 AND dec_deg <= 90),
    priority          INTEGER NOT NULL CHECK (priority >= 0),
    exposure_s        REAL NOT NULL CHECK (exposure_s > 0),
    count             INTEGER NOT NULL CHECK (count >= 1),
    filter            TEXT,
    binning           INTEGER NOT NULL DEFAULT 1,
    window_start_utc  TEXT,
    window_end_utc    TEXT,
    cadence_s         REAL,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'observed', 'failed')),
    added_utc         TEXT NOT NULL,
    last_observed_utc TEXT,
    n_observed        INTEGER NOT NULL DEFAULT 0,
    n_failed          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT
);
CREATE TABLE IF NOT EXISTS scheduler_history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    target   TEXT NOT NULL,
    at_utc   TEXT NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('observed', 'failed')),
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS scheduler_history_target ON scheduler_history (target, at_utc);
"""

_COLUMNS = (
    "name, ra_deg, dec_deg, priority, exposure_s, count, filter, binning, window_start_utc, "
    "window_end_utc, cadence_s, status, added_utc, last_observed_utc, n_observed, n_failed, "
    "last_error"
)


@dataclass(frozen=True)
class QueueEntry:
    """A queued target with its state: ``pending`` (to observe), ``observed`` (done; cadence
    targets stay ``pending``), or ``failed`` (held back until :meth:`TargetQueue.reset`)."""

    target: Target
    status: Status
    added_utc: datetime
    last_observed_utc: datetime | None
    n_observed: int
    n_failed: int
    last_error: str | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: the target's fields (``ra_deg``/``dec_deg``) plus its state."""
        record = self.target.to_record()
        out: dict[str, object] = {"name": record.pop("name"), "ra_deg": record.pop("ra"),
                                  "dec_deg": record.pop("dec"), **record}
        out.update(
            status=self.status,
            added_utc=_iso(self.added_utc),
            last_observed_utc=_iso(self.last_observed_utc),
            n_observed=self.n_observed,
            n_failed=self.n_failed,
            last_error=self.last_error,
        )
        return out


class TargetQueue:
    """Targets to observe, stored in SQLite.

    Args:
        db: a database file path (created if missing; WAL mode) or an open ``sqlite3.Connection``
            (e.g. the daemon's state database; the queue creates its tables there and leaves the
            connection open on :meth:`close`).
        create: create the tables (``False`` for a read-only connection of the daemon's store,
            which creates them through its writer).

    The daemon never writes through this class on its control loop: it queues the same writes
    (:func:`mark_observed_in`, :func:`mark_failed_in`, :func:`add_rows_in`) on its store's
    writer thread, so a locked or full database cannot hold up the loop.

    Raises:
        QueueError: the database cannot be opened.
    """

    def __init__(self, db: str | Path | sqlite3.Connection, *, create: bool = True):
        if isinstance(db, sqlite3.Connection):
            self._conn = db
            self._owned = False
        else:
            try:
                self._conn = sqlite3.connect(str(db), timeout=10.0)
            except sqlite3.Error as exc:
                raise QueueError(f"{db}: cannot open queue database: {exc}") from None
            self._owned = True
        if not create:
            return
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            with self._conn:
                self._conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise QueueError(f"{db}: cannot prepare queue database: {exc}") from None

    def close(self) -> None:
        """Close the database if the queue opened it."""
        if self._owned:
            self._conn.close()

    def __enter__(self) -> TargetQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ edit
    def add(self, target: Target, *, replace: bool = False, now: datetime | None = None) -> None:
        """Queue ``target`` as pending.

        Raises:
            DuplicateTargetError: a target of that name exists and ``replace`` is false.
        """
        self.add_many([target], replace=replace, now=now)

    def add_many(self, targets: Iterable[Target], *, replace: bool = False,
                 now: datetime | None = None) -> int:
        """Queue several targets in one transaction (all or none); returns how many.

        Raises:
            DuplicateTargetError: a name exists already (and ``replace`` is false) or repeats.
        """
        targets = list(targets)
        try:
            with self._conn:
                n = add_rows_in(self._conn, targets, replace=replace, now=now)
        except sqlite3.IntegrityError as exc:
            name = self._first_duplicate([t.name for t in targets])
            if name is not None:
                raise DuplicateTargetError(name) from None
            raise QueueError(f"cannot add targets: {exc}") from None
        log.info("queued %d target(s)", n)
        return n

    def _first_duplicate(self, names: list[str]) -> str | None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                return name
            seen.add(name)
            if self._conn.execute("SELECT 1 FROM scheduler_targets WHERE name = ?",
                                  (name,)).fetchone():
                return name
        return None

    def import_file(self, path: str | Path, *, replace: bool = False,
                    now: datetime | None = None) -> int:
        """Queue every target of a TOML/CSV file (all or none); returns how many.

        Raises:
            TargetFileError: the file is invalid (nothing is queued).
            DuplicateTargetError: a name is queued already and ``replace`` is false.
        """
        return self.add_many(load_targets(path), replace=replace, now=now)

    def remove(self, name: str) -> None:
        """Remove a target and its history.

        Raises:
            UnknownTargetError: no such target.
        """
        with self._conn:
            cur = self._conn.execute("DELETE FROM scheduler_targets WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise UnknownTargetError(name)
            self._conn.execute("DELETE FROM scheduler_history WHERE target = ?", (name,))

    # ------------------------------------------------------------------ read
    def get(self, name: str) -> QueueEntry:
        """The entry of one target.

        Raises:
            UnknownTargetError: no such target.
        """
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM scheduler_targets WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise UnknownTargetError(name)
        return _entry(row)

    def list(self, status: Status | None = None) -> list[QueueEntry]:
        """Entries ordered by priority then name, optionally only those of one ``status``."""
        if status is None:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM scheduler_targets ORDER BY priority, name"
            ).fetchall()
        else:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM scheduler_targets WHERE status = ? "
                "ORDER BY priority, name", (status,)
            ).fetchall()
        return [_entry(r) for r in rows]

    def pending(self, now: datetime | None = None) -> list[Target]:
        """Targets to plan at ``now`` (UTC): pending ones, minus cadence targets observed less
        than ``cadence_s`` ago, minus those whose time window has already ended."""
        now = _utc(now)
        out: list[Target] = []
        for entry in self.list("pending"):
            t = entry.target
            if t.window_end is not None and t.window_end <= now:
                continue
            if (t.cadence_s is not None and entry.last_observed_utc is not None
                    and entry.last_observed_utc + timedelta(seconds=t.cadence_s) > now):
                continue
            out.append(t)
        return out

    def history(self, name: str) -> list[tuple[datetime, str, str]]:
        """``(at_utc, outcome, detail)`` for every visit of a target, oldest first."""
        rows = self._conn.execute(
            "SELECT at_utc, outcome, detail FROM scheduler_history WHERE target = ? "
            "ORDER BY at_utc, id", (name,)
        ).fetchall()
        return [(_parse(r[0]), r[1], r[2]) for r in rows]  # type: ignore[misc]

    # ------------------------------------------------------------------ outcomes
    def mark_observed(self, name: str, when: datetime | None = None, detail: str = "") -> None:
        """Record a completed visit; a target without cadence becomes ``observed``.

        Raises:
            UnknownTargetError: no such target.
        """
        with self._conn:
            mark_observed_in(self._conn, name, when, detail)

    def mark_failed(self, name: str, when: datetime | None = None, reason: str = "") -> None:
        """Record a failed visit; the target is held back (``failed``) until :meth:`reset`.

        Raises:
            UnknownTargetError: no such target.
        """
        with self._conn:
            mark_failed_in(self._conn, name, when, reason)

    def reset(self, name: str) -> None:
        """Make a target ``pending`` again (after a failure or to observe it once more).

        Raises:
            UnknownTargetError: no such target.
        """
        with self._conn:
            cur = self._conn.execute(
                "UPDATE scheduler_targets SET status = 'pending' WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise UnknownTargetError(name)


# ---------------------------------------------------------------------- writes on a connection
# The statements of the queue's writes, for a caller that owns the transaction (the daemon's
# store writer runs them inside its own; TargetQueue wraps them in ``with conn``). They neither
# begin nor commit.

def add_rows_in(conn: sqlite3.Connection, targets: Iterable[Target], *, replace: bool = False,
                now: datetime | None = None) -> int:
    """Insert ``targets`` as pending; returns how many.

    Raises:
        sqlite3.IntegrityError: a name exists already (and ``replace`` is false) or repeats.
    """
    added = _iso(_utc(now))
    rows = [
        (t.name, t.ra_deg, t.dec_deg, t.priority, t.exposure_s, t.count, t.filter, t.binning,
         _iso(t.window_start), _iso(t.window_end), t.cadence_s, added)
        for t in targets
    ]
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    conn.executemany(
        f"{verb} INTO scheduler_targets (name, ra_deg, dec_deg, priority, exposure_s, "
        "count, filter, binning, window_start_utc, window_end_utc, cadence_s, "
        "added_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(rows)


def mark_observed_in(conn: sqlite3.Connection, name: str, when: datetime | None = None,
                     detail: str = "") -> None:
    """Record a completed visit (see :meth:`TargetQueue.mark_observed`).

    Raises:
        UnknownTargetError: no such target.
    """
    when_s = _iso(_utc(when))
    cur = conn.execute(
        "UPDATE scheduler_targets SET n_observed = n_observed + 1, last_observed_utc = ?, "
        "status = CASE WHEN cadence_s IS NULL THEN 'observed' ELSE 'pending' END "
        "WHERE name = ?", (when_s, name))
    if cur.rowcount == 0:
        raise UnknownTargetError(name)
    conn.execute(
        "INSERT INTO scheduler_history (target, at_utc, outcome, detail) "
        "VALUES (?, ?, 'observed', ?)", (name, when_s, detail))


def mark_failed_in(conn: sqlite3.Connection, name: str, when: datetime | None = None,
                   reason: str = "") -> None:
    """Record a failed visit (see :meth:`TargetQueue.mark_failed`).

    Raises:
        UnknownTargetError: no such target.
    """
    when_s = _iso(_utc(when))
    cur = conn.execute(
        "UPDATE scheduler_targets SET n_failed = n_failed + 1, status = 'failed', "
        "last_error = ? WHERE name = ?", (reason, name))
    if cur.rowcount == 0:
        raise UnknownTargetError(name)
    conn.execute(
        "INSERT INTO scheduler_history (target, at_utc, outcome, detail) "
        "VALUES (?, ?, 'failed', ?)", (name, when_s, reason))


def _utc(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise QueueError(f"time {when.isoformat()} has no timezone; tenmon uses UTC-aware times")
    return when.astimezone(timezone.utc)


def _iso(when: datetime | None) -> str | None:
    return utc_iso(when, timespec="auto") if when is not None else None


def _parse(text: str | None) -> datetime | None:
    return parse_utc(text) if text else None


def _entry(row: tuple) -> QueueEntry:
    (name, ra, dec, prio, exp, count, filt, binning, ws, we, cad, status, added, last, nobs,
     nfail, err) = row
    target = Target(
        name=name, ra_deg=ra, dec_deg=dec, priority=prio, exposure_s=exp, count=count,
        filter=filt, binning=binning, window_start=_parse(ws), window_end=_parse(we),
        cadence_s=cad,
    )
    return QueueEntry(
        target=target, status=status, added_utc=_parse(added),  # type: ignore[arg-type]
        last_observed_utc=_parse(last), n_observed=nobs, n_failed=nfail, last_error=err,
    )
