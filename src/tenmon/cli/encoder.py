"""`tenmon encoder estimate|calibrate|watch|collect|adapt|train`: the optical slit encoder, run here on frames."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tenmon.core.errors import ConfigError, TenmonError, VisionError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tenmon encoder ...`` to a sub-parsers object."""
    enc = subparsers.add_parser(
        "encoder",
        help="the optical slit encoder: read the slit from IR frames, calibrate the camera, "
             "collect labelled frames, adapt to the site, train",
        description=(
            "The dome has no encoders: an IR camera looking up at the dome's interior is the "
            "encoder. These commands run the slit reader here, on image files or a camera, "
            "without the daemon: estimate (frames -> azimuth, opening, state), calibrate "
            "(frames at known azimuths -> camera calibration), watch (live readings), collect "
            "(the daemon's labelled frames), adapt (fine-tune on them), train (regenerate the "
            "detector model; adapt and train need the 'train' extra)."),
    )
    sub = enc.add_subparsers(dest="encoder_command", metavar="SUBCOMMAND")
    enc.set_defaults(func=lambda args: (enc.print_help(), 2)[1])

    p = sub.add_parser(
        "estimate",
        help="read the slit's azimuth, opening and state from image files",
        description=(
            "Read the slit from each IMAGE with the camera calibration CAL.json: either one "
            "calibration object (center_x, center_y, horizon_radius, north_angle_deg, "
            "azimuth_sense) or an object mapping image file names to calibration objects. "
            "Prints one line per image; with --json one JSON object per line with image, "
            "azimuth_deg, open_fraction, state (open, closed, partial, unknown), confidence and "
            "elapsed_ms (processing time, file reading excluded). State unknown with an azimuth: "
            "the slit was found but the part of it that tells its state is hidden (usually by "
            "the telescope), so the state and opening are not given. Exit status 0 even when a "
            "slit is unknown; 1 on an unreadable file or calibration."),
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="IR frames (not modified)")
    p.add_argument("--calibration", required=True, type=Path, metavar="CAL.json",
                   help="calibration object, or object of image name -> calibration")
    p.add_argument("--json", action="store_true", help="one JSON object per image, nothing else")
    p.add_argument("--annotate", type=Path, metavar="DIR",
                   help="write a copy of each frame with the reading drawn on it into DIR")
    p.add_argument("--model", type=Path, metavar="ONNX|DIR",
                   help="slit model (default: the packaged one), or a site-adapted model folder "
                        "(`tenmon encoder adapt --out DIR`)")
    p.add_argument("--classical", action="store_true", help="use the model-free estimator only")
    p.add_argument("--slit-length", type=float, default=100.0, metavar="DEG",
                   help="the slit's arc from the horizon over the zenith (default 100)")
    p.set_defaults(func=_estimate)

    c = sub.add_parser(
        "calibrate",
        help="find the camera calibration from frames taken at known dome azimuths",
        description=(
            "Solve center_x, center_y (the zenith's pixel), horizon_radius (pixels to the dome's "
            "base) from how the dome turns between the frames, and north_angle_deg and "
            "azimuth_sense from where the slit is in each frame. Give two or more frames (four "
            "30..150 degrees apart are best), the slit open and the telescope parked clear of it, "
            "and the dome azimuth of each (--azimuth, in the same order). Writes the calibration "
            "JSON (atomically) and prints the TOML snippet for the site config."),
    )
    c.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="frames (same camera, same size)")
    c.add_argument("--azimuth", nargs="+", type=float, required=True, metavar="DEG",
                   help="dome (slit) azimuth of each frame, degrees, in IMAGE order")
    c.add_argument("--out", type=Path, default=Path("ir-calibration.json"), metavar="CAL.json",
                   help="calibration file to write (default ir-calibration.json)")
    c.add_argument("--projection", default="equidistant",
                   choices=["equidistant", "equisolid", "stereographic", "orthographic"],
                   help="the lens's fisheye projection, if known (default equidistant)")
    c.add_argument("--json", action="store_true", help="print the result as one JSON object")
    c.set_defaults(func=_calibrate)

    w = sub.add_parser(
        "watch",
        help="show live slit readings from the camera (or a folder of frames)",
        description=(
            "Read frames from --device (a V4L2 device such as /dev/video0, a stream URL, or an "
            "image folder to replay), read the slit in each, track it over time and print one "
            "line per frame: azimuth, opening, state (with opening/closing from the tracker), "
            "angular velocity and confidence. Stop with Ctrl-C."),
    )
    w.add_argument("--device", default=None,
                   help="camera device, URL or image folder (default: the site config's "
                        "[encoder] device when --config names one, else /dev/video0)")
    w.add_argument("--calibration", type=Path, metavar="CAL.json",
                   help="calibration JSON (default: the site config's [encoder] calibration)")
    w.add_argument("--count", type=int, default=0, metavar="N", help="stop after N frames (0: run on)")
    w.add_argument("--rate", type=float, default=0.0, metavar="HZ", help="at most this many frames a second")
    w.add_argument("--model", type=Path, metavar="ONNX|DIR",
                   help="slit model (default: the packaged one), or a site-adapted model folder")
    w.add_argument("--json", action="store_true", help="one JSON object per frame")
    w.set_defaults(func=_watch)

    k = sub.add_parser(
        "collect",
        help="switch the daemon's collecting of labelled IR frames on or off, or show it",
        description=(
            "The daemon labels IR frames with what it knows at no cost to observing (the slit's "
            "state after a full or verified open or close, the open fraction of timed partial "
            "moves, 'moving' while a slit relay runs, the dome's azimuth right after homing and "
            "after timed rotations, and the encoder's confident readings where the relay history "
            "agrees) and writes them to [encoder] collect_dir (default DATA_DIR/encoder-labels): "
            "frames/*.png and labels.jsonl, the input of `tenmon encoder adapt`. 'on' and 'off' "
            "switch it at run time ([encoder] collect = true switches it on at start); without "
            "an argument it shows the state and the number of frames written."),
    )
    k.add_argument("switch", nargs="?", choices=["on", "off"], help="on or off (default: show)")
    k.add_argument("--json", action="store_true", help="print the state as one JSON object")
    k.set_defaults(func=_collect)

    a = sub.add_parser(
        "adapt",
        help="fine-tune the encoder on frames labelled at this site (needs the 'train' extra)",
        description=(
            "Fine-tune the slit encoder on LABELS.jsonl (written by `tenmon encoder collect` or "
            "[encoder] collect = true; one JSON object a line: image, state (open, closed, "
            "partial, moving or null), open_fraction, azimuth_deg; images relative to the file "
            "allowed). Part of the labels (--held-back, default 30 %%) is held back: half of it "
            "calibrates the thresholds (a state is stated only where it is right) and the "
            "azimuth correction, half judges the model before and after. A model worse on the "
            "judging frames is not written (exit status 1). Writes DIR: slit.onnx, "
            "slit_band.onnx (adapted), slit_finder.onnx (the site's slit finder), adapt.json "
            "(thresholds, azimuth correction, report). Use it with `tenmon encoder estimate "
            "--model DIR` or [encoder] model_dir = DIR. CPU only, minutes; run it in the "
            "training environment (.venv-train/bin/tenmon)."),
    )
    a.add_argument("labels", type=Path, metavar="LABELS.jsonl", help="the labelled frames")
    a.add_argument("--calibration", required=True, type=Path, metavar="CAL.json",
                   help="the camera's calibration (one calibration object)")
    a.add_argument("--out", required=True, type=Path, metavar="DIR", help="model folder to write")
    a.add_argument("--base", type=Path, metavar="DIR",
                   help="an adapted model folder to start from (default: the packaged models)")
    a.add_argument("--held-back", type=float, default=0.3, metavar="FRACTION",
                   help="share of the labels held back (default 0.3)")
    a.add_argument("--steps", type=int, default=None, help="training steps (default: from the data)")
    a.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    a.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    a.add_argument("--json", action="store_true", help="print the report as one JSON object")
    a.set_defaults(func=_adapt)

    t = sub.add_parser(
        "train",
        help="regenerate the slit detector model (needs the 'train' extra)",
        description=(
            "Render a seeded training set with the IR renderer, train the YOLO slit detector "
            "from scratch with ultralytics (offline), export it to ONNX, evaluate it on the "
            "validation frames and write a report. Needs the 'train' extra in its own "
            "environment (see tenmon.vision.slit.training.detector). Same options, same model."),
    )
    t.add_argument("--out", type=Path, default=Path("runs/slit"), metavar="DIR", help="working directory")
    t.add_argument("--frames", type=int, default=None, help="training frames (default 2500; band: 10000, as shipped)")
    t.add_argument("--val-frames", type=int, default=250, help="validation frames (default 250)")
    t.add_argument("--epochs", type=int, default=None,
                   help="epochs (default 75, as the shipped model; band: 16, as shipped)")
    t.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    t.add_argument("--scale", default="p", choices=["p", "f", "n", "s"],
                   help="model size: p 0.52 M, f 0.94 M, n 2.6 M parameters (default p, as shipped)")
    t.add_argument("--seed", type=int, default=0, help="dataset and training seed (default 0)")
    t.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    t.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    t.add_argument("--time-hours", type=float, default=None, help="cap the training time (hours)")
    t.add_argument("--model-out", type=Path, metavar="ONNX",
                   help="where the model goes (default: the package's models/slit.onnx, "
                        "band: models/slit_band.onnx)")
    t.add_argument("--json", action="store_true", help="print the report as one JSON object")
    t.add_argument("--what", choices=["detector", "band"], default="detector",
                   help="detector: the YOLO slit detector (default); band: the slit band network "
                        "(state, opening, presence); its rendered data goes in OUT/band_data, "
                        "its report beside the model")
    t.set_defaults(func=_train)


