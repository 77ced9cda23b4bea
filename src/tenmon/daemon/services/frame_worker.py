"""Frames processed off the control loop: a bounded queue feeding a process pool, asyncio-friendly.

``submit(path)`` is synchronous and O(1): it never awaits and never blocks the event loop. A free
worker takes a frame at once; others wait in the bounded queue. Paths (not arrays) go to a
``ProcessPoolExecutor`` whose workers run
:func:`tenmon.vision.frames.pipeline.process_frame` at a lower CPU priority (``nice``), so safety and
dome control keep the CPU when they need it. The pool uses the ``forkserver`` start method where
available (``spawn`` elsewhere): forking a process that runs an event loop and threads is not
safe. When the queue is full the configured policy drops a frame, and every drop is logged and
reported to ``on_drop``; nothing is dropped silently. Results reach ``on_result`` (a plain or
async callable) as :class:`FrameOutcome` objects; ``await worker.join()`` waits for the queue
to drain.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from tenmon.config.services import FrameWorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameOutcome:
    """What became of one frame: ``result`` is ``FrameResult.to_json()`` when ``ok``; ``error``
    names the problem otherwise. ``queued_s``: time waiting; ``elapsed_s``: time in the pool."""

    path: str
    ok: bool
    result: dict[str, Any] | None
    error: str | None
    queued_s: float
    elapsed_s: float


@dataclass
class WorkerStats:
    """Counters since start."""

    submitted: int = 0
    done: int = 0
    failed: int = 0
    dropped: int = 0
    running: int = 0
    queued: int = 0
    dropped_paths: list[str] = field(default_factory=list)


Callback = Callable[[FrameOutcome], Awaitable[None] | None]


# ---------------------------------------------------------------------------- worker side

_MASTERS_CACHE: dict[tuple, Any] = {}


def _init_worker(nice: int, threads: int, origin_pid: int | None = None) -> None:
    """Pool initializer: die with the daemon (``origin_pid``, see :mod:`tenmon.core.lifeline`), lower
    priority and cap library threads in the worker process."""
    from tenmon.core.lifeline import die_with_parent

    die_with_parent(origin_pid)
    if nice:
        try:
            os.nice(nice)
        except OSError as exc:  # not permitted on this platform: run at normal priority
            log.warning("frame worker cannot lower its priority: %s", exc)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass


def make_pool(settings: FrameWorkerSettings) -> concurrent.futures.ProcessPoolExecutor:
    """The frame pool (``settings.processes`` workers), the one setup of every frame pool: the
    ``forkserver`` start method where available (forking a process that runs an event loop and
    threads is not safe), fork server and workers dying with this process
    (:func:`tenmon.core.lifeline.pool_context`), each worker at ``settings.nice`` more niceness and
    ``settings.threads_per_process`` library threads (OpenMP, BLAS, OpenCV: ``_init_worker``)."""
    from tenmon.core.lifeline import pool_context

    ctx = pool_context()  # its fork server and workers die with the daemon
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=settings.processes, mp_context=ctx, initializer=_init_worker,
        initargs=(settings.nice, settings.threads_per_process, os.getpid()))


def masters_for(directory: str | Path | None):
    """Calibration masters of ``directory`` (none: empty masters), loaded once per worker process
    and reloaded when a file changes (every frame pool's worker side uses this one cache)."""
    from tenmon.vision.frames import calibration

    if directory is None:
        return calibration.Masters()
    d = Path(directory)
    key = (str(d), tuple(sorted((p.name, p.stat().st_mtime_ns) for p in d.glob("*.fit*"))))
    if key not in _MASTERS_CACHE:
        _MASTERS_CACHE.clear()
        _MASTERS_CACHE[key] = calibration.load_masters(d)
    return _MASTERS_CACHE[key]


def run_frame(path: str, out_dir: str, settings_json: str) -> dict[str, Any]:
    """Process one frame in a worker process; returns ``FrameResult.to_json()``.

    Takes and returns only small picklable values (a path, a directory, settings as JSON).
    """
    from tenmon.vision.frames.pipeline import process_frame
    from tenmon.config.vision import PipelineSettings

    settings = PipelineSettings.model_validate_json(settings_json)
    masters = masters_for(str(settings.calibration.directory) if settings.calibration.directory else None)
    return process_frame(path, out_dir=out_dir, settings=settings, masters=masters).to_json()


def _warmup() -> bool:
    import tenmon.vision.frames.pipeline  # noqa: F401  (imports astropy, sep, astroscrappy, sklearn once)

    return True


# ---------------------------------------------------------------------------- loop side


class FrameWorker:
    """Bounded frame queue processed in a process pool (see the module doc).

    Args:
        out_dir: products directory.
        pipeline_settings: a ``PipelineSettings`` (sent to workers as JSON).
        settings: :class:`FrameWorkerSettings`.
        on_result: called with each :class:`FrameOutcome` (may be async).
        on_drop: called with the path of each dropped frame (may be async).
        executor: an executor to use instead of creating a process pool (tests may pass a
            ``ThreadPoolExecutor``); it is not shut down by :meth:`stop`.
        runner: the function run in the executor (default :func:`run_frame`).
    """

    def __init__(
        self,
        *,
        out_dir: str | os.PathLike,
        pipeline_settings: Any = None,
        settings: FrameWorkerSettings | None = None,
        on_result: Callback | None = None,
        on_drop: Callable[[str], Awaitable[None] | None] | None = None,
        executor: concurrent.futures.Executor | None = None,
        runner: Callable[[str, str, str], dict[str, Any]] | None = None,
    ):
        if pipeline_settings is None:
            from tenmon.config.vision import PipelineSettings

            pipeline_settings = PipelineSettings()
        self.out_dir = str(out_dir)
        self.settings = settings or FrameWorkerSettings()
        self._settings_json = pipeline_settings.model_dump_json()
        self._on_result = on_result
        self._on_drop = on_drop
        self._external_executor = executor
        self._executor: concurrent.futures.Executor | None = executor
        self._runner = runner or run_frame
        self._queue: collections.deque[tuple[str, float]] = collections.deque()
        self._idle: asyncio.Event | None = None
        self._started = False
        self._inflight: set[asyncio.Task] = set()
        self._stopping = False
        self.stats = WorkerStats()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, warm_up: bool = True) -> None:
        """Create the pool (and optionally import the pipeline in it) and start dispatching."""
        if self._started:
            return
        self._idle = asyncio.Event()
        self._idle.set()
        if self._executor is None:
            self._executor = self._make_pool()
        if warm_up:
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self._executor, _warmup)
                                   for _ in range(self.settings.processes)), return_exceptions=True)
        self._stopping = False
        self._started = True

    async def stop(self, *, drain: bool = False, timeout_s: float | None = None) -> None:
        """Stop dispatching. With ``drain``, queued frames are processed first; otherwise they
        are dropped (and reported). Running frames are awaited up to ``timeout_s``."""
        if drain:
            await self.join(timeout_s=timeout_s)
        self._stopping = True
        while self._queue:
            path, _ = self._queue.popleft()
            await self._report_drop(path, "worker stopping")
        self._started = False
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=timeout_s)
        if self._executor is not None and self._external_executor is None:
            ex = self._executor
            self._executor = None
            await asyncio.get_running_loop().run_in_executor(None, lambda: ex.shutdown(wait=True, cancel_futures=True))

    async def join(self, timeout_s: float | None = None) -> None:
        """Wait until the queue is empty and nothing is running."""
        if self._idle is None:
            return
        await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)

    # ------------------------------------------------------------------ submission

    def submit(self, path: str | os.PathLike) -> bool:
        """Queue a frame; never blocks. Returns False if this frame itself was dropped.

        When the queue is full, ``drop_policy`` decides which frame goes; the drop is logged
        at WARNING and passed to ``on_drop``.
        """
        if not self._started or self._idle is None:
            raise RuntimeError("FrameWorker.submit() before start()")
        p = str(path)
        self.stats.submitted += 1
        accepted = True
        self._start_available()  # a free worker takes the frame at once; only the rest wait
        if len(self._queue) >= self.settings.queue_size:
            if self.settings.drop_policy == "drop_oldest":
                victim, _ = self._queue.popleft()
            else:
                victim, accepted = p, False
            self._schedule_drop(victim, "queue full")
        if accepted:
            self._queue.append((p, time.monotonic()))
        self._start_available()
        return accepted

    # ------------------------------------------------------------------ internals

    def _make_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return make_pool(self.settings)

    def _start_available(self) -> None:
        """Start queued frames while workers are free (synchronous: called from submit and when
        a frame finishes)."""
        if not self._started or self._idle is None:
            return
        while self._queue and len(self._inflight) < self.settings.processes and not self._stopping:
            path, t_q = self._queue.pop() if self.settings.newest_first else self._queue.popleft()
            task = asyncio.get_running_loop().create_task(self._run_one(path, t_q))
            self._inflight.add(task)
            task.add_done_callback(self._task_done)
        self.stats.queued = len(self._queue)
        self.stats.running = len(self._inflight)
        if self._queue or self._inflight:
            self._idle.clear()
        else:
            self._idle.set()

    def _task_done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._start_available()
        if not self._inflight and not self._queue and self._idle is not None:
            self._idle.set()

    async def _run_one(self, path: str, t_queued: float) -> None:
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        queued_s = t0 - t_queued
        try:
            if self._executor is None:
                raise RuntimeError("frame worker has no executor")
            fut = loop.run_in_executor(self._executor, self._runner, path, self.out_dir, self._settings_json)
            result = await asyncio.wait_for(fut, timeout=self.settings.timeout_s)
            outcome = FrameOutcome(path, True, result, None, queued_s, time.monotonic() - t0)
            self.stats.done += 1
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            outcome = FrameOutcome(path, False, None, f"timed out after {self.settings.timeout_s:.0f} s",
                                   queued_s, time.monotonic() - t0)
            self.stats.failed += 1
        except concurrent.futures.BrokenExecutor as exc:
            outcome = FrameOutcome(path, False, None, f"worker process died: {exc}", queued_s, time.monotonic() - t0)
            self.stats.failed += 1
            self._replace_broken_pool()
        except Exception as exc:  # noqa: BLE001 - every frame failure is reported, never raised into the loop
            outcome = FrameOutcome(path, False, None, f"{type(exc).__name__}: {exc}", queued_s,
                                   time.monotonic() - t0)
            self.stats.failed += 1
        if not outcome.ok:
            log.warning("frame %s failed: %s", path, outcome.error)
        await self._call(self._on_result, outcome)

    def _replace_broken_pool(self) -> None:
        if self._external_executor is not None or self._stopping:
            return
        old = self._executor
        self._executor = self._make_pool()
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        log.error("frame worker pool broke; a new pool was started")

    def _schedule_drop(self, path: str, why: str) -> None:
        asyncio.get_running_loop().create_task(self._report_drop(path, why))

    async def _report_drop(self, path: str, why: str) -> None:
        self.stats.dropped += 1
        self.stats.dropped_paths.append(path)
        del self.stats.dropped_paths[:-100]
        log.warning("frame %s dropped: %s (queue size %d, policy %s)", path, why, self.settings.queue_size,
                    self.settings.drop_policy)
        await self._call(self._on_drop, path)

    @staticmethod
    async def _call(cb: Callable | None, arg: Any) -> None:
        if cb is None:
            return
        try:
            r = cb(arg)
            if inspect.isawaitable(r):
                await r
        except Exception:  # noqa: BLE001 - a failing callback must not stop the worker
            log.exception("frame worker callback failed")


__all__ = ["FrameWorker", "FrameWorkerSettings", "FrameOutcome", "WorkerStats", "make_pool", "masters_for",
           "run_frame"]
