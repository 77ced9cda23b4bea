"""Cluster membership on real Gaia fields against published memberships: DBSCAN, HDBSCAN, OPTICS.

The fields are tests/data/clusters/*.ecsv.gz (tests/data/PROVENANCE.md): Blanco 1 (Gaia DR2,
Cantat-Gaudin et al. 2018 UPMASK members with p >= 0.7, and Tarricq et al. 2022 HDBSCAN members), a
Vela field (Gaia EDR3) holding four Cantat-Gaudin et al. 2018 clusters, and 15 distant clusters in
0.3 deg boxes (Gaia EDR3, Perren et al. 2022 members). Every star not published as a member of the
cluster counts as a non-member, so precision is measured too.

Every configuration runs ``tenmon.vision.frames.clusters.cluster_table`` on each whole field with the
default features (ra, dec, parallax, pmra, pmdec). A published cluster is matched to the found
candidate with the highest Jaccard index (|found & published| / |found | published|); recall =
|found & published| / |published|, precision = |found & published| / |found|; "other" counts the
field's candidates not matched to any published cluster there (spurious or unpublished). Clusters
are split into a TUNING subset (the defaults were chosen by its mean Jaccard) and a REPORT subset
never chosen on. ``--null`` also runs the default (with and without its significance cut) on
every field with positions shuffled against the kinematics (no cluster left) and counts the
candidates it still finds; ``--frames`` compares the frames' method with the tables' default on
the synthetic frames of the tests.

Run:  .venv/bin/python benchmarks/clusters_real.py [--out docs/bench/clusters.md] [--configs 'a;b'] [--null] [--frames]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from astropy.table import Table

from tenmon.vision.frames import clusters as clu

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "clusters"


@dataclass(frozen=True)
class Case:
    """A published cluster in a field: ``truth`` picks its members from the field table."""

    name: str
    field: str
    source: str
    subset: str  # "tuning" or "report"
    truth: Callable[[Table], np.ndarray]


def _cg18(name: str) -> Callable[[Table], np.ndarray]:
    return lambda t: (np.asarray(t["cg18_cluster"]) == name) & (np.asarray(t["cg18_proba"]) >= 0.7)


def _p22(t: Table) -> np.ndarray:
    return np.asarray(t["perren22_member"], bool)


DISTANT = [("tombaugh2", "Tombaugh 2", "tuning"), ("ber29", "Berkeley 29", "tuning"), ("ber73", "Berkeley 73", "tuning"),
           ("czernik30", "Czernik 30", "tuning"), ("fsr1212", "FSR 1212", "tuning"), ("saurer1", "Saurer 1", "tuning"),
           ("vdbh4", "vdBergh-Hagen 4", "tuning"), ("ber25", "Berkeley 25", "report"), ("ber75", "Berkeley 75", "report"),
           ("fsr1419", "FSR 1419", "report"), ("ber76", "Berkeley 76", "report"), ("ber102", "Berkeley 102", "report"),
           ("arpm2", "Arp-Madore 2", "report"), ("ber26", "Berkeley 26", "report"), ("vdbh37", "vdBergh-Hagen 37", "report")]

CASES: list[Case] = [
    Case("Blanco 1", "blanco1_dr2", "CG18 p>=0.7", "tuning", _cg18("Blanco_1")),
    Case("Blanco 1", "blanco1_dr2", "T22", "tuning", lambda t: np.asarray(t["t22_member"], bool)),
    *[Case(label, "vela_ngc2659_edr3", "CG18 p>=0.7", "report", _cg18(key))
      for key, label in (("NGC_2659", "NGC 2659"), ("Pismis_8", "Pismis 8"), ("SAI_94", "SAI 94"), ("NGC_2645", "NGC 2645"))],
    *[Case(label, f"{key}_edr3", "P22", subset, _p22) for key, label, subset in DISTANT],
]

# Configurations compared (TableClusterSettings keywords). "default" is what TableClusterSettings()
# gives; the others are spelt out so the table stays true when the defaults change.
CONFIGS: dict[str, dict] = {
    "default": {},
    "dbscan before: no contrast, refined null, 4.5 sigma": dict(method="dbscan", contrast=0, refine_null=True,
                                                                 min_significance=4.5),
    "dbscan before, eps at 0.3 % of the null": dict(method="dbscan", contrast=0, refine_null=True, min_significance=4.5,
                                            null_core_fraction=0.003),
    "dbscan before, eps at 3 % of the null": dict(method="dbscan", contrast=0, refine_null=True, min_significance=4.5,
                                          null_core_fraction=0.03),
    "dbscan + contrast 2": dict(method="dbscan", contrast=2.0),
    "dbscan + contrast 1.5": dict(method="dbscan", contrast=1.5),
    "dbscan + contrast 3": dict(method="dbscan", contrast=3.0),
    "dbscan + contrast 2 with k 10": dict(method="dbscan", contrast=2.0, contrast_k=10),
    "dbscan + contrast 2 with k 30": dict(method="dbscan", contrast=2.0, contrast_k=30),
    "dbscan + contrast 2 with std scaling": dict(method="dbscan", contrast=2.0, scaling="std"),
    "dbscan + contrast 2 without significance cut": dict(method="dbscan", contrast=2.0, min_significance=0),
    "hdbscan eom mcs 10": dict(method="hdbscan", contrast=0, min_significance=0, min_members=10),
    "hdbscan eom mcs 20": dict(method="hdbscan", contrast=0, min_significance=0, min_members=20),
    "hdbscan leaf mcs 10": dict(method="hdbscan", contrast=0, min_significance=0, min_members=10, hdbscan_selection="leaf"),
    "hdbscan leaf mcs 20": dict(method="hdbscan", contrast=0, min_significance=0, min_members=20, hdbscan_selection="leaf"),
    "hdbscan eom + contrast 2": dict(method="hdbscan", contrast=2.0),
    "hdbscan leaf + contrast 2": dict(method="hdbscan", contrast=2.0, hdbscan_selection="leaf"),
    "optics xi 0.05": dict(method="optics", contrast=0, min_significance=0, min_members=10),
    "optics xi 0.05 + contrast 2": dict(method="optics", contrast=2.0),
    "optics dbscan-extraction + contrast 2": dict(method="optics", optics_extraction="dbscan", contrast=2.0),
}


def load(field: str) -> Table:
    return Table.read(DATA / f"{field}.ecsv.gz", format="ascii.ecsv")


def score(cluster_id: np.ndarray, truth: np.ndarray) -> dict:
    """Best-Jaccard candidate for one published cluster."""
    best = None
    for c in np.unique(cluster_id[cluster_id >= 0]):
        found = cluster_id == c
        inter = int(np.count_nonzero(found & truth))
        if inter == 0:
            continue
        j = inter / int(np.count_nonzero(found | truth))
        if best is None or j > best["jaccard"]:
            best = {"jaccard": j, "recall": inter / int(truth.sum()), "precision": inter / int(found.sum()),
                    "n_found": int(found.sum()), "candidate": int(c)}
    return best or {"jaccard": 0.0, "recall": 0.0, "precision": 0.0, "n_found": 0, "candidate": None}


def run_config(settings: dict, *, quiet: bool = False) -> list[dict]:
    """Every case under one configuration; each field is clustered once."""
    rows: list[dict] = []
    by_field: dict[str, list[Case]] = {}
    for c in CASES:
        by_field.setdefault(c.field, []).append(c)
    for field, cases in by_field.items():
        t = load(field)
        t0 = time.perf_counter()
        res = clu.cluster_table(t, settings=clu.TableClusterSettings(**settings))
        dt = time.perf_counter() - t0
        matched = set()
        scored = []
        for c in cases:
            sc = score(res.cluster_id, c.truth(t))
            scored.append((c, sc))
            if sc["candidate"] is not None:
                matched.add(sc["candidate"])
        other = len(res.candidates) - len(matched)
        sig = {c["cluster_id"]: c["significance"] for c in res.candidates}
        for c, sc in scored:
            sc = {**sc, "significance": sig.get(sc["candidate"])}
            row = {"cluster": c.name, "membership": c.source, "field": field, "subset": c.subset,
                   "n_published": int(c.truth(t).sum()), "n_rows": len(t), "other": other,
                   "seconds": round(dt, 2), **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in sc.items()}}
            rows.append(row)
            if not quiet:
                print(f"  {c.name:17s} {c.source:11s} J {row['jaccard']:.2f} R {row['recall']:.2f} "
                      f"P {row['precision']:.2f} found {row['n_found']:4d} pub {row['n_published']:4d} "
                      f"other {other} {dt:5.1f} s", flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    def agg(sub):
        if not sub:
            return {"n": 0, "mean_jaccard": float("nan"), "median_jaccard": float("nan"), "min_jaccard": float("nan"),
                    "n_ge_0.6": 0, "mean_recall": float("nan"), "mean_precision": float("nan")}
        j = [r["jaccard"] for r in sub]
        return {"n": len(sub), "mean_jaccard": round(float(np.mean(j)), 3), "median_jaccard": round(float(np.median(j)), 3),
                "min_jaccard": round(float(np.min(j)), 3), "n_ge_0.6": int(sum(x >= 0.6 for x in j)),
                "mean_recall": round(float(np.mean([r["recall"] for r in sub])), 3),
                "mean_precision": round(float(np.mean([r["precision"] for r in sub])), 3)}

    fields = {r["field"]: r for r in rows}
    return {"tuning": agg([r for r in rows if r["subset"] == "tuning"]),
            "report": agg([r for r in rows if r["subset"] == "report"]),
            "all": agg(rows),
            "other_candidates": int(sum(r["other"] for r in fields.values())),
            "seconds": round(float(sum(r["seconds"] for r in fields.values())), 1)}


def null_runs(settings: dict, repeats: int = 2, seed: int = 4242) -> list[dict]:
    """Candidates found in every field with positions shuffled against the kinematics."""
    rng = np.random.default_rng(seed)
    out = []
    for field in sorted({c.field for c in CASES}):
        t = load(field)
        for rep in range(repeats):
            shuffled = t.copy()
            perm = rng.permutation(len(t))
            for col in ("ra", "dec"):
                shuffled[col] = np.asarray(t[col])[perm]
            res = clu.cluster_table(shuffled, settings=clu.TableClusterSettings(**settings, seed=rep + 1))
            out.append({"field": field, "repeat": rep, "candidates": len(res.candidates),
                        "sizes": [c["n_members"] for c in res.candidates],
                        "significance": [c["significance"] for c in res.candidates]})
    return out


def frame_comparison() -> list[dict]:
    """Frames: the frames' DBSCAN against the tables' default on pixel positions, on the synthetic
    frames of tests/vision/test_clusters.py (20 uniform fields of 400-2500 sources; 20 fields with a
    50-member Plummer cluster within 1' = 187 px at 0.32"/px)."""
    import math

    width = 2048

    def plummer(rng, n, a, rmax, c):
        fmax = rmax**2 / (rmax**2 + a**2)
        f = rng.uniform(0, fmax, n)
        r = a * np.sqrt(f / (1 - f))
        t = rng.uniform(0, 2 * np.pi, n)
        return np.column_stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)])

    def frame_method(xy):
        t = Table({"id": np.arange(1, len(xy) + 1), "x": xy[:, 0], "y": xy[:, 1], "snr": np.full(len(xy), 20.0)})
        return [np.array([c.x, c.y]) for c in clu.find_frame_clusters(t, shape=(width, width)).clusters]

    def table_method(xy):
        res = clu.cluster_table(Table({"x": xy[:, 0], "y": xy[:, 1]}))
        return [np.median(xy[res.cluster_id == c["cluster_id"]], axis=0) for c in res.candidates]

    out = []
    for name, fn in (("frames: DBSCAN, eps-ball significance (ClusterSettings)", frame_method),
                     ("tables' default on x, y (TableClusterSettings)", table_method)):
        rng = np.random.default_rng(301)
        false = 0
        t0 = time.perf_counter()
        for _ in range(20):
            false += len(fn(rng.uniform(0, width, (int(rng.integers(400, 2500)), 2))))
        t_random = (time.perf_counter() - t0) / 20
        rng = np.random.default_rng(302)
        hits = extra = 0
        t0 = time.perf_counter()
        for _ in range(20):
            c = rng.uniform(300, width - 300, 2)
            xy = np.vstack([rng.uniform(0, width, (int(rng.integers(800, 1600)), 2)), plummer(rng, 50, 75.0, 187.0, c)])
            cands = fn(xy)
            near = [q for q in cands if math.hypot(q[0] - c[0], q[1] - c[1]) < 31.0]
            hits += bool(near)
            extra += len(cands) - min(1, len(near))
        out.append({"method": name, "false_on_random": false, "found": hits, "other": extra,
                    "ms_random": round(t_random * 1000), "ms_injected": round((time.perf_counter() - t0) / 20 * 1000)})
    return out