# --------------------------------------------------------------------------- estimate


def _load_calibrations(path: Path):
    from tenmon.vision.slit.reading import Calibration, load_json

    data = load_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a calibration object or an object of image name -> calibration")
    if "center_x" in data:
        return Calibration.from_dict(data, source=str(path)), {}
    table = {}
    for name, value in data.items():
        table[name] = Calibration.from_dict(value, source=f"{path}: {name}")
    if not table:
        raise ConfigError(f"{path}: no calibration in the file")
    return None, table


def _calibration_for(image: Path, single, table, path: Path):
    if single is not None:
        return single
    for key in (str(image), image.name, image.stem):
        if key in table:
            return table[key]
    raise ConfigError(f"{path}: no calibration for image {image.name!r}",
                      [(image.name, None, "missing")])


def _detector(args):
    from tenmon.vision.slit.detector import DetectorSettings, SlitDetector

    model = getattr(args, "model", None)
    if model is not None and Path(model).is_dir():
        return SlitDetector(DetectorSettings(model_dir=model, use_model=not getattr(args, "classical", False),
                                             slit_length_deg=getattr(args, "slit_length", 100.0)))
    settings = DetectorSettings(model_path=model,
                                use_model=not getattr(args, "classical", False),
                                slit_length_deg=getattr(args, "slit_length", 100.0))
    return SlitDetector(settings)


