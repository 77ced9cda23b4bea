"""One daemon per site: an exclusive ``flock`` on ``DATA_DIR/tenmon.lock``, holding the PID.

``run_daemon`` takes it before anything else, so a second daemon (a forgotten ``make run``, a
second ``tenmon daemon`` beside the service) refuses to start before it opens the database or
touches a relay board: it would otherwise write "previous run ended uncleanly" into the running
daemon's record and switch a live board's relays off.

``flock`` locks belong to the open file: the kernel releases them when the process ends, however
it ends (SIGKILL, power loss), so a stale lock file never blocks a restart. The file stays in
place (unlinking it would race with a starting daemon); its content is only informative.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tenmon.core.errors import TenmonError

LOCK_FILE = "tenmon.lock"


class DaemonLocked(TenmonError):
    """Another daemon holds the site's lock; ``pid`` is its process id when known."""

    def __init__(self, message: str, pid: int | None, path: Path):
        super().__init__(message)
        self.pid = pid
        self.path = path


class DaemonLock:
    """The site's lock. ``acquire()`` or raise :class:`DaemonLocked`; ``release()`` at exit."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting, then write our PID into the file.

        Raises:
            DaemonLocked: another process holds it (the message names its PID).
            OSError: the data directory cannot be created or the file cannot be opened.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f"PID {pid}" if pid else "a process whose PID is not written yet"
            raise DaemonLocked(
                f"another tenmon daemon ({who}) is running on {self.data_dir} (it holds "
                f"{self.path}); not starting a second one beside it. Stop it first "
                "(`systemctl stop tenmond`, or Ctrl-C where it runs), or give this one "
                "another --data-dir", pid, self.path) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (the kernel does it anyway when the process ends)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> "DaemonLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
