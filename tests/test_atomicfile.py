"""tenmon.core.atomicfile: a reader sees the old file or the new one, whole; a failed write leaves
the old file and no temporary behind; the mode is the one asked for."""

from __future__ import annotations

import os
import stat

import pytest

from tenmon.core.atomicfile import atomic_write, atomic_write_bytes, atomic_write_text, usual_mode


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_whole_with_the_mode_asked(tmp_path):
    p = tmp_path / "sub" / "state.json"
    atomic_write_text(p, "{}", fsync=True)
    assert p.read_text() == "{}" and _mode(p) == 0o600  # private unless asked
    atomic_write_bytes(p, b"[1]", mode=0o644)
    assert p.read_bytes() == b"[1]" and _mode(p) == 0o644
    atomic_write_text(p, "x", mode=usual_mode())
    assert _mode(p) == usual_mode()
    assert sorted(x.name for x in p.parent.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "plan.png"
    p.write_bytes(b"old")

    def broken(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, broken)
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["plan.png"]


def test_the_temporary_name_is_hidden_and_keeps_the_suffix(tmp_path):
    seen = []

    def write(tmp: str) -> None:
        seen.append(os.path.basename(tmp))
        open(tmp, "wb").close()

    atomic_write(tmp_path / "a.fits", write, suffix=".png")
    assert seen[0].startswith(".a.fits.") and seen[0].endswith(".png")