def _estimate(args) -> int:
    from tenmon.vision.images import read_image

    single, table = _load_calibrations(args.calibration)
    det = _detector(args)
    if args.annotate:
        args.annotate.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        cal = _calibration_for(path, single, table, args.calibration)
        image = read_image(path)
        try:
            reading = det.estimate(image, cal, time=datetime.now(timezone.utc))
        except VisionError as exc:
            raise VisionError(f"{path}: {exc}") from None
        row = {
            "image": str(path),
            "azimuth_deg": None if reading.azimuth_deg is None else round(reading.azimuth_deg, 3),
            "open_fraction": None if reading.open_fraction is None else round(reading.open_fraction, 3),
            "state": reading.state,
            "confidence": round(reading.confidence, 3),
            "elapsed_ms": round(reading.details.get("elapsed_ms", 0.0), 2),
        }
        if args.annotate:
            _write_annotated(args.annotate, path, image, cal, reading)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            az = "   ---  " if row["azimuth_deg"] is None else f"{row['azimuth_deg']:7.2f}\u00b0"
            fr = " -- " if row["open_fraction"] is None else f"{row['open_fraction']:4.2f}"
            print(f"{path.name}: azimuth {az}  open {fr}  {row['state']:<8} "
                  f"confidence {row['confidence']:.2f}  ({row['elapsed_ms']:.0f} ms, {reading.source})")
    return 0


