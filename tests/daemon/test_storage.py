"""Safety never waits on storage: the simulated observatory with a database that really fails.

Real SQLite and real files throughout: a 3 MB tmpfs filled to the last byte (disk full), another
process holding SQLite's write lock for 8 s (locked), a tmpfs remounted read-only, a database
file replaced by garbage (corrupt). Each time the control loop keeps ticking, rain still closes
the slit within its travel time, an alarm event is raised, and once the fault clears the events
buffered meanwhile are in the database, in order. The tmpfs cases need root (mount); they skip
with the reason otherwise.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from tenmon.daemon.control_loop import tick_once
from tenmon.config.models import StorageConfig
from tenmon.drivers.base import ShutterState

#: a store that retries quickly (the daemon's default back-off goes up to 30 s)
QUICK = {"TENMON_STORAGE__RETRY_MAX_S": "0.5"}
#: free-space thresholds for a 3 MB tmpfs
TINY = {"TENMON_STORAGE__WARN_FREE_MB": "2", "TENMON_STORAGE__REFUSE_FREE_MB": "1"}

LOCKER = r"""
import sqlite3, sys, time
path, seconds, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
c = sqlite3.connect(path, isolation_level=None, timeout=30)
if mode == "exclusive":          # nobody else may even read
    c.execute("PRAGMA locking_mode=EXCLUSIVE")
