"""The archive's engine: Dask distributed, a local cluster or an existing scheduler, the same code.

* Local (default): ``LocalCluster`` of ``workers`` processes with one thread each, library
  threads held to one (``OMP/OPENBLAS/MKL_NUM_THREADS=1`` in each worker's environment before
  it starts), a ``memory_limit`` per worker (Dask pauses a worker at 80 % of it and its nanny
  restarts it at 95 %; a frame that kills its worker is recorded as failed).
* ``scheduler="tcp://HOST:8786"``: the tasks go to that cluster's workers, which must run the
  same tenmon (each result carries the worker's pipeline version) and see the frames under the
  same paths (a shared file system). ``work.process_task`` holds its library threads to one
  there too.

Tasks are submitted in a bounded window (a few per worker thread) and results stream back in
completion order (``as_completed``), so the client holds a handful of results at a time whatever
the archive's size, and the one writer in the client process writes them.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator

from tenmon.archive import require
from tenmon.core.errors import ArchiveError

log = logging.getLogger(__name__)

#: Environment of each local worker process, set before it starts.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "MALLOC_TRIM_THRESHOLD_": "65536"}


class Engine:
    """A Dask client on a local cluster (``workers``) or on ``scheduler``; a context manager."""

    def __init__(self, *, workers: int = 1, scheduler: str | None = None, memory_limit: str = "2GiB",
                 start_timeout_s: float = 120.0):
        require("dask", "distributed")
        if scheduler is None and workers < 1:
            raise ArchiveError(f"--workers {workers}: at least one")
        self.workers = int(workers)
        self.scheduler = scheduler
        self.memory_limit = memory_limit
        self.start_timeout_s = float(start_timeout_s)
        self.client = None
        self.cluster = None

    @property
    def description(self) -> str:
        return f"dask scheduler {self.scheduler}" if self.scheduler else f"dask local cluster, {self.workers} worker(s)"

    def __enter__(self) -> "Engine":
        import dask
        from distributed import Client, LocalCluster

        try:
            if self.scheduler:
                self.client = Client(self.scheduler, timeout=self.start_timeout_s)
            else:
                with dask.config.set({"distributed.nanny.pre-spawn-environ": dict(WORKER_ENV),
                                      "distributed.scheduler.worker-ttl": None}):
                    self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                memory_limit=self.memory_limit, dashboard_address="127.0.0.1:0",
                                                host="127.0.0.1", silence_logs=logging.ERROR)
                self.client = Client(self.cluster, timeout=self.start_timeout_s)
        except (OSError, TimeoutError, ValueError, RuntimeError) as exc:  # RuntimeError: a nanny failed
            self.__exit__(None, None, None)
            where = self.scheduler or "a local cluster"
            raise ArchiveError(f"cannot start the Dask engine ({where}): {exc}") from exc
        return self

    def __exit__(self, *exc) -> None:
        for thing in (self.client, self.cluster):
            if thing is None:
                continue
            try:
                thing.close()
            except Exception as e:  # noqa: BLE001 - closing a half-dead cluster may fail; nothing to save
                log.debug("closing %r: %s", thing, e)
        self.client = self.cluster = None

    def n_threads(self) -> int:
        """Worker threads in the cluster now (waits up to the start timeout for a first worker)."""
        if self.scheduler:
            self.client.wait_for_workers(1, timeout=self.start_timeout_s)
        return max(1, sum(self.client.nthreads().values()))

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any], *, window: int | None = None
                      ) -> Iterator[tuple[Any, Any, BaseException | None]]:
        """``(task, result, None)`` or ``(task, None, error)`` for each task, as they finish.

        At most ``window`` tasks (default four per worker thread) are in the cluster at once.
        Closing the iterator (or an exception in the caller) cancels those still pending.
        """
        from distributed import as_completed

        it = iter(tasks)
        window = window or 4 * self.n_threads()
        futures: dict[Any, Any] = {}
        ac = as_completed()
        try:
            for task in it:
                f = self.client.submit(fn, task, pure=False)
                futures[f] = task
                ac.add(f)
                if len(futures) >= window:
                    break
            for f in ac:
                task = futures.pop(f)
                try:
                    yield task, f.result(), None
                except Exception as exc:  # noqa: BLE001 - a task's failure is the caller's to record
                    yield task, None, exc
                finally:
                    f.release()
                nxt = next(it, None)
                if nxt is not None:
                    g = self.client.submit(fn, nxt, pure=False)
                    futures[g] = nxt
                    ac.add(g)
        finally:
            if futures:
                try:
                    self.client.cancel(list(futures), force=True)
                except Exception as exc:  # noqa: BLE001 - the cluster may be gone already
                    log.debug("cancel: %s", exc)

    def worker_memory(self) -> dict[str, dict[str, float]]:
        """Each worker's resident memory now and its peak so far [MiB] (Linux)."""

        def rss() -> dict[str, float]:
            import resource

            import psutil

            return {"rss_mib": psutil.Process().memory_info().rss / 2**20,
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}

        return self.client.run(rss)


__all__ = ["Engine", "WORKER_ENV"]
