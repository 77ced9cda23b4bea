"""The archive's per-frame index: SQLite (WAL) in ``ARCHIVE/index.sqlite``.

``frames``: one row per frame file (keyed by its absolute path): its fingerprint (size, mtime,
content hash), what processed it (pipeline version, settings hash, masters), the outcome
(``status`` ok | partial | failed, ``reasons``), the header facts, WCS and footprint, quality,
and where its current detections are (``det_batch``: the Parquet batch that holds them, and
``n_detections``). ``runs``: one row per ingest (or daemon session), with its counts.

Detections are written before the index rows that point at them, in one transaction per batch
(``writer``), so the index never points at detections that are not there; detections whose
batch no row names (an interrupted write, a frame redone since) are not current and are never
returned by queries.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from tenmon.core.errors import ArchiveError

INDEX_NAME = "index.sqlite"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    root            TEXT,
    started_utc     TEXT NOT NULL,
    finished_utc    TEXT,
    status          TEXT NOT NULL CHECK (status IN ('running', 'finished', 'interrupted', 'failed')),
    pipeline_version TEXT NOT NULL,
    settings_hash   TEXT NOT NULL,
    settings_json   TEXT NOT NULL,
    engine          TEXT,
    workers         INTEGER,
    n_seen          INTEGER DEFAULT 0,
    n_skipped       INTEGER DEFAULT 0,
    n_unchanged     INTEGER DEFAULT 0,
    n_ok            INTEGER DEFAULT 0,
    n_partial       INTEGER DEFAULT 0,
    n_failed        INTEGER DEFAULT 0,
    n_detections    INTEGER DEFAULT 0,
    error           TEXT
);
CREATE TABLE IF NOT EXISTS frames (
    frame_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    path            TEXT NOT NULL UNIQUE,
    size            INTEGER,
    mtime_ns        INTEGER,
    sha             TEXT,
    status          TEXT NOT NULL CHECK (status IN ('ok', 'partial', 'failed')),
    reasons         TEXT NOT NULL DEFAULT '[]',
    pipeline_version TEXT NOT NULL,
    settings_hash   TEXT NOT NULL,
    masters         TEXT,
    masters_key     TEXT NOT NULL DEFAULT '',
    run_id          INTEGER,
    processed_utc   TEXT NOT NULL,
    night           TEXT,
    date_obs        TEXT,
    mjd_mid         REAL,
    exptime_s       REAL,
    filter          TEXT,
    object          TEXT,
    telescope       TEXT,
    instrument      TEXT,
    observatory     TEXT,
    gain_e_per_adu  REAL,
    hdr_ra_deg      REAL,
    hdr_dec_deg     REAL,
    missing_keywords TEXT NOT NULL DEFAULT '[]',
    facts_json      TEXT,
    naxis1          INTEGER,
    naxis2          INTEGER,
    wcs_source      TEXT,
    wcs_json        TEXT,
    ra_deg          REAL,
    dec_deg         REAL,
    radius_deg      REAL,
    corners_json    TEXT,
    solver          TEXT,
    solve_rms_arcsec REAL,
    solve_n_matched INTEGER,
    solve_reason    TEXT,
    n_sources       INTEGER,
    n_cosmic_pixels INTEGER,
    fwhm_px         REAL,
    background      REAL,
    background_rms  REAL,
    ellipticity     REAL,
    limiting_mag    REAL,
    n_detections    INTEGER NOT NULL DEFAULT 0,
    det_batch       TEXT,
    elapsed_ms      REAL,
    warnings        TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS frames_dec ON frames (dec_deg);
CREATE INDEX IF NOT EXISTS frames_night ON frames (night);
CREATE INDEX IF NOT EXISTS frames_status ON frames (status);
CREATE INDEX IF NOT EXISTS frames_batch ON frames (det_batch);
"""

#: The ``frames`` columns a result fills (everything but ``frame_id``).
FRAME_COLUMNS = (
    "path", "size", "mtime_ns", "sha", "status", "reasons", "pipeline_version", "settings_hash", "masters",
    "masters_key", "run_id", "processed_utc", "night", "date_obs", "mjd_mid", "exptime_s", "filter", "object",
    "telescope", "instrument", "observatory", "gain_e_per_adu", "hdr_ra_deg", "hdr_dec_deg", "missing_keywords",
    "facts_json", "naxis1", "naxis2", "wcs_source", "wcs_json", "ra_deg", "dec_deg", "radius_deg", "corners_json",
    "solver", "solve_rms_arcsec", "solve_n_matched", "solve_reason", "n_sources", "n_cosmic_pixels", "fwhm_px",
    "background", "background_rms", "ellipticity", "limiting_mag", "n_detections", "det_batch", "elapsed_ms",
    "warnings",
)


