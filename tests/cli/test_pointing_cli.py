"""`tenmon pointing fit|evaluate` on the real TPOINT runs: JSON fields, model file, plot, errors."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from tenmon.cli import pointing as cli
from tenmon.daemon.schema import SOLVES_SCHEMA
from tenmon.core.errors import TenmonError
from tenmon.pointing import model as P

RUNS = ["gem-28.dat", "cgx-l-data.dat", "warp-astron.dat"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tenmon")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def split_run(src: Path, tmp: Path) -> tuple[Path, Path]:
    """Write the first and second half of a TPOINT run as two TPOINT files (header kept)."""
    lines = src.read_text().splitlines()
    head = [ln for ln in lines[:5]]
    obs = [ln for ln in lines[5:] if ln.strip()]
    half = len(obs) // 2
    a, b = tmp / f"a-{src.name}", tmp / f"b-{src.name}"
    a.write_text("\n".join(head + obs[:half]) + "\n")
    b.write_text("\n".join(head + obs[half:]) + "\n")
    return a, b


@pytest.mark.parametrize("name", RUNS)
def test_fit_json_reports_terms_rms_and_n(test_data, capsys, name):
    assert run(["pointing", "fit", str(test_data / "pointing" / name), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    rep = json.loads(out[0])
    assert list(rep["terms"]) == list(P.DEFAULT_TERMS)
    for t in rep["terms"].values():
        assert isinstance(t["value_arcsec"], float) and t["sigma_arcsec"] > 0
    assert rep["n"] == len(P.read_tpoint(test_data / "pointing" / name))
    assert rep["rms_after_arcsec"] < rep["rms_before_arcsec"] / 10


@pytest.mark.parametrize("name", RUNS)
def test_fit_one_half_evaluate_the_other(test_data, tmp_path, capsys, name):
    first, second = split_run(test_data / "pointing" / name, tmp_path)
    model = tmp_path / "model.json"
    png = tmp_path / "fit.png"
    assert run(["pointing", "fit", str(first), "--out", str(model), "--plot", str(png), "--json"]) == 0
    fit_rep = json.loads(capsys.readouterr().out)
    assert fit_rep["out"] == str(model) and model.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert run(["pointing", "evaluate", str(model), str(second), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n"] == len(P.read_tpoint(second))
    assert ev["rms_before_arcsec"] >= 3 * ev["rms_after_arcsec"]


def test_human_output_and_term_choice(test_data, capsys):
    warp = str(test_data / "pointing" / "warp-astron.dat")
    assert run(["pointing", "fit", warp, "--terms", "ih,id,ch,np,ma,me"]) == 0
    text = capsys.readouterr().out
    assert "98 observations" in text and "sky rms" in text
    for t in ("IH", "ID", "CH", "NP", "MA", "ME"):
        assert f"\n  {t} " in text
    assert "TF" not in text


def test_from_log(tmp_path, capsys):
    db = tmp_path / "tenmon.sqlite"
    con = sqlite3.connect(db)
    con.executescript(SOLVES_SCHEMA)
    rows = [
        # (ra, dec, mount_ra, mount_dec, lst, pier): a mount off by pure index errors. The Dec
        # index error is mechanical: it reads high on the east side and low beyond the pole.
        (ra, dec, (ra - 0.1) % 360, dec + (0.05 if ha >= 0 else -0.05), (ra + ha) % 360, "east" if ha >= 0 else "west")
        for ra, dec, ha in [(i * 17.0 % 360, -20 + (i * 7) % 100, -80 + (i * 13) % 160 + 0.5) for i in range(40)]
    ]
    for r in rows:
        con.execute(
            "INSERT INTO solves (time_utc, solved, ra_deg, dec_deg, mount_ra_deg, mount_dec_deg, lst_deg,"
            " pier_side) VALUES ('2026-11-21T12:00:00+00:00', 1, ?, ?, ?, ?, ?, ?)",
            r,
        )
    con.commit()
    con.close()
    argv = ["pointing", "fit", "--from-log", "--db", str(db), "--latitude", "35.0", "--terms", "IH,ID,CH", "--json"]
    assert run(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 40
    # RA read 0.1 deg low = HA read 360" high = IH of -360" (TPOINT: reading = true - IH).
    assert rep["terms"]["IH"]["value_arcsec"] == pytest.approx(-360.0, abs=1e-3)
    assert rep["terms"]["ID"]["value_arcsec"] == pytest.approx(-180.0, abs=1e-3)
    assert abs(rep["terms"]["CH"]["value_arcsec"]) < 1e-3
    assert rep["rms_before_arcsec"] > 200 and rep["rms_after_arcsec"] < 0.01


def test_errors_are_tenmon_errors(tmp_path, test_data):
    with pytest.raises(TenmonError, match="--db"):
        run(["pointing", "fit", "--from-log", "--latitude", "35"])
    with pytest.raises(TenmonError, match="--latitude"):
        run(["pointing", "fit", "--from-log", "--db", str(tmp_path / "x.sqlite")])
    with pytest.raises(TenmonError, match="unknown pointing term"):
        run(["pointing", "fit", str(test_data / "pointing" / "gem-28.dat"), "--terms", "IH,QQ"])
    with pytest.raises(TenmonError, match="no run line"):
        bad = tmp_path / "bad.dat"
        bad.write_text("not a pointing run\n")
        run(["pointing", "fit", str(bad)])
    with pytest.raises(TenmonError, match="cannot read pointing model"):
        run(["pointing", "evaluate", str(tmp_path / "none.json"), str(test_data / "pointing" / "gem-28.dat")])
    with pytest.raises(SystemExit):
        run(["pointing", "fit"])  # neither FILE nor --from-log
