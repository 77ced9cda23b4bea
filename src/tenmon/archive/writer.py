"""The archive's one writer: results in, Parquet files then index rows out, one atomic batch at a time.

A batch (every ``batch_frames`` results or ``batch_s`` seconds, and at :meth:`ArchiveWriter.close`)
is written under an exclusive lock on ``ARCHIVE/.lock`` (so the daemon's hook and an ingest may
share an archive): ``BEGIN IMMEDIATE``, the frames' rows upserted (their ids), the batch's
Parquet files written (temporary name, fsync, rename), ``COMMIT``. Killed anywhere in there, the
index is as before the batch and the batch's files are orphans: no index row names the batch,
so queries ignore them, and the next writer deletes them (:meth:`ArchiveWriter.clean_orphans`)
together with batches all of whose frames were redone since.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from tenmon.archive import detections as det
from tenmon.archive import index as idx
from tenmon.core.clock import Clock, RealClock
from tenmon.core import timefmt

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class ArchiveLock:
    """An exclusive ``flock`` on ``ARCHIVE/.lock`` (blocking; released on exit or process death)."""

    def __init__(self, archive: str | Path):
        self.path = Path(archive) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "ArchiveLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def utc_iso(clock: Clock) -> str:
    """The clock's time as ISO UTC (seconds)."""
    return timefmt.utc_iso(clock.now(), timespec="seconds")


class ArchiveWriter:
    """Buffers frame results and writes them in atomic batches (see the module doc).

    Args:
        archive: the archive directory (created with its index if missing).
        run_id: the ``runs`` row the frames belong to.
        batch_frames, batch_s: write a batch at this many results or this long after the first.
        clock: for ``processed_utc`` and the batch timer.
    """

    def __init__(self, archive: str | Path, *, run_id: int | None = None, batch_frames: int = 64,
                 batch_s: float = 10.0, clock: Clock | None = None):
        self.archive = Path(archive)
        self.conn = idx.connect(self.archive, create=True)
        self.run_id = run_id
        self.batch_frames = int(batch_frames)
        self.batch_s = float(batch_s)
        self.clock = clock or RealClock()
        self._pending: list[dict[str, Any]] = []
        self._first_at: float | None = None
        self.counts: dict[str, int] = defaultdict(int)

    # ------------------------------------------------------------------ intake

    def add(self, result: dict[str, Any]) -> None:
        """One frame's result (``work.process_task``); written with the next batch."""
        if result.get("unchanged"):
            self.counts["unchanged"] += 1
        else:
            self.counts[result.get("status", "failed")] += 1
        self._pending.append(result)
        if self._first_at is None:
            self._first_at = self.clock.monotonic()
        if len(self._pending) >= self.batch_frames or self.clock.monotonic() - self._first_at >= self.batch_s:
            self.flush()

    def flush(self) -> int:
        """Write the buffered results now (one batch); returns how many frames it held."""
        if not self._pending:
            return 0
        pending, self._pending, self._first_at = self._pending, [], None
        batch = det.new_batch_id()
        now = utc_iso(self.clock)
        with ArchiveLock(self.archive):
            written: list[Path] = []
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                by_night: dict[str, list[pa.Table]] = defaultdict(list)
                for r in pending:
                    if r.get("unchanged"):
                        idx.touch_frame(self.conn, r["path"], r["size"], r["mtime_ns"])
                        continue
                    cols = r.get("detections")
                    n = 0 if not cols else len(cols["x"])
                    row = row_of(r, run_id=self.run_id, processed_utc=now, batch=batch if n else None, n=n)
                    fid = idx.upsert_frame(self.conn, row)
                    if n:
                        facts = r.get("facts") or {}
                        by_night[r.get("night") or det.UNKNOWN_NIGHT].append(
                            det.to_table(fid, batch, facts.get("mjd_mid"), facts.get("filter"), cols))
                        self.counts["detections"] += n
                for night, tables in by_night.items():
                    path = det.file_for(self.archive, night, batch)
                    det.write_table(path, pa.concat_tables(tables))
                    written.append(path)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                for p in written:  # not needed for consistency (orphans are ignored); tidy
                    p.unlink(missing_ok=True)
                raise
        return len(pending)

    # ------------------------------------------------------------------ housekeeping

    def clean_orphans(self) -> int:
        """Delete detection files whose batch no index row names (an interrupted batch, or every
        frame of it redone since). Returns how many files went."""
        n = 0
        with ArchiveLock(self.archive):
            current = idx.current_batches(self.conn)
            for batch, files in det.batch_files(self.archive).items():
                if batch not in current:
                    for p in files:
                        p.unlink(missing_ok=True)
                        n += 1
            for p in (self.archive / det.DETECTIONS_DIR).glob("night=*/.part-*.tmp"):
                p.unlink(missing_ok=True)
        if n:
            log.info("removed %d detection file(s) no frame points at", n)
        return n

    def close(self) -> None:
        """Write what is buffered and close the index."""
        try:
            self.flush()
        finally:
            self.conn.close()


def row_of(r: dict[str, Any], *, run_id: int | None, processed_utc: str, batch: str | None, n: int) -> dict[str, Any]:
    """The ``frames`` row of a worker result."""
    facts = r.get("facts") or {}
    shape = r.get("shape") or [None, None]
    return {
        "path": r["path"], "size": r.get("size"), "mtime_ns": r.get("mtime_ns"), "sha": r.get("sha"),
        "status": r.get("status", "failed"), "reasons": r.get("reasons") or [],
        "pipeline_version": r.get("pipeline_version") or "?", "settings_hash": r.get("settings_hash") or "?",
        "masters": r.get("masters"), "masters_key": r.get("masters_key") or "", "run_id": run_id,
        "processed_utc": processed_utc, "night": r.get("night"), "date_obs": facts.get("date_obs"),
        "mjd_mid": facts.get("mjd_mid"), "exptime_s": facts.get("exptime_s"), "filter": facts.get("filter"),
        "object": facts.get("object"), "telescope": facts.get("telescope"), "instrument": facts.get("instrument"),
        "observatory": facts.get("observatory"), "gain_e_per_adu": facts.get("gain_e_per_adu"),
        "hdr_ra_deg": facts.get("ra_deg"), "hdr_dec_deg": facts.get("dec_deg"),
        "missing_keywords": sorted((facts.get("missing") or {}).keys()),
        "facts_json": json.dumps(facts, default=str) if facts else None,
        "naxis1": shape[1], "naxis2": shape[0], "wcs_source": r.get("wcs_source"),
        "wcs_json": json.dumps(r["wcs"], default=str) if r.get("wcs") else None,
        "ra_deg": r.get("ra_deg"), "dec_deg": r.get("dec_deg"), "radius_deg": r.get("radius_deg"),
        "corners_json": json.dumps(r["corners"]) if r.get("corners") else None,
        "solver": r.get("solver"), "solve_rms_arcsec": r.get("solve_rms_arcsec"),
        "solve_n_matched": r.get("solve_n_matched"), "solve_reason": r.get("solve_reason"),
        "n_sources": r.get("n_sources"), "n_cosmic_pixels": r.get("n_cosmic_pixels"), "fwhm_px": r.get("fwhm_px"),
        "background": r.get("background"), "background_rms": r.get("background_rms"),
        "ellipticity": r.get("ellipticity"), "limiting_mag": r.get("limiting_mag"), "n_detections": n,
        "det_batch": batch, "elapsed_ms": r.get("elapsed_ms"), "warnings": r.get("warnings") or [],
    }


__all__ = ["ArchiveLock", "ArchiveWriter", "LOCK_NAME", "row_of"]
