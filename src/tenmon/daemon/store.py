"""The daemon's SQLite store (WAL): events, device history, daemon state; one writer thread.

Safety never waits on storage. Every write (``add_event``, ``add_history``, ``set_state``,
``execute``, ``submit``) only puts a row in an ordered in-memory queue and returns at once; one
writer thread owns the write connection and commits the queue in batches (one transaction, a
savepoint per row, so one bad row cannot take its neighbours with it). When the database cannot
be written (disk or database full, read-only, locked by another process, corrupt, gone), the
rows stay in the queue, which is bounded (``[storage] buffer_max_rows``: the oldest device
history and info rows go first, alarms and frame rows last, every drop counted), the writer
retries with back-off, and the store posts an alarm notice once per outage and an info notice
when the buffered rows are written (``drain_notices()``; the observatory emits them as events,
which also puts them in the journal). Rows are written in the order they were queued.

Events and device-history rows get their ids here, when they are queued, so that ``add_event``
returns the id at once and reads can merge rows not yet written with the database's: a reader
sees its own writes, during an outage too. Before the database has ever been opened the ids are
provisional and are moved past the database's own when it opens.

``daemon_state`` (``get_state``/``set_state``) lives in memory, loaded when the database opens
and written behind; ``state_known`` says whether the stored values have been read (a daemon that
starts without its database cannot know whether the last run ended cleanly).

Reads use one read-only connection per thread (WAL lets them run beside the writer), so the
API may read from executor threads; every read is capped at ``max_read_rows``. A read from the
thread that built the store (the control loop) waits at most 20 ms for a lock.

A ``kill -9`` loses at most the rows queued in the last moments (the writer commits within
milliseconds) and leaves the database consistent (SQLite's WAL guarantees that; the tests check
``PRAGMA integrity_check`` after a SIGKILL). A database SQLite reports as corrupt when it opens
is moved aside (``tenmon.sqlite.corrupt-<UTC time>``, with its -wal and -shm) and a new one is
started, so recording resumes; the alarm names the file kept.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from tenmon.config.models import StorageConfig
from tenmon.daemon.schema import STORE_SCHEMA as SCHEMA
from tenmon.core.errors import StorageError
from tenmon.core.timefmt import utc_iso  # noqa: F401 - every stored time (tenmon.core.timefmt; re-exported)

log = logging.getLogger(__name__)


LEVELS = ("info", "warning", "error", "alarm")

#: How long a queued row is kept when the buffer overflows (higher: kept longer).
KEEP_HISTORY, KEEP_INFO, KEEP_WARNING, KEEP_ERROR, KEEP_ALWAYS = range(5)
_KEEP_OF_LEVEL = {"info": KEEP_INFO, "warning": KEEP_WARNING, "error": KEEP_ERROR,
                  "alarm": KEEP_ALWAYS}
_KEEP_NAMES = {KEEP_HISTORY: "device history", KEEP_INFO: "info events",
               KEEP_WARNING: "warning events", KEEP_ERROR: "error events",
               KEEP_ALWAYS: "alarms and records"}

#: SQLite primary result codes that mean "the storage is unusable now", not "this row is bad":
#: PERM, BUSY, LOCKED, NOMEM, READONLY, INTERRUPT, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL,
#: NOTADB. Rows that fail with them stay queued and are retried.
FAULT_CODES = frozenset({3, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 26})
#: After these the connection is closed and the file opened again (it may have been replaced,
#: remounted or repaired).
_REOPEN_CODES = frozenset({3, 8, 10, 11, 14, 26})
_CORRUPT_CODES = frozenset({11, 26})
_FAULT_WORDS = ("locked", "busy", "full", "readonly", "read-only", "disk i/o", "malformed",
                "not a database", "unable to open", "no space")

#: rows per writer transaction
BATCH_ROWS = 200
#: busy timeout of reads on the control loop's thread (ms): a locked database answers "busy"
LOOP_READ_BUSY_MS = 20
#: busy timeout of reads on other threads (API executor, tools) (ms)
READ_BUSY_MS = 2000

_ID_TABLES = ("events", "device_history")




def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_storage_fault(exc: BaseException) -> bool:
    """True when ``exc`` says the storage is unusable (retry later), false when it says the row
    or statement is wrong (retrying cannot help)."""
    if isinstance(exc, OSError):
        return True
    if not isinstance(exc, sqlite3.Error):
        return False
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError,
                        sqlite3.InterfaceError, sqlite3.DataError)):
        return False
    code = _code(exc)
    if code is not None:
        return code in FAULT_CODES
    msg = str(exc).lower()
    return any(w in msg for w in _FAULT_WORDS)


def _describe(exc: BaseException) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    text = str(exc) or type(exc).__name__
    return f"{text} ({name})" if name else text


# ---------------------------------------------------------------------------- queued writes

class _Op:
    """One queued write. ``run(conn)`` executes it inside the writer's transaction and returns
    an op to queue after it (a prune that has more to delete) or ``None``."""

    __slots__ = ("keep", "what", "future")

    def __init__(self, keep: int, what: str, future: Future | None = None):
        self.keep = keep
        self.what = what
        self.future = future

    def run(self, conn: sqlite3.Connection) -> Any:
        raise NotImplementedError

    def result(self) -> Any:
        return None


class _Row(_Op):
    """A row of a table whose id the store allocates (events, device_history)."""

    __slots__ = ("table", "id", "cols", "values")

    def __init__(self, table: str, row_id: int, cols: tuple[str, ...], values: tuple, keep: int):
        super().__init__(keep, table)
        self.table = table
        self.id = row_id
        self.cols = cols
        self.values = values

    def run(self, conn: sqlite3.Connection) -> None:
        cols = ", ".join(self.cols)
        marks = ", ".join("?" for _ in self.cols)
        try:
            conn.execute(f"INSERT INTO {self.table} (id, {cols}) VALUES (?, {marks})",
                         (self.id, *self.values))
        except sqlite3.IntegrityError:
            # the id is taken (another writer added rows to this database meanwhile): let
            # SQLite number it; it stays after everything written before it
            cur = conn.execute(f"INSERT INTO {self.table} ({cols}) VALUES ({marks})",
                               self.values)
            self.id = int(cur.lastrowid)

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.cols, self.values), id=self.id)


class _Sql(_Op):
    __slots__ = ("sql", "params", "lastrowid")

    def __init__(self, sql: str, params: tuple, keep: int, what: str, future: Future | None):
        super().__init__(keep, what, future)
        self.sql = sql
        self.params = params
        self.lastrowid: int | None = None

    def run(self, conn: sqlite3.Connection) -> None:
        cur = conn.execute(self.sql, self.params)
        self.lastrowid = cur.lastrowid

    def result(self) -> Any:
        return self.lastrowid


class _Call(_Op):
    __slots__ = ("fn", "value")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], keep: int, what: str,
                 future: Future | None):
        super().__init__(keep, what, future)
        self.fn = fn
        self.value: Any = None

    def run(self, conn: sqlite3.Connection) -> None:
        self.value = self.fn(conn)

    def result(self) -> Any:
        return self.value


class _Prune(_Op):
    """Delete rows older than a time, ``batch`` rows per transaction (it queues itself again
    behind the other writes until nothing is left)."""

    __slots__ = ("table", "before", "level", "batch", "total", "done")

    def __init__(self, table: str, before: str, level: str | None, batch: int,
                 future: Future | None):
        super().__init__(KEEP_HISTORY, f"prune {table}", future)
        self.table = table
        self.before = before
        self.level = level
        self.batch = batch
        self.total = 0
        self.done = False

    def run(self, conn: sqlite3.Connection) -> _Prune | None:
        extra, args = "", [self.before]
        if self.level is not None:
            extra, args = " AND level = ?", [self.before, self.level]
        # oldest rows have the lowest ids: the scan in id order finds them first
        cur = conn.execute(f"DELETE FROM {self.table} WHERE id IN (SELECT id FROM {self.table} "
                           f"WHERE time_utc < ?{extra} ORDER BY id LIMIT ?)",
                           (*args, self.batch))
        n = max(0, cur.rowcount)
        self.total += n
        if n >= self.batch:
            return self
        self.done = True
        return None

    def result(self) -> Any:
        return self.total


# ---------------------------------------------------------------------------- the store

class Store:
    """SQLite-backed record of what happened; see the module docstring.

    Args:
        path: the database file (created with its directory), or ``":memory:"``.
        settings: ``[storage]`` (buffer size, retries, read cap, ...).

    The constructor never raises for a database it cannot open: it waits up to
    ``settings.open_wait_s`` for the first open and otherwise starts with the record in memory
    (``health()["state"] == "degraded"``) while the writer keeps trying.
    """

    def __init__(self, path: Path | str, settings: StorageConfig | None = None):
        self.settings = settings or StorageConfig()
        self._memory = str(path) == ":memory:"
        self.path = Path(path)
        if self._memory:
            uri = f"file:tenmon-mem-{id(self)}-{time.monotonic_ns()}?mode=memory&cache=shared"
            self._write_target, self._read_target = uri, uri
        else:
            self.path = Path(os.path.abspath(path))
            self._write_target = str(self.path)
            self._read_target = self.path.as_uri() + "?mode=rw"
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)     # the writer waits on it
        self._written = threading.Condition(self._lock)  # flush() waits on it
        self._ops: collections.deque[_Op] = collections.deque()
        self._inflight: list[_Op] = []
        self._schemas: list[str] = [SCHEMA]
        self._schemas_applied = 0
        self._state: dict[str, str] = {}
        self._state_dirty: dict[str, str] = {}
        self._state_local: set[str] = set()
        self._state_known = False
        self._state_lost = False  # the stored state was in a corrupt file moved aside unread
        self._next_id = {t: 0 for t in _ID_TABLES}
        #: prunes asked for, per table: (older than, level or None, up to id); reads hide the
        #: rows they delete (rows queued before the prune, older than its time) at once
        self._cutoffs: dict[str, list[tuple[str, str | None, int]]] = {t: [] for t in _ID_TABLES}
        self._notices: collections.deque[tuple[str, str, str, dict]] = collections.deque(
            maxlen=200)
        self._conn: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self._generation = 0
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._owner = threading.get_ident()
        # health
        self._faulted = False
        self._alarmed = False
        self._fault_since: float | None = None
        self._fault_since_utc: str | None = None
        self._last_error: str | None = None
        self._retry_s = self.settings.retry_min_s
        self._retry_at = 0.0
        self._recovering = False
        self._recovered_rows = 0
        self._dropped: collections.Counter[int] = collections.Counter()
        self._dropped_total = 0
        self._dropped_episode = 0
        self._drop_noticed = False
        self._outages = 0
        self._failed_rows = 0
        self._failed_noticed_at = -1e9
        self._stopping = False
        self._closed = False
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenmon-store-writer",
                                        daemon=True)
        self._thread.start()
        if not self._opened.wait(self.settings.open_wait_s):
            # the writer is still waiting (a lock, a slow disk): start in memory, say so now
            with self._lock:
                if not self._faulted and self._conn is None:
                    self._faulted = True
                    self._alarmed = True
                    self._outages += 1
                    self._fault_since = time.monotonic()
                    self._fault_since_utc = utc_iso(datetime.now(timezone.utc))
                    self._last_error = (f"the database did not open within "
                                        f"{self.settings.open_wait_s:g} s")
                    self._notice("alarm", f"cannot open the database {self.path} within "
                                 f"{self.settings.open_wait_s:g} s (locked or a slow disk?): the "
                                 "daemon starts with its record in memory and in the journal, "
                                 "and writes it when the database opens; still trying",
                                 error=self._last_error)

    # ------------------------------------------------------------------ life cycle

    def close(self, timeout_s: float | None = None) -> bool:
        """Write what is buffered (waiting at most ``timeout_s``, default
        ``stop_flush_s``), stop the writer and close every connection. Returns whether
        everything was written (what was not is in the journal)."""
        if self._closed:
            return True
        ok = self.flush(self.settings.stop_flush_s if timeout_s is None else timeout_s)
        with self._lock:
            self._stopping = True
            left = len(self._ops) + len(self._inflight)
            self._work.notify_all()
        self._thread.join(timeout=max(1.0, self.settings.write_busy_timeout_s + 1.0))
        if not ok:
            log.error("storage: closing with %d rows not written to %s (they are in the "
                      "journal): %s", left, self.path, self._last_error)
        with self._lock:
            readers, self._readers = self._readers, []
            conn, self._conn = self._conn, None
            self._closed = True
        for c in readers + ([conn] if conn is not None and not self._thread.is_alive() else []):
            try:
                c.close()
            except sqlite3.Error:
                pass
        return ok

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Wait until every queued row and state value is written (at most ``timeout_s``).
        Never call it from the control loop. Returns whether everything was written."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while self._pending_locked():
                if not self._thread.is_alive():
                    return False
                wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if wait <= 0:
                    return False
                self._work.notify()
                self._written.wait(wait)
        return True

    def _pending_locked(self) -> bool:
        return bool(self._ops or self._inflight or self._state_dirty
                    or self._schemas_applied < len(self._schemas))

    @property
    def state_known(self) -> bool:
        """Whether the stored daemon state has been read (false while the database has never
        opened, or when it was corrupt and moved aside before it could be read: ``get_state``
        then answers from what this run set, else the default)."""
        return self._state_known

    def health(self) -> dict[str, Any]:
        """The store's condition for status: ``state`` ok | degraded, the error, rows waiting
        in memory and dropped, and whether the writer thread lives."""
        with self._lock:
            return {
                "state": "degraded" if (self._faulted or self._conn is None) else "ok",
                "database": str(self.path),
                "since_utc": self._fault_since_utc if self._faulted else None,
                "error": self._last_error if self._faulted else None,
                "buffered_rows": len(self._ops) + len(self._inflight),
                "buffer_max_rows": self.settings.buffer_max_rows,
                "dropped_rows": self._dropped_total,
                "failed_rows": self._failed_rows,
                "outages": self._outages,
                "state_known": self._state_known,
                "writer_alive": self._thread.is_alive(),
            }

    @property
    def writer_alive(self) -> bool:
        """Whether the writer thread runs (it survives every error; false after ``close``)."""
        return self._thread.is_alive()

    def retry_now(self) -> None:
        """Retry the database at once instead of after the back-off (e.g. space was freed)."""
        with self._lock:
            self._retry_at = 0.0
            self._work.notify()

    @property
    def degraded(self) -> bool:
        with self._lock:
            return self._faulted or self._conn is None

    def drain_notices(self) -> list[tuple[str, str, str, dict]]:
        """``(level, kind, message, data)`` the writer posted (outage, recovery, drops), for the
        observatory to emit on its own thread."""
        out = []
        while True:
            try:
                out.append(self._notices.popleft())
            except IndexError:
                return out

    def _notice(self, level: str, message: str, **data: Any) -> None:
        self._notices.append((level, "storage", message, data))

    # ------------------------------------------------------------------ queueing

    def _enqueue(self, op: _Op) -> None:
        with self._lock:
            if self._stopping:
                log.warning("storage: %s after the store was closed: not written", op.what)
                return
            self._ops.append(op)
            if len(self._ops) + len(self._inflight) > self.settings.buffer_max_rows:
                self._shed_locked()
            self._work.notify()

    def _shed_locked(self) -> None:
        """Drop rows down to 90 % of the buffer: the least kept first, oldest first. Alarms and
        records go only when nothing else is left to drop and the buffer is still over its
        limit (the rows the writer holds in its transaction count, and are never dropped)."""
        limit = self.settings.buffer_max_rows
        total = len(self._ops) + len(self._inflight)
        need = total - (limit - limit // 10)
        must = total - limit   # alarms and records only to stay within the limit itself
        drop: set[int] = set()
        for keep in sorted({op.keep for op in self._ops}):
            if keep == KEEP_ALWAYS:
                need = min(need, must)
            if need <= 0:
                break
            for i, op in enumerate(self._ops):
                if need <= 0:
                    break
                if op.keep == keep:
                    drop.add(i)
                    need -= 1
                    must -= 1
        kept: collections.deque[_Op] = collections.deque()
        for i, op in enumerate(self._ops):
            if i in drop:
                self._dropped[op.keep] += 1
                if op.future is not None and not op.future.done():
                    op.future.set_exception(StorageError(
                        f"{op.what}: dropped, the storage buffer was full"))
            else:
                kept.append(op)
        self._ops = kept
        self._dropped_total += len(drop)
        self._dropped_episode += len(drop)
        if drop and not self._drop_noticed:
            self._drop_noticed = True
            self._notice("alarm", f"storage buffer full ({limit} rows waiting for the "
                         "database): dropping the oldest rows, device history and info events "
                         "first (every event is still in the journal)", buffer_max_rows=limit)
        log.warning("storage: buffer full: dropped %d rows (%s)", len(drop),
                    ", ".join(f"{n} {_KEEP_NAMES[k]}" for k, n in sorted(self._dropped.items())))

    def _allocate(self, table: str) -> int:
        self._next_id[table] += 1
        return self._next_id[table]

    def add_schema(self, sql: str) -> None:
        """Create another component's tables (frames, solves, queue) in the same database
        (by the writer, before any row queued after this call; again after a reopen)."""
        with self._lock:
            if sql not in self._schemas:
                self._schemas.append(sql)
                self._work.notify()

    def execute(self, sql: str, params: Iterable[Any] = (), *, what: str = "write",
                keep: int = KEEP_ALWAYS) -> Future:
        """Queue one statement; returns a future of its ``lastrowid`` (set by the writer
        thread: never wait on it in the control loop)."""
        fut: Future = Future()
        self._enqueue(_Sql(sql, tuple(params), keep, what, fut))
        return fut

    def submit(self, fn: Callable[[sqlite3.Connection], Any], *, what: str = "write",
               keep: int = KEEP_ALWAYS) -> Future:
        """Queue ``fn(conn)``, run by the writer inside its transaction (``fn`` must not commit
        or begin; an exception of ``fn`` undoes only its own statements and is set on the
        returned future). Never wait on the future in the control loop."""
        fut: Future = Future()
        self._enqueue(_Call(fn, keep, what, fut))
        return fut

    # ------------------------------------------------------------------ events

    def add_event(self, when: datetime, level: str, kind: str, message: str,
                  data: dict[str, Any] | None = None) -> int:
        """Queue an event; returns its id at once (never blocks on the database).

        Raises:
            ValueError: ``level`` is not one of ``LEVELS``.
        """
        if level not in LEVELS:
            raise ValueError(f"event level {level!r} is not one of {LEVELS}")
        values = (utc_iso(when), level, kind, message, json.dumps(data or {}, default=str))
        with self._lock:
            row_id = self._allocate("events")
        self._enqueue(_Row("events", row_id, ("time_utc", "level", "kind", "message", "data"),
                           values, _KEEP_OF_LEVEL[level]))
        return row_id

    def events(self, *, since: datetime | None = None, after_id: int | None = None,
               limit: int = 200, level: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` events (at most ``max_read_rows``), oldest first; ``since``
        filters by time, ``after_id`` by id (for following). Rows still waiting for the
        database are included. Safe from any thread.

        Raises:
            ValueError: ``limit`` is not a non-negative integer, or ``level`` is unknown.
        """
        n = self._limit(limit)
        if level is not None and level not in LEVELS:
            raise ValueError(f"event level {level!r} is not one of {LEVELS}")
        since_s = utc_iso(since) if since is not None else None
        pending = self._pending_rows("events")
        cuts = list(self._cutoffs["events"])
        sql = "SELECT id, time_utc, level, kind, message, data FROM events WHERE 1=1"
        args: list[Any] = []
        for clause, value in ((" AND time_utc >= ?", since_s), (" AND id > ?", after_id),
                              (" AND level = ?", level)):
            if value is not None:
                sql += clause
                args.append(value)
        sql += _cut_sql(cuts, args)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(n)
        rows = {r["id"]: dict(r) for r in self._read_or_empty(sql, args, "events")}
        for r in pending:
            if ((since_s is None or r["time_utc"] >= since_s)
                    and (after_id is None or r["id"] > after_id)
                    and (level is None or r["level"] == level)
                    and not _cut(cuts, r)):
                rows[r["id"]] = r
        out = [rows[k] for k in sorted(rows)[-n:]] if n else []
        return [{"id": r["id"], "time_utc": r["time_utc"], "level": r["level"],
                 "kind": r["kind"], "message": r["message"], "data": _loads(r["data"])}
                for r in out]

    # ------------------------------------------------------------------ history

    def add_history(self, when: datetime, device: str, state: dict[str, Any]) -> None:
        """Queue a device-history row (never blocks)."""
        values = (utc_iso(when), device, json.dumps(state, default=str))
        with self._lock:
            row_id = self._allocate("device_history")
        self._enqueue(_Row("device_history", row_id, ("time_utc", "device", "state"), values,
                           KEEP_HISTORY))

    def history(self, device: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` states of ``device`` (at most ``max_read_rows``), oldest first,
        rows still waiting for the database included. Safe from any thread."""
        n = self._limit(limit)
        cuts = list(self._cutoffs["device_history"])
        sql = "SELECT id, time_utc, device, state FROM device_history WHERE device = ?"
        args: list[Any] = [device]
        sql += _cut_sql(cuts, args)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(n)
        rows = {r["id"]: dict(r) for r in self._read_or_empty(sql, args, "history")}
        for r in self._pending_rows("device_history"):
            if r["device"] == device and not _cut(cuts, r):
                rows[r["id"]] = r
        out = [rows[k] for k in sorted(rows)[-n:]] if n else []
        return [{"time_utc": r["time_utc"], **_loads(r["state"])} for r in out]

    def prune_history(self, before: datetime) -> Future:
        """Delete device-history rows older than ``before`` (by the writer, in small batches;
        reads stop showing them at once). Returns a future of the count deleted."""
        return self.prune("device_history", before)

    def prune(self, table: str, before: datetime, *, level: str | None = None) -> Future:
        """Delete ``events`` or ``device_history`` rows older than ``before`` (only events of
        ``level`` when given), ``prune_batch_rows`` per transaction, behind the other writes.
        Reads stop showing them at once. Returns a future of the count deleted."""
        if table not in _ID_TABLES:
            raise ValueError(f"cannot prune {table!r}: only {_ID_TABLES}")
        cut = utc_iso(before)
        fut: Future = Future()
        with self._lock:
            upto = self._next_id[table]
            new = (cut, level, upto)
            # keep the prunes another one does not cover (a later one covers an earlier one
            # with an older time and the same or a narrower level)
            self._cutoffs[table] = [c for c in self._cutoffs[table]
                                    if not (c[0] <= cut and c[2] <= upto
                                            and (level is None or c[1] == level))] + [new]
        self._enqueue(_Prune(table, cut, level, self.settings.prune_batch_rows, fut))
        return fut

    # ------------------------------------------------------------------ frames (reads)

    def frames(self, *, after_id: int | None = None, limit: int = 200,
               status: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` rows of the frame service's ``frames`` table (at most
        ``max_read_rows``; without ``result_json``), oldest first. Safe from any thread.

        Raises:
            StorageError: the database cannot be read (or has no frames table yet).
        """
        n = self._limit(limit)
        sql = ("SELECT id, path, received_utc, processed_utc, status, target, block, date_obs, "
               "exptime_s, n_sources, fwhm_px, solved, ra_deg, dec_deg, rms_arcsec, error "
               "FROM frames WHERE 1=1")
        args: list[Any] = []
        for clause, value in ((" AND id > ?", after_id), (" AND status = ?", status),
                              (" AND target = ?", target)):
            if value is not None:
                sql += clause
                args.append(value)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(n)
        return [dict(r) for r in reversed(self.query(sql, args))]

    # ------------------------------------------------------------------ key/value

    def get_state(self, key: str, default: Any = None) -> Any:
        """A daemon-state value, from memory (never blocks)."""
        with self._lock:
            text = self._state.get(key)
        return default if text is None else json.loads(text)

    def set_state(self, key: str, value: Any) -> None:
        """Set a daemon-state value: in memory at once (read back by ``get_state``), written
        behind (never blocks)."""
        text = json.dumps(value, default=str)
        with self._lock:
            self._state[key] = text
            self._state_local.add(key)
            if self._stopping:
                log.warning("storage: state %s set after the store was closed", key)
                return
            self._state_dirty[key] = text
            self._work.notify()

    # ------------------------------------------------------------------ reads

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's read-only connection (``sqlite3.Row`` rows). Writes go through
        ``execute``/``submit``.

        Raises:
            StorageError: the database cannot be opened for reading.
        """
        try:
            return self._reader()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {_describe(exc)}") from None

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Run a read on this thread's connection (capped at ``max_read_rows`` rows).

        Raises:
            StorageError: the database cannot be read now.
        """
        try:
            cur = self._reader().execute(sql, tuple(params))
            return cur.fetchmany(self.settings.max_read_rows)
        except sqlite3.Error as exc:
            self._drop_reader()
            raise StorageError(f"cannot read {self.path}: {_describe(exc)}") from None

    def _read_or_empty(self, sql: str, args: list[Any], what: str) -> list[sqlite3.Row]:
        try:
            return self.query(sql, args)
        except StorageError as exc:
            log.warning("storage: %s read from memory only: %s", what, exc)
            return []

    def _reader(self) -> sqlite3.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.generation == self._generation:
            return conn
        if conn is not None:
            self._drop_reader()
        if self._closed:
            raise sqlite3.OperationalError("the store is closed")
        busy = LOOP_READ_BUSY_MS if threading.get_ident() == self._owner else READ_BUSY_MS
        conn = sqlite3.connect(self._read_target, uri=True, isolation_level=None,
                               check_same_thread=False, timeout=busy / 1000.0)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={busy}")
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error:
            conn.close()
            raise
        local.conn, local.generation = conn, self._generation
        with self._lock:
            self._readers.append(conn)
        return conn

    def _drop_reader(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is None:
            return
        with self._lock:
            if conn in self._readers:
                self._readers.remove(conn)
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def _pending_rows(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return [op.as_dict() for op in itertools.chain(self._inflight, self._ops)
                    if isinstance(op, _Row) and op.table == table]

    def _limit(self, limit: Any) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ValueError(f"limit must be an integer, got {limit!r}")
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        return min(limit, self.settings.max_read_rows)

    def integrity_ok(self) -> bool:
        """``PRAGMA integrity_check`` of the database file (false if it cannot be read)."""
        try:
            rows = self.query("PRAGMA integrity_check")
        except StorageError:
            return False
        return bool(rows) and rows[0][0] == "ok"

    # ------------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        try:
            self._open()
        except Exception as exc:  # noqa: BLE001 - any failure to open is an outage
            self._fault(exc, opening=True)
        finally:
            self._opened.set()
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return
                    if self._conn is None or self._faulted:
                        wait = self._retry_at - time.monotonic()
                        if wait <= 0:
                            break
                        self._work.wait(wait)
                        continue
                    if self._pending_locked():
                        break
                    self._work.wait(5.0)
            try:
                if self._conn is None:
                    self._open()
                self._write_batch()
            except Exception as exc:  # noqa: BLE001 - the writer must live: everything is a fault
                self._fault(exc, opening=self._conn is None)

    def _open(self) -> None:
        """Open (or reopen) the write connection, create the tables, load the daemon state.
        A file SQLite calls corrupt is moved aside first."""
        try:
            conn = self._connect()
        except sqlite3.DatabaseError as exc:
            if _code(exc) not in _CORRUPT_CODES or self._memory:
                raise
            self._quarantine(exc)
            conn = self._connect()
        with self._lock:
            n_schemas = len(self._schemas)
        try:
            for sql in self._schemas[:n_schemas]:
                _apply_schema(conn, sql)
            stored = conn.execute("SELECT key, value FROM daemon_state").fetchall()
            bases = {}
            for t in _ID_TABLES:
                m = conn.execute(f"SELECT MAX(id) FROM {t}").fetchone()[0] or 0
                seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?",
                                   (t,)).fetchone()
                bases[t] = max(int(m), int(seq[0]) if seq else 0)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._schemas_applied = n_schemas
            for key, value in stored:
                if key not in self._state_local:
                    self._state[key] = value
            self._state_known = self._state_known or not self._state_lost
            pending = list(itertools.chain(self._inflight, self._ops))
            for t, base in bases.items():
                rows = [op for op in pending if isinstance(op, _Row) and op.table == t]
                lo = min((op.id for op in rows), default=None)
                if lo is not None and lo <= base:
                    shift = base - lo + 1
                    for op in rows:
                        op.id += shift
                    self._next_id[t] += shift
                    self._cutoffs[t] = [(c, lv, u + shift if u >= lo else u)
                                        for c, lv, u in self._cutoffs[t]]
                self._next_id[t] = max(self._next_id[t], base)
            self._conn = conn
            self._file_id = self._identity()
            self._generation += 1
        log.info("storage: %s open", self.path)

    def _identity(self) -> tuple[int, int] | None:
        if self._memory:
            return None
        st = os.stat(self.path)
        return (st.st_dev, st.st_ino)

    def _connect(self) -> sqlite3.Connection:
        if not self._memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        busy_ms = int(self.settings.write_busy_timeout_s * 1000)
        conn = sqlite3.connect(self._write_target, uri=self._memory, isolation_level=None,
                               check_same_thread=False, timeout=busy_ms / 1000.0)
        try:
            conn.execute(f"PRAGMA busy_timeout={busy_ms}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # a header SQLite cannot read fails here, not at the first write
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _quarantine(self, exc: BaseException) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = Path(f"{self.path}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, Path(f"{dest}{suffix}"))
        with self._lock:
            # the new database gets the whole state, not only what changed since
            self._state_dirty.update(self._state)
            if not self._state_known:
                self._state_lost = True
        self._notice("alarm", f"the database {self.path} is corrupt ({_describe(exc)}): kept "
                     f"as {dest.name}; a new database is started and the record goes on there",
                     kept_as=str(dest), error=_describe(exc))
        log.error("storage: %s is corrupt (%s): moved to %s", self.path, _describe(exc), dest)

    def _write_batch(self) -> None:
        conn = self._conn
        if conn is None:
            raise StorageError(f"{self.path} is not open")
        if self._identity() != self._file_id:
            # removed or replaced under us: SQLite would go on writing to the old file
            raise StorageError(f"the database file {self.path} was replaced or removed")
        with self._lock:
            schemas = self._schemas[self._schemas_applied:]
        for sql in schemas:
            _apply_schema(conn, sql)
        with self._lock:
            self._schemas_applied += len(schemas)
            # a batch is at most a tenth of the buffer, so the rows held by the writer's
            # transaction never crowd out the alarms when the buffer overflows
            n = min(BATCH_ROWS, max(1, self.settings.buffer_max_rows // 10), len(self._ops))
            batch = [self._ops.popleft() for _ in range(n)]
            self._inflight = batch
            state = dict(self._state_dirty)
        results: list[tuple[_Op, BaseException | None, Any]] = []
        try:
            if batch or state:
                conn.execute("BEGIN IMMEDIATE")
                for op in batch:
                    conn.execute("SAVEPOINT op")
                    try:
                        more = op.run(conn)
                    except Exception as exc:  # noqa: BLE001 - classified just below
                        if is_storage_fault(exc):
                            raise
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        results.append((op, exc, None))
                    else:
                        conn.execute("RELEASE op")
                        results.append((op, None, more))
                for key, text in state.items():
                    conn.execute("INSERT INTO daemon_state (key, value) VALUES (?, ?) "
                                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                 (key, text))
                conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            with self._lock:
                self._ops.extendleft(reversed(batch))
                self._inflight = []
            raise
        recovered = None
        with self._lock:
            self._inflight = []
            for key, text in state.items():
                if self._state_dirty.get(key) == text:
                    del self._state_dirty[key]
            for op, _, more in results:
                if more is not None:
                    self._ops.append(more)
            if self._faulted:
                self._faulted = False
                self._recovering = True
                self._retry_s = self.settings.retry_min_s
            if self._recovering or self._drop_noticed:
                self._recovered_rows += len(batch)
                if not self._ops:
                    rows, dropped = self._recovered_rows, self._dropped_episode
                    took = time.monotonic() - (self._fault_since or time.monotonic())
                    head = (f"storage recovered after {took:.0f} s" if self._recovering
                            else "storage caught up")
                    self._recovering = False
                    self._alarmed = False
                    self._drop_noticed = False
                    self._recovered_rows = 0
                    self._dropped_episode = 0
                    msg = f"{head}: {rows} buffered rows written to {self.path}"
                    if dropped:
                        msg += f"; {dropped} rows were dropped while the buffer was full"
                    # posted before flush() returns, so that its caller sees it
                    self._notice("info", msg, rows_written=rows, dropped_rows=dropped,
                                 outage_s=round(took, 1))
                    recovered = msg
            self._written.notify_all()
        for op, exc, more in results:
            self._settle(op, exc, more)
        if recovered is not None:
            log.info("storage: %s", recovered)

    def _settle(self, op: _Op, exc: BaseException | None, more: Any) -> None:
        if exc is not None:
            log.error("storage: %s refused by the database and dropped: %s", op.what,
                      _describe(exc))
            if op.future is not None:
                op.future.set_exception(exc)
            if isinstance(exc, sqlite3.Error):
                with self._lock:
                    self._failed_rows += 1
                    now = time.monotonic()
                    tell = now - self._failed_noticed_at > 60.0
                    if tell:
                        self._failed_noticed_at = now
                if tell:
                    self._notice("error", f"a database write was refused and dropped: "
                                 f"{op.what}: {_describe(exc)}", what=op.what)
            return
        if more is not None:
            return  # a prune with more to delete: its future waits for the last batch
        if isinstance(op, _Prune) and op.total:
            log.info("storage: pruned %d %s rows older than %s", op.total, op.table, op.before)
        if op.future is not None and not op.future.done():
            op.future.set_result(op.result())

    def _fault(self, exc: BaseException, *, opening: bool) -> None:
        code = _code(exc)
        err = _describe(exc)
        with self._lock:
            first = not self._faulted
            self._faulted = True
            self._recovering = False
            self._last_error = err
            if first:
                self._outages += 1
                self._fault_since = time.monotonic()
                self._fault_since_utc = utc_iso(datetime.now(timezone.utc))
                self._retry_s = self.settings.retry_min_s
            else:
                self._retry_s = min(self.settings.retry_max_s, self._retry_s * 2)
            self._retry_at = time.monotonic() + self._retry_s
            buffered = len(self._ops) + len(self._inflight)
            alarm = not self._alarmed
            self._alarmed = True
            conn = self._conn
            reopen = conn is not None and (code is None or code in _REOPEN_CODES)
            if reopen:
                self._conn = None
        if reopen:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        if alarm:
            verb = "open" if opening else "write"
            self._notice("alarm", f"cannot {verb} the database {self.path}: {err}; the record "
                         f"is kept in memory ({buffered} rows waiting, at most "
                         f"{self.settings.buffer_max_rows}) and in the journal, and written when "
                         "the database works again; retrying", error=err, buffered_rows=buffered)
            log.error("storage: cannot %s %s: %s (retrying in %.1f s)", verb, self.path, err,
                      self._retry_s)
        else:
            log.warning("storage: still failing: %s (%d rows waiting; retrying in %.1f s)", err,
                        buffered, self._retry_s)


def _cut_sql(cuts: list[tuple[str, str | None, int]], args: list[Any]) -> str:
    sql = ""
    for before, level, upto in cuts:
        if level is None:
            sql += " AND NOT (time_utc < ? AND id <= ?)"
            args += [before, upto]
        else:
            sql += " AND NOT (time_utc < ? AND id <= ? AND level = ?)"
            args += [before, upto, level]
    return sql


def _cut(cuts: list[tuple[str, str | None, int]], row: dict[str, Any]) -> bool:
    return any(row["time_utc"] < before and row["id"] <= upto
               and (level is None or row.get("level") == level)
               for before, level, upto in cuts)


def _apply_schema(conn: sqlite3.Connection, sql: str) -> None:
    """Run a schema script; a storage fault propagates (retried), a wrong script is logged and
    skipped (retrying a programming error would hold up every row behind it)."""
    try:
        conn.executescript(sql)
    except sqlite3.Error as exc:
        if is_storage_fault(exc):
            raise
        log.error("storage: schema refused by the database and skipped: %s: %s",
                  _describe(exc), sql.strip().splitlines()[0] if sql.strip() else "")


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return {}


__all__ = ["Store", "SCHEMA", "LEVELS", "utc_iso", "is_storage_fault", "KEEP_HISTORY",
           "KEEP_INFO", "KEEP_WARNING", "KEEP_ERROR", "KEEP_ALWAYS"]
