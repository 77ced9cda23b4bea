"""Target model and TOML/CSV import: values parsed right, errors naming file, line and field."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tenmon.core.errors import ConfigError
from tenmon.scheduler.errors import TargetFileError
from tenmon.scheduler.targets import Target, load_targets, parse_dec, parse_ra, target_from_record

TOML = """\
# two targets
[[target]]
name = "M42"
ra = "05:35:17.3"
dec = "-05:23:28"
priority = 1
exposure_s = 60
count = 10
filter = "V"
window_start = 2026-11-21T12:00:00Z
window_end = 2026-11-21T18:00:00+00:00

[[target]]
name = "NGC 891"
ra = 35.639
dec = 42.349
priority = 3
exposure_s = 120.5
count = 4
binning = 2
cadence_s = 3600
"""

CSV = """\
name,ra,dec,priority,exposure_s,count,filter,binning,window_start,window_end,cadence_s
M42,05:35:17.3,-05:23:28,1,60,10,V,,2026-11-21T12:00:00Z,,
# a comment row,,,,,,,,,,
NGC 891,35.639,42.349,3,120.5,4,,2,,,3600
"""


def test_toml_and_csv_give_the_same_targets(tmp_path):
    (tmp_path / "t.toml").write_text(TOML)
    (tmp_path / "t.csv").write_text(CSV)
    a = load_targets(tmp_path / "t.toml")
    b = load_targets(tmp_path / "t.csv")
    assert [t.name for t in a] == ["M42", "NGC 891"]
    m42 = a[0]
    # 05:35:17.3 h = 83.82208 deg; -05:23:28 = -5.39111 deg
    assert m42.ra_deg == pytest.approx(83.822083, abs=1e-5)
    assert m42.dec_deg == pytest.approx(-5.391111, abs=1e-5)
    assert m42.window_start == datetime(2026, 11, 21, 12, tzinfo=timezone.utc)
    assert m42.window_end == datetime(2026, 11, 21, 18, tzinfo=timezone.utc)
    assert a[1].binning == 2 and a[1].cadence_s == 3600 and a[1].filter is None
    assert b[0].ra_deg == pytest.approx(m42.ra_deg) and b[0].dec_deg == pytest.approx(m42.dec_deg)
    assert b[0].window_end is None and b[1].cadence_s == 3600 and b[1].exposure_s == 120.5


def test_input_file_is_not_modified(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text(TOML)
    before = f.read_bytes()
    load_targets(f)
    assert f.read_bytes() == before


def test_ra_and_dec_parsing():
    assert parse_ra(10) == 10.0
    assert parse_ra("10.5") == 10.5  # plain number text: degrees
    assert parse_ra("1h00m00s") == pytest.approx(15.0)
    assert parse_ra("12:00:00") == pytest.approx(180.0)
    assert parse_dec("-30:30:00") == pytest.approx(-30.5)
    with pytest.raises(ValueError, match="outside"):
        parse_ra(400)
    with pytest.raises(ValueError, match="outside"):
        parse_dec("95")
    with pytest.raises(ValueError):
        parse_dec("north")


def test_csv_error_names_file_line_and_field(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text(
        "name,ra,dec,priority,exposure_s,count\n"
        "A,10,20,1,60,2\n"
        "B,10,120,1,60,2\n"      # line 3: dec out of range
        "C,10,20,1,-5,2\n"       # line 4: negative exposure
    )
    with pytest.raises(TargetFileError) as err:
        load_targets(f)
    msg = str(err.value)
    assert str(f) in msg and "line 3" in msg and "'dec'" in msg
    assert isinstance(err.value, ConfigError)
    problems = err.value.problems
    assert ("row[2].dec", 3) == problems[0][:2]
    assert any(p[0] == "row[3].exposure_s" and p[1] == 4 for p in problems)


def test_csv_unknown_and_missing_columns(tmp_path):
    f = tmp_path / "cols.csv"
    f.write_text("name,ra,dec,priority,exposure,count\nA,1,2,1,60,1\n")
    with pytest.raises(TargetFileError) as err:
        load_targets(f)
    fields = {p[0] for p in err.value.problems}
    assert {"exposure", "exposure_s"} <= fields
    assert "line 1" in str(err.value)


def test_toml_error_line_points_at_the_field(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(TOML.replace('count = 4', 'count = 0').replace('priority = 1', 'priority = -1'))
    with pytest.raises(TargetFileError) as err:
        load_targets(f)
    lines = TOML.splitlines()
    prio_line = lines.index("priority = 1") + 1
    count_line = lines.index("count = 4") + 1
    got = {(p[0], p[1]) for p in err.value.problems}
    assert ("target[1].priority", prio_line) in got
    assert ("target[2].count", count_line) in got
    assert f"line {prio_line}" in str(err.value) and "'priority'" in str(err.value)


def test_toml_syntax_error_and_missing_field(tmp_path):
    f = tmp_path / "syntax.toml"
    f.write_text('[[target]]\nname = "A"\nra = \n')
    with pytest.raises(TargetFileError, match="line 3"):
        load_targets(f)
    g = tmp_path / "missing.toml"
    g.write_text('[[target]]\nname = "A"\nra = 1\ndec = 2\npriority = 1\ncount = 1\n')
    with pytest.raises(TargetFileError, match="'exposure_s': missing") as err:
        load_targets(g)
    assert err.value.problems[0][1] == 1  # the [[target]] header line


def test_duplicates_naive_times_and_unknown_suffix(tmp_path):
    f = tmp_path / "dup.csv"
    f.write_text("name,ra,dec,priority,exposure_s,count\nA,1,2,1,60,1\nA,3,4,1,60,1\n")
    with pytest.raises(TargetFileError, match="duplicate name 'A'"):
        load_targets(f)
    g = tmp_path / "naive.csv"
    g.write_text("name,ra,dec,priority,exposure_s,count,window_start\nA,1,2,1,60,1,"
                 "2026-11-21T12:00:00\n")
    with pytest.raises(TargetFileError, match="UTC offset"):
        load_targets(g)
    h = tmp_path / "t.json"
    h.write_text("{}")
    with pytest.raises(TargetFileError, match="unknown target file type"):
        load_targets(h)
    with pytest.raises(TargetFileError, match="cannot read"):
        load_targets(tmp_path / "absent.csv")


def test_window_order_and_record_errors():
    with pytest.raises(TargetFileError, match="window_end"):
        target_from_record({"name": "A", "ra": 1, "dec": 2, "priority": 1, "exposure_s": 1,
                            "count": 1, "window_start": "2026-11-21T12:00:00Z",
                            "window_end": "2026-11-21T11:00:00Z"})
    t = Target(name=" A ", ra_deg=1, dec_deg=2, priority=0, exposure_s=10, count=3)
    assert t.name == "A"
    assert t.duration_s(readout_s=5) == 45
