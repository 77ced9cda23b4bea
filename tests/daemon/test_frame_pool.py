"""Every frame pool (FrameWorker's and the frame service's) comes from frame_worker.make_pool, and
its workers run with the library thread limits and the niceness of the settings."""

from __future__ import annotations

import os

import pytest

from tenmon.daemon.services import frames
from tenmon.daemon.services.frame_worker import make_pool
from tenmon.config.services import FrameWorkerSettings

pytest.importorskip("threadpoolctl")
pytest.importorskip("cv2")


def test_one_pool_setup_for_the_worker_and_the_service():
    assert frames.make_pool is make_pool


@pytest.mark.parametrize("threads", [1, 2])
def test_pool_workers_limit_library_threads(threads):
    from frame_pool_probe import library_threads

    settings = FrameWorkerSettings(processes=1, threads_per_process=threads, nice=3)
    pool = make_pool(settings)
    try:
        seen = pool.submit(library_threads).result(timeout=120)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert seen["env"] == {v: str(threads) for v in seen["env"]}
    assert seen["pools"], "threadpoolctl found no thread pool in the worker (numpy's BLAS)"
    assert all(n == threads for n in seen["pools"].values()), seen["pools"]
    assert seen["cv2"] == threads
    assert seen["nice"] == os.nice(0) + 3
