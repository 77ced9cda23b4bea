"""The frame worker: a bounded queue feeding a process pool without blocking the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from datetime import datetime, timezone

import pytest

from tenmon.daemon.services.frame_worker import FrameOutcome, FrameWorker
from tenmon.config.services import FrameWorkerSettings
from tenmon.core.errors import VisionError
from tenmon.vision.render import sky as sr


def _frame(path, seed=701):
    w = sr.simple_wcs((10.0, 5.0), shape=(192, 192), pixel_scale_arcsec=0.32)
    cat = sr.random_star_catalog((10.0, 5.0), 0.015, density_per_deg2=150000, seed=seed)
    f = sr.render_star_field(wcs=w, stars=cat, shape=(192, 192), n_cosmic_rays=10, seed=seed)
    sr.write_frame_fits(f, path, date_obs=datetime(2026, 11, 21, 16, 0, tzinfo=timezone.utc), mount_ra_deg=10.0,
                        mount_dec_deg=5.0)
    return path


def test_real_process_pool_processes_frames_and_the_loop_keeps_ticking(tmp_path):
    paths = [_frame(tmp_path / f"f{i}.fits", seed=701 + i) for i in range(3)]
    outcomes: list[FrameOutcome] = []
    gaps: list[float] = []

    async def main():
        async def on_result(o):  # an async callback is awaited
            outcomes.append(o)

        w = FrameWorker(out_dir=tmp_path / "products", settings=FrameWorkerSettings(processes=1, queue_size=4),
                        on_result=on_result)
        await w.start()
        stop = asyncio.Event()

        async def heartbeat():
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        hb = asyncio.create_task(heartbeat())
        for p in paths:
            t0 = time.monotonic()
            assert w.submit(p)
            assert time.monotonic() - t0 < 0.01  # submit never blocks
        w.submit(tmp_path / "missing.fits")
        await w.join(timeout_s=120)
        stop.set()
        await hb
        await w.stop()
        return w

    w = asyncio.run(main())
    assert [o.path for o in outcomes[:3]] == [str(p) for p in paths]  # FIFO by default
    assert all(o.ok and o.result["frame"] == o.path and o.result["products"]["clean"] for o in outcomes[:3])
    bad = outcomes[3]
    assert not bad.ok and "missing.fits" in bad.error and bad.result is None
    assert w.stats.done == 3 and w.stats.failed == 1 and w.stats.dropped == 0
    # Frame work happens in another process: the loop's heartbeat never stalls for long.
    assert max(gaps) < 0.1, max(gaps)


class _Gate:
    """A runner that blocks until released, recording the order frames start in."""

    def __init__(self):
        self.release = threading.Event()
        self.started: list[str] = []

    def __call__(self, path, out_dir, settings_json):
        self.started.append(path)
        if not self.release.wait(10):
            raise TimeoutError("gate never opened")
        if path.endswith("bad"):
            raise VisionError(f"{path}: unreadable")
        return {"frame": path}


async def _drive(settings, names, gate, *, release_after=0.05):
    done, dropped = [], []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    w = FrameWorker(out_dir="/nonexistent", settings=settings, on_result=done.append, on_drop=dropped.append,
                    executor=pool, runner=gate)
    await w.start(warm_up=False)
    results = [w.submit(n) for n in names]
    await asyncio.sleep(release_after)
    gate.release.set()
    await w.join(timeout_s=10)
    await w.stop()
    pool.shutdown()
    return w, results, done, dropped


def test_full_queue_drops_the_oldest_and_says_so(caplog):
    gate = _Gate()
    caplog.set_level(logging.WARNING, logger="tenmon.daemon.services.frame_worker")
    s = FrameWorkerSettings(processes=1, queue_size=2, drop_policy="drop_oldest")
    w, accepted, done, dropped = asyncio.run(_drive(s, ["a", "b", "c", "d", "e"], gate))
    # "a" runs at once; the queue holds two: b and c are pushed out by d and e.
    assert accepted == [True] * 5
    assert dropped == ["b", "c"] and w.stats.dropped == 2
    assert [o.path for o in done] == ["a", "d", "e"]
    assert sum("dropped" in r.message for r in caplog.records) == 2


def test_drop_newest_refuses_the_new_frame():
    gate = _Gate()
    s = FrameWorkerSettings(processes=1, queue_size=2, drop_policy="drop_newest")
    w, accepted, done, dropped = asyncio.run(_drive(s, ["a", "b", "c", "d"], gate))
    assert accepted == [True, True, True, False]
    assert dropped == ["d"] and [o.path for o in done] == ["a", "b", "c"]


def test_newest_first_processes_the_latest_frame_next():
    gate = _Gate()
    s = FrameWorkerSettings(processes=1, queue_size=5, newest_first=True)
    w, accepted, done, dropped = asyncio.run(_drive(s, ["a", "b", "c", "d"], gate))
    assert gate.started == ["a", "d", "c", "b"]
    assert not dropped


def test_a_failing_frame_is_reported_not_raised():
    gate = _Gate()
    s = FrameWorkerSettings(processes=2, queue_size=4)
    w, _, done, _ = asyncio.run(_drive(s, ["ok1", "x.bad", "ok2"], gate))
    by = {o.path: o for o in done}
    assert by["ok1"].ok and by["ok2"].ok
    assert not by["x.bad"].ok and "VisionError" in by["x.bad"].error and "unreadable" in by["x.bad"].error
    assert w.stats.failed == 1 and w.stats.done == 2


def test_submit_before_start_and_stop_drops_the_queue():
    gate = _Gate()

    async def main():
        w = FrameWorker(out_dir="/x", settings=FrameWorkerSettings(processes=1, queue_size=5), runner=gate,
                        executor=concurrent.futures.ThreadPoolExecutor(max_workers=1))
        with pytest.raises(RuntimeError):
            w.submit("a")
        dropped = []
        w._on_drop = dropped.append
        await w.start(warm_up=False)
        for n in "abc":
            w.submit(n)
        await asyncio.sleep(0.05)
        gate.release.set()
        await w.stop(timeout_s=5)
        return dropped

    dropped = asyncio.run(main())
    assert dropped == ["b", "c"]
