"""Pointing model: TPOINT reader, pier sides, fit with sigmas, half/half on the real runs, apply, I/O."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tenmon.daemon.schema import SOLVES_SCHEMA
from tenmon.pointing import model as P

RUNS = {"gem-28.dat": 454, "cgx-l-data.dat": 148, "warp-astron.dat": 98}
LAT = 39.0 + 26.0 / 3600.0


@pytest.fixture(scope="module")
def runs(test_data: Path) -> dict[str, P.PointingData]:
    return {name: P.read_tpoint(test_data / "pointing" / name) for name in RUNS}


# ---------------------------------------------------------------------------------- reader


def test_reads_all_real_runs_with_both_pier_sides(runs):
    for name, data in runs.items():
        assert len(data) == RUNS[name]
        assert data.latitude_deg == pytest.approx(39.0 + 26.0 / 3600.0, abs=2.0 / 3600.0)
        assert set(np.unique(data.pier_sign)) == {-1.0, 1.0}, name
        assert np.all(np.abs(data.mount_dec_deg) <= 90.0)
        assert data.obs_date is not None


def test_beyond_the_pole_row_is_the_other_side_of_the_pier():
    text = (
        "!caption\nASCOM Mount\n:NODA\n:EQUAT\n"
        "+39 00 26 2024 7 14 29.20 987.00 231.65  0.94 0.5500 0.0065\n"
        "21 43 18.4460 +72 29 08.368 09 28 59.9527 +109 20 06.469  16 23.130\n"
        "11 56 29.9795 -04 12 31.309 00 07 23.7749 -177 52 41.542  11 37.777\n"
        "09 58 30.6194 +81 07 54.001 09 23 55.5985 +82 59 13.276  16 27.253\n"
    )
    d = P.parse_tpoint(text)
    assert list(d.pier_sign) == [-1.0, -1.0, 1.0]
    assert d.mount_dec_deg[0] == pytest.approx(180.0 - (109 + 20 / 60 + 6.469 / 3600))
    assert d.mount_dec_deg[1] == pytest.approx(-180.0 + (177 + 52 / 60 + 41.542 / 3600))
    assert d.mount_ra_deg[0] == pytest.approx((9 + 28 / 60 + 59.9527 / 3600) * 15 + 180.0)
    assert d.mount_ra_deg[1] == pytest.approx((0 + 7 / 60 + 23.7749 / 3600) * 15 + 180.0)
    assert d.mount_dec_deg[2] == pytest.approx(82 + 59 / 60 + 13.276 / 3600)
    assert d.lst_deg[0] == pytest.approx((16 + 23.130 / 60) * 15)
    assert d.temperature_c == 29.2 and d.pressure_mbar == 987.0


@pytest.mark.parametrize(
    "text, words",
    [
        ("hello\nworld\n", ["no run line"]),
        ("+39 00 26 2024 7 14\n", ["no observations"]),
        ("+39 00 26 2024 7 14\n21 43 18.4 +72 29 08.3 09 28 59.9\n", [":2", "14 fields"]),
        ("+39 00 26 2024 7 14\n21 73 18.4 +72 29 08.3 09 28 59.9 +10 20 06.4 16 23.1\n", [":2", "RA"]),
        (":ALTAZ\n+39 00 26 2024 7 14\n", ["only equatorial"]),
    ],
)
def test_bad_tpoint_files_name_the_problem(text, words):
    with pytest.raises(P.PointingError) as err:
        P.parse_tpoint(text, source="run.dat")
    for w in words:
        assert w in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(P.PointingError, match="cannot read"):
        P.read_tpoint(tmp_path / "absent.dat")


# ---------------------------------------------------------------------------------- terms


def test_terms_follow_tpoint_signs_and_pier_side():
    ha = np.array([30.0, 30.0])
    dec = np.array([40.0, 40.0])
    pier = np.array([1.0, -1.0])
    names = ("IH", "ID", "CH", "NP", "MA", "ME", "TF", "FO", "DAF")
    a_h, a_d = P.design_matrix(ha, dec, pier, LAT, names)
    col = {n: j for j, n in enumerate(names)}
    h, d = math.radians(30), math.radians(40)
    # Pier east: the TPOINT formulas themselves.
    assert a_h[0, col["IH"]] == -1 and a_d[0, col["ID"]] == -1
    assert a_h[0, col["CH"]] == pytest.approx(-1 / math.cos(d))
    assert a_h[0, col["NP"]] == pytest.approx(-math.tan(d))
    assert a_h[0, col["MA"]] == pytest.approx(math.cos(h) * math.tan(d))
    assert a_d[0, col["ME"]] == pytest.approx(-math.cos(h))
    # Beyond the pole: CH, NP, ID (and DAF) change sign; IH, MA, ME, TF, FO do not.
    for n in ("CH", "NP", "DAF"):
        assert a_h[1, col[n]] == pytest.approx(-a_h[0, col[n]])
    assert a_d[1, col["ID"]] == pytest.approx(-a_d[0, col["ID"]])
    for n in ("IH", "MA", "ME", "TF", "FO"):
        assert a_h[1, col[n]] == pytest.approx(a_h[0, col[n]])
        assert a_d[1, col[n]] == pytest.approx(a_d[0, col[n]])


def test_rigorous_model_agrees_with_tpoint_formulas_to_first_order():
    rng = np.random.default_rng(11)
    n = 300
    ha = rng.uniform(-100, 100, n)
    dec = rng.uniform(-30, 85, n)
    pier = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    names = ("IH", "ID", "CH", "NP", "MA", "ME", "TF", "FO", "DAF", "TX", "HCES", "DCES", "DCEC")
    a_h, a_d = P.design_matrix(ha, dec, pier, LAT, names)
    for size in (1.0, 10.0):
        c = rng.normal(0, size, len(names))
        ph, pd = P.predict_offsets(dict(zip(names, c, strict=True)), ha, dec, pier, LAT)
        lin_h, lin_d = a_h @ c, a_d @ c
        # Second-order differences scale as size**2: relative error tiny for arcsec-sized terms.
        assert np.max(np.abs(ph - lin_h)) < 1e-4 * size * np.max(np.abs(lin_h))
        assert np.max(np.abs(pd - lin_d)) < 1e-4 * size * np.max(np.abs(lin_d))


def test_unknown_or_repeated_terms_are_refused():
    assert P.parse_terms("ih, id,ch") == ("IH", "ID", "CH")
    with pytest.raises(P.PointingError, match="unknown pointing term"):
        P.parse_terms("IH,XYZ")
    with pytest.raises(P.PointingError, match="twice"):
        P.parse_terms("IH,ih")


# ---------------------------------------------------------------------------------- synthetic


TRUE = {
    "IH": 400.0, "ID": -250.0, "CH": 90.0, "NP": -45.0, "MA": 120.0,
    "ME": -60.0, "TF": 35.0, "FO": 20.0, "DAF": -25.0,
}


def synthetic_run(seed: int, coeffs: dict[str, float], n: int = 200, noise: float = 5.0) -> P.PointingData:
    """A mount that follows ``coeffs`` exactly, read with Gaussian noise (arcsec, per axis on the sky)."""
    rng = np.random.default_rng(seed)
    ha = rng.uniform(-6 * 15, 6 * 15, n)
    dec = rng.uniform(-25, 85, n)
    pier = np.where(ha >= 0, 1.0, -1.0)
    lst = rng.uniform(0, 360, n)
    ra = (lst - ha) % 360
    dh, dd = P.predict_offsets(coeffs, ha, dec, pier, LAT)
    dh = dh + rng.normal(0, noise, n) / np.cos(np.radians(dec))
    dd = dd + rng.normal(0, noise, n)
    return P.PointingData(
        cat_ra_deg=ra,
        cat_dec_deg=dec,
        mount_ra_deg=(ra - dh / 3600.0) % 360,
        mount_dec_deg=dec + dd / 3600.0,
        lst_deg=lst,
        pier_sign=pier,
        latitude_deg=LAT,
        source=f"synthetic seed {seed}",
    )


def test_known_terms_recovered_within_their_sigmas():
    data = synthetic_run(1, TRUE)
    result = P.fit(data)
    m = result.model
    for name, value in TRUE.items():
        sigma = m.sigmas_arcsec[name]
        assert 0 < sigma < 10.0, name
        assert abs(m.coefficients_arcsec[name] - value) < 3.5 * sigma, name
    # 5" per axis on the sky: the sky rms after is sqrt(2) x 5" less the fitted degrees of freedom.
    assert 6.0 < m.rms_after_arcsec < 7.6
    assert m.rms_before_arcsec > 50 * m.rms_after_arcsec
    assert m.n == len(data)


def test_sigmas_are_honest_over_many_runs():
    # About 68 % of |fitted - true| should fall within one sigma if the sigmas are right.
    inside = total = 0
    for seed in range(100, 140):
        m = P.fit(synthetic_run(seed, TRUE, n=80)).model
        for name, value in TRUE.items():
            inside += abs(m.coefficients_arcsec[name] - value) <= m.sigmas_arcsec[name]
            total += 1
    frac = inside / total
    assert 0.60 < frac < 0.77, frac


def test_large_misalignment_near_the_pole_needs_the_rigorous_fit():
    # A badly aligned mount like the shared runs' (MA ~ 50'), observed up to dec 85.
    big = dict(TRUE, MA=-3000.0, CH=-1000.0, IH=-18000.0)
    data = synthetic_run(7, big, n=250, noise=3.0)
    rig = P.fit(data)
    lin = P.fit(data, rigorous=False)
    assert rig.rms_after_arcsec < 5.0
    assert lin.rms_after_arcsec > 2 * rig.rms_after_arcsec
    assert rig.model.coefficients_arcsec["MA"] == pytest.approx(-3000.0, abs=4 * rig.model.sigmas_arcsec["MA"])


def test_clipping_drops_outliers_and_says_so():
    data = synthetic_run(3, TRUE, n=120)
    bad = np.array(data.mount_dec_deg)
    bad[[5, 50, 90]] += 600.0 / 3600.0  # three misidentified stars, 10' off
    data = P.PointingData(**{**data.__dict__, "mount_dec_deg": bad})
    plain = P.fit(data)
    clipped = P.fit(data, clip_sigma=3.0)
    assert clipped.n_clipped == 3
    assert set(np.flatnonzero(~clipped.residuals.used)) == {5, 50, 90}
    assert clipped.model.n == 117
    assert clipped.rms_after_arcsec < plain.rms_after_arcsec / 3


def test_degenerate_terms_are_refused():
    data = synthetic_run(2, TRUE, n=60)
    with pytest.raises(P.PointingError, match="degenerate"):
        P.fit(data, "IH,ID,NP,DAF,HCEC")
    with pytest.raises(P.PointingError, match="cannot fit"):
        P.fit(data.subset(slice(0, 2)), P.DEFAULT_TERMS)


def _landing(true: dict[str, float], cmd_ra: float, cmd_dec: float, lst: float, sign: float) -> tuple[float, float]:
    """Where a mount that follows ``true`` really points when commanded to (cmd_ra, cmd_dec): HA, Dec."""
    from scipy.optimize import least_squares

    cmd_ha = (lst - cmd_ra + 180) % 360 - 180

    def reading_minus_command(p: np.ndarray) -> list[float]:
        h, d = p
        dh, dd = P.predict_offsets(true, np.array([h]), np.array([d]), np.array([sign]), LAT)
        read_ha, read_dec = h + dh[0] / 3600, d + dd[0] / 3600
        return [
            ((read_ha - cmd_ha + 180) % 360 - 180) * 3600 * math.cos(math.radians(d)),
            (read_dec - cmd_dec) * 3600,
        ]

    return tuple(least_squares(reading_minus_command, [cmd_ha, cmd_dec], xtol=1e-12).x)


def test_apply_lands_a_goto_on_target():
    """Fit a simulated mount, then command it with the model: it lands within the noise."""
    model = P.fit(synthetic_run(5, TRUE, n=200, noise=2.0)).model
    rng = np.random.default_rng(99)
    corrected, raw = [], []
    for _ in range(40):
        ra, dec, lst = rng.uniform(0, 360), rng.uniform(-20, 80), rng.uniform(0, 360)
        ha = (lst - ra + 180) % 360 - 180
        pier = "east" if ha >= 0 else "west"
        sign = 1.0 if pier == "east" else -1.0
        for cmd, errs in ((model.apply(ra, dec, lst, pier), corrected), ((ra, dec), raw)):
            land_ha, land_dec = _landing(TRUE, cmd[0], cmd[1], lst, sign)
            dx = ((land_ha - ha + 180) % 360 - 180) * math.cos(math.radians(dec))
            errs.append(math.hypot(dx, land_dec - dec) * 3600)
    assert max(corrected) < 3.0, max(corrected)
    assert min(raw) > 100.0


def test_apply_picks_the_pier_side_from_the_hour_angle():
    model = P.PointingModel(("ID",), {"ID": 100.0}, {"ID": 1.0}, LAT)
    # ID: the reading is 100" low on the east side, 100" high beyond the pole.
    _, dec_e = model.apply(ra_deg=10.0, dec_deg=20.0, lst_deg=40.0)   # HA +30: east
    _, dec_w = model.apply(ra_deg=70.0, dec_deg=20.0, lst_deg=40.0)   # HA -30: west
    assert dec_e == pytest.approx(20.0 - 100 / 3600)
    assert dec_w == pytest.approx(20.0 + 100 / 3600)
    _, dec_forced = model.apply(ra_deg=70.0, dec_deg=20.0, lst_deg=40.0, pier_side="east")
    assert dec_forced == pytest.approx(dec_e)


# ---------------------------------------------------------------------------------- real runs


@pytest.mark.parametrize("name", list(RUNS))
def test_fit_on_real_runs(runs, name):
    data = runs[name]
    full = P.fit(data)
    sync_only = P.fit(data, "IH,ID")
    basic6 = P.fit(data, "IH,ID,CH,NP,MA,ME")
    m = full.model
    assert m.n == RUNS[name]
    # These mounts were not synced: degrees before. Each richer model must explain more.
    assert m.rms_before_arcsec > 3600
    assert m.rms_after_arcsec < basic6.rms_after_arcsec < sync_only.rms_after_arcsec < m.rms_before_arcsec
    assert all(np.isfinite(list(m.sigmas_arcsec.values())))
    # The pier-aware model is what fits: ignoring the pier side is far worse.
    no_pier = P.PointingData(**{**data.__dict__, "pier_sign": np.ones(len(data))})
    assert P.fit(no_pier).rms_after_arcsec > 3 * m.rms_after_arcsec


@pytest.mark.parametrize("name", list(RUNS))
@pytest.mark.parametrize("how", ["time", "alternate"])
def test_half_fit_half_evaluate_is_at_least_3x_better(runs, name, how):
    first, second = runs[name].halves(how)
    for fit_on, test_on in ((first, second), (second, first)):
        ev = P.evaluate(P.fit(fit_on).model, test_on)
        assert ev.n == len(test_on)
        assert ev.rms_before_arcsec >= 3 * ev.rms_after_arcsec, (name, how, ev.rms_before_arcsec, ev.rms_after_arcsec)


def test_evaluate_refuses_another_site(runs):
    model = P.fit(runs["warp-astron.dat"]).model
    other = P.PointingData(**{**runs["gem-28.dat"].__dict__, "latitude_deg": -30.0})
    with pytest.raises(P.PointingError, match="latitude"):
        P.evaluate(model, other)


# ---------------------------------------------------------------------------------- I/O


def test_model_save_load_roundtrip_is_atomic(tmp_path, runs):
    model = P.fit(runs["warp-astron.dat"]).model
    out = model.save(tmp_path / "model.json")
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]
    again = P.PointingModel.load(out)
    assert again.terms == model.terms
    assert again.coefficients_arcsec == pytest.approx(model.coefficients_arcsec)
    assert again.sigmas_arcsec == pytest.approx(model.sigmas_arcsec)
    assert again.apply(10.0, 45.0, 50.0) == pytest.approx(model.apply(10.0, 45.0, 50.0))
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    with pytest.raises(P.PointingError, match="not a tenmon pointing model"):
        P.PointingModel.load(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(P.PointingError, match="not JSON"):
        P.PointingModel.load(tmp_path / "broken.json")


def test_residual_plot_is_a_png(tmp_path, runs):
    result = P.fit(runs["cgx-l-data.dat"], clip_sigma=2.0)
    out = P.plot_residuals(result.residuals, tmp_path / "res.png", title="cgx-l")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert [p.name for p in tmp_path.iterdir()] == ["res.png"]


def _write_solve_log(path: Path, data: P.PointingData) -> None:
    con = sqlite3.connect(path)
    con.executescript(SOLVES_SCHEMA)
    for i in range(len(data)):
        con.execute(
            "INSERT INTO solves (time_utc, solved, solver, ra_deg, dec_deg, mount_ra_deg, mount_dec_deg,"
            " lst_deg, pier_side) VALUES (?, 1, 'hinted', ?, ?, ?, ?, ?, ?)",
            (
                f"2026-11-21T12:{i // 60:02d}:{i % 60:02d}+00:00",
                float(data.cat_ra_deg[i]),
                float(data.cat_dec_deg[i]),
                float(data.mount_ra_deg[i]),
                float(data.mount_dec_deg[i]),
                float(data.lst_deg[i]),
                "east" if data.pier_sign[i] > 0 else "west",
            ),
        )
    # An unsolved frame: must be ignored.
    con.execute("INSERT INTO solves (time_utc, solved, reason) VALUES ('2026-11-21T13:00:00+00:00', 0, 'few stars')")
    con.commit()
    con.close()


def test_fit_from_the_solve_log(tmp_path):
    data = synthetic_run(8, TRUE, n=150)
    db = tmp_path / "tenmon.sqlite"
    _write_solve_log(db, data)
    logged = P.read_solve_log(db, latitude_deg=LAT)
    assert len(logged) == 150
    m = P.fit(logged).model
    for name, value in TRUE.items():
        assert abs(m.coefficients_arcsec[name] - value) < 4 * m.sigmas_arcsec[name], name


def test_solve_log_errors(tmp_path):
    with pytest.raises(P.PointingError, match="not found"):
        P.read_solve_log(tmp_path / "none.sqlite", latitude_deg=LAT)
    db = tmp_path / "empty.sqlite"
    sqlite3.connect(db).close()
    with pytest.raises(P.PointingError, match="solves"):
        P.read_solve_log(db, latitude_deg=LAT)


# ---------------------------------------------------------------------------------- settings


def test_settings_defaults_and_validation():
    s = P.PointingSettings()
    assert tuple(s.terms) == P.DEFAULT_TERMS and s.apply_to_gotos is False
    assert P.PointingSettings(terms=["ih", "id"]).terms == ["IH", "ID"]
    with pytest.raises(ValidationError, match="unknown pointing term"):
        P.PointingSettings(terms=["IH", "ZZ"])
    with pytest.raises(ValidationError):
        P.PointingSettings(modle_path="x.json")


def test_solve_log_of_a_jnow_mount_is_converted_to_apparent_place(tmp_path):
    """A mount reporting apparent (JNow) coordinates, off by a pure IH: with mount_frame='apparent'
    the fit is exact; taking its coordinates as ICRS leaves precession in the residuals."""
    import astropy.units as u
    from astropy.coordinates import TETE, SkyCoord
    from astropy.time import Time

    rng = np.random.default_rng(4)
    n = 60
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-20, 80, n)
    when = "2026-11-21T12:00:00+00:00"
    app = SkyCoord(ra * u.deg, dec * u.deg).transform_to(TETE(obstime=Time("2026-11-21T12:00:00")))
    ha = rng.uniform(-80, 80, n)
    db = tmp_path / "log.sqlite"
    con = sqlite3.connect(db)
    con.executescript(SOLVES_SCHEMA)
    for i in range(n):
        con.execute(
            "INSERT INTO solves (time_utc, solved, ra_deg, dec_deg, mount_ra_deg, mount_dec_deg, lst_deg, pier_side)"
            " VALUES (?, 1, ?, ?, ?, ?, ?, ?)",
            (when, ra[i], dec[i], (app.ra.deg[i] - 0.1) % 360, app.dec.deg[i], (app.ra.deg[i] + ha[i]) % 360,
             "east" if ha[i] >= 0 else "west"),
        )
    con.commit()
    con.close()
    exact = P.fit(P.read_solve_log(db, latitude_deg=LAT, mount_frame="apparent"), "IH,ID").model
    naive = P.fit(P.read_solve_log(db, latitude_deg=LAT), "IH,ID").model
    assert exact.coefficients_arcsec["IH"] == pytest.approx(-360.0, abs=0.01)
    assert exact.rms_after_arcsec < 0.01
    assert naive.rms_after_arcsec > 30.0  # ~26 years of precession, not an index error
    with pytest.raises(P.PointingError, match="mount_frame"):
        P.read_solve_log(db, latitude_deg=LAT, mount_frame="jnow")