def annotate(image, calibration, reading):
    """A copy of ``image`` (BGR) with the reading drawn on it: slit line, opening, text."""
    import cv2
    import numpy as np

    from tenmon.vision.slit.polar import dome_to_pixels

    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    th = max(1, int(round(min(h, w) / 400)))
    cx, cy = int(round(calibration.center_x)), int(round(calibration.center_y))
    cv2.drawMarker(out, (cx, cy), (0, 255, 255), cv2.MARKER_CROSS, 12 * th, th)
    az0 = np.arange(0, 360, 2.0)
    hx, hy = dome_to_pixels(calibration, az0, 0.0)
    pts = np.stack([hx, hy], -1).round().astype(np.int32)
    cv2.polylines(out, [pts], True, (0, 160, 255), th)
    for label, az in (("N", 0.0), ("E", 90.0)):
        x, y = dome_to_pixels(calibration, az, 8.0)
        cv2.putText(out, label, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * th, (0, 160, 255), th)
    color = {"open": (0, 220, 0), "closed": (0, 0, 230), "partial": (0, 200, 255)}.get(reading.state, (200, 200, 200))
    if reading.azimuth_deg is not None:
        t = np.linspace(0, 100, 60)
        x, y = dome_to_pixels(calibration, reading.azimuth_deg, t)
        cv2.polylines(out, [np.stack([x, y], -1).round().astype(np.int32)], False, color, th)
        if reading.open_fraction:
            t = np.linspace(0, 100 * reading.open_fraction, 40)
            x, y = dome_to_pixels(calibration, reading.azimuth_deg, t)
            cv2.polylines(out, [np.stack([x, y], -1).round().astype(np.int32)], False, color, 3 * th)
        fr = "--" if reading.open_fraction is None else f"{reading.open_fraction:.2f}"
        st = reading.state if reading.state != "unknown" else "state unknown"
        text = f"az {reading.azimuth_deg:.1f}  open {fr}  {st}  conf {reading.confidence:.2f}"
    else:
        text = f"unknown  conf {reading.confidence:.2f}"
    cv2.putText(out, text, (8, 20 * th), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * th, (0, 0, 0), 3 * th)
    cv2.putText(out, text, (8, 20 * th), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * th, color, th)
    return out


def _write_annotated(folder: Path, path: Path, image, calibration, reading) -> Path:
    import os

    import cv2

    target = folder / f"{path.stem}.annotated.png"
    tmp = folder / f".{target.name}.tmp.png"
    if not cv2.imwrite(str(tmp), annotate(image, calibration, reading)):
        raise VisionError(f"cannot write {tmp}")
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- calibrate


def _calibrate(args) -> int:
    from tenmon.vision.images import read_image
    from tenmon.vision.slit.calibration import calibrate

    if len(args.azimuth) != len(args.images):
        raise ConfigError(f"{len(args.images)} images but {len(args.azimuth)} --azimuth values: "
                          "give one azimuth per image, in order")
    frames = [read_image(p) for p in args.images]
    shapes = {f.shape[:2] for f in frames}
    if len(shapes) > 1:
        raise VisionError(f"calibration frames differ in size: {sorted(shapes)}")
    res = calibrate(frames, list(args.azimuth), projection=args.projection)
    res.calibration.save(args.out)
    if args.json:
        print(json.dumps({"calibration": res.calibration.to_dict(), "file": str(args.out),
                          "north_rms_deg": round(res.north_rms_deg, 3),
                          "north_residuals_deg": [round(r, 3) for r in res.north_residuals_deg],
                          "rotation_score": None if math.isnan(res.rotation_score) else round(res.rotation_score, 3),
                          "notes": res.notes}))
    else:
        for note in res.notes:
            print(note)
        print(f"north angle residuals: {', '.join(f'{r:+.2f}' for r in res.north_residuals_deg)} deg "
              f"(rms {res.north_rms_deg:.2f})")
        print(f"wrote {args.out}; for the site config:\n")
        print(f'[encoder]\ncalibration = "{args.out.resolve()}"\n')
        print("# or the keys themselves, as an inline calibration table:")
        print("".join(f"# {line}\n" for line in res.calibration.to_toml().splitlines()), end="")
    return 0


# --------------------------------------------------------------------------- watch


