"""How the band reader's acceptance thresholds were chosen: the whole pipeline on the tuning seeds.

    .venv/bin/python benchmarks/slit_band_gate.py [--first 8001000] [--frames 600] [--workers 2]

Renders the tuning frames (never the benchmark's 9000000.. or 9600000..), reads each with the
packaged detector and band network at loose thresholds (``band_here_accepted`` and
``band_here_alone`` 0.3, ``band_here_search`` 0.5), then replays stricter thresholds on the
recorded ``band_here`` values and prints the issue's figures for each. A reading the stricter
main thresholds would refuse is counted ``unknown`` (its search for the slit elsewhere is not
replayed, so answered shares are lower bounds).

Then, at the packaged presence thresholds, the state threshold (``band_state_decided``): a
reading whose band state probability is below it gives its azimuth with the state ``unknown``.
The second table shows, for each, the state accuracy of the frames given a state and how many
visible frames get one (those with the part of the slit that tells the state in view, and the
rest).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

LOOSE = {"band_here_accepted": 0.3, "band_here_alone": 0.3, "band_here_search": 0.5,
         "band_state_decided": 0.0}


def _read(seeds: list[int]) -> list[dict]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    from tenmon.vision.slit import render as ir_render
    from tenmon.vision.slit.detector import DetectorSettings, SlitDetector

    det = SlitDetector(DetectorSettings(**LOOSE))
    out = []
    for seed in seeds:
        res = ir_render.render_random(seed)
        tr = res.truth
        rd = det.estimate(res.image, tr.calibration)
        out.append({"seed": seed, "az_true": tr.azimuth_deg, "state_true": tr.state,
                    "vis": tr.visibility, "sv": tr.state_visibility, "az": rd.azimuth_deg,
                    "state": rd.state, "source": rd.source, "here": rd.details.get("band_here"),
                    "gate": rd.details.get("box_gate"),
                    "p_state": rd.details.get("state_confidence")})
    return out


def _known(r: dict, search: float, accepted: float, alone: float) -> bool:
    """Whether a loose reading still answers at these presence thresholds."""
    if r["state"] == "unknown":
        return False
    here = r["here"] if r["here"] is not None else 1.0
    if r["source"] == "search+band":
        return here >= search
    return here >= (accepted if r["gate"] else alone)


def score(rows: list[dict], search: float, accepted: float, alone: float) -> dict:
    """The issue's figures for one set of thresholds replayed on the loose readings."""
    errs, states, answered, wrong, hidden = [], [], 0, 0, []
    for r in rows:
        known = _known(r, search, accepted, alone)
        err = abs((r["az"] - r["az_true"] + 180.0) % 360.0 - 180.0) if known else np.inf
        answered += known
        wrong += bool(known and err > 5.0)
        if r["vis"] >= 0.5:
            errs.append(err)
            states.append(known and r["state"] == r["state_true"])
        elif r["vis"] < 0.2:
            hidden.append(not known)
    errs = np.array(errs)
    p95 = float(np.percentile(errs, 95))
    return {"p95_deg": round(p95, 3) if np.isfinite(p95) else None,
            "state_accuracy": round(float(np.mean(states)), 4),
            "visible_answered": round(float(np.isfinite(errs).mean()), 4),
            "off_by_5deg": f"{wrong}/{answered}", "hidden_unknown": f"{sum(hidden)}/{len(hidden)}"}


def score_state(rows: list[dict], decided: float, search: float, accepted: float,
                alone: float) -> dict:
    """State figures for one ``band_state_decided`` at the given presence thresholds."""
    stated, right, in_view, in_view_stated, hidden_stated = 0, 0, 0, 0, 0
    n_vis = 0
    for r in rows:
        if r["vis"] < 0.5:
            continue
        n_vis += 1
        has_state = _known(r, search, accepted, alone) and (r["p_state"] is None or r["p_state"] >= decided)
        stated += has_state
        right += bool(has_state and r["state"] == r["state_true"])
        seen = r["sv"] is None or r["sv"] >= 0.5
        in_view += seen
        in_view_stated += bool(seen and has_state)
        hidden_stated += bool(not seen and has_state)
    return {"state_accuracy_given": round(right / max(stated, 1), 4),
            "wrong": f"{stated - right}/{stated}",
            "visible_given": round(stated / max(n_vis, 1), 4),
            "in_view_given": round(in_view_stated / max(in_view, 1), 4),
            "hidden_part_given": round(hidden_stated / max(n_vis - in_view, 1), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--first", type=int, default=8_001_000)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    seeds = list(range(args.first, args.first + args.frames))
    chunks = [seeds[i::args.workers] for i in range(args.workers)]
    with ProcessPoolExecutor(max_workers=args.workers) as ex:
        rows = [r for part in ex.map(_read, chunks) for r in part]
    print(f"{len(rows)} tuning frames, seeds {seeds[0]}..{seeds[-1]}")
    print("| search | accepted | alone | figures |\n|---|---|---|---|")
    for s, a, b in itertools.product([0.5, 0.7, 0.9, 0.95], [0.3, 0.5, 0.7], [0.3, 0.5, 0.7, 0.9]):
        print(f"| {s} | {a} | {b} | {json.dumps(score(rows, s, a, b))} |")
    from tenmon.vision.slit.detector import DetectorSettings

    d = DetectorSettings()
    print(f"\nState threshold at search {d.band_here_search}, accepted {d.band_here_accepted}, "
          f"alone {d.band_here_alone}:\n")
    print("| band_state_decided | figures |\n|---|---|")
    for th in (0.0, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995):
        fig = score_state(rows, th, d.band_here_search, d.band_here_accepted, d.band_here_alone)
        print(f"| {th} | {json.dumps(fig)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
