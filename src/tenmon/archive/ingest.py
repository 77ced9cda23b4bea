"""Ingest: walk a tree of frames, process what is new or changed on the engine, write it with one writer.

Resumable and idempotent: a frame whose size and time are unchanged and that was processed by
the same pipeline version, settings and masters is skipped (failures included; ``retry_failed``
tries those again); a frame whose size or time changed is processed again unless its content
hash is the same (then only its size and time are updated); a changed frame's row is replaced
and its old detections stop being current. Ctrl-C (``KeyboardInterrupt``) stops submitting,
writes the results already received, marks the run ``interrupted`` and returns: the archive is
consistent at every moment (``writer``), so a later run simply carries on.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tenmon.archive import index as idx
from tenmon.archive import require
from tenmon.archive.walk import discover, masters_for, masters_key
from tenmon.archive.work import ArchiveSettings, pipeline_version, process_task
from tenmon.archive.writer import ArchiveWriter, utc_iso
from tenmon.core.clock import Clock, RealClock

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one ingest did (``tenmon archive ingest --json`` prints it)."""

    archive: str
    root: str
    run_id: int
    engine: str
    pipeline_version: str
    settings_hash: str
    seen: int = 0
    skipped: int = 0
    submitted: int = 0
    unchanged: int = 0
    ok: int = 0
    partial: int = 0
    failed: int = 0
    detections: int = 0
    orphans_removed: int = 0
    version_mismatch: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0
    frames_per_min: float | None = None
    worker_peak_rss_mib: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["elapsed_s"] = round(self.elapsed_s, 2)
        if self.frames_per_min is not None:
            d["frames_per_min"] = round(self.frames_per_min, 2)
        return d


def plan(root: str | Path, archive: str | Path, settings: ArchiveSettings, *, masters: str | Path | None = None,
         retry_failed: bool = False, conn=None) -> tuple[list[dict[str, Any]], int, int]:
    """The tasks an ingest of ``root`` runs: ``(tasks, seen, skipped)``."""
    pv = pipeline_version()
    sh = settings.settings_hash()
    sj = settings.model_dump_json()
    known = idx.known_frames(conn) if conn is not None else {}
    keys: dict[str, str] = {}
    tasks, seen, skipped = [], 0, 0
    for fs in discover(root, exclude=[archive]):
        seen += 1
        mdir = masters_for(fs.path, root, masters)
        mkey = keys.setdefault(str(mdir), masters_key(mdir))
        row = known.get(fs.path)
        same = (row is not None and row["pipeline_version"] == pv and row["settings_hash"] == sh
                and row["masters_key"] == mkey and not (retry_failed and row["status"] == "failed"))
        if same and row["size"] == fs.size and row["mtime_ns"] == fs.mtime_ns:
            skipped += 1
            continue
        tasks.append({"path": fs.path, "size": fs.size, "mtime_ns": fs.mtime_ns,
                      "known_sha": row["sha"] if same else None, "settings_json": sj, "settings_hash": sh,
                      "masters": str(mdir) if mdir else None, "masters_key": mkey})
    return tasks, seen, skipped


def ingest(root: str | Path, archive: str | Path, *, settings: ArchiveSettings | None = None, workers: int = 1,
           scheduler: str | None = None, memory_limit: str = "2GiB", masters: str | Path | None = None,
           retry_failed: bool = False, progress: bool | None = None, batch_frames: int = 64,
           clock: Clock | None = None, on_result: Callable[[dict[str, Any]], None] | None = None) -> IngestReport:
    """Ingest ``root`` into ``archive`` (see the module doc); returns the :class:`IngestReport`.

    ``progress``: a tqdm bar on stderr (rate, ETA); ``None`` shows it when stderr is a terminal.
    Raises ``ArchiveError`` if the archive or the engine cannot be opened.
    """
    require("pyarrow", "astropy_healpix", "dask", "distributed")
    from tenmon.archive.engine import Engine

    clock = clock or RealClock()
    settings = settings or ArchiveSettings()
    root = Path(root).resolve()
    archive = Path(archive).resolve()
    t0 = clock.monotonic()
    writer = ArchiveWriter(archive, batch_frames=batch_frames, clock=clock)
    engine = Engine(workers=workers, scheduler=scheduler, memory_limit=memory_limit)
    pv, sh = pipeline_version(), settings.settings_hash()
    run_id = idx.begin_run(writer.conn, kind="ingest", root=str(root), started_utc=utc_iso(clock),
                           pipeline_version=pv, settings_hash=sh, settings_json=settings.model_dump_json(),
                           engine=engine.description, workers=None if scheduler else workers)
    writer.run_id = run_id
    rep = IngestReport(archive=str(archive), root=str(root), run_id=run_id, engine=engine.description,
                       pipeline_version=pv, settings_hash=sh)
    status, error = "finished", None
    bar = None
    try:
        rep.orphans_removed = writer.clean_orphans()
        tasks, rep.seen, rep.skipped = plan(root, archive, settings, masters=masters, retry_failed=retry_failed,
                                            conn=writer.conn)
        rep.submitted = len(tasks)
        if progress is None:
            progress = sys.stderr.isatty()
        if tasks:
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(tasks), unit="frame", file=sys.stderr, desc="ingest", smoothing=0.1)
            with engine:
                t_work = clock.monotonic()
                for task, result, exc in engine.map_unordered(process_task, tasks):
                    if exc is not None:
                        result = _engine_failure(task, exc)
                    if result.get("pipeline_version") != pv:
                        rep.version_mismatch += 1
                    writer.add(result)
                    if on_result is not None:
                        on_result(result)
                    if bar is not None:
                        bar.update(1)
                writer.flush()
                done = rep.submitted
                dt = clock.monotonic() - t_work
                rep.frames_per_min = done / dt * 60.0 if dt > 0 else None
                try:
                    rep.worker_peak_rss_mib = {k: round(v["peak_rss_mib"], 1)
                                               for k, v in engine.worker_memory().items()}
                except Exception as exc:  # noqa: BLE001 - a figure for the report only
                    log.debug("worker memory: %s", exc)
    except KeyboardInterrupt:
        status = "interrupted"
        rep.interrupted = True
    except BaseException as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if bar is not None:
            bar.close()
        try:
            writer.flush()  # the results already received are complete frames: keep them
        except KeyboardInterrupt:
            status, rep.interrupted = "interrupted", True
        finally:
            c = writer.counts
            rep.unchanged, rep.ok, rep.partial = c["unchanged"], c["ok"], c["partial"]
            rep.failed, rep.detections = c["failed"], c["detections"]
            rep.elapsed_s = clock.monotonic() - t0
            idx.end_run(writer.conn, run_id, status=status, finished_utc=utc_iso(clock),
                        counts={"seen": rep.seen, "skipped": rep.skipped, **c}, error=error)
            writer.close()
    return rep


def _engine_failure(task: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """The result of a frame whose task failed in the engine (worker died, memory, a bug)."""
    name = type(exc).__name__
    why = "worker died (memory limit or crash)" if name in ("KilledWorker", "CommClosedError") else "worker error"
    return {"path": task["path"], "size": task["size"], "mtime_ns": task["mtime_ns"], "sha": None,
            "status": "failed", "reasons": [f"engine: {why}: {name}: {exc}"],
            "pipeline_version": pipeline_version(), "settings_hash": task["settings_hash"],
            "masters": task.get("masters"), "masters_key": task.get("masters_key", ""), "facts": None,
            "detections": None}


__all__ = ["IngestReport", "ingest", "plan"]
