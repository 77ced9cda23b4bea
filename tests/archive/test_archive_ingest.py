"""Ingest of a small real-looking archive: everything ingested or failed with a reason, a rerun does
nothing, a changed file is redone (its old detections no longer returned), a touched one is not,
and the injected variable star's light curve comes back."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest

from tenmon.archive import queries
from tenmon.archive.ingest import ingest
from tenmon.archive.synthetic import VARIABLE, ZERO_POINT_MAG, render, variable_mag, write

from archive_helpers import SETTINGS


def _rows(db):
    c = sqlite3.connect(db / "index.sqlite")
    c.row_factory = sqlite3.Row
    try:
        return {r["path"]: dict(r) for r in c.execute("SELECT * FROM frames")}
    finally:
        c.close()


@pytest.fixture(scope="module")
def first(synthetic):
    truth, d = synthetic
    rep = ingest(truth.root, d / "db", settings=SETTINGS, workers=2, progress=False, memory_limit="1GiB")
    return truth, d / "db", rep


def test_everything_is_ingested_or_failed_with_a_reason(first):
    truth, db, rep = first
    rows = _rows(db)
    assert set(rows) == set(truth.frames) | set(truth.bad)     # README.txt and masters/ are not frames
    assert rep.seen == len(rows) and rep.submitted == len(rows) and not rep.interrupted
    for path in truth.frames:
        r = rows[path]
        assert r["status"] == "ok", (path, r["reasons"])
        assert r["wcs_source"] == "solver" and r["solver"] == "hinted" and r["n_detections"] > 30
        assert r["night"] == truth.frames[path]["night"]
        assert abs(r["mjd_mid"] - truth.frames[path]["mjd_mid"]) < 1e-6
        assert r["masters"].endswith("masters")
    for path, kind in truth.bad.items():
        r = rows[path]
        reasons = json.loads(r["reasons"])
        assert r["status"] in ("failed", "partial") and reasons, path
        assert reasons[0].startswith(kind), (path, reasons)
    assert rows[next(p for p in truth.bad if p.endswith("nopointing.fits"))]["status"] == "partial"
    assert (rep.ok, rep.partial, rep.failed) == (len(truth.frames), 2, 3)
    assert queries.check_integrity(db)["ok"]


def test_two_observatories_headers_are_read_from_their_own_keywords(first):
    truth, db, _ = first
    rows = _rows(db)
    for path, t in truth.frames.items():
        kw = json.loads(rows[path]["facts_json"])["keywords"]
        if t["style"] == "A":
            assert (kw["time"], kw["exptime_s"], kw["gain"], kw["pointing"]) == ("DATE-OBS", "EXPTIME", "GAIN", "RA/DEC")
            assert rows[path]["gain_e_per_adu"] == 1.5 and json.loads(rows[path]["missing_keywords"]) == []
        else:
            assert (kw["time"], kw["exptime_s"], kw["gain"], kw["pointing"]) == (
                "MJD-OBS", "EXPOSURE", "EGAIN", "OBJCTRA/OBJCTDEC")
            assert rows[path]["gain_e_per_adu"] == 2.2
            assert "site_lon" in json.loads(rows[path]["missing_keywords"])


def test_the_variable_star_light_curve_is_recovered(first):
    truth, db, _ = first
    lc = [r for r in queries.light_curve(db, *VARIABLE, 3.0) if r["mjd"] is not None]
    assert len(lc) == len(truth.frames)                       # once per frame, both observatories
    assert {r["path"] for r in lc} == set(truth.frames)
    mag = np.array([r["mag"] for r in lc])
    err = np.array([r["mag_err"] for r in lc])
    true = np.array([variable_mag(r["mjd"]) for r in lc]) - ZERO_POINT_MAG
    resid = mag - true
    resid -= np.median(resid)                                  # the aperture's constant offset
    assert np.corrcoef(mag, true)[0, 1] > 0.995
    assert np.std(resid) < 2.0 * np.median(err), (np.std(resid), np.median(err))
    assert np.ptp(true) > 50 * np.median(err)                  # a test that a flat curve would fail
    cov = queries.coverage(db, *VARIABLE)
    assert set(truth.frames) <= {c["path"] for c in cov}


def test_a_rerun_does_nothing(first):
    truth, db, _ = first
    before = _rows(db)
    files = sorted(p.name for p in db.glob("detections/*/*.parquet"))
    rep = ingest(truth.root, db, settings=SETTINGS, workers=1, progress=False)
    assert (rep.seen, rep.skipped, rep.submitted) == (len(before), len(before), 0)
    assert _rows(db) == before
    assert sorted(p.name for p in db.glob("detections/*/*.parquet")) == files


def test_a_touched_file_is_not_redone_and_a_changed_one_is(first):
    truth, db, _ = first
    paths = sorted(p for p, t in truth.frames.items() if t["style"] == "B")
    touched, changed = paths[0], paths[1]
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    before = _rows(db)
    old_batch = before[changed]["det_batch"]
    mjd = truth.frames[changed]["mjd_mid"] - 30 / 86400
    frame, h, _ = render(mjd, style="B", seed=777, size=256)    # same field and time, new noise
    write(frame, h, type(db)(changed))
    rep = ingest(truth.root, db, settings=SETTINGS, workers=1, progress=False)
    assert (rep.submitted, rep.unchanged, rep.ok) == (2, 1, 1)
    after = _rows(db)
    assert after[touched]["processed_utc"] == before[touched]["processed_utc"]
    assert after[touched]["mtime_ns"] == st.st_mtime_ns + 10**9
    assert after[changed]["sha"] != before[changed]["sha"] and after[changed]["det_batch"] != old_batch
    assert after[changed]["frame_id"] == before[changed]["frame_id"]
    integ = queries.check_integrity(db)
    assert integ["ok"], integ["problems"]
    assert integ["not_current_rows"] == before[changed]["n_detections"]   # superseded, kept, never returned
    lc = [r for r in queries.light_curve(db, *VARIABLE, 3.0) if r["path"] == changed]
    assert len(lc) == 1
    t = queries.cone_detections(db, *VARIABLE, 3.0)
    mine = [b for b, p in zip(t["batch"].to_pylist(), t["path"].to_pylist()) if p == changed]
    assert mine == [after[changed]["det_batch"]]              # the new detection only, not the old one