def _watch(args) -> int:
    from tenmon.drivers.ir_camera import open_source
    from tenmon.vision.slit.tracker import SlitTracker
    from tenmon.vision.slit.reading import Calibration

    device, cal_path, model = _configured_camera(args)
    if cal_path is None:
        raise ConfigError("encoder watch: no calibration (give --calibration CAL.json, or a site "
                          "config whose [encoder] has calibration = ...)")
    cal = Calibration.load(cal_path)
    if model is not None and getattr(args, "model", None) is None:
        args.model = model
    det = _detector(args)
    tracker = SlitTracker()
    n = 0
    with open_source(device) as src:
        last = 0.0
        for frame in src:
            if args.rate > 0:
                wait = last + 1.0 / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                last = time.monotonic()
            single = det.estimate(frame.image, cal, time=frame.time)
            tr = tracker.update(single)
            row = {"time": frame.time.isoformat(), "frame": frame.index,
                   "azimuth_deg": tr.azimuth_deg, "open_fraction": tr.open_fraction,
                   "state": tr.state, "confidence": tr.confidence,
                   "angular_velocity_deg_s": tr.angular_velocity_deg_s,
                   "frame_state": single.state, "frame_azimuth_deg": single.azimuth_deg,
                   "elapsed_ms": round(single.details.get("elapsed_ms", 0.0), 2)}
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                az = "  ---  " if tr.azimuth_deg is None else f"{tr.azimuth_deg:7.2f}"
                fr = " -- " if tr.open_fraction is None else f"{tr.open_fraction:4.2f}"
                v = "" if tr.angular_velocity_deg_s is None else f"  {tr.angular_velocity_deg_s:+5.2f} deg/s"
                print(f"{frame.time:%H:%M:%S.%f}"[:-3] + f"  az {az}  open {fr}  {tr.state:<8}{v}  "
                      f"conf {tr.confidence:.2f}  [{single.state} {row['elapsed_ms']:.0f} ms]", flush=True)
            n += 1
            if args.count and n >= args.count:
                break
    return 0


def _configured_camera(args) -> tuple[str, Path | None, Path | None]:
    """Device, calibration file and model: the options, else the site config's [encoder]."""
    device, cal, model = args.device, args.calibration, None
    config_path = getattr(args, "config", None)
    if config_path and (device is None or cal is None):
        from tenmon.config.loader import load_config

        enc = load_config(config_path).encoder
        if getattr(enc, "type", None) == "ir-camera":
            device = device or enc.device
            cal = cal or enc.calibration
            model = getattr(enc, "model_dir", None) or enc.model
    return device or "/dev/video0", cal, model


# --------------------------------------------------------------------------- collect


def _collect(args) -> int:
    from tenmon.cli.client import client_for, resolve_url
    from tenmon.core.errors import ApiError

    client = client_for(args)
    try:
        if args.switch is None:
            st = client.get("/encoder/collect")
        else:
            st = client.post("/encoder/collect", {"on": args.switch == "on"})
    except ApiError as exc:
        if exc.status == 404:
            url = resolve_url(getattr(args, "url", None), getattr(args, "config", None))
            raise TenmonError(f"the daemon at {url} collects no IR frames (its encoder has no "
                              "camera, or it predates collecting): GET /api/v1/encoder/collect "
                              "answered 404") from None
        raise
    if args.json:
        print(json.dumps(st))
    else:
        print(f"collecting {'on' if st['enabled'] else 'off'}: {st['written']} labelled frames in "
              f"{st['labels']}")
    return 0


# --------------------------------------------------------------------------- adapt


def _adapt(args) -> int:
    import importlib.util

    from tenmon.vision.slit.reading import Calibration

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
        raise TenmonError("adapting needs the 'train' extra (torch, onnx) in its own environment: "
                          "run .venv-train/bin/tenmon encoder adapt ...")
    from tenmon.vision.slit import adapt as slit_adapt

    cal = Calibration.load(args.calibration)
    if not 0.1 <= args.held_back <= 0.6:
        raise ConfigError(f"--held-back {args.held_back}: give a share between 0.1 and 0.6")
    say = None if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        report = slit_adapt.adapt(args.labels, cal, args.out, base_dir=args.base,
                                  held_fraction=args.held_back, steps=args.steps, seed=args.seed,
                                  threads=args.threads, progress=sys.stderr.isatty() and not args.json,
                                  log_fn=say)
    except slit_adapt.AdaptRefused as exc:
        if args.json:
            print(json.dumps({**exc.report, "written": False, "error": str(exc)}))
        else:
            _print_adapt(exc.report)
            print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**report, "written": True}))
    else:
        _print_adapt(report)
        print(f"wrote {report['out']} ({report['seconds']['total']:.0f} s); use it with "
              f"--model {report['out']} or [encoder] model_dir")
    return 0


