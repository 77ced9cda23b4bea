"""`tenmon archive ...` on a small ingested archive: --json output, the plot, --help, friendly errors;
and the Parquet read directly with DuckDB as docs/archive.md shows."""

from __future__ import annotations

import json

import pytest

from tenmon.archive.synthetic import VARIABLE
from tenmon.cli.main import main


@pytest.fixture(scope="module")
def archive(synthetic):
    truth, d = synthetic
    db = d / "db"
    rc = main(["archive", "ingest", str(truth.root), "--db", str(db), "--workers", "1", "--catalog", "simulated",
               "--no-progress", "--json"])
    assert rc == 0
    return truth, db


def _lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_query_prints_a_light_curve_and_plots_it(archive, capsys, tmp_path):
    truth, db = archive
    capsys.readouterr()
    png = tmp_path / "lc.png"
    ra = "10:00:01.008"   # VARIABLE in sexagesimal
    assert abs(150.0042 - VARIABLE[0]) < 1e-9
    assert main(["archive", "query", "--db", str(db), "--ra", ra, "--dec", "+20:00:11.16", "--radius", "3",
                 "--plot", str(png), "--json"]) == 0
    rows = _lines(capsys)
    timed = [r for r in rows if r["mjd"] is not None]
    assert len(timed) == len(truth.frames)
    assert [r["mjd"] for r in timed] == sorted(r["mjd"] for r in timed)
    assert all(r["sep_arcsec"] < 0.5 and r["filter"] == "V" and r["mag"] < 0 for r in timed)
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 600 and img[..., :3].std() > 0.05   # not blank


def test_coverage_failures_and_stats(archive, capsys):
    truth, db = archive
    capsys.readouterr()
    assert main(["archive", "coverage", "--db", str(db), "--ra", str(VARIABLE[0]), "--dec", str(VARIABLE[1]),
                 "--json"]) == 0
    cov = _lines(capsys)
    assert set(truth.frames) <= {c["path"] for c in cov}
    assert all(-0.5 <= c["x"] < 255.5 and -0.5 <= c["y"] < 255.5 for c in cov)
    assert main(["archive", "coverage", "--db", str(db), "--ra", "200", "--dec", "-30", "--json"]) == 0
    assert _lines(capsys) == []
    assert main(["archive", "failures", "--db", str(db), "--json"]) == 0
    fails = {f["path"]: f for f in _lines(capsys)}
    assert set(fails) == set(truth.bad)
    assert all(f["reasons"] for f in fails.values())
    assert main(["archive", "stats", "--db", str(db), "--check", "--json"]) == 0
    (s,) = _lines(capsys)
    assert s["frames"] == len(truth.frames) + len(truth.bad) and s["integrity"]["ok"] and s["nights"] == 4  # the frame without a date has none
    assert main(["archive", "stats", "--db", str(db)]) == 0
    assert "integrity" not in capsys.readouterr().out


def test_help_and_friendly_errors(capsys, tmp_path):
    for sub in ("ingest", "query", "coverage", "failures", "stats"):
        with pytest.raises(SystemExit) as e:
            main(["archive", sub, "--help"])
        assert e.value.code == 0
        assert "--db" in capsys.readouterr().out
    assert main(["archive", "query", "--db", str(tmp_path / "none"), "--ra", "1", "--dec", "2"]) == 1
    assert "no archive here" in capsys.readouterr().err
    assert main(["archive", "query", "--db", str(tmp_path), "--ra", "1", "--dec", "95"]) == 1
    assert main(["archive", "ingest", str(tmp_path / "missing"), "--db", str(tmp_path / "db")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_duckdb_reads_the_parquet_as_documented(archive):
    duckdb = pytest.importorskip("duckdb")
    truth, db = archive
    from tenmon.archive import queries

    con = duckdb.connect()
    # docs/archive.md: every detection of a night, straight from the Parquet (superseded rows too)
    n = con.execute(f"SELECT count(*) FROM read_parquet('{db}/detections/*/*.parquet', hive_partitioning = true, "
                    "hive_types = {'night': VARCHAR}) WHERE night = '2026-01-01'").fetchone()[0]
    s = queries.stats(db)
    assert 0 < n < s["detections"]
    # docs/archive.md: a box around a position (nothing was redone here, so every row is current)
    rows = con.execute(
        f"SELECT frame_id, mag FROM read_parquet('{db}/detections/*/*.parquet', hive_partitioning = true) "
        "WHERE dec BETWEEN ? AND ? AND ra BETWEEN ? AND ? ORDER BY mjd",
        [VARIABLE[1] - 3 / 3600, VARIABLE[1] + 3 / 3600, VARIABLE[0] - 3.2 / 3600, VARIABLE[0] + 3.2 / 3600]).fetchall()
    lc = queries.light_curve(db, *VARIABLE, 3.0)
    assert len(rows) == len(lc)
