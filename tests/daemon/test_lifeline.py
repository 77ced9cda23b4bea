"""Frame workers die with the daemon: after a SIGKILL of the daemon no pool process (fork server,
frame worker, resource tracker) is left. Process trees are read from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tenmon.core.lifeline import descends_from, parent_of

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="PR_SET_PDEATHSIG and /proc are Linux's")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a live process, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[1], []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pids: set[int]) -> set[int]:
    """Those still running (a zombie waiting for its reaper has ended)."""
    return {p for p in pids if (st := _stat(p)) is not None and st[0] != "Z"}


def _wait_gone(pids: set[int], timeout_s: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = alive(pids)
        if not left:
            return left
        time.sleep(0.1)
    return alive(pids)


def _cleanup(pids: set[int]) -> None:
    for p in alive(pids):  # only processes this test started (descendants of its child)
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_parent_chain_from_proc():
    assert parent_of(os.getpid()) == os.getppid()
    assert descends_from(os.getppid())
    assert not descends_from(os.getpid())  # not our own ancestor
    assert parent_of(10 ** 9) is None


POOL_OWNER = textwrap.dedent("""
    import os, sys, time
    from tenmon.daemon.services.frame_worker import FrameWorkerSettings
    from tenmon.daemon.services.frame_worker import make_pool

    pool = make_pool(FrameWorkerSettings(processes=2))
    pids = set(pool.submit(os.getpid).result(timeout=120) for _ in range(4))
    print("ready", flush=True)
    time.sleep(300)
""")


def test_pool_processes_die_when_their_owner_is_sigkilled():
    """frame_worker.make_pool (every frame pool): the fork server and the workers go when the owner is SIGKILLed."""
    proc = subprocess.Popen([sys.executable, "-c", POOL_OWNER], stdout=subprocess.PIPE,
                            text=True)
    tree: set[int] = set()
    try:
        assert proc.stdout.readline().strip() == "ready"
        tree = descendants(proc.pid)
        assert len(tree) >= 3  # fork server, resource tracker, workers
    finally:
        proc.kill()
        proc.wait()
    try:
        left = _wait_gone(tree)
        assert not left, f"orphaned: {[Path(f'/proc/{p}/cmdline').read_bytes()[:120] for p in left]}"
    finally:
        _cleanup(tree)


@pytest.mark.slow
def test_simulated_daemon_leaves_no_worker_after_sigkill(tmp_path):
    """Finding: "frame workers are orphaned by a SIGKILL" (the real daemon, frames processing)."""
    from test_daemon_process import Daemon, free_port

    d = Daemon(tmp_path / "data", free_port())
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the frame pool starts in the background
            tree = descendants(d.proc.pid)
            if len(tree) >= 3:
                break
            time.sleep(0.2)
        assert len(tree) >= 3, "the frame pool did not start"
        time.sleep(1.0)
        tree = descendants(d.proc.pid)
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait(10)
        left = _wait_gone(tree)
        assert not left, f"orphaned: {[Path(f'/proc/{p}/cmdline').read_bytes()[:120] for p in left]}"
    finally:
        _cleanup(tree)
        d.stop(signal.SIGKILL)
