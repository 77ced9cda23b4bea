"""Alerts: events that need a person, sent through apprise (e-mail, ntfy, Slack, Telegram, webhooks).

The daemon hangs :meth:`AlertManager.listener` on ``Observatory.event_listeners``. The listener
runs on the control loop's thread, so it only classifies the event and puts it on a bounded queue
(``put_nowait``: it never waits). Everything else happens on threads of this module:

* a dispatcher thread applies the per-kind rate limit (at most one message per kind of alert in
  ``[alerts] rate_limit_min`` minutes; the ones held back are counted and sent as one digest
  when the time is up) and hands each message to every target;
* one thread per target (apprise URL) delivers with socket timeouts (``timeout_s``) and retries a
  bounded number of times with a doubling delay; a failure is logged (the journal) and counted,
  never raised. A target that hangs holds up only its own thread: the others still deliver.

What is alerted (:func:`alert_kind`): every event at ``min_level`` or above (``alarm`` by
default: the supervisor's "SAFE STATE NOT REACHED", a storage failure (kind ``storage``), a lost
sensor (kind ``sensor``), a stuck relay, an emergency stop, a crash), an unclean restart (the
start-up "previous run ended uncleanly" warning) whatever the level, and any event whose data
carries ``alert=True``. Events of kind ``alerts`` (this module's own notes) never are, so a dead
mail server cannot make a loop of alerts about itself.

Apprise is used as a library only: no configuration files or attachments are loaded, its
persistent storage is kept in memory, and nothing is sent anywhere but to the configured URLs.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from tenmon.core.clock import Clock, RealClock
from tenmon.config.models import AlertsConfig

log = logging.getLogger(__name__)

LEVEL_RANK = {"info": 0, "warning": 1, "error": 2, "alarm": 3}

#: Alerted whatever ``min_level`` says: ``(event kind, text in the message, alert kind)``.
ALWAYS = (
    ("reconcile", "ended uncleanly", "unclean-restart"),
)
#: Alerts with a kind of their own, so that other alarms of the same event kind cannot hold them
#: back under the rate limit: ``(event kind, text in the message, alert kind)``.
OWN_KIND = (
    ("safety", "SAFE STATE NOT REACHED", "safe-state-not-reached"),
)
#: Event kinds never alerted (this module's own notes about failed deliveries).
NEVER = frozenset({"alerts"})

#: Longest title (apprise targets such as SMS and ntfy cut long ones badly).
TITLE_MAX = 120


def alert_kind(event: dict[str, Any], min_level: str = "alarm") -> str | None:
    """The alert kind of an event (the key of the rate limit), or ``None`` if it is not alerted.

    ``event`` is what ``Observatory.emit`` gives its listeners: ``time_utc``, ``level``, ``kind``,
    ``message``, ``data``.
    """
    kind = str(event.get("kind", ""))
    if kind in NEVER:
        return None
    message = str(event.get("message", ""))
    for ev_kind, text, alert in ALWAYS:
        if kind == ev_kind and text in message:
            return alert
    data = event.get("data") or {}
    forced = isinstance(data, dict) and data.get("alert") is True
    if LEVEL_RANK.get(str(event.get("level")), 3) < LEVEL_RANK[min_level] and not forced:
        return None
    for ev_kind, text, alert in OWN_KIND:
        if kind == ev_kind and text in message:
            return alert
    return kind or "event"


@dataclass
class Message:
    """One notification as it goes to every target."""

    kind: str
    level: str
    title: str
    body: str
    digest: bool = False


@dataclass
class TargetStats:
    """What one target did since start."""

    url: str
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "sent": self.sent, "failed": self.failed,
                "dropped": self.dropped, "last_error": self.last_error}


def make_asset():
    """An apprise asset that keeps its persistent store in memory (a site's /var stays clean and
    the daemon's sandbox has nothing else writable) and names tenmon as the sender."""
    import apprise

    return apprise.AppriseAsset(storage_mode="memory", app_id="tenmon",
                                app_desc="tenmon observatory daemon")


def build_service(url: str, timeout_s: float, asset=None):
    """The apprise service for ``url`` with socket timeouts of ``timeout_s`` (unless the URL sets
    its own ``cto=``/``rto=``); ``None`` if apprise does not know the URL."""
    import apprise

    service = apprise.Apprise.instantiate(url, asset=asset or make_asset())
    if service is None:
        return None
    if "cto=" not in url:
        service.socket_connect_timeout = float(timeout_s)
    if "rto=" not in url:
        service.socket_read_timeout = float(timeout_s)
    return service


def privacy_url(service, url: str) -> str:
    """The URL with its secrets masked, for logs and reports."""
    try:
        return str(service.url(privacy=True)).split("?", 1)[0]
    except Exception:  # noqa: BLE001 - a plugin that cannot print itself
        return url.split("://", 1)[0] + "://..."


def notify_type(level: str):
    import apprise

    return {"alarm": apprise.NotifyType.FAILURE, "error": apprise.NotifyType.FAILURE,
            "warning": apprise.NotifyType.WARNING}.get(level, apprise.NotifyType.INFO)


class _ThreadLog(logging.Handler):
    """Collects apprise's warnings of the calling thread only (targets deliver in parallel)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.ident = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.ident:
            self.lines.append(record.getMessage())


def deliver_once(service, message: Message) -> tuple[bool, str | None]:
    """One delivery attempt: ``(ok, why_not)``. Never raises."""
    import apprise

    capture = _ThreadLog()
    apprise_log = logging.getLogger("apprise")
    apprise_log.addHandler(capture)
    try:
        ok = bool(service.notify(title=message.title, body=message.body,
                                 notify_type=notify_type(message.level),
                                 body_format=apprise.NotifyFormat.TEXT))
    except Exception as exc:  # noqa: BLE001 - a plugin bug must not reach the daemon
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        apprise_log.removeHandler(capture)
    if ok:
        return True, None
    lines = [" ".join(ln.split()) for ln in capture.lines if ln.strip()]
    return False, ("; ".join(lines[-2:]) if lines else "the service refused the message")[:300]


class _Target:
    """One apprise service, its queue and its delivery thread (retries with a doubling delay)."""

    def __init__(self, index: int, url: str, service, settings: AlertsConfig,
                 stopping: threading.Event):
        self.index = index
        self.service = service
        self.settings = settings
        self.stats = TargetStats(privacy_url(service, url))
        self._queue: collections.deque[Message] = collections.deque()
        self._cv = threading.Condition()
        self._stopping = stopping
        self._busy = False
        self.thread = threading.Thread(target=self._run, name=f"tenmon-alert-{index}",
                                       daemon=True)

    def put(self, message: Message) -> None:
        with self._cv:
            if len(self._queue) >= self.settings.queue_size:
                self._queue.popleft()
                self.stats.dropped += 1
                log.warning("alert target %s: queue full, the oldest message dropped",
                            self.stats.url)
            self._queue.append(message)
            self._cv.notify()

    def idle(self) -> bool:
        with self._cv:
            return not self._queue and not self._busy

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping.is_set():
                    self._cv.wait(1.0)
                if not self._queue:
                    return  # stopping and nothing left
                message = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(message)
            finally:
                with self._cv:
                    self._busy = False

    def _deliver(self, message: Message) -> None:
        delay = self.settings.retry_delay_s
        attempts = 1 + self.settings.retries
        why = None
        for attempt in range(1, attempts + 1):
            ok, why = deliver_once(self.service, message)
            if ok:
                self.stats.sent += 1
                self.stats.last_error = None
                log.info("alert sent to %s: %s", self.stats.url, message.title)
                return
            log.warning("alert to %s failed (attempt %d of %d): %s", self.stats.url, attempt,
                        attempts, why)
            if attempt < attempts:
                # on shutdown the wait ends early and one last attempt is made at once
                self._stopping.wait(delay)
                delay *= 2
        self.stats.failed += 1
        self.stats.last_error = why
        log.error("ALERT NOT DELIVERED to %s after %d attempts: %s | %s", self.stats.url,
                  attempts, message.title, why)


@dataclass
class _Held:
    count: int = 0
    latest: dict[str, Any] | None = None
    since_utc: str | None = None


@dataclass
class AlertStats:
    received: int = 0
    queued_dropped: int = 0
    held: int = 0
    digests: int = 0
    invalid_urls: list[str] = field(default_factory=list)


class AlertManager:
    """Classifies events, rate-limits them per kind and delivers them on background threads.

    Args:
        settings: the ``[alerts]`` section.
        site_name: the name in every title (``settings.site_name`` wins when set).
        clock: measures the rate-limit windows (monotonic seconds). The daemon passes a
            ``RealClock`` (people read their mail in real time, also for a simulated run); tests
            pass a ``FakeClock``.
        asset: an apprise asset (default :func:`make_asset`).
    """

    def __init__(self, settings: AlertsConfig, *, site_name: str = "site",
                 clock: Clock | None = None, asset=None):
        self.settings = settings
        self.site = settings.site_name or site_name
        self.clock = clock or RealClock()
        self._asset = asset
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue(
            maxsize=max(16, settings.queue_size))
        self._stopping = threading.Event()
        self._targets: list[_Target] = []
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._dispatcher: threading.Thread | None = None
        self._dispatching = False
        self.stats = AlertStats()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.urls)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> list[str]:
        """Build the targets and start the threads; returns one problem per unusable URL
        (apprise does not know it), which the daemon records as an error event."""
        problems: list[str] = []
        if not self.settings.urls:
            return problems
        asset = self._asset or make_asset()
        for i, url in enumerate(self.settings.urls, start=1):
            service = build_service(url, self.settings.timeout_s, asset)
            if service is None:
                scheme = url.split("://", 1)[0] if "://" in url else url[:12]
                problems.append(f"alerts.urls[{i - 1}] ({scheme}://...) is not a URL apprise "
                                "knows: nothing will be sent there")
                self.stats.invalid_urls.append(f"{scheme}://...")
                continue
            self._targets.append(_Target(i, url, service, self.settings, self._stopping))
        for t in self._targets:
            t.thread.start()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="tenmon-alerts",
                                            daemon=True)
        self._dispatcher.start()
        return problems

    def stop(self, timeout_s: float = 10.0) -> None:
        """Send what is queued (held-back digests too) within ``timeout_s`` wall seconds, then
        stop. Threads still busy after that (a hanging server) are left to die with the process
        (they are daemon threads)."""
        if self._dispatcher is None:
            return
        import time

        try:
            self._inbox.put_nowait(None)  # wakes the dispatcher: flush and leave
        except queue.Full:
            pass
        deadline = time.monotonic() + timeout_s
        self._dispatcher.join(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline and not all(t.idle() for t in self._targets):
            time.sleep(0.05)
        self._stopping.set()
        for t in self._targets:
            with t._cv:
                t._cv.notify_all()
            t.thread.join(max(0.0, deadline - time.monotonic()))
        self._dispatcher = None

    # ------------------------------------------------------------------ the listener

    def listener(self, event: dict[str, Any]) -> None:
        """``Observatory.event_listeners`` entry: classify and enqueue; O(1), never blocks, never
        raises."""
        if not self._targets:
            return
        try:
            kind = alert_kind(event, self.settings.min_level)
            if kind is None:
                return
            self._inbox.put_nowait({**event, "alert_kind": kind})
            self.stats.received += 1
        except queue.Full:
            self.stats.queued_dropped += 1
            log.error("alerts: queue full, alert dropped: [%s] %s", event.get("kind"),
                      event.get("message"))
        except Exception:  # noqa: BLE001 - the control loop must never see an alert problem
            log.exception("alerts: could not queue an event")

    # ------------------------------------------------------------------ dispatcher

    def _dispatch_loop(self) -> None:
        while True:
            try:
                item = self._inbox.get(timeout=1.0)
            except queue.Empty:
                item = ...
            try:
                if item is None:
                    self.flush_digests(force=True)
                    return
                if item is not ...:
                    self.handle(item)
                self.flush_digests()
            except Exception:  # noqa: BLE001 - the dispatcher must survive a bad event
                log.exception("alerts: dispatcher error")

    def handle(self, event: dict[str, Any]) -> Message | None:
        """Rate-limit one classified event and fan it out; returns the message sent, if any.
        (Runs on the dispatcher thread; tests call it directly.)"""
        kind = event.get("alert_kind") or alert_kind(event, self.settings.min_level)
        if kind is None:
            return None
        now = self.clock.monotonic()
        window = self.settings.rate_limit_min * 60.0
        with self._lock:
            last = self._last_sent.get(kind)
            if window > 0 and last is not None and now - last < window:
                held = self._held.setdefault(kind, _Held(since_utc=event.get("time_utc")))
                held.count += 1
                held.latest = event
                self.stats.held += 1
                log.info("alert held back by the rate limit (%s): %s", kind, event.get("message"))
                return None
            self._last_sent[kind] = now
            held = self._held.pop(kind, None)
        message = self.format(event, kind, held_before=held)
        self._fan_out(message)
        return message

    def flush_digests(self, force: bool = False) -> list[Message]:
        """Send a digest for every kind whose window is over and has alerts held back (all of
        them with ``force``, at shutdown)."""
        now = self.clock.monotonic()
        window = self.settings.rate_limit_min * 60.0
        out = []
        with self._lock:
            due = [k for k, h in self._held.items()
                   if h.count and (force or now - self._last_sent.get(k, -1e18) >= window)]
            items = [(k, self._held.pop(k)) for k in due]
            for k, _ in items:
                self._last_sent[k] = now
        for kind, held in items:
            message = self.format_digest(kind, held)
            self.stats.digests += 1
            self._fan_out(message)
            out.append(message)
        return out

    def _fan_out(self, message: Message) -> None:
        for t in self._targets:
            t.put(message)

    # ------------------------------------------------------------------ formatting

    def format(self, event: dict[str, Any], kind: str, held_before: _Held | None = None
               ) -> Message:
        level = str(event.get("level", "alarm"))
        text = str(event.get("message", ""))
        title = _cut(f"[tenmon {self.site}] {level.upper()} {kind}: {text}", TITLE_MAX)
        lines = [text, "",
                 f"site: {self.site}",
                 f"time: {event.get('time_utc')} (UTC)",
                 f"level: {level}   kind: {event.get('kind')}"]
        data = event.get("data") or {}
        if data:
            lines.append("data: " + _cut(json.dumps(data, default=str, sort_keys=True), 2000))
        if held_before is not None and held_before.count:
            lines += ["", f"Also {held_before.count} more '{kind}' alert(s) held back by the "
                          f"rate limit since {held_before.since_utc}; the last: "
                          f"{(held_before.latest or {}).get('message')}"]
        lines += ["", "Check the observatory: `tenmon status`, `tenmon events --since 1h`."]
        return Message(kind=kind, level=level, title=title, body="\n".join(lines))

    def format_digest(self, kind: str, held: _Held) -> Message:
        latest = held.latest or {}
        level = str(latest.get("level", "alarm"))
        n = held.count
        title = _cut(f"[tenmon {self.site}] {n} more {kind} alert{'s' if n != 1 else ''}: "
                     f"{latest.get('message', '')}", TITLE_MAX)
        body = "\n".join([
            f"{n} '{kind}' alert{'s were' if n != 1 else ' was'} held back by the rate limit "
            f"(at most one per {self.settings.rate_limit_min:g} min) since {held.since_utc}.",
            "", f"The last one ({latest.get('time_utc')} UTC, {level}):",
            str(latest.get("message", "")), "",
            f"site: {self.site}",
            "Check the observatory: `tenmon status`, `tenmon events --since 1h`."])
        return Message(kind=kind, level=level, title=title, body=body, digest=True)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """The ``alerts`` section of the daemon's status."""
        return {"targets": [t.stats.to_json() for t in self._targets],
                "invalid_urls": list(self.stats.invalid_urls),
                "received": self.stats.received, "held_back": self.stats.held,
                "digests": self.stats.digests, "dropped": self.stats.queued_dropped}


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------- one-shot sending


def send_now(settings: AlertsConfig, *, title: str, body: str, level: str = "alarm",
             asset=None) -> list[dict[str, Any]]:
    """Send one message to every target now, in the calling thread (the CLI's ``tenmon alerts
    test`` and ``send``): one result per URL, ``{"index", "url", "ok", "error"}``. Retries
    ``settings.retries`` times with the configured delay; never raises for a delivery failure."""
    import time

    asset = asset or make_asset()
    results = []
    message = Message(kind="manual", level=level, title=_cut(title, TITLE_MAX), body=body)
    for i, url in enumerate(settings.urls):
        service = build_service(url, settings.timeout_s, asset)
        if service is None:
            scheme = url.split("://", 1)[0] if "://" in url else "?"
            results.append({"index": i, "url": f"{scheme}://...", "ok": False,
                            "error": "not a URL apprise knows (check the scheme and its fields)"})
            continue
        why = None
        ok = False
        delay = settings.retry_delay_s
        for attempt in range(1 + settings.retries):
            ok, why = deliver_once(service, message)
            if ok:
                break
            if attempt < settings.retries:
                time.sleep(delay)
                delay *= 2
        results.append({"index": i, "url": privacy_url(service, url), "ok": ok, "error": why})
    return results
