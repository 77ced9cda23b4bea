"""The ``solves`` table's times: written as ISO UTC with a ``Z`` (astropy's Time reads them), and a
database written before (``+00:00``) still reads, bounds included, beside new rows."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from astropy.time import Time

from tenmon.daemon.schema import SOLVES_SCHEMA
from tenmon.pointing.model import read_solve_log
from tenmon.vision.solve.base import SolveResult, insert_solve, solve_row

JST = timezone(timedelta(hours=9))
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def _solved(ra: float) -> SolveResult:
    return SolveResult(True, "hinted", 1.0, ra_deg=ra, dec_deg=20.0)


def test_solve_row_writes_z_that_astropy_reads():
    row = solve_row(_solved(10.0), time_utc=(T0 + timedelta(microseconds=123456)).astimezone(JST))
    assert row["time_utc"] == "2026-11-21T12:00:00.123Z"
    assert Time(row["time_utc"]).isot == "2026-11-21T12:00:00.123"


def test_frame_service_rows_write_z():
    """The frame service writes its own solves rows: the same form (its mid-exposure time)."""
    from tenmon.daemon.services.frames import _mid_exposure
    from tenmon.core.timefmt import utc_iso

    mid = _mid_exposure("2026-11-21T12:00:00", 10.0)
    assert utc_iso(mid) == "2026-11-21T12:00:05.000Z"
    assert _mid_exposure("2026-11-21T12:00:00Z", 0.0) == T0
    assert _mid_exposure("2026-11-21T21:00:00+09:00", 0.0) == T0
    assert _mid_exposure("not a time", 0.0) is None


def test_old_and_new_rows_read_together(tmp_path):
    db = tmp_path / "tenmon.sqlite"
    con = sqlite3.connect(db)
    con.executescript(SOLVES_SCHEMA)
    old = "INSERT INTO solves (time_utc, solved, ra_deg, dec_deg, mount_ra_deg, mount_dec_deg, lst_deg," \
          " pier_side) VALUES (?, 1, ?, 20.0, ?, 20.0, 30.0, 'east')"
    # before: isoformat() with +00:00 (microseconds when there were some)
    con.execute(old, ("2026-11-21T12:00:00+00:00", 1.0, 1.0))
    con.execute(old, ("2026-11-21T12:00:02.500000+00:00", 3.0, 3.0))
    for k, ra in ((1, 2.0), (3, 4.0)):  # now: Z, milliseconds
        row = solve_row(_solved(ra), time_utc=T0 + timedelta(seconds=k), mount_ra_deg=ra,
                        mount_dec_deg=20.0, lst_deg=30.0, pier_side="east")
        insert_solve(con, row)
    con.commit()
    con.close()
    every = read_solve_log(db, latitude_deg=35.0)
    assert list(every.cat_ra_deg) == [1.0, 2.0, 3.0, 4.0]  # time order across both forms
    assert every.obs_date is not None and every.obs_date.isoformat() == "2026-11-21"
    # bounds compare times, not text: 12:00:01 <= t < 12:00:03 holds the 2nd and 3rd rows
    part = read_solve_log(db, latitude_deg=35.0, since=T0 + timedelta(seconds=1),
                          until=(T0 + timedelta(seconds=3)).astimezone(JST))
    assert list(part.cat_ra_deg) == [2.0, 3.0]
    part = read_solve_log(db, latitude_deg=35.0, since=T0, until=T0 + timedelta(seconds=1))
    assert list(part.cat_ra_deg) == [1.0]
    # apparent place needs each row's time: both forms parse
    apparent = read_solve_log(db, latitude_deg=35.0, mount_frame="apparent")
    assert len(apparent) == 4
    assert apparent.cat_ra_deg[0] == pytest.approx(1.0, abs=0.5)