c.execute("BEGIN EXCLUSIVE")
c.execute("CREATE TABLE IF NOT EXISTS locker (x)")
print("locked", flush=True)
time.sleep(seconds)
c.execute("ROLLBACK")
"""


def hold_lock(db: Path, seconds: float, mode: str = "write") -> subprocess.Popen:
    """Another process holding SQLite's lock on ``db`` for ``seconds`` (returns once held)."""
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(seconds), mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, size)`` -> a directory on a new tmpfs of ``size`` (e.g. "3m")."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def make(name: str = "data", size: str = "3m") -> Path:
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def remount(d: Path, how: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{how}", str(d)], check=True, capture_output=True)


def fill(d: Path) -> Path:
    """Write a file until the filesystem of ``d`` is full (ENOSPC)."""
    filler = d / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0" * 512)
                fh.flush()
        except OSError:
            pass
    return filler


def run_timed(rig, seconds: float, until=None) -> list[float]:
    """Tick like ``rig.run`` and return each tick's wall duration (s)."""
    durations = []
    for _ in range(int(round(seconds / rig.tick_s))):
        t0 = time.perf_counter()
        rig.clock.advance(rig.tick_s)
        tick_once(rig.obs)
        durations.append(time.perf_counter() - t0)
        if until is not None and until():
            break
    return durations


def open_slit(rig) -> None:
    rig.obs.slit_open()
    rig.run(90, until=lambda: rig.obs.slit.state == ShutterState.OPEN)
    assert rig.obs.slit.state == ShutterState.OPEN


def rain_closes(rig) -> list[float]:
    """Rain now; the slit must be closed within its travel time + 5 s. Returns tick durations."""
    obs = rig.obs
    obs.sim.set_weather("rain")
    t0 = obs.clock.now()
    ticks = run_timed(rig, 200, until=lambda: obs.slit.state == ShutterState.CLOSED)
    assert obs.slit.state == ShutterState.CLOSED and rig.world.state.slit_fraction == 0.0
    took = (obs.clock.now() - t0).total_seconds()
    assert took <= obs.config.slit.travel_time_s + 5, took
    return ticks


def tick_until(rig, what, wall_s: float = 15.0) -> list[float]:
    """Tick (a simulated second at a time) until ``what()``: for what the store's writer
    thread does in real time (retries). Returns the tick durations."""
    ticks: list[float] = []
    deadline = time.monotonic() + wall_s
    while not what():
        assert time.monotonic() < deadline, "not within the wall-clock bound"
        ticks += run_timed(rig, 1.0)
    return ticks


def storage_alarms(rig) -> list[str]:
    return [e["message"] for e in rig.events(level="alarm") if e["kind"] == "storage"]


def db_events(path: Path) -> dict[int, tuple[str, str, str]]:
    db = sqlite3.connect(path)
    try:
        return {r[0]: (r[1], r[2], r[3]) for r in db.execute(
            "SELECT id, time_utc, kind, message FROM events ORDER BY id")}
    finally:
        db.close()


def assert_written_in_order(rig, seen: list[dict], *, same_ids: bool = True) -> None:
    """Every event ``seen`` (read while the database failed, buffered rows included) is in the
    database now, in the same order (with the same ids, unless the database had never opened:
    then the ids given in memory are moved past the database's own), and ids follow time."""
    assert rig.obs.store.flush(30), rig.obs.store.health()
    rows = db_events(rig.obs.config.paths.database)
    if same_ids:
        for e in seen:
            assert rows.get(e["id"]) == (e["time_utc"], e["kind"], e["message"]), e
    in_db = iter(rows.values())
    for e in seen:  # an ordered subsequence of the database's events
        want = (e["time_utc"], e["kind"], e["message"])
        assert any(row == want for row in in_db), f"missing or out of order: {e}"
    times = [t for t, _, _ in rows.values()]
    assert times == sorted(times)


# ---------------------------------------------------------------------------- while running

def test_a_locked_database_never_stalls_a_tick(sim_rig):
    """Found: another process holding the write lock for 8 s crashed the loop (busy_timeout
    5 s on the loop thread, then "database is locked")."""
    rig = sim_rig(**QUICK)
    open_slit(rig)
    locker = hold_lock(rig.obs.config.paths.database, 8.0)
    try:
        ticks = rain_closes(rig)
        # the writer waits out its busy timeout (5 s) before it calls it an outage; the loop
        # ticks on meanwhile
        ticks += tick_until(rig, lambda: storage_alarms(rig), wall_s=7.5)
        assert max(ticks) < 0.1, f"a tick took {max(ticks) * 1000:.0f} ms"
        assert rig.obs.store.degraded
        alarms = storage_alarms(rig)
        assert len(alarms) == 1 and "database is locked" in alarms[0]
        seen = rig.events()
        assert any(m.startswith("slit closed after") for m in (e["message"] for e in seen))
    finally:
        locker.wait(30)
    assert_written_in_order(rig, seen)
    rig.run(1)
    assert any(e["kind"] == "storage" and "storage recovered" in e["message"]
               for e in rig.events())
    assert not rig.obs.store.degraded


def test_a_full_disk_keeps_the_loop_alive(tmpfs, sim_rig):
    """Found: a full data disk (3 MB tmpfs) crashed the control loop with ENOSPC."""
    data = tmpfs("data", "3m")
    rig = sim_rig(TENMON_PATHS__DATA_DIR=str(data), **QUICK, **TINY)
    open_slit(rig)
    filler = fill(data)
    rain_closes(rig)
    rig.run(20)
    assert any("disk or database is full" in m or "database or disk is full" in m
               for m in storage_alarms(rig)), storage_alarms(rig)
    # the free-space watch saw it too: no new exposure would start
    assert any(m.startswith("disk almost full") for m in storage_alarms(rig))
    assert not rig.obs.storage.exposures_allowed()
    st = rig.obs.status()
    assert st["storage"]["state"] == "degraded"
    from tenmon.cli.ops import format_status

    line = [x for x in format_status(st).splitlines() if x.startswith("storage")][0]
    assert "DEGRADED" in line and "EXPOSURES REFUSED" in line and "rows wait in memory" in line
    seen = rig.events()
    filler.unlink()
    rig.obs.store.retry_now()
    assert_written_in_order(rig, seen)
    rig.run(25)  # the next free-space check
    assert rig.obs.storage.exposures_allowed()
    assert rig.obs.store.integrity_ok()


def test_a_database_replaced_by_garbage_is_set_aside(sim_rig):
    rig = sim_rig(**QUICK)
    db = Path(rig.obs.config.paths.database)
    open_slit(rig)
    before = db_events(db)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database " * 400)
    ticks = rain_closes(rig)
    ticks += tick_until(rig, lambda: any("is corrupt" in m for m in storage_alarms(rig)))
    assert max(ticks) < 0.1
    alarms = storage_alarms(rig)
    assert any("is corrupt" in m and "kept as" in m for m in alarms), alarms
    kept = list(db.parent.glob(db.name + ".corrupt-*"))
    assert kept and kept[0].read_bytes().startswith(b"this is not a database")
    seen = [e for e in rig.events() if e["id"] not in before]
    assert any(e["message"].startswith("slit closed after") for e in seen)
    assert_written_in_order(rig, seen)


def test_the_buffer_is_bounded_and_keeps_alarms(tmp_path):
    from datetime import datetime, timezone

    from tenmon.daemon.store import Store

    store = Store(tmp_path / "s.sqlite", StorageConfig(buffer_max_rows=100, retry_max_s=0.5,
                                                       write_busy_timeout_s=0.5))
    locker = hold_lock(tmp_path / "s.sqlite", 4.0)
    t = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)
    alarms = []
    for i in range(400):
        if i % 80 == 0:
            alarms.append(store.add_event(t, "alarm", "test", f"alarm {i}"))
        store.add_event(t, "info", "test", f"info {i}")
        t += timedelta(seconds=1)
    health = store.health()
    assert health["buffered_rows"] <= 100 and health["dropped_rows"] >= 300
    notices = store.drain_notices()
    locker.wait(30)
    assert store.flush(15)
    rows = db_events(tmp_path / "s.sqlite")
    assert [rows[i][2] for i in alarms] == [f"alarm {i}" for i in range(0, 400, 80)]
    infos = [m for _, _, m in rows.values() if m.startswith("info")]
    assert 0 < len(infos) <= 100 and infos[-1] == "info 399"   # the newest were kept
    notices += store.drain_notices()
    text = " | ".join(m for _, _, m, _ in notices)
    assert "cannot write the database" in text and "storage buffer full" in text
    assert "storage recovered" in text and f"{health['dropped_rows']} rows were dropped" in text
    store.close()


