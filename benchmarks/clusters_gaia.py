"""`tenmon clusters` with its defaults on Gaia-like tables holding a real open cluster (modelled).

The tables come from ``tenmon.vision.render.sky.gaia_like_table``: M67 (NGC 2682) with the
published centre, parallax, proper motion, size and membership (Cantat-Gaudin et al. 2018;
Babusiaux et al. 2018) in a modelled Galactic-disc field with Gaia DR3-like errors. They are
*modelled, not Gaia extracts* (no network here). For several seeds and cone radii (so the cluster
is 8 % to 40 % of the table) the command runs exactly as an operator would (the CLI's handler,
defaults only) and the figures are: number of candidates, whether the cluster is one of them,
completeness and purity of its members against the truth column, the eps and min_samples chosen,
and time.

Run:  .venv/bin/python benchmarks/clusters_gaia.py [--seeds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from tenmon.cli import clusters as clusters_cli
from tenmon.vision.render import sky as skyrender

SEED0 = 20_000


def run_cli(table_path: Path, out_path: Path) -> dict:
    parser = argparse.ArgumentParser(prog="tenmon")
    clusters_cli.register(parser.add_subparsers())
    args = parser.parse_args(["clusters", str(table_path), "--out", str(out_path), "--json"])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = args.func(args)
    if rc != 0:
        raise RuntimeError(f"tenmon clusters exited {rc}")
    return json.loads(buf.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--radii", default="0.5,1.0,1.5", help="cone radii in degrees")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tenmon-gaia-"))
    rows = []
    for radius in (float(r) for r in args.radii.split(",")):
        for k in range(args.seeds):
            seed = SEED0 + 100 * int(radius * 10) + k
            t = skyrender.gaia_like_table(radius_deg=radius, seed=seed)
            src = work / f"gaia_{seed}.ecsv"
            out = work / f"gaia_{seed}_clusters.ecsv"
            t.write(src, overwrite=True)
            t0 = time.perf_counter()
            js = run_cli(src, out)
            dt = time.perf_counter() - t0
            lab = Table.read(out)
            truth = np.asarray(lab["true_member"], bool)
            cid = np.asarray(lab["cluster_id"])
            best = None
            for c in js["candidates"]:
                m = cid == c["cluster_id"]
                hit = int((m & truth).sum())
                if best is None or hit > best[1]:
                    best = (c, hit, int(m.sum()))
            row = {
                "seed": seed, "radius_deg": radius, "rows": len(t), "members_true": int(truth.sum()),
                "member_fraction": round(float(truth.mean()), 3), "candidates": js["n_candidates"],
                "eps": js["eps"], "min_samples": js["min_samples"], "seconds": round(dt, 2),
            }
            if best is not None and best[1] > 0:
                c, hit, n = best
                row.update(completeness=round(hit / truth.sum(), 3), purity=round(hit / n, 3),
                           significance=c["significance"], centre=c["centre"])
            row["recovered_as_one"] = bool(best is not None and js["n_candidates"] == 1
                                           and row.get("completeness", 0) >= 0.5 and row.get("purity", 0) >= 0.9)
            rows.append(row)
            print(f"r={radius:.1f} deg seed {seed}: {len(t)} rows, {truth.sum()} members ({truth.mean():.0%}), "
                  f"{js['n_candidates']} candidate(s), eps {js['eps']:.3f}, min_samples {js['min_samples']}, "
                  f"completeness {row.get('completeness')}, purity {row.get('purity')}, "
                  f"{row.get('significance')} sigma, {dt:.2f} s", flush=True)
    summary = {
        "tables": len(rows),
        "recovered_as_one_candidate": f"{sum(r['recovered_as_one'] for r in rows)}/{len(rows)}",
        "completeness_median": float(np.median([r.get("completeness", 0) for r in rows])),
        "completeness_min": float(np.min([r.get("completeness", 0) for r in rows])),
        "purity_min": float(np.min([r.get("purity", 0) for r in rows])),
        "extra_candidates": int(sum(r["candidates"] - 1 for r in rows if r["candidates"] > 1)),
        "seconds_median": float(np.median([r["seconds"] for r in rows])),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "tables": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
