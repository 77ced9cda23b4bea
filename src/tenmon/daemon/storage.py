"""The storage watch: free space of the data, frames and products directories, retention, alerts.

Built by the observatory (``obs.storage``) and advanced by its tick, after safety. It

* emits the store's notices (database outage, recovery, dropped rows) as events on the loop
  thread, so they reach the journal, the event listeners and the alerts like any other alarm;
* measures free space (``os.statvfs``) of the watched directories every
  ``[storage] check_interval_s`` of the daemon's clock, on its own thread (a hung network mount
  must not hold up the loop), and raises an alarm when a directory falls below ``warn_free_mb``
  (then prunes: info events and device history older than ``low_space_keep_days``) or below
  ``refuse_free_mb`` (then new exposures are refused, before the disk is full);
* prunes by retention once a day (events after ``events_keep_days``, device history after
  ``[daemon] history_keep_days``), in the writer thread, a few hundred rows per transaction;
* answers :meth:`StorageWatch.exposure_refusal` for the sequencer and the centring service.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 86400.0
MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class DiskReading:
    """Free space of one watched directory (``free_mb`` is what an unprivileged user may use),
    or the error that stopped the measurement."""

    label: str
    path: str
    free_mb: float | None
    total_mb: float | None
    error: str | None = None


def measure(label: str, path: Path, statvfs: Callable[[str], Any] = os.statvfs) -> DiskReading:
    """statvfs of ``path`` (of its nearest existing parent while it does not exist yet)."""
    p = Path(path)
    try:
        while not p.exists() and p != p.parent:
            p = p.parent
        st = statvfs(str(p))
        return DiskReading(label, str(path), st.f_bavail * st.f_frsize / MB,
                           st.f_blocks * st.f_frsize / MB)
    except OSError as exc:
        return DiskReading(label, str(path), None, None, f"{exc.strerror or exc}")


class StorageWatch:
    """See the module docstring. ``statvfs`` may be replaced (tests feed it readings)."""

    def __init__(self, obs, *, statvfs: Callable[[str], Any] = os.statvfs):
        self.obs = obs
        self.settings = obs.config.storage
        self.statvfs = statvfs
        paths = obs.config.paths
        dirs = [("data", Path(paths.data_dir)),
                ("frames", Path(paths.frames_dir or Path(paths.data_dir) / "frames")),
                ("products", Path(paths.products))]
        self.dirs: list[tuple[str, Path]] = []
        seen: set[str] = set()
        for label, d in dirs:
            key = os.path.abspath(d)
            if key not in seen:
                seen.add(key)
                self.dirs.append((label, d))
        self.readings: dict[str, DiskReading] = {}
        self.level = "unknown"          # ok | low | critical | unknown (not measured yet)
        self._levels: dict[str, str] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._future: Future | None = None
        self._submitted_at = 0.0
        self._next_check = -1e9
        self._hung_alarmed = False
        self._pruned_at: float | None = None
        self._writer_lost = False

    # ------------------------------------------------------------------ the tick

    def tick(self) -> None:
        """Emit the store's notices; start or collect a free-space check; prune when due."""
        obs = self.obs
        for level, kind, message, data in obs.store.drain_notices():
            obs.emit(level, kind, message, **data)
        if not self._writer_lost and not obs.store.writer_alive:
            self._writer_lost = True
            obs.emit("alarm", "storage", "the database writer thread has stopped: events go to "
                     "the journal only; restart the daemon")
        now_m = obs.clock.monotonic()
        fut = self._future
        if fut is not None and fut.done():
            self._future = None
            try:
                self._apply(fut.result())
            except Exception as exc:  # noqa: BLE001 - a failed check is reported, not fatal
                log.exception("free-space check failed")
                self._apply([DiskReading(label, str(d), None, None, str(exc))
                             for label, d in self.dirs])
        elif fut is not None and now_m - self._submitted_at > max(60.0,
                                                                  3 * self.settings.check_interval_s):
            if not self._hung_alarmed:
                self._hung_alarmed = True
                self.level = "unknown"
                obs.emit("alarm", "storage", "the free-space check of "
                         + ", ".join(str(d) for _, d in self.dirs) + " has not returned for "
                         f"{now_m - self._submitted_at:.0f} s (a hung disk or network mount?): "
                         "new exposures are refused until it answers")
        if self._future is None and now_m >= self._next_check:
            self._next_check = now_m + self.settings.check_interval_s
            self._submitted_at = now_m
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="tenmon-diskwatch")
            self._future = self._executor.submit(self._measure_all)
        if self._pruned_at is None or now_m - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now_m
            self.prune()

    def _measure_all(self) -> list[DiskReading]:
        return [measure(label, d, self.statvfs) for label, d in self.dirs]

    def _apply(self, readings: list[DiskReading]) -> None:
        obs = self.obs
        s = self.settings
        if self._hung_alarmed:
            self._hung_alarmed = False
            obs.emit("info", "storage", "the free-space check answers again")
        was_low = self.level in ("low", "critical")
        for r in readings:
            self.readings[r.label] = r
            old = self._levels.get(r.label, "ok")
            new = _level(r, old, s.warn_free_mb, s.refuse_free_mb)
            self._levels[r.label] = new
            if new == old:
                continue
            where = f"{r.path} ({r.label})"
            if new == "unknown":
                obs.emit("alarm", "storage", f"cannot measure the free space of {where}: "
                         f"{r.error}; new exposures are refused until it can be measured",
                         path=r.path, error=r.error)
            elif new == "critical":
                obs.emit("alarm", "storage", f"disk almost full: {r.free_mb:.0f} MB free on "
                         f"{where}, below {s.refuse_free_mb:g} MB: new exposures are refused",
                         path=r.path, free_mb=round(r.free_mb, 1))
            elif new == "low":
                obs.emit("alarm", "storage", f"low disk space: {r.free_mb:.0f} MB free on "
                         f"{where}, below {s.warn_free_mb:g} MB: pruning info events and device "
                         f"history older than {s.low_space_keep_days:g} days"
                         + ("; exposures allowed again" if old in ("critical", "unknown")
                            else ""), path=r.path, free_mb=round(r.free_mb, 1))
            else:
                obs.emit("info", "storage", f"disk space ok again: {r.free_mb:.0f} MB free on "
                         f"{where}", path=r.path, free_mb=round(r.free_mb, 1))
        order = {"ok": 0, "low": 1, "critical": 2, "unknown": 3}
        self.level = max(self._levels.values(), key=order.__getitem__, default="ok")
        if self.level in ("low", "critical") and not was_low:
            self.prune()

    # ------------------------------------------------------------------ retention

    def prune(self) -> None:
        """Queue the retention prune (events, device history; tighter while space is low)."""
        obs = self.obs
        now = obs.clock.now()
        store = obs.store
        store.prune("events", now - timedelta(days=self.settings.events_keep_days))
        store.prune("device_history",
                    now - timedelta(days=obs.config.daemon.history_keep_days))
        if self.level in ("low", "critical"):
            cut = now - timedelta(days=self.settings.low_space_keep_days)
            store.prune("events", cut, level="info")
            store.prune("device_history", cut)

    # ------------------------------------------------------------------ exposures

    def exposure_refusal(self) -> str | None:
        """Why a new exposure may not start now (``None``: it may)."""
        s = self.settings
        bad = [r for label, r in self.readings.items()
               if self._levels.get(label) in ("critical", "unknown")]
        if self._hung_alarmed:
            return "the free-space check of the data and frames directories does not answer"
        if bad:
            r = bad[0]
            if r.error is not None:
                return f"the free space of {r.path} ({r.label}) cannot be measured: {r.error}"
            return (f"only {r.free_mb:.0f} MB free on {r.path} ({r.label}); new exposures "
                    f"need {s.refuse_free_mb:g} MB")
        health = self.obs.store.health()
        if health["state"] == "degraded" and health["buffered_rows"] > s.buffer_max_rows // 2:
            return (f"the database cannot be written ({health['error']}) and "
                    f"{health['buffered_rows']} rows already wait in memory")
        return None

    def exposures_allowed(self) -> bool:
        """Whether a new exposure may start now (see :meth:`exposure_refusal`)."""
        return self.exposure_refusal() is None

    # ------------------------------------------------------------------ status, life cycle

    def status(self) -> dict[str, Any]:
        return {
            **self.obs.store.health(),
            "disk": self.level,
            "exposures_allowed": self.exposures_allowed(),
            "directories": [{"label": r.label, "path": r.path,
                             "free_mb": None if r.free_mb is None else round(r.free_mb, 1),
                             "level": self._levels.get(r.label), "error": r.error}
                            for r in self.readings.values()],
        }

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _level(r: DiskReading, old: str, warn_mb: float, refuse_mb: float) -> str:
    """ok | low | critical | unknown, with a little hysteresis so that a directory near a
    threshold does not alarm every check."""
    if r.free_mb is None:
        return "unknown"
    free = r.free_mb

    def above(limit: float, was_below: bool) -> bool:
        margin = max(1.0, 0.05 * limit) if was_below else 0.0
        return free >= limit + margin

    if not above(refuse_mb, old in ("critical", "unknown")):
        return "critical"
    if not above(warn_mb, old in ("low", "critical", "unknown")):
        return "low"
    return "ok"


__all__ = ["StorageWatch", "DiskReading", "measure"]
