"""Live status for the operator page: a Server-Sent Events stream (``GET /page/stream``).

Every ``period_s`` (wall), while at least one page watches, the publisher builds one document:
the status snapshot (``Observatory.status()``), its facts (``tenmon.statusview``: the very lines
``tenmon status`` prints), tonight's plan as a timeline, the pictures' metadata
(``daemon.page_media``) and the events recorded since the last push; encodes it once; and offers
it to every client's queue. It never waits for a client: a queue is bounded (``queue_size``
messages), and a client whose queue is full has it emptied and gets one ``snapshot`` (the whole
state and the last :data:`LOG_TAIL` events) in its place: it drops what it could not take and
resynchronises. Each client's messages are written by that client's own request handler; a
write that takes longer than ``write_timeout_s`` ends that client's stream (the page reconnects).
So a slow or stalled browser costs the control loop one ``put_nowait`` per push, nothing more.

Messages (``event:`` name, ``data:`` one JSON object): ``snapshot`` (first message, and after a
resync: replace the event log with ``events``) and ``update`` (append ``events``). Both carry
``seq``, ``status``, ``view``, ``plan``, ``media``. A comment line keeps an idle stream open.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from typing import Any

from aiohttp import web

from tenmon.daemon.api.kit import dumps
from tenmon.core.timefmt import utc_iso
from tenmon.statusview import status_view

log = logging.getLogger(__name__)

#: Events kept for the page (newest); a snapshot carries the last :data:`LOG_TAIL`.
LOG_KEEP = 500
LOG_TAIL = 100
#: Streams open at once, at most (more: 503).
MAX_CLIENTS = 16


def plan_view(obs) -> dict[str, Any] | None:
    """Tonight's plan as a timeline: the night's bounds, each block (target, start, end, done,
    running) and the targets left out, with ``now``; ``None`` when there is no plan."""
    ops = getattr(obs, "night_ops", None)
    seq = getattr(ops, "sequencer", None)
    plan = getattr(seq, "plan", None)
    if plan is None:
        return None
    keyed = getattr(seq, "_keyed", None)
    handled = getattr(seq, "handled", set())
    run = getattr(seq, "run", None)
    running = getattr(run, "key", None)
    pairs = list(keyed.blocks) if keyed is not None else [(None, b) for b in plan.scheduled]
    blocks = []
    for key, b in pairs:
        blocks.append({"name": b.name, "start_utc": utc_iso(b.start), "end_utc": utc_iso(b.end),
                       "count": b.count, "exposure_s": b.exposure_s,
                       "done": key is not None and key in handled,
                       "running": key is not None and key == running})
    return {"night": plan.night.date.isoformat(), "start_utc": utc_iso(plan.night.start),
            "end_utc": utc_iso(plan.night.end), "now_utc": utc_iso(obs.clock.now()),
            "blocks": blocks,
            "unscheduled": [{"name": u.name, "reason": getattr(u, "reason", "")}
                            for u in plan.unscheduled][:50]}


def _recorded_events(obs, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` events in the database, oldest first (a read-only connection)."""
    import json
    import sqlite3
    from urllib.parse import quote

    from tenmon.daemon.api.reads import events_page

    path = getattr(obs.store, "path", None)
    if path is None or str(path) == ":memory:":
        return []
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=2000")
        rows = json.loads(events_page(conn, limit=limit))["events"]
    finally:
        conn.close()
    return [{k: r[k] for k in ("time_utc", "level", "kind", "message", "data")} for r in rows]


class _Client:
    def __init__(self, size: int):
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=size)
        self.resyncs = 0