def _print_adapt(report: dict) -> None:
    from tenmon.vision.slit.adapt import summary_line

    print(f"held back to judge: {report['judge']} frames (learnt from {report['learn']}, "
          f"calibrated on {report['calibrate']})")
    print(f"  before: {summary_line(report['before'])}")
    print(f"  after:  {summary_line(report['after'])}")
    print(f"  state stated from probability {report['settings']['band_state_decided']}; azimuth "
          f"correction {'on' if any(report['azimuth_correction']) else 'off'}")


# --------------------------------------------------------------------------- train


def _train(args) -> int:
    from tenmon.vision.slit.training import detector as slit_train

    if args.what == "band":
        return _train_band(args)
    args.frames = 2500 if args.frames is None else args.frames
    args.epochs = 75 if args.epochs is None else args.epochs

    if not slit_train.ultralytics_available():
        raise TenmonError("training needs the 'train' extra (torch, ultralytics, onnx) in its own "
                          "environment; see the docstring of tenmon.vision.slit.training.detector")
    cfg = slit_train.TrainConfig(n_train=args.frames, n_val=args.val_frames, epochs=args.epochs,
                                 batch=args.batch, scale=args.scale, seed=args.seed,
                                 workers=args.workers, threads=args.threads,
                                 time_hours=args.time_hours)
    report = slit_train.train(cfg, args.out, model_out=args.model_out,
                              progress=sys.stderr.isatty(), evaluate=evaluate_model)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"model: {report['model']} ({report['model_bytes'] / 1e6:.2f} MB)")
        print(f"time: dataset {report['seconds']['dataset']} s, training {report['seconds']['training']} s")
        ev = report.get("evaluation", {})
        if ev:
            print("validation: " + ", ".join(f"{k} {v}" for k, v in ev.items() if not isinstance(v, dict)))
        print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _train_band(args) -> int:
    import importlib.util

    from tenmon.vision.slit import band_data as slit_band_data
    from tenmon.vision.slit.band import DEFAULT_BAND_MODEL
    from tenmon.vision.slit.training.detector import TRAIN_SEED_BASE

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
        raise TenmonError("training the band network needs the 'train' extra (torch, onnx) in its own "
                          "environment; see the docstring of tenmon.vision.slit.training.band")
    from tenmon.vision.slit.training import band as slit_band_train

    frames = 10000 if args.frames is None else args.frames
    epochs = 16 if args.epochs is None else args.epochs
    data = Path(args.out) / "band_data"
    slit_band_data.make_dataset(data, TRAIN_SEED_BASE, frames,
                                workers=args.workers, progress=sys.stderr.isatty())
    out = args.model_out or DEFAULT_BAND_MODEL
    report = slit_band_train.train(data, Path(out), epochs=epochs, seed=args.seed, threads=args.threads,
                                   progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(report))
    else:
        print(f"model: {out} ({report['model_bytes'] / 1e6:.2f} MB, {report['parameters']} parameters)")
        print(f"time: training {report['train_s']} s, {report['epochs']} epochs")
        print("validation: " + ", ".join(f"{k} {v}" for k, v in report["last"].items()))
        print(f"report: {Path(out).with_suffix('.json')}")
    return 0


def evaluate_model(model_path: Path, out_dir: Path, n: int = 100) -> dict[str, Any]:
    """The encoder's figures on validation seeds (the training report's evaluation)."""
    from tenmon.vision.slit.evaluate import evaluate_frames
    from tenmon.vision.slit.training.detector import VAL_SEED_BASE

    return evaluate_frames(range(VAL_SEED_BASE, VAL_SEED_BASE + n), model_path=model_path).summary()
