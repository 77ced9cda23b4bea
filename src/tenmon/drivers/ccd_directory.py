"""Frame intake from the directory the CCD software writes into: poll, wait until complete, deliver once.

Poll-based, so it works on any filesystem (NFS and SMB shares included, where inotify does not).
A file is delivered when it matches the pattern, is not hidden or temporary, its size and mtime
have not changed for ``stable_s`` seconds of the injected clock, *and* it parses as complete FITS
(every header ends, every data unit is fully present). A half-written frame is never delivered.
What was processed is remembered in a small JSON state file, so a restart does not redo the night;
a file that is rewritten (new size or mtime) counts as new.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tenmon.core.atomicfile import atomic_write_text
from tenmon.core.clock import Clock, RealClock
from tenmon.core.errors import DeviceError

log = logging.getLogger(__name__)

_BLOCK = 2880


class FrameDirectorySettings(BaseModel):
    """Intake settings (the site config's ``[ccd]`` of type ``directory`` carries the first two)."""

    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(default="*.fits", description="glob of frame names")
    stable_s: float = Field(default=2.0, gt=0, description="size and mtime unchanged this long")
    recursive: bool = False
    max_files_per_poll: int = Field(default=1000, ge=1)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # clock.monotonic() when this (size, mtime) was first observed


def fits_is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete FITS file: every HDU's header has its END card and every
    data unit (with heap, padded to 2880 bytes) is present. Reads headers only.

    A truncated last block is accepted only if the data itself is complete (some writers do not
    pad the final block). Never raises for I/O or format problems: returns False.
    """
    try:
        size = os.path.getsize(path)
        if size < _BLOCK:
            return False
        with open(path, "rb") as fh:
            pos = 0
            first = True
            while pos < size:
                cards, header_len = _read_header(fh, pos, size)
                if cards is None:
                    return False
                if first and cards.get("SIMPLE") != "T":
                    return False
                first = False
                data_len = _data_length(cards)
                if data_len is None:
                    return False
                end_data = pos + header_len + data_len
                if end_data > size:
                    return False
                pos = pos + header_len + ((data_len + _BLOCK - 1) // _BLOCK) * _BLOCK
                if pos >= size:
                    return True
                # Anything after the last padded unit must be another extension.
                fh.seek(pos)
                if not fh.read(8).startswith(b"XTENSION"):
                    return _is_padding(fh, pos, size)
            return True
    except (OSError, ValueError):
        return False


def _read_header(fh, pos: int, size: int) -> tuple[dict[str, str] | None, int]:
    cards: dict[str, str] = {}
    offset = pos
    while offset + _BLOCK <= size:
        fh.seek(offset)
        block = fh.read(_BLOCK)
        offset += _BLOCK
        for i in range(0, _BLOCK, 80):
            card = block[i : i + 80].decode("ascii", errors="replace")
            key = card[:8].strip()
            if key == "END":
                return cards, offset - pos
            if card[8:10] == "= " and key:
                val = card[10:].split("/")[0].strip()
                cards.setdefault(key, val)
    return None, 0


def _data_length(cards: dict[str, str]) -> int | None:
    try:
        bitpix = abs(int(cards.get("BITPIX", "8")))
        naxis = int(cards.get("NAXIS", "0"))
        if naxis == 0:
            return 0
        n = 1
        for i in range(1, naxis + 1):
            n *= int(cards[f"NAXIS{i}"])
        pcount = int(cards.get("PCOUNT", "0"))
        gcount = int(cards.get("GCOUNT", "1"))
        if cards.get("NAXIS1") == "0" and naxis > 1 and "SIMPLE" in cards:
            # Random-groups convention: NAXIS1 = 0 and the groups hold NAXIS2..n.
            n = 1
            for i in range(2, naxis + 1):
                n *= int(cards[f"NAXIS{i}"])
        return (bitpix // 8) * gcount * (pcount + n)
    except (KeyError, ValueError):
        return None


def _is_padding(fh, pos: int, size: int) -> bool:
    fh.seek(pos)
    rest = fh.read(min(size - pos, 10 * _BLOCK))
    return rest.strip(b"\0 ") == b""


class FrameDirectory:
    """Watch ``directory`` for complete frames (see the module doc).

    Usage: call :meth:`poll` periodically (it does not block: a few ``stat`` calls and, for
    files that just became stable, a header walk); process what it returns; then call
    :meth:`mark_processed` so a restart skips them. ``state_file`` (JSON) is written atomically.

    Raises:
        DeviceError: (device ``"ccd"``) if the directory does not exist when polled.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        settings: FrameDirectorySettings | None = None,
        clock: Clock | None = None,
        state_file: str | os.PathLike | None = None,
    ):
        self.directory = Path(directory)
        self.settings = settings or FrameDirectorySettings()
        self.clock = clock or RealClock()
        self.state_file = Path(state_file) if state_file else None
        self._seen: dict[Path, _Seen] = {}
        self._delivered: dict[Path, tuple[int, int]] = {}
        self._processed: dict[str, tuple[int, int]] = self._load_state()
        self._pattern = re.compile(fnmatch.translate(self.settings.pattern), re.IGNORECASE)

    # ------------------------------------------------------------------ public

    def poll(self) -> list[Path]:
        """Newly complete frames, oldest mtime first; each is returned once per process life."""
        if not self.directory.is_dir():
            raise DeviceError("ccd", f"frames directory {self.directory} does not exist")
        now = self.clock.monotonic()
        present: set[Path] = set()
        ready: list[tuple[int, Path]] = []
        for p in self._candidates():
            try:
                st = p.stat()
            except FileNotFoundError:  # deleted or renamed between listing and stat
                continue
            present.add(p)
            key = (st.st_size, st.st_mtime_ns)
            if self._delivered.get(p) == key or self._processed.get(self._state_key(p)) == key:
                continue
            seen = self._seen.get(p)
            if seen is None or (seen.size, seen.mtime_ns) != key:
                self._seen[p] = _Seen(st.st_size, st.st_mtime_ns, now)
                continue
            if now - seen.since < self.settings.stable_s:
                continue
            if not fits_is_complete(p):
                log.debug("%s is stable but not complete FITS yet", p)
                continue
            ready.append((st.st_mtime_ns, p))
        for p in list(self._seen):
            if p not in present:
                del self._seen[p]
        ready.sort()
        out = []
        for _, p in ready[: self.settings.max_files_per_poll]:
            s = self._seen.pop(p)
            self._delivered[p] = (s.size, s.mtime_ns)
            out.append(p)
        return out

    def mark_processed(self, path: str | os.PathLike) -> None:
        """Remember ``path`` (at its current size and mtime) as processed, persistently."""
        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError:
            log.warning("frame %s vanished before it was marked processed", p)
            return
        self._processed[self._state_key(p)] = (st.st_size, st.st_mtime_ns)
        self._save_state()

    def is_processed(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` at its current size and mtime was marked processed."""
        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError:
            return False
        return self._processed.get(self._state_key(p)) == (st.st_size, st.st_mtime_ns)

    @property
    def pending(self) -> int:
        """Files seen but not yet stable or complete."""
        return len(self._seen)

    # ------------------------------------------------------------------ internals

    def _candidates(self):
        it = self.directory.rglob("*") if self.settings.recursive else self.directory.iterdir()
        for p in it:
            name = p.name
            if name.startswith(".") or name.endswith((".tmp", ".part", ".partial", "~")):
                continue
            if not self._pattern.fullmatch(name):
                continue
            if p.is_file():
                yield p

    def _state_key(self, p: Path) -> str:
        try:
            return str(p.resolve().relative_to(self.directory.resolve()))
        except ValueError:
            return str(p.resolve())

    def _load_state(self) -> dict[str, tuple[int, int]]:
        if not self.state_file or not self.state_file.exists():
            return {}
        try:
            raw = json.loads(self.state_file.read_text())
            return {k: (int(v[0]), int(v[1])) for k, v in raw.get("processed", {}).items()}
        except (OSError, ValueError, TypeError, IndexError) as exc:
            log.warning("ignoring unreadable intake state %s: %s", self.state_file, exc)
            return {}

    def _save_state(self) -> None:
        if not self.state_file:
            return
        data = json.dumps({"directory": str(self.directory), "processed": self._processed}, indent=0)
        atomic_write_text(self.state_file, data)


__all__ = ["FrameDirectory", "FrameDirectorySettings", "fits_is_complete"]
