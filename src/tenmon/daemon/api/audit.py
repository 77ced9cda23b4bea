"""The audit trail: every command sent to the API, who sent it and what became of it.

One row per command (every request that is not a read, refused ones included): the time (the
daemon's clock), the client's address, the method and route, the body (at most
:data:`MAX_BODY_CHARS` characters, undecodable bytes escaped), the answer's HTTP status and code,
and whether the token was right (``ok``, ``missing``, ``wrong``, ``unavailable``, or ``-`` when
the request was refused before the token was looked at). The token itself is never stored.

Rows live in the ``audit`` table of the daemon's SQLite database and are written by
:func:`write_row` only, through the store's writer thread (never on the control loop).
It also prunes rows older than ``api.audit_keep_days``, at most once a day. Requests without the
right token are recorded up to :data:`UNAUTHENTICATED_PER_MINUTE` a minute; beyond that they are
counted and the count is recorded in one row (code ``flood``). A write that fails
(disk full, database locked) waits in the store's buffer and is retried with its other rows: an audit
row never stops a command, and the command has already been done when its row is written.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import asdict, dataclass
from datetime import timedelta

from tenmon.daemon.schema import AUDIT_SCHEMA as SCHEMA
from tenmon.core.timefmt import utc_iso

log = logging.getLogger(__name__)


#: Requests without the right token recorded per minute at most; the rest are counted, and the
#: count recorded in one row, so that a flood of refused requests cannot fill the disk.
UNAUTHENTICATED_PER_MINUTE = 60
#: Longest body kept in a row (characters); longer ones are cut and say their size.
MAX_BODY_CHARS = 1000
#: Longest route (path and query) kept.
MAX_ROUTE_CHARS = 200
PRUNE_EVERY_S = 86400.0


@dataclass(frozen=True)
class AuditRow:
    time_utc: str
    client: str
    method: str
    route: str
    body: str
    status: int
    code: str
    auth: str


def body_text(raw: bytes | None) -> str:
    """A request body as stored: UTF-8 with undecodable bytes escaped, cut to a bounded size."""
    if not raw:
        return ""
    text = raw[: MAX_BODY_CHARS * 4].decode("utf-8", errors="backslashreplace")
    if len(text) > MAX_BODY_CHARS or len(raw) > MAX_BODY_CHARS * 4:
        text = text[:MAX_BODY_CHARS] + f"... ({len(raw)} bytes)"
    return text


def write_row(store, row: AuditRow, prune_before: str | None = None) -> None:
    """Queue one audit row (and the deletion of rows older than ``prune_before``, an ISO UTC
    time) on the store's writer thread: never blocks the control loop. The only writer of the
    ``audit`` table. A failed write is retried by the store with its other rows; a row the
    store cannot take is logged.
    """
    values = asdict(row)

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO audit (time_utc, client, method, route, body, status, code, auth) "
            "VALUES (:time_utc, :client, :method, :route, :body, :status, :code, :auth)", values)
        if prune_before is not None:
            n = conn.execute("DELETE FROM audit WHERE time_utc < ?", (prune_before,)).rowcount
            if n:
                log.info("pruned %d audit rows older than %s", n, prune_before)

    try:
        store.submit(write, what="audit row")
    except Exception as exc:  # noqa: BLE001 - an audit row never stops a command
        log.error("audit row not written (%s): %s %s from %s -> %s %s", exc, row.method,
                  row.route, row.client, row.status, row.code)


class AuditLog:
    """Records commands for one observatory (its store, its clock, ``api.audit_keep_days``)."""

    def __init__(self, store, clock, keep_days: float):
        self.store = store
        self.clock = clock
        self.keep = timedelta(days=keep_days)
        self._pruned_at: float | None = None
        self._window_at = clock.monotonic()
        self._unauthenticated = 0
        self._dropped = 0
        store.add_schema(SCHEMA)

    def _flood(self, now_m: float, authenticated: bool) -> bool:
        """Count a request; True when it is one too many unauthenticated ones to record."""
        if now_m - self._window_at >= 60.0:
            if self._dropped:
                write_row(self.store, AuditRow(
                    time_utc=utc_iso(self.clock.now()), client="-", method="-",
                    route="(not recorded)", body=f"{self._dropped} more requests without the "
                    "right token in the minute before this row", status=0, code="flood",
                    auth="-"))
            self._window_at, self._unauthenticated, self._dropped = now_m, 0, 0
        if authenticated:
            return False
        self._unauthenticated += 1
        if self._unauthenticated <= UNAUTHENTICATED_PER_MINUTE:
            return False
        if not self._dropped:
            log.warning("more than %d API requests without the right token this minute: "
                        "the rest are counted, not recorded one by one",
                        UNAUTHENTICATED_PER_MINUTE)
        self._dropped += 1
        return True

    def record(self, *, client: str | None, method: str, route: str, body: bytes | None,
               status: int, code: str, auth: str) -> None:
        now = self.clock.now()
        prune = None
        now_m = self.clock.monotonic()
        if self._flood(now_m, auth == "ok"):
            return
        if self._pruned_at is None or now_m - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now_m
            prune = utc_iso(now - self.keep)
        write_row(self.store, AuditRow(
            time_utc=utc_iso(now), client=(client or "?")[:100], method=method[:10],
            route=route[:MAX_ROUTE_CHARS], body=body_text(body), status=int(status),
            code=code[:40], auth=auth), prune)


def audit_page(conn: sqlite3.Connection, *, after_id: int | None = None,
               before_id: int | None = None, limit: int = 100) -> str:
    """A page of audit rows as JSON text, oldest first (see ``daemon.api_reads.page``)."""
    from tenmon.daemon.api.reads import page

    return page(conn, "audit", "json_object('id', id, 'time_utc', time_utc, 'client', client, "
                "'method', method, 'route', route, 'body', body, 'status', status, 'code', code, "
                "'auth', auth)", key="audit", after_id=after_id, before_id=before_id,
                limit=limit)


__all__ = ["AuditLog", "AuditRow", "write_row", "audit_page", "body_text", "SCHEMA",
           "MAX_BODY_CHARS"]
