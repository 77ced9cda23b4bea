"""Every table of the daemon's SQLite database (``[storage] path``), in one place.

The store applies them (``Store`` opens with ``STORE_SCHEMA``; each service adds its own with
``Store.add_schema`` when it is installed, so a daemon without night operations has no night
tables). Every statement is ``CREATE ... IF NOT EXISTS``: a database written by an older tenmon
opens as it is, and new tables are added beside the old ones. Times are ISO 8601 UTC text
(``tenmon.core.timefmt.utc_iso``, ending in ``Z``); rows written before that end in ``+00:00``, and
every reader takes both (``tenmon.core.timefmt.parse_utc``, SQLite's ``julianday``).

The target queue's tables (``scheduler_targets``, ``scheduler_history``) are defined by the queue
itself (``tenmon.scheduler.queue.SCHEMA``), which opens the same database without a daemon for
``tenmon plan``; ``QUEUE_SCHEMA`` names it here so this module lists every table. The archive's
index is another database (``tenmon.archive.index``).
"""

from __future__ import annotations

from tenmon.scheduler.queue import SCHEMA as QUEUE_SCHEMA

#: The store's own tables: events, device history, daemon state.
STORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('info', 'warning', 'error', 'alarm')),
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_utc);
CREATE TABLE IF NOT EXISTS device_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    device TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS device_history_time ON device_history (device, time_utc);
CREATE TABLE IF NOT EXISTS daemon_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

#: The HTTP API's audit log (``tenmon.daemon.api.audit``).
AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    client TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    body TEXT NOT NULL,
    status INTEGER NOT NULL,
    code TEXT NOT NULL,
    auth TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time_utc);
"""

#: One row per frame the intake delivered. ``status``: queued (submitted, no result yet), done,
#: failed (the pipeline raised; ``error``), dropped (the bounded queue dropped it; ``error``).
FRAMES_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    path            TEXT NOT NULL UNIQUE,
    received_utc    TEXT NOT NULL,
    processed_utc   TEXT,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'done', 'failed', 'dropped')),
    target          TEXT,
    block           TEXT,
    date_obs        TEXT,
    exptime_s       REAL,
    n_sources       INTEGER,
    n_cosmic_pixels INTEGER,
    fwhm_px         REAL,
    background      REAL,
    solved          INTEGER,
    solve_id        INTEGER,
    ra_deg          REAL,
    dec_deg         REAL,
    rms_arcsec      REAL,
    elapsed_ms      REAL,
    wall_queued_s   REAL,
    error           TEXT,
    result_json     TEXT
);
CREATE INDEX IF NOT EXISTS frames_target ON frames (target, received_utc);
"""

#: One row per plate solve (written by the frame service, ``vision.solve.base.solve_row`` and
#: ``insert_solve``), read by ``vision.pointing.read_solve_log`` (``tenmon pointing fit --from-log``) reads. The daemon creates exactly this.
#: ``ra_deg``/``dec_deg`` are the solved centre (ICRS); ``mount_*`` what the mount reported at the
#: exposure (its own sky coordinates, declination in -90..90, before any correction by tenmon's
#: pointing model); ``lst_deg`` the local apparent sidereal time at mid-exposure; ``pier_side``
#: ``'east'`` (normal) or ``'west'`` (beyond the pole), NULL for a fork or unknown.
SOLVES_SCHEMA = """
CREATE TABLE IF NOT EXISTS solves (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc         TEXT    NOT NULL,   -- ISO 8601 UTC, mid-exposure (Z; +00:00 before)
    frame            TEXT,               -- product or input path of the frame
    solved           INTEGER NOT NULL,   -- 1 solved, 0 not
    reason           TEXT,               -- why not solved (NULL when solved)
    solver           TEXT,               -- which solver of the chain answered
    elapsed_ms       REAL,
    hint_ra_deg      REAL,
    hint_dec_deg     REAL,
    hint_radius_deg  REAL,
    ra_deg           REAL,               -- solved image centre, ICRS
    dec_deg          REAL,
    rotation_deg     REAL,
    scale_arcsec     REAL,               -- arcsec per pixel
    parity           TEXT,               -- 'normal' or 'flipped'
    rms_arcsec       REAL,
    n_matched        INTEGER,
    wcs_json         TEXT,               -- the WCS header as JSON
    mount_ra_deg     REAL,
    mount_dec_deg    REAL,
    lst_deg          REAL,
    pier_side        TEXT CHECK (pier_side IN ('east', 'west') OR pier_side IS NULL)
);
CREATE INDEX IF NOT EXISTS solves_time ON solves (time_utc);
"""

#: The sequencer's record of the night: one row per milestone (opened, block_done, ...).
NIGHT_LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS night_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    night    TEXT,
    kind     TEXT NOT NULL,
    target   TEXT,
    detail   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS night_log_time ON night_log (time_utc);
CREATE TABLE IF NOT EXISTS night_jobs (
    id           TEXT PRIMARY KEY,
    definition   TEXT NOT NULL,
    next_run_utc TEXT,
    last_run_utc TEXT
);
"""

#: Every table of the daemon's database, in the order a daemon with every service creates them.
ALL_SCHEMAS: tuple[str, ...] = (STORE_SCHEMA, AUDIT_SCHEMA, FRAMES_SCHEMA, SOLVES_SCHEMA,
                                NIGHT_LOG_SCHEMA, QUEUE_SCHEMA)

__all__ = ["ALL_SCHEMAS", "AUDIT_SCHEMA", "FRAMES_SCHEMA", "NIGHT_LOG_SCHEMA", "QUEUE_SCHEMA",
           "SOLVES_SCHEMA", "STORE_SCHEMA"]
