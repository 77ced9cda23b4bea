"""Questions to the archive: light curves (cone queries over time), coverage, failures, stats, integrity.

A cone query first asks the index which frames' footprints can hold the position (their centre
within the frame's radius plus the cone's), reads only those frames' Parquet files, keeps the
rows inside the cone (``hpx`` range filter, then the exact separation) and drops rows that are
not current (``detections.current_mask``). ``scan_all=True`` reads every file instead (what a
query without the index costs; the benchmark measures both).
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from tenmon.archive import index as idx
from tenmon.core.errors import ArchiveError

#: The columns of a light-curve row (``tenmon archive query --json``).
LIGHT_CURVE_FIELDS = ("mjd", "night", "filter", "mag", "mag_err", "flux", "flux_err", "sep_arcsec", "x", "y",
                      "flags", "frame_id", "path")


def _frames_near(conn: sqlite3.Connection, ra: float, dec: float, radius_deg: float) -> list[sqlite3.Row]:
    """Current frames whose footprint circle meets the cone (centre distance <= radius + theirs)."""
    rmax = conn.execute("SELECT MAX(radius_deg) FROM frames").fetchone()[0]
    if rmax is None:
        return []
    band = float(rmax) + radius_deg
    rows = conn.execute(
        "SELECT frame_id, path, night, det_batch, n_detections, ra_deg, dec_deg, radius_deg, wcs_json, naxis1, "
        "naxis2, mjd_mid, date_obs, filter, exptime_s, status, object, telescope, instrument FROM frames "
        "WHERE dec_deg BETWEEN ? AND ? AND ra_deg IS NOT NULL", (dec - band, dec + band)).fetchall()
    if not rows:
        return []
    from tenmon.core.astro import separation_deg

    d = separation_deg(np.array([r["ra_deg"] for r in rows]), np.array([r["dec_deg"] for r in rows]), ra, dec)
    rad = np.array([r["radius_deg"] or 0.0 for r in rows])
    return [r for r, di, ri in zip(rows, d, rad) if di <= ri + radius_deg]


def cone_detections(archive: str | Path, ra: float, dec: float, radius_arcsec: float, *,
                    scan_all: bool = False):
    """Current detections within ``radius_arcsec`` of (ra, dec) [deg] as a pyarrow table with
    ``night``, ``sep_arcsec`` and the frame's ``path``, sorted by time."""
    import pyarrow as pa

    from tenmon.archive import detections as det

    conn = idx.connect(archive)
    try:
        r_deg = radius_arcsec / 3600.0
        if scan_all:
            files = None
        else:
            near = _frames_near(conn, ra, dec, r_deg)
            files = sorted({str(det.file_for(archive, r["night"], r["det_batch"])) for r in near if r["det_batch"]})
            if not files:
                files = []
        t = det.cone(archive, ra, dec, r_deg, files=files)
        if len(t) == 0:
            return t.append_column("path", pa.array([], pa.string()))
        pairs = {(int(f), b) for f, b in zip(t["frame_id"].to_numpy(), t["batch"].to_pylist())}
        cur = idx.frame_ids_for_batches(conn, {b for _, b in pairs})
        t = t.filter(pa.array(det.current_mask(t, cur)))
        ids = sorted({int(f) for f in t["frame_id"].to_numpy()})
        paths: dict[int, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for r in conn.execute(f"SELECT frame_id, path FROM frames WHERE frame_id IN ({','.join('?' * len(chunk))})",
                                  chunk):
                paths[int(r[0])] = r[1]
        t = t.append_column("path", pa.array([paths.get(int(f)) for f in t["frame_id"].to_numpy()], pa.string()))
        return t.sort_by([("mjd", "ascending"), ("sep_arcsec", "ascending")])
    finally:
        conn.close()


def light_curve(archive: str | Path, ra: float, dec: float, radius_arcsec: float = 5.0, *,
                filter_name: str | None = None, nearest: bool = True) -> list[dict[str, Any]]:
    """Detections of a position over time, one dict per row (:data:`LIGHT_CURVE_FIELDS`).

    ``nearest``: one row per frame, the detection nearest the position (a light curve); else
    every detection in the cone. ``filter_name`` keeps one filter (case-insensitive).
    """
    t = cone_detections(archive, ra, dec, radius_arcsec)
    rows = t.select([c for c in LIGHT_CURVE_FIELDS]).to_pylist() if len(t) else []
    if filter_name is not None:
        rows = [r for r in rows if (r["filter"] or "").lower() == filter_name.lower()]
    if nearest:
        best: dict[int, dict[str, Any]] = {}
        for r in rows:
            b = best.get(r["frame_id"])
            if b is None or r["sep_arcsec"] < b["sep_arcsec"]:
                best[r["frame_id"]] = r
        rows = sorted(best.values(), key=lambda r: (r["mjd"] if r["mjd"] is not None and not math.isnan(r["mjd"])
                                                    else math.inf, r["frame_id"]))
    for r in rows:
        for k, v in list(r.items()):
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
            elif isinstance(v, float):
                r[k] = round(v, 7 if k == "mjd" else 5)
    return rows


def coverage(archive: str | Path, ra: float, dec: float) -> list[dict[str, Any]]:
    """Frames whose footprint (their WCS over the whole frame) holds (ra, dec), by time."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    from tenmon.vision.solve.base import wcs_from_json

    conn = idx.connect(archive)
    try:
        near = _frames_near(conn, ra, dec, 0.0)
    finally:
        conn.close()
    out = []
    for r in near:
        if not r["wcs_json"] or not r["naxis1"]:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w: WCS = wcs_from_json(json.loads(r["wcs_json"]))
        try:
            x, y = (float(v) for v in w.all_world2pix([[ra, dec]], 0)[0])
        except Exception:  # noqa: BLE001 - a WCS that does not invert there does not cover it
            continue
        if -0.5 <= x < r["naxis1"] - 0.5 and -0.5 <= y < r["naxis2"] - 0.5:
            out.append({"frame_id": r["frame_id"], "path": r["path"], "night": r["night"], "date_obs": r["date_obs"],
                        "mjd": r["mjd_mid"], "filter": r["filter"], "exptime_s": r["exptime_s"],
                        "object": r["object"], "x": round(x, 2), "y": round(y, 2), "status": r["status"],
                        "n_detections": r["n_detections"]})
    out.sort(key=lambda d: (d["mjd"] if d["mjd"] is not None else math.inf, d["path"]))
    return out


def failures(archive: str | Path) -> list[dict[str, Any]]:
    """Frames that failed or were only partly processed, with their reasons."""
    conn = idx.connect(archive)
    try:
        rows = conn.execute("SELECT frame_id, path, status, reasons, missing_keywords, processed_utc FROM frames "
                            "WHERE status != 'ok' ORDER BY path").fetchall()
    finally:
        conn.close()
    return [{"frame_id": r["frame_id"], "path": r["path"], "status": r["status"], "reasons": json.loads(r["reasons"]),
             "missing_keywords": json.loads(r["missing_keywords"]), "processed_utc": r["processed_utc"]}
            for r in rows]


def stats(archive: str | Path) -> dict[str, Any]:
    """Counts: frames by status, nights, detections, files and bytes, versions, the last runs."""
    from tenmon.archive import detections as det

    conn = idx.connect(archive)
    try:
        by_status = {r[0]: r[1] for r in conn.execute("SELECT status, COUNT(*) FROM frames GROUP BY status")}
        one = conn.execute("SELECT COUNT(*), COUNT(DISTINCT night), SUM(n_detections), MIN(date_obs), MAX(date_obs), "
                           "SUM(wcs_json IS NOT NULL), COUNT(DISTINCT filter) FROM frames").fetchone()
        versions = {r[0]: r[1] for r in conn.execute(
            "SELECT pipeline_version || ' ' || settings_hash, COUNT(*) FROM frames GROUP BY 1")}
        runs = [dict(r) for r in conn.execute(
            "SELECT run_id, kind, status, started_utc, finished_utc, engine, n_seen, n_skipped, n_ok, n_partial, "
            "n_failed, n_detections FROM runs ORDER BY run_id DESC LIMIT 5")]
    finally:
        conn.close()
    files = list((Path(archive) / det.DETECTIONS_DIR).glob("night=*/part-*.parquet"))
    return {
        "archive": str(Path(archive).resolve()),
        "frames": int(one[0] or 0),
        "ok": int(by_status.get("ok", 0)), "partial": int(by_status.get("partial", 0)),
        "failed": int(by_status.get("failed", 0)),
        "with_wcs": int(one[5] or 0),
        "nights": int(one[1] or 0),
        "filters": int(one[6] or 0),
        "first_date_obs": one[3], "last_date_obs": one[4],
        "detections": int(one[2] or 0),
        "parquet_files": len(files),
        "parquet_bytes": sum(p.stat().st_size for p in files),
        "index_bytes": idx.index_path(archive).stat().st_size,
        "versions": versions,
        "runs": runs,
    }


def check_integrity(archive: str | Path) -> dict[str, Any]:
    """Check that the index and the Parquet agree: SQLite's own check, every frame's current
    detections present exactly once (count = ``n_detections``), no duplicate rows; orphan
    batches (ignored by queries, removed by the next writer) are counted, not errors."""
    import pyarrow.compute as pc

    from tenmon.archive import detections as det

    problems: list[str] = []
    conn = idx.connect(archive)
    try:
        ic = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if ic != "ok":
            problems.append(f"sqlite integrity_check: {ic}")
        want = {(int(r[0]), r[1]): (int(r[2]), r[3]) for r in conn.execute(
            "SELECT frame_id, det_batch, n_detections, night FROM frames WHERE det_batch IS NOT NULL")}
        bad_rows = conn.execute("SELECT COUNT(*) FROM frames WHERE det_batch IS NULL AND n_detections > 0").fetchone()[0]
        if bad_rows:
            problems.append(f"{bad_rows} frame row(s) count detections but name no batch")
    finally:
        conn.close()
    d = det.dataset(archive)
    have: dict[tuple[int, str], int] = {}
    dup = 0
    n_rows = 0
    if d is not None:
        t = d.to_table(columns=["frame_id", "batch", "x", "y"])
        n_rows = len(t)
        g = t.group_by(["frame_id", "batch"]).aggregate([("x", "count")])
        for f, b, c in zip(g["frame_id"].to_numpy(), g["batch"].to_pylist(), g["x_count"].to_numpy()):
            have[(int(f), b)] = int(c)
        keys = pc.binary_join_element_wise(pc.cast(t["frame_id"], "string"), t["batch"], pc.cast(t["x"], "string"),
                                           pc.cast(t["y"], "string"), "|")
        dup = len(t) - len(pc.unique(keys))
    missing = [k for k, (n, _) in want.items() if have.get(k, 0) != n]
    for (f, b) in missing[:10]:
        problems.append(f"frame {f}: batch {b} holds {have.get((f, b), 0)} of its {want[(f, b)][0]} detections")
    if len(missing) > 10:
        problems.append(f"... and {len(missing) - 10} more frames")
    if dup:
        problems.append(f"{dup} duplicated detection row(s)")
    orphan = sum(n for k, n in have.items() if k not in want)
    return {"ok": not problems, "problems": problems, "current_detections": sum(n for n, _ in want.values()),
            "stored_rows": n_rows, "not_current_rows": orphan}


def plot_light_curve(rows: list[dict[str, Any]], out: str | Path, *, title: str) -> Path:
    """A PNG of the light curve (magnitude against MJD, error bars, one colour per filter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    use_mag = any(r["mag"] is not None for r in rows)
    key, ekey = ("mag", "mag_err") if use_mag else ("flux", "flux_err")
    filters = sorted({r["filter"] or "?" for r in rows})
    for f in filters:
        sel = [r for r in rows if (r["filter"] or "?") == f and r[key] is not None and r["mjd"] is not None]
        if not sel:
            continue
        ax.errorbar([r["mjd"] for r in sel], [r[key] for r in sel], yerr=[r[ekey] or 0.0 for r in sel], fmt="o",
                    ms=4, capsize=2, label=f"filter {f} ({len(sel)})")
    if use_mag:
        ax.invert_yaxis()
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_xlabel("MJD (UTC, mid-exposure)")
    ax.set_ylabel("instrumental magnitude (e-/s)" if use_mag else "flux [ADU]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no detections", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def ensure_archive(archive: str | Path) -> Path:
    p = Path(archive)
    if not idx.index_path(p).is_file():
        raise ArchiveError(f"{archive}: no archive here (no {idx.INDEX_NAME}); run `tenmon archive ingest` first")
    return p


__all__ = ["LIGHT_CURVE_FIELDS", "check_integrity", "coverage", "cone_detections", "ensure_archive", "failures",
           "light_curve", "plot_light_curve", "stats"]
