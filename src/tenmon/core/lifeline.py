"""Worker processes that die with the daemon: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` plus a check.

A process pool's workers outlive a daemon killed with SIGKILL (or by systemd's watchdog): they
keep a CPU busy and hold files, and the restarted daemon starts a second set beside them.
:func:`die_with_parent` is called first thing in every pool initializer (frames, the simulated
CCD). On Linux it asks the kernel to SIGKILL the worker when its parent ends, then checks that the
daemon is still its ancestor: if the daemon died between the fork and the request, the request
would never fire (the worker is already an orphan), so the worker ends itself at once.

With the ``forkserver`` start method (the pools' choice on Linux, :func:`pool_context`) a worker's
parent is the fork server, a child of the daemon. The fork server does *not* end with the daemon
by itself: it waits for end-of-file on its "alive" pipe, whose write end every worker holds too
(multiprocessing hands it to each new process), so orphaned server and workers keep each other
alive (measured: both outlive a SIGKILLed daemon indefinitely). So the fork server gets the same
treatment: :func:`pool_context` adds :mod:`tenmon.core.lifeline_forkserver` to its preload list, which
makes the server ask for SIGKILL when the daemon dies; the workers' own request then fires when
the server goes. ``PR_SET_PDEATHSIG`` fires when the parent *thread* ends: the fork server's
only thread is its main one, so this holds. Elsewhere (no ``prctl``) nothing is done and
``False`` is returned.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
#: How far up the process tree the daemon may be: the parent (spawn) or the fork server's parent.
MAX_DEPTH = 2
#: The daemon's PID, for the fork server's preload (it cannot be given arguments).
ENV_PID = "TENMON_LIFELINE_PID"
PRELOAD = "tenmon.core.lifeline_forkserver"


def pool_context():
    """The multiprocessing context for tenmon's process pools: ``forkserver`` where available
    (forking a process that runs an event loop and threads is not safe), with a fork server that
    dies with this process; ``spawn`` elsewhere."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    os.environ[ENV_PID] = str(os.getpid())  # read by the preload in the fork server
    ctx.set_forkserver_preload(["__main__", PRELOAD])  # takes effect when the server starts
    return ctx


def die_with_parent(origin_pid: int | None = None, depth: int = MAX_DEPTH) -> bool:
    """Ask for SIGKILL when the parent dies; end now if ``origin_pid`` (the daemon) is no longer
    an ancestor within ``depth`` levels. Returns whether the request is in force."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(err))
            return False
    except (OSError, AttributeError) as exc:
        log.warning("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)
        return False
    if origin_pid is not None and not descends_from(origin_pid, depth=depth):
        # The daemon ended before the request took effect: nobody will ever send the signal.
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def descends_from(origin_pid: int, pid: int | None = None, depth: int = MAX_DEPTH) -> bool:
    """True if ``origin_pid`` is the parent of ``pid`` (default: this process) or its parent's
    parent, and so on up to ``depth`` levels (read from ``/proc``)."""
    cur = os.getpid() if pid is None else pid
    for _ in range(depth):
        cur = os.getppid() if cur == os.getpid() else parent_of(cur)
        if cur is None or cur <= 1:
            return False
        if cur == origin_pid:
            return True
    return False


def parent_of(pid: int) -> int | None:
    """The parent PID of ``pid`` from ``/proc/PID/stat``; ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ")"
    try:
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (ValueError, IndexError):
        return None
