"""Solver chain: order, timeouts, which solved, verification of any answer; results into FITS and SQLite."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from pydantic import ValidationError
from solve_synth import centre_error_arcsec, point_case

from tenmon.core.errors import SolveError
from tenmon.daemon.schema import SOLVES_SCHEMA
from tenmon.pointing.model import read_solve_log
from tenmon.vision.solve.base import SolveHint, SolveResult, Solver, insert_solve, solve_row, wcs_from_json
from tenmon.vision.solve.catalogs import SimulatedSky
from tenmon.vision.solve.chain import SolverChain, build_chain
from tenmon.config.vision import SolverSettings
from tenmon.vision.solve.frames import hint_from_header, read_frame, write_solved_copy
from tenmon.vision.solve.hinted import HintedSolver

SKY = SimulatedSky(seed=21)


@dataclass
class _Broken:
    """A solver that cannot run (like solve-field missing)."""

    name: str = "broken"

    def solve(self, sources, shape, hint, *, timeout_s):
        raise SolveError("not installed")


@dataclass
class _Liar:
    """A solver that answers confidently with the wrong pixel scale."""

    wcs: WCS
    name: str = "liar"

    def solve(self, sources, shape, hint, *, timeout_s):
        w = self.wcs.deepcopy()
        w.wcs.cd = w.wcs.cd * 1.3
        return SolveResult.from_wcs(w, shape, solver=self.name, elapsed_ms=1.0, rms_arcsec=0.1, n_matched=50)


def test_chain_tries_in_order_and_records_who_solved():
    case = point_case(31, SKY)
    assert isinstance(HintedSolver(SKY), Solver)
    chain = SolverChain([(_Broken(), 1.0), (_Liar(case.wcs), 1.0), (HintedSolver(SimulatedSky(seed=99)), 5.0),
                         (HintedSolver(SKY), 5.0)])
    res = chain.solve(case.sources, case.shape, case.hint)
    assert res.solved and res.solver == "hinted"
    assert centre_error_arcsec(res, case.truth) < 0.5
    names = [(a.solver, a.solved) for a in res.attempts]
    assert names == [("broken", False), ("liar", False), ("hinted", False), ("hinted", True)]
    assert "could not run: not installed" in res.attempts[0].reason
    assert "answer rejected: scale" in res.attempts[1].reason
    assert res.elapsed_ms >= sum(a.elapsed_ms for a in res.attempts) - 1.0


def test_chain_without_a_solution_gives_every_reason():
    case = point_case(32, SKY)
    res = SolverChain([(HintedSolver(SimulatedSky(seed=98)), 5.0)]).solve(case.sources, case.shape, case.hint)
    assert not res.solved and res.solver == "chain"
    assert res.reason.startswith("hinted: no verified match")


def test_build_chain_skips_what_is_not_configured():
    s = SolverSettings(order=["hinted", "web"], pixel_scale_arcsec=0.32)
    chain = build_chain(s)
    assert chain.solvers == []
    reasons = [a.reason for a in chain.skipped]
    assert reasons == ["skipped: no catalogue configured", "skipped: no api_key configured"]
    sim = build_chain(SolverSettings(order=["hinted"], catalog={"provider": "simulated", "sim_seed": 21}))
    case = point_case(33, SKY)
    assert sim.solve(case.sources, case.shape, case.hint).solved
    with pytest.raises(ValidationError):
        SolverSettings(order=["hinted", "magic"])
    with pytest.raises(ValidationError):
        SolverSettings(hinted={"timeout": 3})


def test_wcs_goes_into_fits_and_json_and_sqlite(tmp_path):
    case = point_case(34, SKY, shape=(256, 256), scale=2.6, n_artifacts=0)
    res = HintedSolver(SKY).solve(case.sources, case.shape, case.hint)
    assert res.solved, res.reason
    # FITS: a copy with the WCS; the input is untouched.
    src = tmp_path / "frame.fits"
    hdr = fits.Header()
    hdr["CTYPE1"], hdr["CTYPE2"], hdr["CRVAL1"], hdr["CRVAL2"] = "RA---TAN", "DEC--TAN", 1.0, 2.0  # stale WCS
    fits.PrimaryHDU(np.zeros(case.shape, dtype=np.uint16), header=hdr).writeto(src)
    before = src.read_bytes()
    out = write_solved_copy(src, tmp_path / "solved.fits", res)
    assert src.read_bytes() == before
    image, header = read_frame(out)
    assert header["SOLVED"] is True and header["SOLVER"] == "hinted"
    h = hint_from_header(header, image.shape)
    assert centre_error_arcsec(SolveResult(True, "x", 0, ra_deg=h.ra_deg, dec_deg=h.dec_deg), case.truth) < 0.5
    assert h.scale_arcsec == pytest.approx(res.scale_arcsec)
    with pytest.raises(Exception, match="refusing"):
        write_solved_copy(out, out, res)
    # JSON: the WCS cards rebuild the same WCS.
    w2 = wcs_from_json(res.to_json()["wcs"])
    assert np.allclose(w2.pixel_scale_matrix, res.wcs.pixel_scale_matrix)
    assert np.allclose(w2.wcs.crval, res.wcs.wcs.crval)
    # SQLite: one row per solve in the table the pointing fit reads.
    db = tmp_path / "tenmon.sqlite"
    con = sqlite3.connect(db)
    con.executescript(SOLVES_SCHEMA)
    when = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
    insert_solve(con, solve_row(res, time_utc=when, hint=case.hint, frame="frame.fits",
                                mount_ra_deg=case.hint.ra_deg, mount_dec_deg=case.hint.dec_deg, lst_deg=10.0,
                                pier_side="east"))
    failed = SolveResult.failure("hinted", "only 3 sources", 2.0)
    insert_solve(con, solve_row(failed, time_utc=when, hint=case.hint))
    con.commit()
    rows = con.execute("SELECT solved, solver, rms_arcsec, reason, hint_ra_deg FROM solves ORDER BY id").fetchall()
    con.close()
    assert rows[0][:2] == (1, "hinted") and rows[0][2] == pytest.approx(res.rms_arcsec)
    assert rows[1][0] == 0 and rows[1][3] == "only 3 sources"
    logged = read_solve_log(db, latitude_deg=35.0)
    assert len(logged) == 1 and logged.cat_ra_deg[0] == pytest.approx(res.ra_deg)
    with pytest.raises(ValueError, match="timezone"):
        solve_row(res, time_utc=datetime(2026, 1, 1))


def test_unsolved_header_says_so():
    res = SolveResult.failure("chain", "no stars", 1.0)
    h = res.annotate_header(fits.Header({"CTYPE1": "RA---TAN", "OBJECT": "M1"}))
    assert h["SOLVED"] is False and "CTYPE1" not in h and h["OBJECT"] == "M1"
    assert "not solved: no stars" in str(h["HISTORY"])


def test_hint_from_header_keys():
    h = hint_from_header(fits.Header({"OBJCTRA": "12 30 00", "OBJCTDEC": "-05 30 00", "XPIXSZ": 13.5,
                                      "FOCALLEN": 2400.0}), (100, 100))
    assert h.ra_deg == pytest.approx(187.5) and h.dec_deg == pytest.approx(-5.5)
    assert h.scale_arcsec == pytest.approx(206.265 * 13.5 / 2400.0)
    h2 = hint_from_header(fits.Header({"RA-MNT": 301.5, "DEC-MNT": 44.4}), (100, 100))
    assert (h2.ra_deg, h2.dec_deg, h2.scale_arcsec) == (301.5, 44.4, None)
    h3 = hint_from_header(fits.Header(), (100, 100))
    assert not h3.has_position and h3.scale_arcsec is None
    assert SolveHint().to_json()["ra_deg"] is None
