"""`tenmon plan` and `tenmon targets` through their argparse registration."""

from __future__ import annotations

import argparse
import json

import pytest

from tenmon.cli import plan as plan_cli
from tenmon.core.errors import ConfigError, TenmonError

CSV = """\
name,ra,dec,priority,exposure_s,count,filter
M31,00:42:44.3,+41:16:09,1,120,3,V
M42,05:35:17.3,-05:23:28,2,60,5,R
Crux,12:26:36,-63:05:57,1,60,1,
"""


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="tenmon")
    plan_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def csv_file(tmp_path):
    f = tmp_path / "targets.csv"
    f.write_text(CSV)
    return f


def test_plan_json(csv_file, tmp_path, capsys):
    png = tmp_path / "plan.png"
    code, out, _ = run(["plan", "--night", "2026-11-21", "--targets", str(csv_file), "--json",
                        "--plot", str(png)], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1  # JSON only
    d = json.loads(lines[0])
    assert d["night"] == "2026-11-21"
    assert {b["name"] for b in d["scheduled"]} == {"M31", "M42"}
    for b in d["scheduled"]:
        assert set(b) >= {"name", "start_utc", "end_utc", "ra_deg", "dec_deg"}
    m31 = next(b for b in d["scheduled"] if b["name"] == "M31")
    assert m31["ra_deg"] == pytest.approx(10.684583, abs=1e-5)
    assert [u["name"] for u in d["unscheduled"]] == ["Crux"]
    assert "altitude" in d["unscheduled"][0]["reason"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert d["site"]["lat_deg"] == pytest.approx(35.0253)


def test_plan_text_and_other_site(csv_file, capsys):
    # From Siding Spring (-31.27, 149.06) Crux is up and M31 is low.
    code, out, _ = run(["plan", "--night", "2026-05-10", "--targets", str(csv_file),
                        "--site-lat", "-31.27", "--site-lon", "149.06", "--site-elev", "1165"],
                       capsys)
    assert code == 0
    assert out.startswith("Night of 2026-05-10 (astronomical twilight)")
    assert "Crux" in out.split("Unscheduled")[0]
    assert "M31:" in out


def test_plan_errors(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,ra,dec,priority,exposure_s,count\nX,10,99,1,60,1\n")
    with pytest.raises(ConfigError, match="line 2.*'dec'"):
        run(["plan", "--night", "2026-11-21", "--targets", str(bad)], capsys)
    with pytest.raises(TenmonError, match="--targets FILE or --db PATH"):
        run(["plan", "--night", "2026-11-21"], capsys)
    with pytest.raises(SystemExit):
        run(["plan", "--night", "21/11/2026", "--targets", str(bad)], capsys)
    with pytest.raises(ConfigError, match="--site-lat"):
        run(["plan", "--night", "2026-11-21", "--targets", str(bad), "--site-lat", "95"], capsys)


def test_targets_commands_and_plan_from_queue(csv_file, tmp_path, capsys):
    db = tmp_path / "queue.sqlite"
    code, out, _ = run(["targets", "import", str(csv_file), "--db", str(db)], capsys)
    assert code == 0 and "queued 3 target(s)" in out
    code, out, _ = run(["targets", "add", "Vega", "--ra", "18:36:56.3", "--dec", "+38:47:01",
                        "--priority", "0", "--exposure-s", "5", "--count", "10", "--db", str(db),
                        "--json"], capsys)
    added = json.loads(out)
    assert added["name"] == "Vega" and added["ra_deg"] == pytest.approx(279.2346, abs=1e-3)
    code, out, _ = run(["targets", "list", "--db", str(db), "--json"], capsys)
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["name"] for r in rows] == ["Vega", "Crux", "M31", "M42"]
    assert all(r["status"] == "pending" for r in rows)
    code, out, _ = run(["targets", "remove", "Crux", "--db", str(db)], capsys)
    assert "removed Crux" in out
    code, out, _ = run(["targets", "list", "--db", str(db)], capsys)
    assert "Crux" not in out and "M42" in out and "status" in out
    with pytest.raises(TenmonError, match="no target named 'Crux'"):
        run(["targets", "remove", "Crux", "--db", str(db)], capsys)
    with pytest.raises(TenmonError, match="already in the queue"):
        run(["targets", "import", str(csv_file), "--db", str(db)], capsys)
    with pytest.raises(ConfigError, match="'dec'"):
        run(["targets", "add", "Bad", "--ra", "1", "--dec", "100", "--priority", "1",
             "--exposure-s", "1", "--count", "1", "--db", str(db)], capsys)
    code, out, _ = run(["plan", "--night", "2026-11-21", "--db", str(db), "--json"], capsys)
    d = json.loads(out)
    assert {b["name"] for b in d["scheduled"]} <= {"Vega", "M31", "M42"}
    assert "M31" in {b["name"] for b in d["scheduled"]}
    with pytest.raises(ConfigError, match="no such queue"):
        run(["plan", "--db", str(tmp_path / "none.sqlite")], capsys)