def findings(results: dict[str, list[dict]], nulls: dict[str, list[dict]] | None) -> list[str]:
    """The reading of the tables below (figures taken from the results)."""
    if "default" not in results:
        return []
    d = summary(results["default"])
    out = ["## Findings", ""]
    old = results.get("dbscan before: no contrast, refined null, 4.5 sigma")
    if old:
        o = summary(old)
        out.append(f"* **The old automatic DBSCAN took in too much**: mean precision {o['all']['mean_precision']:.2f}, "
                   f"mean Jaccard {o['all']['mean_jaccard']:.2f} (tuning {o['tuning']['mean_jaccard']:.2f}, report "
                   f"{o['report']['mean_jaccard']:.2f}), as the independent evaluation on Ophiuchus found (828 stars "
                   "against 492). Its eps reaches the crowded part of the field's kinematic space (distant disc "
                   "stars at the cluster's parallax and proper motion, everywhere on the sky), and its second pass "
                   "removed that very crowd from the random field. A stricter or looser eps (0.3 % or 3 % of the "
                   "random field's k-distances) trades recall for precision without fixing it.")
    out.append(f"* **Density contrast** (the default): members must be at least twice as dense as the random "
               f"field around them, that field drawn in a second pass from the low-contrast rows only. Mean "
               f"Jaccard {d['tuning']['mean_jaccard']:.2f} on the tuning clusters, {d['report']['mean_jaccard']:.2f} "
               f"on the report clusters, {d['all']['mean_jaccard']:.2f} on all (median {d['all']['median_jaccard']:.2f}; "
               f"{d['all']['n_ge_0.6']}/{d['all']['n']} at 0.6 or more), mean precision "
               f"{d['all']['mean_precision']:.2f}, mean recall {d['all']['mean_recall']:.2f}. The contrast threshold "
               "(1.5, 2, 3), its k (10, 20, 30) and the scaling (robust or standard) were chosen by the tuning "
               "mean; contrast 3 does better on the report set (fewer, purer members) but worse on the tuning set, "
               "and was not chosen.")
    below = [f"{r['cluster']} ({r['membership']}) {r['jaccard']:.2f}" for r in results["default"] if r["jaccard"] < 0.6]
    out.append("* **Below 0.6 with the defaults**: " + "; ".join(below) + ". Pismis 8 and NGC 2645 are merged "
               "with the young Vela population around them into one group of ~700 stars; HDBSCAN's leaf "
               "selection (`--method hdbscan --hdbscan-selection leaf`) keeps them apart (see its table) but "
               "splits or misses clusters elsewhere. For most distant clusters the published list is cut at a "
               "radius and a 0.95 probability (Perren et al. 2022 favoured purity), so recall stays high "
               "(0.7-1.0) while precision against that list is 0.3-0.8.")
    hc = results.get("hdbscan eom + contrast 2")
    hc_txt = f" (tuning mean Jaccard {summary(hc)['tuning']['mean_jaccard']:.2f})" if hc else ""
    out.append("* **HDBSCAN** (scikit-learn) finds nothing in several small fields that one cluster dominates "
               "(Tombaugh 2, Berkeley 25, 75, 76: it never returns the whole tree's root as a cluster) and "
               f"otherwise finds many small extra groups; with the density contrast it improves{hc_txt} but stays "
               "below DBSCAN. **OPTICS** with xi extraction fragments the clusters; with DBSCAN extraction at the "
               "same eps it gives DBSCAN's answer, several times slower.")
    if nulls:
        n_def = sum(n["candidates"] for n in nulls.get("default", []))
        n_nos = sum(n["candidates"] for n in nulls.get("dbscan + contrast 2 without significance cut", []))
        nos = results.get("dbscan + contrast 2 without significance cut")
        real = (f"; on the real fields it leaves {d['other_candidates']} extra candidates where there were "
                f"{summary(nos)['other_candidates']}" if nos else "")
        null_sig = [x for n in nulls.get("dbscan + contrast 2 without significance cut", []) for x in n["significance"]]
        tune_sig = [r["significance"] for r in results["default"] if r["subset"] == "tuning" and r.get("significance")]
        where = (f" The {clu.TableClusterSettings().min_significance:g}-sigma threshold lies between the strongest "
                 f"candidate on the shuffled fields ({max(null_sig):.1f} sigma) and the weakest tuning cluster "
                 f"({min(tune_sig):.1f} sigma)." if null_sig and tune_sig else "")
        out.append(f"* **The significance test still helps**: it changes no published cluster's match, but on the "
                   f"shuffled fields the default finds {n_def} candidate(s) and the same without the "
                   f"{clu.TableClusterSettings().min_significance:g}-sigma cut {n_nos}{real}.{where} Its region is now "
                   "the union of the members' own "
                   "k-neighbourhoods (DBSCAN's eps-balls were as large as a distant cluster and put 2-sigma on "
                   "clusters the literature lists).")
    out.append("")
    return out


