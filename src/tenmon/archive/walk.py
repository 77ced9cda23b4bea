"""Find the frames of an archive tree, fingerprint them, and find their calibration masters.

* Frames: files named like FITS (``.fits``, ``.fit``, ``.fts``, each optionally ``.gz``, and
  tile-compressed ``.fz``), in sorted order, skipping hidden files and directories and the
  masters directories below.
* Fingerprint: size and modification time (``st_mtime_ns``) decide cheaply whether a file may
  have changed; the content hash (BLAKE2b, 128 bits, computed by the worker that reads the frame
  anyway) decides whether it did. A touched but identical file is not reprocessed.
* Masters (the convention, ``docs/archive.md``): a directory named ``masters`` (or ``calib``)
  holds ``bias.fits``, ``dark.fits``, ``flat[_FILTER].fits``, ``bpm.fits``
  (``vision.calibration``) for the frames of the directory that contains it and every directory
  below, the nearest one winning; ``--masters DIR`` gives one directory for frames that have
  none of their own.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from tenmon.core.errors import ArchiveError

#: File names the walk takes for frames (lower-cased ``endswith``).
FRAME_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz")
#: Directory names that hold calibration masters (never walked as frames).
MASTERS_DIRNAMES = ("masters", "calib")


@dataclass(frozen=True)
class FileStat:
    """A frame file as the walk saw it: absolute path, size [bytes], ``st_mtime_ns``."""

    path: str
    size: int
    mtime_ns: int


def is_frame_name(name: str) -> bool:
    """Whether a file name looks like a FITS frame."""
    return name.lower().endswith(FRAME_SUFFIXES)


def discover(root: str | os.PathLike, *, exclude: Iterable[str | os.PathLike] = ()) -> Iterator[FileStat]:
    """Every frame file below ``root`` (or ``root`` itself if it is a file), sorted by path.

    ``exclude``: directories not to enter (the archive itself when it lies inside the tree).
    Unreadable directories are skipped (a later walk sees them again). Raises ``ArchiveError``
    if ``root`` does not exist.
    """
    top = Path(root).resolve()
    if top.is_file():
        st = top.stat()
        yield FileStat(str(top), st.st_size, st.st_mtime_ns)
        return
    if not top.is_dir():
        raise ArchiveError(f"{root}: no such file or directory")
    skip = {str(Path(e).resolve()) for e in exclude}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and d.lower() not in MASTERS_DIRNAMES
                             and os.path.join(dirpath, d) not in skip)
        for name in sorted(filenames):
            if name.startswith(".") or not is_frame_name(name):
                continue
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
            except OSError:
                continue  # vanished between listing and stat
            yield FileStat(p, st.st_size, st.st_mtime_ns)


def content_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes (hex). Raises ``OSError`` if it cannot be read."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def masters_for(frame: str | os.PathLike, root: str | os.PathLike, default: str | os.PathLike | None = None
                ) -> Path | None:
    """The masters directory of ``frame``: the nearest ``masters``/``calib`` directory in the
    frame's directory or a parent up to ``root``, else ``default`` (may be ``None``)."""
    top = Path(root).resolve()
    d = Path(frame).resolve().parent
    while True:
        for name in MASTERS_DIRNAMES:
            cand = d / name
            if cand.is_dir():
                return cand
        if d == top or d.parent == d or top not in d.parents:
            break
        d = d.parent
    return Path(default).resolve() if default is not None else None


def masters_key(directory: str | os.PathLike | None) -> str:
    """A fingerprint of a masters directory (names, sizes, times of its FITS files); ``""`` for none.

    A frame is redone when its masters change.
    """
    if directory is None:
        return ""
    d = Path(directory)
    h = hashlib.blake2b(digest_size=8)
    for p in sorted(d.glob("*.fit*")):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


__all__ = ["FRAME_SUFFIXES", "MASTERS_DIRNAMES", "FileStat", "content_hash", "discover", "is_frame_name",
           "masters_for", "masters_key"]