def test_daemon_state_reads_its_writes_during_an_outage(tmp_path):
    from tenmon.daemon.store import Store

    db = tmp_path / "s.sqlite"
    store = Store(db, StorageConfig(retry_max_s=0.5))
    store.set_state("reopen_hold", {"until": "2026-11-21T20:00:00Z"})
    assert store.flush(5)
    locker = hold_lock(db, 3.0)
    store.set_state("reopen_hold", {"until": "2026-11-21T21:00:00Z"})
    store.set_state("running", True)
    assert store.get_state("reopen_hold") == {"until": "2026-11-21T21:00:00Z"}
    assert store.get_state("running") is True
    locker.wait(30)
    assert store.flush(15)
    store.close()
    again = Store(db)
    assert again.state_known
    assert again.get_state("reopen_hold") == {"until": "2026-11-21T21:00:00Z"}
    assert again.get_state("running") is True
    again.close()


def test_reads_are_capped_and_safe_from_other_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime, timezone

    from tenmon.daemon.store import Store

    store = Store(tmp_path / "s.sqlite", StorageConfig(max_read_rows=500))
    t = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)
    for i in range(1200):
        store.add_event(t + timedelta(seconds=i), "info", "test", f"e{i}")
        store.add_history(t + timedelta(seconds=i), "dome", {"state": "idle", "i": i})
    assert len(store.events(limit=10**9)) == 500
    assert store.events(limit=10**9)[-1]["message"] == "e1199"
    assert len(store.history("dome", limit=10**9)) == 500
    for bad in (-1, True, 2.5, "10"):
        with pytest.raises(ValueError):
            store.events(limit=bad)
    with pytest.raises(ValueError):
        store.history("dome", limit=-1)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            store.add_event(t, "warning", "test", f"w{i}")
            i += 1

    def reader(_):
        out = []
        for _ in range(30):
            ev = store.events(limit=200, level="warning")
            ids = [e["id"] for e in ev]
            out.append(ids == sorted(ids) and len(ids) == len(set(ids)) <= 200)
            store.history("dome", limit=50)
        return all(out)

    th = threading.Thread(target=writer)
    th.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            assert all(pool.map(reader, range(8)))
    finally:
        stop.set()
        th.join()
    store.close()


def test_emit_never_raises(sim_rig, caplog):
    rig = sim_rig()
    rig.obs.emit("loud", "test", "a level the store refuses")  # no exception
    assert "event not recorded" in caplog.text
    rig.obs.store.close()
    rig.obs.emit("alarm", "test", "after the store closed")   # journal only, no exception
    rig.run(1)


# ---------------------------------------------------------------------------- at start-up

def _restart(rig_type, data_dir: Path, **env):
    """A new daemon on ``data_dir`` (the simulated world resumes from its file)."""
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.compose import build_observatory

    cfg = load_config(simulated_config_path(),
                      env={"TENMON_PATHS__DATA_DIR": str(data_dir), **QUICK, **env})
    t0 = time.monotonic()
    obs = build_observatory(cfg)
    obs.start()
    started_s = time.monotonic() - t0
    return rig_type(obs), started_s


