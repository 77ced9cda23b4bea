"""The same archive ingested on a local Dask cluster and on a `dask scheduler` with two `dask worker`
processes (started here, on loopback, torn down after) gives identical index rows and detections;
Ctrl-C (SIGINT) in the middle of an ingest leaves a consistent archive that a rerun completes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pyarrow.compute as pc
import pytest

from tenmon.archive import queries
from tenmon.archive.detections import dataset
from tenmon.archive.ingest import ingest
from tenmon.archive.synthetic import make_archive

from archive_helpers import SETTINGS

#: Columns that say when and in which batch a row was written, not what it says.
_BOOKKEEPING = {"frame_id", "run_id", "processed_utc", "det_batch", "elapsed_ms"}


def _index(db):
    c = sqlite3.connect(db / "index.sqlite")
    c.row_factory = sqlite3.Row
    try:
        return {r["path"]: {k: r[k] for k in r.keys() if k not in _BOOKKEEPING} for r in c.execute("SELECT * FROM frames")}
    finally:
        c.close()


def _detections(db):
    """path -> sorted detection rows (current ones only)."""
    c = sqlite3.connect(db / "index.sqlite")
    cur = {(r[0], r[1]): r[2] for r in c.execute("SELECT frame_id, det_batch, path FROM frames WHERE det_batch IS NOT NULL")}
    c.close()
    t = dataset(db).to_table()
    cols = ["x", "y", "ra", "dec", "hpx", "flux", "flux_err", "mag", "mag_err", "snr", "fwhm", "flags", "mjd", "filter",
            "night"]
    out: dict[str, list] = {}
    keep = [(int(f), b) in cur for f, b in zip(t["frame_id"].to_numpy(), t["batch"].to_pylist())]
    t = t.filter(keep)
    for i, row in enumerate(t.select(cols).to_pylist()):
        path = cur[(int(t["frame_id"][i].as_py()), t["batch"][i].as_py())]
        out.setdefault(path, []).append(tuple(_same(row[c]) for c in cols))
    return {p: sorted(v, key=repr) for p, v in out.items()}


def _same(v):
    """NaN as None, so that equal rows compare equal."""
    return None if isinstance(v, float) and v != v else v


def _env():
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return env


@pytest.fixture
def dask_cluster(tmp_path):
    """A `dask scheduler` and two `dask worker` processes on 127.0.0.1; yields the address."""
    from distributed import Client

    sfile = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(sfile)], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        t0 = time.monotonic()
        while not sfile.exists():
            if time.monotonic() - t0 > 60 or procs[0].poll() is not None:
                raise RuntimeError("the dask scheduler did not start")
            time.sleep(0.1)
        for i in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", "--scheduler-file", str(sfile), "--nthreads", "1",
                 "--nworkers", "1", "--no-dashboard", "--memory-limit", "1GiB", "--host", "127.0.0.1",
                 "--local-directory", str(tmp_path / f"w{i}")], env=_env(),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = json.loads(sfile.read_text())["address"]
        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=90)
            workers = set(c.scheduler_info()["workers"])
        yield address, workers
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_local_cluster_and_external_scheduler_give_identical_results(synthetic, dask_cluster):
    truth, d = synthetic
    address, workers = dask_cluster
    local = ingest(truth.root, d / "local", settings=SETTINGS, workers=2, progress=False, memory_limit="1GiB")
    remote = ingest(truth.root, d / "remote", settings=SETTINGS, scheduler=address, progress=False)
    assert remote.engine == f"dask scheduler {address}"
    assert set(remote.worker_peak_rss_mib) == workers          # the frames ran on the external workers
    for rep in (local, remote):
        assert rep.submitted == len(truth.frames) + len(truth.bad) and rep.version_mismatch == 0
    a, b = _index(d / "local"), _index(d / "remote")
    assert a.keys() == b.keys() and a == b
    da, db = _detections(d / "local"), _detections(d / "remote")
    assert da.keys() == db.keys() and len(da) == len(truth.frames) + 2
    assert da == db
    assert sum(len(v) for v in da.values()) == local.detections == remote.detections


def test_sigint_leaves_a_consistent_archive_and_a_rerun_completes(tmp_path):
    truth = make_archive(tmp_path / "frames", nights=4, per_night=4, corrupt=False)
    db = tmp_path / "db"
    cmd = [sys.executable, "-m", "tenmon.cli.main", "archive", "ingest", str(truth.root), "--db", str(db),
           "--workers", "1", "--catalog", "simulated", "--batch-frames", "2", "--no-progress", "--json",
           "--memory-limit", "1GiB"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    n_before = 0
    try:
        t0 = time.monotonic()
        while n_before < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t0 < 120, "no frames written in 2 minutes"
            time.sleep(0.1)
            try:
                with sqlite3.connect(db / "index.sqlite", timeout=1) as c:
                    n_before = c.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
            except sqlite3.Error:
                n_before = 0
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] is True
    c = sqlite3.connect(db / "index.sqlite")
    (status,) = c.execute("SELECT status FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    done = c.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
    c.close()
    assert status == "interrupted" and 3 <= done < len(truth.frames)
    assert queries.check_integrity(db)["ok"]

    rep = ingest(truth.root, db, settings=SETTINGS.model_copy(), workers=1, progress=False)
    assert rep.skipped == done and rep.submitted == len(truth.frames) - done and not rep.interrupted
    integ = queries.check_integrity(db)
    assert integ["ok"], integ["problems"]
    assert integ["not_current_rows"] == 0                      # nothing duplicated, nothing redone
    c = sqlite3.connect(db / "index.sqlite")
    assert c.execute("SELECT COUNT(*), COUNT(DISTINCT path), SUM(status = 'ok') FROM frames").fetchone() == (
        len(truth.frames), len(truth.frames), len(truth.frames))
    c.close()
    t = dataset(db).to_table(columns=["frame_id", "x", "y"])
    keys = pc.binary_join_element_wise(pc.cast(t["frame_id"], "string"), pc.cast(t["x"], "string"),
                                       pc.cast(t["y"], "string"), "|")
    assert len(pc.unique(keys)) == len(t) == rep.detections + summary["detections"]
