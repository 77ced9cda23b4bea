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

from tenmon.daemon.api_kit import MAX_PAGE, dumps
from tenmon.daemon.store import utc_iso
from tenmon.errors import CommandRefused

#: Reads in progress or waiting, at most.
MAX_PENDING = 8
READ_THREADS = 2


def page(conn: sqlite3.Connection, table: str, columns: str, *, key: str,
         where: list[str] | None = None, args: list[Any] | None = None,
         after_id: int | None = None, before_id: int | None = None, limit: int = 200,
         row: Callable[[sqlite3.Row], dict] | None = None) -> dict[str, Any]:
    """One page of ``table`` (see the module docstring); rows under ``key`` in the answer."""
    limit = max(1, min(int(limit), MAX_PAGE))
    where = list(where or [])
    args = list(args or [])
    if after_id is not None:
        where.append("id > ?")
        args.append(after_id)
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
    forward = after_id is not None
    sql = (f"SELECT {columns} FROM {table}" + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY id {'ASC' if forward else 'DESC'} LIMIT ?")
    rows = conn.execute(sql, [*args, limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    out = [row(r) if row else dict(r) for r in rows]
    ids = [r["id"] for r in rows]
    return {key: out, "limit": limit, "more": more,
            "next_after_id": ids[-1] if ids else (after_id or 0),
            "next_before_id": ids[0] if ids else before_id}


def _event(r: sqlite3.Row) -> dict[str, Any]:
    try:
        data = json.loads(r["data"])
    except ValueError:
        data = {"unreadable": r["data"][:200]}
    return {"id": r["id"], "time_utc": r["time_utc"], "level": r["level"], "kind": r["kind"],
            "message": r["message"], "data": data}


def events_page(conn: sqlite3.Connection, *, since: datetime | None = None,
                level: str | None = None, after_id: int | None = None,
                before_id: int | None = None, limit: int = 200) -> dict[str, Any]:
    """A page of events (``since``: at or after this time; ``level``: only this level)."""
    where, args = [], []
    if since is not None:
        where.append("time_utc >= ?")
        args.append(utc_iso(since))
    if level is not None:
        where.append("level = ?")
        args.append(level)
    return page(conn, "events", "id, time_utc, level, kind, message, data", key="events",
                where=where, args=args, after_id=after_id, before_id=before_id, limit=limit,
                row=_event)


def history_page(conn: sqlite3.Connection, *, device: str, limit: int = 100) -> dict[str, Any]:
    """The newest ``limit`` state records of ``device``, oldest first."""

    def row(r):
        try:
            state = json.loads(r["state"])
        except ValueError:
            state = {}
        return {"time_utc": r["time_utc"], **(state if isinstance(state, dict) else {})}

    out = page(conn, "device_history", "id, time_utc, state", key="history",
               where=["device = ?"], args=[device], limit=limit, row=row)
    return {"device": device, "history": out["history"], "limit": out["limit"],
            "more": out["more"]}


class StoreReader:
    """Runs read functions ``fn(conn, **kw)`` on worker threads against the database at
    ``path`` (read-only connections, one per thread) and answers their JSON bytes.

    ``path`` None (an in-memory store): ``fallback`` (the store's own connection) is used on the
    event loop instead: only tests have such stores.
    """

    def __init__(self, path: Path | str | None, *, fallback: sqlite3.Connection | None = None):
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
        return dumps(fn(self._conn(), **kw)).encode()

    async def read(self, fn: Callable[..., dict], **kw) -> bytes:
        """``fn(conn, **kw)`` as JSON bytes, computed on a worker thread.

        Raises:
            CommandRefused: ``reads_busy`` (503) when :data:`MAX_PENDING` reads are waiting;
                ``internal`` when the database cannot be read.
        """
        if self.path is None:
            return dumps(fn(self.fallback, **kw)).encode()
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
