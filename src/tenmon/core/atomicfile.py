"""Writing a file so that a reader sees the old one or the new one, whole: a temporary name in the
same directory, then a rename (``os.replace``, atomic on POSIX).

The temporary name is hidden and ends in ``.tmp`` (or the ``suffix`` a writer needs to pick its
format, e.g. ``.png`` for OpenCV), so directory watchers (the frame intake, the slit-viewer feed)
never take it for a frame. It is removed when writing fails.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def usual_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *,
                 mode: int | None = None, fsync: bool = False, suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` to ``path`` (parents created).

    Args:
        mode: the file's mode; ``None`` leaves the temporary file's 0600 (private).
        fsync: flush the file to the disk before the rename and the directory after it, so the
            new file survives a power loss (settings, state that must not be lost).
        suffix: the temporary name's ending.

    Returns ``path``. Blocking (disk I/O).
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=parent)
    os.close(fd)
    try:
        write(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        if fsync:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        _fsync(parent, os.O_RDONLY | os.O_DIRECTORY)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, **kw) -> Path:
    """Write ``data`` atomically to ``path`` (keywords as :func:`atomic_write`)."""

    def w(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, w, **kw)


def atomic_write_text(path: str | os.PathLike, text: str, **kw) -> Path:
    """Write ``text`` (UTF-8) atomically to ``path`` (keywords as :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), **kw)


def _fsync(path: str | os.PathLike, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "usual_mode"]
