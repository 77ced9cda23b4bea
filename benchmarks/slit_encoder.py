"""Benchmark of the optical slit encoder: model pipeline vs the classical estimator on rendered frames.

Frames come from the IR renderer with seeds from EVAL_SEED_BASE up (never used in training),
spanning every scene and occlusion, at every sensor size the renderer draws. Both readers get the
renderer's true calibration. Accuracy, honesty of the confidence and per-frame time (rendering and
image decoding excluded; everything from the frame in memory to the reading included) are printed
as markdown; ``--jsonl`` keeps every frame's answers.

The process is pinned to one CPU core, OpenCV and onnxruntime to one thread, so the times are
"one core of this machine".

    .venv/bin/python benchmarks/slit_encoder.py --frames 500
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

from tenmon.vision.slit.detector import DEFAULT_MODEL_PATH  # noqa: E402
from tenmon.vision.slit.band import DEFAULT_BAND_MODEL  # noqa: E402
from tenmon.vision.slit.evaluate import evaluate_frames  # noqa: E402
from tenmon.vision.slit.training.detector import EVAL_SEED_BASE  # noqa: E402

KEYS = [
    ("frames visible / partly visible / hidden", lambda f: f"{f['visible']} / {f['partly_visible']} / {f['hidden']}"),
    ("azimuth error, median (deg)", lambda f: f["az_err_median_deg"]),
    ("azimuth error, 95th percentile (deg; None = infinite: over 5 % without an azimuth)",
     lambda f: f["az_err_p95_deg"]),
    ("azimuth error, 95th percentile of visible frames given an azimuth (deg)", lambda f: f["az_err_p95_answered_deg"]),
    ("visible frames given an azimuth", lambda f: f["azimuth_visible"]),
    ("state accuracy of the visible frames given a state (open/closed/partial)",
     lambda f: f["state_accuracy_answered"]),
    ("visible frames given a state", lambda f: f["answered_visible"]),
    ("visible frames with the state-deciding part in view (n): given a state",
     lambda f: f"{f['stated_in_view']} ({f['state_in_view']})"),
    ("state accuracy over all visible frames (state unknown = wrong)", lambda f: f["state_accuracy"]),
    ("state accuracy over visible frames with the state-deciding part in view (unknown = wrong)",
     lambda f: f["state_accuracy_in_view"]),
    ("open-fraction error, median", lambda f: f["open_fraction_err_median"]),
    ("answers > 5 deg off / frames given a state", lambda f: f"{f['answered_off_by_5deg']} / {f['answered']} "
                                                           f"({f['answered_off_by_5deg_share']})"),
    ("azimuths > 5 deg off / frames given an azimuth", lambda f: f"{f['azimuth_off_by_5deg']} / "
                                                               f"{f['azimuth_answered']} ({f['azimuth_off_by_5deg_share']})"),
    ("hidden frames answered unknown (state unknown)", lambda f: f["hidden_unknown_share"]),
    ("hidden frames given neither a state nor an azimuth", lambda f: f["hidden_no_azimuth_share"]),
    ("time per frame, median (ms)", lambda f: f["ms_median"]),
    ("time per frame, 95th percentile (ms)", lambda f: f["ms_p95"]),
    ("CPU time per frame, median (ms; the process's own, whatever else loads the core)",
     lambda f: f["cpu_ms_median"]),
]


def table(summary: dict, readers: list[str], key: str | None = None) -> str:
    lines = ["| figure | " + " | ".join(readers) + " |", "|---|" + "---|" * len(readers)]
    for name, fn in KEYS:
        try:
            cells = [str(fn(summary[r] if key is None else summary[r][key])) for r in readers]
        except KeyError:  # the strict table has no times
            continue
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--jsonl", type=Path, default=None, help="write every frame's answers here")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one core")
    ap.add_argument("--train-report", type=Path, default=None, help="report.json of the training run")
    args = ap.parse_args(argv)
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    model = args.model or DEFAULT_MODEL_PATH
    t0 = time.time()
    rep = evaluate_frames(range(args.seed_base, args.seed_base + args.frames), model_path=args.model,
                          progress=sys.stderr.isatty())
    wall = time.time() - t0
    summary = rep.summary()
    readers = rep.readers()
    print("# Slit encoder (optical dome/slit encoder)\n")
    print(f"Rerun: `.venv/bin/python benchmarks/slit_encoder.py --frames {args.frames}"
          f"{'' if args.train_report is None else ' --train-report ' + str(args.train_report)}`"
          " (a few minutes; rendering the frames is most of it)\n")
    print(f"{args.frames} rendered frames, seeds {args.seed_base}..{args.seed_base + args.frames - 1} "
          "(the detector was trained on seeds 1000000.. and 2000000.., the band network on 1000000..1009999; the detector's thresholds were tuned on 3000000.. and 8000000..8002399, the band's on 8000000..8001599), every scene, occlusion and sensor size of "
          "the renderer; both readers get the renderer's true calibration. Scoring rules: "
          "`tenmon.vision.slit.evaluate` (no azimuth on a visible frame = infinite azimuth error; "
          "state unknown = wrong state in the all-visible figure, open-fraction error 1; a reading "
          "may give the azimuth with the state unknown when the part of the slit that tells the "
          "state is hidden; partly visible frames (visibility 0.2..0.5) count in the "
          "honesty row only).\n")
    print(f"- model: `{model.name}`, {model.stat().st_size / 1e6:.2f} MB" if model.exists() else "- model: none")
    if DEFAULT_BAND_MODEL.exists():
        print(f"- band network: `{DEFAULT_BAND_MODEL.name}`, {DEFAULT_BAND_MODEL.stat().st_size / 1e6:.2f} MB")
    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"pinned to one core: {not args.no_pin}")
    print(f"- wall time (rendering included): {wall:.0f} s\n")
    print(table(summary, readers))
    if "model" in summary and summary["model"]["ms_median"] is not None:
        ms = summary["model"]["ms_median"]
        # Not measured: typical single-core ratios for numpy/OpenCV/onnxruntime (MLAS) work,
        # x86-64 desktop core vs Cortex-A72 at 1.8 GHz (Pi 4) and Cortex-A76 at 2.4 GHz (Pi 5).
        print(f"\nRaspberry Pi estimate (not measured; assumed single-core slow-downs of 4-6x for a "
              f"Pi 4 and 2-2.5x for a Pi 5): model pipeline ~{ms * 4:.0f}-{ms * 6:.0f} ms per frame "
              f"on a Pi 4, ~{ms * 2:.0f}-{ms * 2.5:.0f} ms on a Pi 5.")
    if args.train_report and args.train_report.exists():
        tr = json.loads(args.train_report.read_text())
        cfg = tr["config"]
        m = tr.get("ultralytics_metrics", {})
        print(f"\n## Training run\n\n- {cfg['n_train']} training + {cfg['n_val']} validation frames, "
              f"scale `{cfg['scale']}`, batch {cfg['batch']}, seed {cfg['seed']}, {tr['threads']} threads "
              f"(2 CPU cores, shared with other work)\n- dataset rendering {tr['seconds']['dataset']:.0f} s, "
              f"training {tr['seconds']['training']:.0f} s, epochs run: {int(m.get('epoch', 0))}"
              f"\n- last epoch: mAP50 {m.get('metrics/mAP50(B)')}, mAP50-95 {m.get('metrics/mAP50-95(B)')}"
              f"\n- model: {tr['model_bytes'] / 1e6:.2f} MB")
    band_report = DEFAULT_BAND_MODEL.with_suffix(".json")
    if band_report.exists():
        br = json.loads(band_report.read_text())
        print(f"\n## Band network training run\n\n- {br['train_bands']} training bands "
              f"({br['train_bands'] // 2} frames, a band at the slit and one elsewhere each), "
              f"{br['validation_bands']} validation bands (held-out shard {br['held_out']}), "
              f"{br['epochs']} epochs, seed {br['seed']}, {br['threads']} threads\n"
              f"- training {br['train_s']:.0f} s, {br['parameters']} parameters, "
              f"{br['model_bytes'] / 1e6:.2f} MB\n- last epoch on the held-out bands: {br['last']}")
    print("\n## Scored with the first renderer's stricter visibility\n\nThe same answers, frames "
          "sorted into visible / hidden by `visibility_strict` (every pixel of the slit 4 sigma + "
          "0.02 out of the noise), as the figures before this renderer fix were:\n")
    print(table(summary, readers, "strict_visibility"))
    for group in ("by_state", "by_scene", "by_occlusion"):
        print(f"\n## {group.replace('_', ' ')}\n")
        keys = sorted(summary[readers[0]][group])
        print("| reader | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for r in readers:
            cells = []
            for k in keys:
                f = summary[r][group][k]
                cells.append(f"az med {f['az_err_median_deg']}, p95 {f['az_err_p95_deg']}, "
                             f"state {f['state_accuracy_answered']} of {f['answered_visible']} given "
                             f"(all visible {f['state_accuracy']}), "
                             f"hidden->unknown {f['hidden_unknown_share']} (n={f['frames']})")
            print(f"| {r} | " + " | ".join(cells) + " |")
    if args.jsonl:
        args.jsonl.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.jsonl.with_name(f".{args.jsonl.name}.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rep.rows()))
        os.replace(tmp, args.jsonl)
    print("\n```json\n" + json.dumps({r: {k: v for k, v in summary[r].items()
                                           if not k.startswith("by_") and k != "strict_visibility"}
                                       for r in readers}, indent=1) + "\n```")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
