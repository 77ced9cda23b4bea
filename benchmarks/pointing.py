"""Pointing-model figures on the real TPOINT runs in tests/data/pointing (markdown on stdout).

Per run: sky rms before and after fits with 2, 6 and 9 terms (rigorous and linear), and the
half/half test (fit on one half, evaluate on the other; split by time and alternately), with the
rms a plain sync (IH, ID from the first half) leaves on the other half for comparison. Then a
diagnosis of what the 9 terms leave: how much a per-hour drift of the index errors explains.

    .venv/bin/python benchmarks/pointing.py > docs/bench/pointing.md   (about 5 s)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from tenmon.pointing import model as P

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "pointing"
RUNS = ["gem-28.dat", "cgx-l-data.dat", "warp-astron.dat"]


def drift_diagnosis(data: P.PointingData) -> tuple[float, float, float, float]:
    """rms of the linear 9-term fit, and with IH/ID drifting linearly in time (arcsec/h) added."""
    names = P.DEFAULT_TERMS
    dh, dd = data.offsets_arcsec()
    cosd = np.cos(np.radians(data.cat_dec_deg))
    a_h, a_d = P.design_matrix(data.ha_deg, data.cat_dec_deg, data.pier_sign, data.latitude_deg, names)
    t = np.unwrap(np.radians(data.lst_deg)) * 12 / np.pi  # sidereal hours
    t = t - t.mean()
    zeros = np.zeros(len(data))
    b = np.concatenate([dh * cosd, dd])

    def rms(ah, ad):
        a = np.vstack([ah * cosd[:, None], ad])
        c, *_ = np.linalg.lstsq(a, b, rcond=None)
        r = b - a @ c
        return float(np.sqrt(np.sum(r**2) / len(data))), c

    base, _ = rms(a_h, a_d)
    ah2 = np.column_stack([a_h, -t, zeros])
    ad2 = np.column_stack([a_d, zeros, -data.pier_sign * t])
    drift, c = rms(ah2, ad2)
    return base, drift, float(c[-2]), float(c[-1])


def main() -> int:
    out = sys.stdout
    print("# Pointing model on the real TPOINT runs\n", file=out)
    print(
        "Data: `tests/data/pointing` (three TheSkyX TPOINT exports of German equatorial mounts, "
        "latitude +39 00 26, not synced: offsets of degrees). rms = sky rms "
        "`sqrt(mean(dX^2 + dDec^2))`, arcsec, `dX = dH cos(dec)`. Default terms: "
        f"{' '.join(P.DEFAULT_TERMS)}.\n",
        file=out,
    )
    print("Rerun: `.venv/bin/python benchmarks/pointing.py > docs/bench/pointing.md`\n", file=out)
    print("## Fits on each whole run\n", file=out)
    print(
        "| run | n | rms before | IH ID | + CH NP MA ME | 9 terms | 9 terms, linear formulas only | fit time |",
        file=out,
    )
    print("|---|---|---|---|---|---|---|---|", file=out)
    for name in RUNS:
        d = P.read_tpoint(DATA / name)
        t0 = time.perf_counter()
        full = P.fit(d)
        dt = time.perf_counter() - t0
        r2 = P.fit(d, "IH,ID").rms_after_arcsec
        r6 = P.fit(d, "IH,ID,CH,NP,MA,ME").rms_after_arcsec
        lin = P.fit(d, rigorous=False).rms_after_arcsec
        print(
            f"| {name} | {len(d)} | {full.rms_before_arcsec:.0f} | {r2:.1f} | {r6:.1f} | "
            f"**{full.rms_after_arcsec:.1f}** | {lin:.1f} | {dt * 1000:.0f} ms |",
            file=out,
        )
    print("\nTerms of the 9-term fits (arcsec, value +- sigma):\n", file=out)
    print("| run | " + " | ".join(P.DEFAULT_TERMS) + " |", file=out)
    print("|---|" + "---|" * len(P.DEFAULT_TERMS), file=out)
    for name in RUNS:
        m = P.fit(P.read_tpoint(DATA / name)).model
        cells = [f"{m.coefficients_arcsec[t]:.0f} +- {m.sigmas_arcsec[t]:.0f}" for t in m.terms]
        print(f"| {name} | " + " | ".join(cells) + " |", file=out)

    print("\n## Fit on one half, evaluate on the other (acceptance: rms at least 3x lower)\n", file=out)
    print(
        "| run | split | fit on | rms before | rms after (9 terms) | ratio | rms after a plain sync (IH ID) |",
        file=out,
    )
    print("|---|---|---|---|---|---|---|", file=out)
    worst = float("inf")
    for name in RUNS:
        d = P.read_tpoint(DATA / name)
        for how in ("time", "alternate"):
            a, b = d.halves(how)
            for label, fit_on, test_on in (("1st", a, b), ("2nd", b, a)):
                ev = P.evaluate(P.fit(fit_on).model, test_on)
                sync = P.evaluate(P.fit(fit_on, "IH,ID").model, test_on)
                ratio = ev.rms_before_arcsec / ev.rms_after_arcsec
                worst = min(worst, ratio)
                print(
                    f"| {name} | {how} | {label} half | {ev.rms_before_arcsec:.0f} | {ev.rms_after_arcsec:.1f} | "
                    f"{ratio:.1f}x | {sync.rms_after_arcsec:.1f} |",
                    file=out,
                )
    print(f"\nSmallest ratio: {worst:.1f}x.\n", file=out)

    print("## What the 9 terms leave (diagnosis, not part of the model)\n", file=out)
    print("| run | rms, 9 terms (linear) | + IH, ID drifting linearly in time | drift IH | drift ID |", file=out)
    print("|---|---|---|---|---|", file=out)
    for name in RUNS:
        base, drift, dih, did = drift_diagnosis(P.read_tpoint(DATA / name))
        print(f"| {name} | {base:.1f} | {drift:.1f} | {dih:+.0f}\"/h | {did:+.0f}\"/h |", file=out)
    print(
        "\nThe residual plots (`tenmon pointing fit FILE --plot res.png`) show what dominates: in "
        "gem-28 and cgx-l the mount's Dec reading jumps between two states about 600-650\" apart "
        "from one star to the next (a bimodal dDec on the east side of the pier), which no static "
        "term can model; in warp-astron the index errors drift with time (about 300\"/h in Dec), "
        "which a per-night sync or the centring loop has to take out, not the model.",
        file=out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