#: Values of NOT NULL columns a row may leave out.
_DEFAULTS = {"reasons": "[]", "missing_keywords": "[]", "warnings": "[]", "masters_key": "", "n_detections": 0}


def index_path(archive: str | Path) -> Path:
    return Path(archive) / INDEX_NAME


def connect(archive: str | Path, *, create: bool = False) -> sqlite3.Connection:
    """Open the index (WAL; rows as ``sqlite3.Row``). ``create`` makes the archive directory and
    the schema; otherwise a missing archive is an ``ArchiveError``."""
    p = index_path(archive)
    if not p.is_file():
        if not create:
            raise ArchiveError(f"{archive}: no archive here (no {INDEX_NAME}); run `tenmon archive ingest` first")
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        if create:
            conn.executescript(SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
        v = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"{p}: not a usable archive index: {exc}") from exc
    if v is None or int(v[0]) != SCHEMA_VERSION:
        raise ArchiveError(f"{p}: index schema {v[0] if v else '?'} is not {SCHEMA_VERSION}")
    return conn


def known_frames(conn: sqlite3.Connection) -> dict[str, sqlite3.Row]:
    """path -> (size, mtime_ns, sha, pipeline_version, settings_hash, masters_key, status)."""
    rows = conn.execute("SELECT path, size, mtime_ns, sha, pipeline_version, settings_hash, masters_key, status "
                        "FROM frames")
    return {r["path"]: r for r in rows}


def begin_run(conn: sqlite3.Connection, *, kind: str, root: str | None, started_utc: str, pipeline_version: str,
              settings_hash: str, settings_json: str, engine: str | None, workers: int | None) -> int:
    cur = conn.execute(
        "INSERT INTO runs (kind, root, started_utc, status, pipeline_version, settings_hash, settings_json, engine, "
        "workers) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
        (kind, root, started_utc, pipeline_version, settings_hash, settings_json, engine, workers))
    return int(cur.lastrowid)


def end_run(conn: sqlite3.Connection, run_id: int, *, status: str, finished_utc: str, counts: dict[str, int],
            error: str | None = None) -> None:
    cols = ("n_seen", "n_skipped", "n_unchanged", "n_ok", "n_partial", "n_failed", "n_detections")
    conn.execute(f"UPDATE runs SET status = ?, finished_utc = ?, error = ?, "
                 f"{', '.join(c + ' = ?' for c in cols)} WHERE run_id = ?",
                 (status, finished_utc, error, *(int(counts.get(c[2:], 0)) for c in cols), run_id))


def upsert_frame(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
    """Insert or replace the row of ``row["path"]`` (keeping its ``frame_id``); returns the id.
    Call inside the writer's transaction."""
    vals = [_sql(row.get(c, _DEFAULTS.get(c)) if row.get(c) is not None else _DEFAULTS.get(c)) for c in FRAME_COLUMNS]
    sets = ", ".join(f"{c} = excluded.{c}" for c in FRAME_COLUMNS if c != "path")
    cur = conn.execute(
        f"INSERT INTO frames ({', '.join(FRAME_COLUMNS)}) VALUES ({', '.join('?' for _ in FRAME_COLUMNS)}) "
        f"ON CONFLICT(path) DO UPDATE SET {sets} RETURNING frame_id", vals)
    return int(cur.fetchone()[0])


def touch_frame(conn: sqlite3.Connection, path: str, size: int, mtime_ns: int) -> None:
    """A file whose content hash did not change: remember its new size and time only."""
    conn.execute("UPDATE frames SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))


def current_batches(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT DISTINCT det_batch FROM frames WHERE det_batch IS NOT NULL")}


def frame_ids_for_batches(conn: sqlite3.Connection, batches: Iterable[str]) -> dict[tuple[int, str], int]:
    """``(frame_id, batch) -> n_detections`` of the current rows naming any of ``batches``."""
    out: dict[tuple[int, str], int] = {}
    bl = list(batches)
    for i in range(0, len(bl), 500):
        chunk = bl[i:i + 500]
        for r in conn.execute(f"SELECT frame_id, det_batch, n_detections FROM frames WHERE det_batch IN "
                              f"({', '.join('?' for _ in chunk)})", chunk):
            out[(int(r[0]), r[1])] = int(r[2])
    return out


def _sql(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    if hasattr(v, "item"):
        return v.item()
    return v


__all__ = ["FRAME_COLUMNS", "INDEX_NAME", "SCHEMA", "SCHEMA_VERSION", "begin_run", "connect", "current_batches",
           "end_run", "frame_ids_for_batches", "index_path", "known_frames", "touch_frame", "upsert_frame"]