class StatusPush:
    """The page's live stream for ``obs`` (see the module docstring).

    Args:
        obs: the observatory.
        media: the pictures (``PageMedia``), or None.
        period_s: push period, wall seconds.
        queue_size: messages a client may lag behind before it is resynchronised.
        write_timeout_s: a write to one client taking longer ends that client's stream.
    """

    def __init__(self, obs, media=None, *, period_s: float = 0.5, queue_size: int = 8,
                 write_timeout_s: float = 10.0, keepalive_s: float = 15.0):
        self.obs = obs
        self.media = media
        self.period_s = float(period_s)
        self.queue_size = int(queue_size)
        self.write_timeout_s = float(write_timeout_s)
        self.keepalive_s = float(keepalive_s)
        self.clients: set[_Client] = set()
        self._ids = itertools.count(1)
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_KEEP)
        self._sent_id = 0
        self._seq = 0
        self._task: asyncio.Task | None = None
        self.closing = False
        #: pushes made, clients resynchronised (dropped behind), streams ended by a slow write
        self.stats = {"pushes": 0, "resyncs": 0, "slow_writes": 0}
        obs.event_listeners.append(self._on_event)

    # ------------------------------------------------------------------ events

    def _on_event(self, event: dict[str, Any]) -> None:
        """An event listener: O(1), never raises (``Observatory.emit`` calls it)."""
        self._log.append({"id": next(self._ids), **event})

    def _events_since(self, last_id: int) -> list[dict[str, Any]]:
        return [e for e in list(self._log) if e["id"] > last_id]

    # ------------------------------------------------------------------ documents

    def document(self, kind: str) -> bytes:
        """One SSE message of ``kind`` (``snapshot`` or ``update``) with the state now."""
        status = self.obs.status()
        self._seq += 1
        if kind == "snapshot":
            events = list(self._log)[-LOG_TAIL:]
        else:
            events = self._events_since(self._sent_id)
        try:
            plan = plan_view(self.obs)
        except Exception as exc:  # noqa: BLE001 - the page shows the rest
            plan = {"error": str(exc)}
        doc = {"seq": self._seq, "kind": kind, "status": status, "view": status_view(status),
               "plan": plan, "media": self.media.meta() if self.media is not None else None,
               "events": events}
        return f"event: {kind}\ndata: {dumps(doc)}\n\n".encode()

    def _offer(self, client: _Client, msg: bytes) -> None:
        try:
            client.queue.put_nowait(msg)
        except asyncio.QueueFull:
            # behind: drop what it has not taken, send it the whole state instead
            while not client.queue.empty():
                client.queue.get_nowait()
            client.resyncs += 1
            self.stats["resyncs"] += 1
            client.queue.put_nowait(self.document("snapshot"))

    def publish(self) -> None:
        """One push to every client (the loop thread; never waits)."""
        if not self.clients:
            self._sent_id = self._log[-1]["id"] if self._log else 0
            return
        msg = self.document("update")
        self._sent_id = self._log[-1]["id"] if self._log else 0
        self.stats["pushes"] += 1
        for client in list(self.clients):
            self._offer(client, msg)

    async def run(self) -> None:
        """The publisher: push every ``period_s`` while pages watch; ask for pictures."""
        while not self.closing:
            try:
                if self.clients:
                    if self.media is not None:
                        self.media.refresh()
                    self.publish()
                else:
                    self.publish()  # only moves the event mark
            except Exception:  # noqa: BLE001 - a bug here must not end the stream for good
                log.exception("status push failed")
            await asyncio.sleep(self.period_s)

    # ------------------------------------------------------------------ the aiohttp side

    async def on_startup(self, _app) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())
        try:  # the events recorded before the page was served, read off the loop
            older = await asyncio.to_thread(_recorded_events, self.obs, LOG_TAIL)
        except Exception as exc:  # noqa: BLE001 - the page starts with what it has
            log.warning("page: the recorded events cannot be read: %s", exc)
            older = []
        first = self._log[0]["time_utc"] if self._log else None
        for e in reversed(older):
            if first is None or e["time_utc"] <= first:
                self._log.appendleft({**e, "id": 0})  # never newer than a pushed mark

    async def on_shutdown(self, _app) -> None:
        """Stop pushing and end every stream (so that the server's shutdown does not wait on
        open streams)."""
        self.closing = True
        for client in list(self.clients):
            while not client.queue.empty():
                client.queue.get_nowait()
            client.queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
        if self.media is not None:
            self.media.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /page/stream``: the event stream of this client."""
        if self.closing:
            raise web.HTTPServiceUnavailable(reason="shutting down")
        if len(self.clients) >= MAX_CLIENTS:
            raise web.HTTPServiceUnavailable(reason=f"{MAX_CLIENTS} pages watch already")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        client = _Client(self.queue_size)
        self.clients.add(client)
        try:
            if self.media is not None:
                self.media.refresh()
            client.queue.put_nowait(self.document("snapshot"))
            while True:
                try:
                    msg = await asyncio.wait_for(client.queue.get(), self.keepalive_s)
                except asyncio.TimeoutError:
                    msg = b": keepalive\n\n"
                if msg is None:
                    break
                try:
                    await asyncio.wait_for(resp.write(msg), self.write_timeout_s)
                except asyncio.TimeoutError:
                    self.stats["slow_writes"] += 1
                    log.warning("page stream to %s: a write took over %.0f s: closed",
                                request.remote, self.write_timeout_s)
                    if request.transport is not None:
                        request.transport.abort()  # do not wait on its buffer to end either
                    break
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.clients.discard(client)
        return resp


__all__ = ["StatusPush", "plan_view", "LOG_TAIL", "MAX_CLIENTS"]
