"""The API's reads of the daemon's database, off the event loop and in pages.

A read (events, device history, the audit trail) runs on a small thread pool, each thread with
its own read-only SQLite connection to the daemon's database (WAL: readers never block the
writer, nor it them), and comes back as ready JSON bytes, so neither the query nor the encoding
of a large answer runs on the event loop that ticks the control loop. At most
:data:`MAX_PENDING` reads wait at once; more are refused (503) rather than queued without end.

Pages: at most ``daemon.api_kit.MAX_PAGE`` rows. With ``after_id`` a page is the oldest rows
after it (following, or reading everything from ``after_id=0``); without it, the newest rows
(before ``before_id`` when given: paging back). Rows come oldest first; ``more`` says whether
rows remain beyond the page in its direction; ``next_after_id`` (the last row's id) continues
forward, ``next_before_id`` (the first row's id) continues back.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from tenmon.daemon.api.kit import MAX_PAGE, dumps
from tenmon.core.timefmt import utc_iso
from tenmon.core.errors import CommandRefused

#: Reads in progress or waiting, at most.
MAX_PENDING = 8
READ_THREADS = 1


def page(conn: sqlite3.Connection, table: str, row_json: str, *, key: str,
         where: list[str] | None = None, args: list[Any] | None = None,
         after_id: int | None = None, before_id: int | None = None, limit: int = 200,
         fallback: Callable[[sqlite3.Connection, int], dict] | None = None) -> str:
    """One page of ``table`` as JSON text (see the module docstring); rows under ``key``.

    ``row_json`` is an SQL expression giving a row's JSON object, or NULL for a row SQLite
    cannot render (a stored value that is not valid JSON, such as a ``NaN``): such a page is
    made row by row, ``fallback(conn, id)`` giving those rows in Python.

    Why in SQL: SQLite builds the page's JSON in C, into one string, while Python lets go of
    the GIL. Built in Python (a dict per row, then encoded), a client reading 80 pages of 1000
    events of 1 kB (the stall test of tests/daemon/test_api_input.py) caused about 90 garbage
    collections, full ones of 54-151 ms in the test process's heap, and ticks up to 135 ms
    late; built here, 3 collections and ticks at most 7 ms late (on the shared test machine).
    """
    limit = max(1, min(int(limit), MAX_PAGE))
    where = list(where or [])
    args = list(args or [])
    forward = after_id is not None
    rest = list(where)  # the rows beyond this page are the same rows, past its last id
    rest_args = list(args)
    if after_id is not None:
        where.append("id > ?")
        args.append(after_id)
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
        if forward:
            rest.append("id < ?")
            rest_args.append(before_id)
    clause = " WHERE " + " AND ".join(where) if where else ""
    inner = (f"SELECT id, {row_json} AS j FROM {table}{clause} "
             f"ORDER BY id {'ASC' if forward else 'DESC'} LIMIT ?")
    # the aggregate takes the rows in the subquery's order (SQLite does not flatten an
    # ordered subquery into an aggregate); tests check the order of every page
    text, count, first, last, broken = conn.execute(
        f"SELECT json_group_array(json(j)), count(*), min(id), max(id), sum(j IS NULL) "
        f"FROM (SELECT * FROM ({inner}) ORDER BY id ASC)", [*args, limit]).fetchone()
    if broken:
        ids = [r[0] for r in conn.execute(
            f"SELECT id FROM ({inner}) ORDER BY id ASC", [*args, limit]).fetchall()]
        rows = conn.execute(f"SELECT id, {row_json} FROM {table} WHERE id IN "
                            f"({','.join('?' * len(ids))}) ORDER BY id ASC", ids).fetchall()
        text = "[" + ",".join(j if j is not None else dumps(fallback(conn, rid) if fallback
                                                            else {"id": rid})
                              for rid, j in rows) + "]"
    more = False
    if count:
        edge = ("id > ?", last) if forward else ("id < ?", first)
        more = bool(conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {table} WHERE "
            + " AND ".join([*rest, edge[0]]) + ")", [*rest_args, edge[1]]).fetchone()[0])
    nxt_after = last if count else (after_id or 0)
    nxt_before = first if count else before_id
    return (f'{{"{key}": {text}, "limit": {limit}, "more": {"true" if more else "false"}, '
            f'"next_after_id": {int(nxt_after)}, '
            f'"next_before_id": {"null" if nxt_before is None else int(nxt_before)}}}')


def _strict(column: str) -> str:
    """SQL: ``column`` holds strict JSON. Python's encoder writes NaN and Infinity, which some
    SQLite versions (3.42+, JSON5) accept and render as null or 9e999: those rows take the
    Python path, whose output is strict (so does a row whose text merely mentions them)."""
    return (f"json_valid({column}) AND instr({column}, 'NaN') = 0 "
            f"AND instr({column}, 'Infinity') = 0")


_EVENT_JSON = (f"CASE WHEN {_strict('data')} THEN json_object('id', id, 'time_utc', time_utc, "
               "'level', level, 'kind', kind, 'message', message, 'data', json(data)) END")


def _event_fallback(conn: sqlite3.Connection, rid: int) -> dict[str, Any]:
    r = conn.execute("SELECT id, time_utc, level, kind, message, data FROM events WHERE id = ?",
                     (rid,)).fetchone()
    try:
        data = json.loads(r[5])  # Python's JSON (NaN and all); written out as null
    except ValueError:
        data = {"unreadable": r[5][:200]}
    return {"id": r[0], "time_utc": r[1], "level": r[2], "kind": r[3], "message": r[4],
            "data": data if isinstance(data, dict) else {"value": data}}


def events_page(conn: sqlite3.Connection, *, since: datetime | None = None,
                level: str | None = None, after_id: int | None = None,
                before_id: int | None = None, limit: int = 200) -> str:
    """A page of events (``since``: at or after this time; ``level``: only this level)."""
    where, args = [], []
    if since is not None:
        where.append("time_utc >= ?")
        args.append(utc_iso(since))
    if level is not None:
        where.append("level = ?")
        args.append(level)
    return page(conn, "events", _EVENT_JSON, key="events", where=where, args=args,
                after_id=after_id, before_id=before_id, limit=limit, fallback=_event_fallback)


_HISTORY_JSON = (f"CASE WHEN {_strict('state')} AND json_type(state) = 'object' "
                 "THEN json_insert(state, '$.time_utc', time_utc) END")


def _history_fallback(conn: sqlite3.Connection, rid: int) -> dict[str, Any]:
    r = conn.execute("SELECT time_utc, state FROM device_history WHERE id = ?", (rid,)).fetchone()
    try:
        state = json.loads(r[1])
    except ValueError:
        state = {}
    return {"time_utc": r[0], **(state if isinstance(state, dict) else {})}


def history_page(conn: sqlite3.Connection, *, device: str, limit: int = 100) -> str:
    """The newest ``limit`` state records of ``device``, oldest first."""
    text = page(conn, "device_history", _HISTORY_JSON, key="history", where=["device = ?"],
                args=[device], limit=limit, fallback=_history_fallback)
    return f'{{"device": {json.dumps(device)}, ' + text[1:]


class StoreReader:
    """Runs read functions ``fn(conn, **kw)`` on worker threads against the database at
    ``path`` (read-only connections, one per thread) and answers their JSON bytes.

    ``path`` None (an in-memory store): ``fallback()`` (the store's own connection) is used on
    the event loop instead: only tests have such stores.
    """

    def __init__(self, path: Path | str | None, *,
                 fallback: Callable[[], sqlite3.Connection] | None = None):
        self.path = None if path is None or str(path) == ":memory:" else Path(path).absolute()
        self.fallback = fallback
        self._pool = ThreadPoolExecutor(max_workers=READ_THREADS,
                                        thread_name_prefix="tenmon-api-read")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pending = 0

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=2000")  # waits in this thread, not on the loop
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _call(self, fn, kw) -> bytes:
        out = fn(self._conn(), **kw)
        return (out if isinstance(out, str) else dumps(out)).encode()

    async def read(self, fn: Callable[..., Any], **kw) -> bytes:
        """``fn(conn, **kw)`` (JSON text, or an object to encode) as JSON bytes, computed on a
        worker thread.

        Raises:
            CommandRefused: ``reads_busy`` (503) when :data:`MAX_PENDING` reads are waiting;
                ``internal`` when the database cannot be read.
        """
        if self.path is None:
            out = fn(self.fallback(), **kw)
            return (out if isinstance(out, str) else dumps(out)).encode()
        if self._pending >= MAX_PENDING:
            raise CommandRefused("reads_busy", f"{MAX_PENDING} reads are in progress: try again "
                                 "in a moment")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn,
                                                                    kw)
        except sqlite3.Error as exc:
            raise CommandRefused("reads_busy", f"the database cannot be read now: {exc}"
                                 ) from None
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()


__all__ = ["StoreReader", "page", "events_page", "history_page", "MAX_PENDING"]