@pytest.mark.parametrize("fault", ["full", "read-only", "locked", "corrupt"])
def test_a_restart_with_an_unusable_database_closes_the_slit(tmpfs, sim_rig, tmp_path, fault):
    """Found: after a disk-full crash the restart died at its first event write, before the
    start-up reconcile, and the slit stayed open."""
    if fault in ("full", "read-only"):
        data = tmpfs("data", "3m")
        extra = TINY
    else:
        data = tmp_path / "data"
        extra = {}
    rig = sim_rig(TENMON_PATHS__DATA_DIR=str(data), **extra)
    open_slit(rig)
    rig.obs.sim.save()  # what the running daemon wrote last
    rig.obs.store.close()                    # the process dies (its files are released)
    db = Path(rig.obs.config.paths.database)
    clear = None
    if fault == "full":
        filler = fill(data)
        clear = filler.unlink
    elif fault == "read-only":
        remount(data, "ro")
        clear = lambda: remount(data, "rw")  # noqa: E731
    elif fault == "locked":
        locker = hold_lock(db, 8.0, mode="exclusive")
        clear = lambda: locker.wait(30)  # noqa: E731
    else:
        db.write_bytes(b"\x00garbage" * 1000)
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    try:
        rig2, started_s = _restart(type(rig), data, **extra)
        obs = rig2.obs
        assert started_s < obs.config.storage.open_wait_s + 3.0
        assert rig2.world.state.slit_fraction == 1.0
        ticks = run_timed(rig2, 120, until=lambda: obs.slit.state == ShutterState.CLOSED)
        assert obs.slit.state == ShutterState.CLOSED, rig2.messages()[-10:]
        assert rig2.world.state.slit_fraction == 0.0
        assert max(ticks) < 0.1
        msgs = " | ".join(rig2.messages())
        assert "storage" in {e["kind"] for e in rig2.events(level="alarm")}, msgs
        assert "after an unclean shutdown" in msgs or "closing blind" in msgs, msgs
        seen = rig2.events()
    finally:
        if clear is not None:
            clear()
    obs.store.retry_now()
    assert_written_in_order(rig2, seen, same_ids=False)
    if fault == "corrupt":
        assert list(data.glob("tenmon.sqlite.corrupt-*"))
    obs.stop()
    obs.store.close()


# ---------------------------------------------------------------------------- free space

class FakeDisk:
    """``os.statvfs`` of a disk whose free space the test sets (MB); counts the calls."""

    def __init__(self, free_mb: float, total_mb: float = 100000.0):
        self.free_mb = free_mb
        self.total_mb = total_mb
        self.calls = 0

    def __call__(self, path: str):
        self.calls += 1
        block = 4096
        return SimpleNamespace(f_frsize=block, f_bavail=int(self.free_mb * 1024 * 1024 / block),
                               f_blocks=int(self.total_mb * 1024 * 1024 / block))


