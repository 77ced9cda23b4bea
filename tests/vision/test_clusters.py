"""Cluster candidates: DBSCAN with a data-driven scale and null-field significance, frames and tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table

from tenmon.core.errors import VisionError
from tenmon.vision.frames import clusters as clu
from tenmon.vision.render import sky as sr

W = 2048


def _plummer(rng, n, a, rmax, c):
    fmax = rmax**2 / (rmax**2 + a**2)
    f = rng.uniform(0, fmax, n)
    r = a * np.sqrt(f / (1 - f))
    t = rng.uniform(0, 2 * np.pi, n)
    return np.column_stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)])


def _sources(xy):
    return Table({"id": np.arange(1, len(xy) + 1), "x": xy[:, 0], "y": xy[:, 1], "snr": np.full(len(xy), 20.0)})


def test_random_fields_give_almost_no_candidates():
    rng = np.random.default_rng(301)
    false = 0
    for _ in range(20):
        n = int(rng.integers(400, 2500))
        found = clu.find_frame_clusters(_sources(rng.uniform(0, W, (n, 2))), shape=(W, W))
        false += len(found.clusters)
        assert found.eps_px > 0 and found.min_samples >= 4
    assert false <= 2  # the acceptance asks for at most one per ten frames


def test_injected_compact_clusters_are_found_with_their_centre():
    rng = np.random.default_rng(302)
    hits = 0
    for k in range(10):
        c = rng.uniform(300, W - 300, 2)
        field = rng.uniform(0, W, (int(rng.integers(800, 1600)), 2))
        # >= 50 members within 1 arcmin = 187 px at 0.32"/px, half of them within 0.4'.
        xy = np.vstack([field, _plummer(rng, 50, 75.0, 187.0, c)])
        found = clu.find_frame_clusters(_sources(xy), shape=(W, W))
        near = [cl for cl in found.clusters if math.hypot(cl.x - c[0], cl.y - c[1]) < 31.0]  # 10"
        hits += bool(near)
        if near:
            assert near[0].n_members >= 20 and near[0].significance >= 4.5 and near[0].radius_px < 250
            assert set(near[0].ids) <= set(range(1, len(xy) + 1))
    assert hits >= 9


def test_frame_candidates_get_sky_positions_from_a_wcs():
    rng = np.random.default_rng(303)
    w = sr.simple_wcs((83.0, -5.0), shape=(W, W), pixel_scale_arcsec=0.32)
    xy = np.vstack([rng.uniform(0, W, (900, 2)), _plummer(rng, 80, 60.0, 187.0, (700.0, 1300.0))])
    found = clu.find_frame_clusters(_sources(xy), shape=(W, W), wcs=w)
    assert len(found.clusters) == 1
    c = found.clusters[0]
    ra, dec = w.all_pix2world([[c.x, c.y]], 0)[0]
    assert c.ra == pytest.approx(ra) and c.dec == pytest.approx(dec)
    js = c.to_json()
    assert set(js) == {"x", "y", "radius_px", "n_members", "significance", "ra", "dec"}
    t = clu.frame_clusters_table(found)
    assert len(t) == 1 and t.meta["eps_px"] == found.eps_px


def test_scale_is_chosen_from_the_density_and_is_reproducible():
    rng = np.random.default_rng(304)
    sparse = _sources(rng.uniform(0, W, (500, 2)))
    dense = _sources(rng.uniform(0, W, (4000, 2)))
    a = clu.find_frame_clusters(sparse, shape=(W, W))
    b = clu.find_frame_clusters(dense, shape=(W, W))
    assert a.eps_px > 2 * b.eps_px  # denser field, smaller scale
    again = clu.find_frame_clusters(sparse, shape=(W, W))
    assert again.eps_px == a.eps_px
    fixed = clu.find_frame_clusters(sparse, shape=(W, W), settings=clu.ClusterSettings(eps=30.0, min_samples=6))
    assert fixed.eps_px == 30.0 and fixed.min_samples == 6


def test_too_few_sources_or_disabled_means_no_search():
    rng = np.random.default_rng(305)
    few = clu.find_frame_clusters(_sources(rng.uniform(0, W, (10, 2))), shape=(W, W))
    assert few.clusters == [] and few.eps_px is None
    off = clu.find_frame_clusters(_sources(rng.uniform(0, W, (500, 2))), shape=(W, W),
                                  settings=clu.ClusterSettings(enabled=False))
    assert off.clusters == []
    empty = clu.find_frame_clusters(Table({"x": [], "y": []}), shape=(W, W))
    assert empty.n_points == 0


@pytest.fixture(scope="module")
def m67():
    return sr.gaia_like_table(radius_deg=0.7, seed=310)


def test_gaia_like_table_recovers_m67_as_one_candidate(m67):
    res = clu.cluster_table(m67)
    assert res.features == ["ra", "dec", "parallax", "pmra", "pmdec"]
    assert len(res.candidates) == 1
    cid = res.candidates[0]["cluster_id"]
    truth = np.asarray(m67["true_member"])
    got = res.cluster_id == cid
    assert (got & truth).sum() / truth.sum() >= 0.7  # completeness
    assert (got & truth).sum() / got.sum() >= 0.95  # purity
    assert np.all(res.cluster_id[~got] == -1)
    c = res.candidates[0]["centre"]
    assert c["ra"] == pytest.approx(132.846, abs=0.05) and c["pmra"] == pytest.approx(-10.986, abs=0.1)
    assert res.eps > 0 and res.min_samples == 10


def test_missing_values_stay_in_the_field_and_names_are_recognised(m67):
    t = m67.copy()
    t.rename_column("ra", "RA_ICRS")
    t.rename_column("dec", "DE_ICRS")
    t.rename_column("parallax", "Plx")
    t.rename_column("pmdec", "pmDE")
    t["Plx"] = np.ma.masked_array(t["Plx"], mask=np.arange(len(t)) % 10 == 0)
    res = clu.cluster_table(t)
    assert res.features == ["RA_ICRS", "DE_ICRS", "Plx", "pmra", "pmDE"]
    assert np.all(res.cluster_id[np.arange(len(t)) % 10 == 0] == -1)
    assert res.n_used == len(t) - len(t[::10])
    assert len(res.candidates) == 1


def test_positions_across_ra_zero_are_one_cluster():
    rng = np.random.default_rng(320)
    ra = np.concatenate([rng.uniform(-0.5, 0.5, 3000), rng.normal(0.0, 0.01, 150)]) % 360.0
    dec = np.concatenate([rng.uniform(-0.5, 0.5, 3000), rng.normal(0.0, 0.01, 150)])
    res = clu.cluster_table(Table({"ra": ra, "dec": dec}))
    assert len(res.candidates) == 1
    members = res.cluster_id == 0
    assert members[3000:].mean() > 0.8
    c = res.candidates[0]["centre"]
    assert min(c["ra"], 360 - c["ra"]) < 0.01


def test_table_errors_name_the_problem():
    t = Table({"a": [1.0, 2.0], "name": ["x", "y"]})
    with pytest.raises(clu.TableClusterError, match="no ra/dec"):
        clu.cluster_table(t)
    with pytest.raises(clu.TableClusterError, match="not in the table: zz"):
        clu.cluster_table(t, features=["zz"])
    with pytest.raises(clu.TableClusterError, match="not numeric"):
        clu.cluster_table(t, features=["name"])
    with pytest.raises(VisionError):
        clu.dbscan_candidates(np.array([[np.nan, 1.0]] * 20), lambda r: np.zeros((20, 2)))