def markdown(results: dict[str, list[dict]], nulls: dict[str, list[dict]] | None, frames: list[dict] | None,
             command: str) -> str:
    d = clu.TableClusterSettings()
    lines = [
        "# Cluster membership on real Gaia fields (`tenmon clusters`, issue 16)",
        "",
        f"Rerun: `{command}` (about 20 minutes on 2 cores, OPTICS is most of it).",
        "",
        "Data (tests/data/clusters, provenance in tests/data/PROVENANCE.md): real Gaia fields with every "
        "star, members and non-members, and the memberships published for them:",
        "",
        "* **Blanco 1**: Gaia DR2, G < 18, 5 x 5 deg, 14 785 stars; Cantat-Gaudin et al. 2018 (UPMASK, "
        "members p >= 0.7) and Tarricq et al. 2022 (HDBSCAN).",
        "* **Vela field**: Gaia EDR3, G < 19, 3.9 x 2.7 deg, 15 643 stars, four Cantat-Gaudin et al. 2018 "
        "clusters (NGC 2659, Pismis 8, SAI 94, NGC 2645; p >= 0.7). The region also holds the young "
        "Vela populations and UBC clusters that catalogue does not list.",
        "* **15 distant clusters** (6-13 kpc): Gaia EDR3, G < 21, boxes of ~0.3 deg (3 300-8 100 stars); "
        "Perren et al. 2022 members (pyUPMASK, then their radius and probability cut).",
        "",
        "Method: `cluster_table` on the whole field with the default features (ra, dec, parallax, pmra, "
        "pmdec); each published cluster is matched to the candidate with the highest Jaccard index. "
        "Recall = found & published / published, precision = found & published / found, every star not "
        "published as a member counting as a non-member (so precision is a lower bound where a paper cut "
        "its list at a radius or probability). *other*: candidates of the field matched to no published "
        "cluster there (spurious, or real but unpublished: the Vela field has several).",
        "",
        "**Tuning vs report.** The defaults were chosen by the mean Jaccard over the TUNING clusters "
        "(Blanco 1 with both memberships, Tombaugh 2, Berkeley 29, Berkeley 73, Czernik 30, FSR 1212, "
        "Saurer 1, vdBergh-Hagen 4). The REPORT clusters (the Vela field's four, Berkeley 25, 75, 76, "
        "102, 26, FSR 1419, Arp-Madore 2, vdBergh-Hagen 37) were never chosen on; the split was fixed "
        "after first exploratory runs of the old DBSCAN and of raw HDBSCAN on all fields.",
        "",
        f"**Defaults chosen** (`TableClusterSettings`): method `{d.method}`, density contrast "
        f"{d.contrast:g} (k = {d.contrast_k}), at least {d.min_members} members, significance >= "
        f"{d.min_significance:g} sigma, `{d.scaling}` scaling, eps at {d.null_core_fraction:.0%} of the "
        "null's k-distances, min_samples = max(2 x dims, ln N).",
        "",
        *findings(results, nulls),
        "## Summary per configuration",
        "",
        "| configuration | tuning mean J | report mean J | all mean J (median) | J >= 0.6 | mean recall | mean precision | other candidates | time (all fields) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        s = summary(rows)
        lines.append(f"| {name} | {s['tuning']['mean_jaccard']:.3f} | {s['report']['mean_jaccard']:.3f} | "
                     f"{s['all']['mean_jaccard']:.3f} ({s['all']['median_jaccard']:.3f}) | "
                     f"{s['all']['n_ge_0.6']}/{s['all']['n']} | {s['all']['mean_recall']:.3f} | "
                     f"{s['all']['mean_precision']:.3f} | {s['other_candidates']} | {s['seconds']:.0f} s |")
    for name in [n for n in ("default", "dbscan before: no contrast, refined null, 4.5 sigma",
                             "hdbscan eom mcs 10", "hdbscan leaf mcs 10", "optics xi 0.05") if n in results]:
        lines += ["", f"## Per cluster: {name}", "",
                  "| cluster | membership | subset | Jaccard | recall | precision | n found | n published | sigma | other in field | rows | time |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in results[name]:
            sig = "-" if r.get("significance") is None else f"{r['significance']:.1f}"
            lines.append(f"| {r['cluster']} | {r['membership']} | {r['subset']} | {r['jaccard']:.2f} | {r['recall']:.2f} | "
                         f"{r['precision']:.2f} | {r['n_found']} | {r['n_published']} | {sig} | {r['other']} | "
                         f"{r['n_rows']} | {r['seconds']:.1f} s |")
    if nulls is not None:
        lines += ["", "## Null fields", "",
                  "Every field with its positions shuffled against the kinematics (the clusters dissolved, the "
                  "field's structure kept), two shuffles each:", "",
                  "| configuration | tables | candidates found | sizes (significance) |", "|---|---|---|---|"]
        for name, runs in nulls.items():
            n_c = sum(n["candidates"] for n in runs)
            detail = "; ".join(f"{n['field']}: {n['sizes']} ({n['significance']} sigma)" for n in runs if n["candidates"])
            lines.append(f"| {name} | {len(runs)} | {n_c} | {detail or '-'} |")
    if frames is not None:
        lines += ["", "## Frames", "",
                  "Frame-level candidates (`tenmon frame process`, the daemon's pipeline) keep the frames' "
                  "DBSCAN: on the synthetic frames of the tests the tables' default does no better and takes "
                  "about three times as long, so frames and tables have different defaults "
                  "(`ClusterSettings` and `TableClusterSettings`).", "",
                  "| method | false candidates, 20 random frames | injected clusters found | other candidates | ms per frame (random / injected) |",
                  "|---|---|---|---|---|"]
        for f in frames:
            lines.append(f"| {f['method']} | {f['false_on_random']} | {f['found']}/20 | {f['other']} | "
                         f"{f['ms_random']} / {f['ms_injected']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", help="semicolon-separated configuration names (default: all)")
    ap.add_argument("--subset", choices=["tuning", "report", "all"], default="all")
    ap.add_argument("--null", action="store_true", help="also run the default on shuffled (cluster-free) fields")
    ap.add_argument("--frames", action="store_true", help="also compare frame and table methods on synthetic frames")
    ap.add_argument("--out", type=Path, help="write the markdown page here (docs/bench/clusters.md)")
    ap.add_argument("--json", type=Path, help="write every row as JSON")
    a = ap.parse_args()
    global CASES
    if a.subset != "all":
        CASES = [c for c in CASES if c.subset == a.subset]
    names = [n.strip() for n in a.configs.split(";")] if a.configs else list(CONFIGS)
    results = {}
    for name in names:
        print(f"== {name}", flush=True)
        results[name] = run_config(CONFIGS[name])
        print("   " + json.dumps(summary(results[name])), flush=True)
    nulls = None
    if a.null:
        nulls = {name: null_runs(CONFIGS[name]) for name in ("default", "dbscan + contrast 2 without significance cut")}
        print("null fields:", json.dumps(nulls))
    frames = frame_comparison() if a.frames else None
    if frames is not None:
        print("frames:", json.dumps(frames))
    cmd = ".venv/bin/python benchmarks/clusters_real.py --null --frames --out docs/bench/clusters.md"
    if a.out:
        a.out.write_text(markdown(results, nulls, frames, cmd))
        print(f"wrote {a.out}")
    if a.json:
        a.json.write_text(json.dumps({"results": results, "null": nulls, "frames": frames}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