def _until_checked(rig, what, seconds=60.0):
    """Tick until the free-space watch (its own thread) has applied a reading that makes
    ``what()`` true."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        rig.run(rig.obs.config.storage.check_interval_s + 1.0, until=what)
        if what():
            return
    raise AssertionError("the free-space watch never saw it")


def test_low_space_alarms_prunes_and_refuses_exposures(sim_rig):
    rig = sim_rig(TENMON_STORAGE__WARN_FREE_MB="1000", TENMON_STORAGE__REFUSE_FREE_MB="200",
                  TENMON_STORAGE__LOW_SPACE_KEEP_DAYS="7")
    obs = rig.obs
    disk = FakeDisk(50000.0)
    obs.storage.statvfs = disk
    old = obs.clock.now() - timedelta(days=30)
    obs.store.add_event(old, "info", "test", "an old info event")
    obs.store.add_event(old, "alarm", "test", "an old alarm")
    obs.store.add_history(old, "dome", {"state": "idle"})
    _until_checked(rig, lambda: obs.storage.level == "ok")
    assert obs.storage.exposures_allowed()
    n0 = disk.calls
    rig.run(60)  # cheap: a statvfs every check_interval_s per directory, not every tick
    dirs = len(obs.storage.dirs)
    assert disk.calls - n0 <= dirs * (60 / obs.config.storage.check_interval_s + 1)
    disk.free_mb = 800.0
    _until_checked(rig, lambda: obs.storage.level == "low")
    assert any(m.startswith("low disk space: 800 MB free") for m in storage_alarms(rig))
    assert obs.storage.exposures_allowed()
    rig.run(1)
    msgs = rig.messages()
    assert "an old info event" not in msgs and "an old alarm" in msgs
    assert all(h["time_utc"] > old.isoformat() for h in obs.store.history("dome"))
    assert obs.store.flush(10)
    in_db = [m for _, _, m in db_events(obs.config.paths.database).values()]
    assert "an old info event" not in in_db and "an old alarm" in in_db
    disk.free_mb = 150.0
    _until_checked(rig, lambda: obs.storage.level == "critical")
    assert any(m.startswith("disk almost full: 150 MB free") for m in storage_alarms(rig))
    why = obs.storage.exposure_refusal()
    assert why is not None and "150 MB free" in why and "200 MB" in why
    assert obs.status()["storage"]["exposures_allowed"] is False
    disk.free_mb = 5000.0
    _until_checked(rig, lambda: obs.storage.level == "ok")
    assert obs.storage.exposures_allowed()
    assert any(e["message"].startswith("disk space ok again") for e in rig.events())


def test_events_are_pruned_by_retention(sim_rig):
    """Found: events were never pruned."""
    rig = sim_rig(start=False, TENMON_STORAGE__EVENTS_KEEP_DAYS="2")
    obs = rig.obs
    obs.store.add_event(obs.clock.now() - timedelta(days=3), "alarm", "test", "3 days ago")
    obs.store.add_event(obs.clock.now() - timedelta(days=1), "alarm", "test", "yesterday")
    assert obs.store.flush(10)
    obs.start()
    rig.run(1)  # the first tick prunes, then once a day
    msgs = rig.messages()
    assert "3 days ago" not in msgs and "yesterday" in msgs
    assert obs.store.flush(10)
    in_db = [m for _, _, m in db_events(obs.config.paths.database).values()]
    assert "3 days ago" not in in_db and "yesterday" in in_db


def test_the_sequencer_waits_for_space_before_exposing(sim_rig):
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime, timezone

    from tenmon.daemon.services.night import install_night_operations
    from tenmon.daemon.services.sequencer import Phase
    from tenmon.scheduler.targets import Target

    start = datetime(2026, 11, 21, 9, 20, tzinfo=timezone.utc)
    rig = sim_rig(TENMON_NIGHT__ENABLED="true", TENMON_SIM__START_UTC=start.isoformat(),
                  TENMON_STORAGE__WARN_FREE_MB="1000", TENMON_STORAGE__REFUSE_FREE_MB="200")
    obs = rig.obs
    disk = FakeDisk(50000.0)
    obs.storage.statvfs = disk
    ops = install_night_operations(obs, obs.config, executor=ThreadPoolExecutor(max_workers=1))
    ops.camera.render_in = "thread"
    ops.camera.disconnect()
    ops.camera.connect()
    ops.queue.add(Target(name="S", ra_deg=336.0, dec_deg=35.0, priority=1, exposure_s=30,
                         count=2), now=obs.clock.now())
    ops._do("open_if_safe")
    ops._do("run_plan")
    rig.run(40 * 60, until=lambda: ops.sequencer.phase == Phase.SETTLING)
    assert ops.sequencer.phase == Phase.SETTLING
    disk.free_mb = 100.0
    _until_checked(rig, lambda: obs.storage.level == "critical")
    rig.run(120)
    refused = [e for e in rig.events() if e["kind"] == "sequencer"
               and "exposure refused" in e["message"]]
    assert len(refused) == 1 and "100 MB free" in refused[0]["message"]
    run = ops.sequencer.run
    assert run is not None and run.storage_wait is not None and run.exposures_started == 0
    assert ops.camera.state.value == "idle"
    disk.free_mb = 5000.0
    _until_checked(rig, lambda: obs.storage.level == "ok")
    rig.run(30, until=lambda: run.exposures_started >= 1)
    assert run.exposures_started >= 1 and ops.camera.state.value == "exposing"
    assert any("exposures resume" in m for m in rig.messages())
    ops.stop_now()
