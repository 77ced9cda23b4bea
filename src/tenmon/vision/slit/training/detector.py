"""Training the slit detector: seeded dataset from the renderer, ultralytics YOLO, ONNX export, report.

Needs the ``train`` extra (torch, torchvision, ultralytics, onnx, onnxslim) in its own virtual
environment, so the daemon's environment keeps headless OpenCV and no torch::

    python3 -m venv .venv-train
    .venv-train/bin/pip install torch==2.13.0 torchvision==0.28.0   # CPU torch from the local wheel
    .venv-train/bin/pip install ultralytics onnx onnxslim
    .venv-train/bin/pip uninstall -y opencv-python && .venv-train/bin/pip install opencv-python-headless
    .venv-train/bin/pip install -e . --no-deps && .venv-train/bin/pip install scipy pydantic tqdm onnxruntime
    .venv-train/bin/tenmon encoder train --out runs/slit        # or python -m tenmon.vision.slit.training.detector

Known traps handled here (see DESIGN.md), all before ultralytics is imported:

- torchvision 0.28.0 from the registry is a CUDA build: ``import torchvision`` fails because the
  ``torchvision::nms`` operator is missing on CPU torch. :func:`prepare_offline_training` defines
  ``torchvision::nms``/``qnms`` with a plain-PyTorch implementation first and points
  ``torchvision.ops.nms`` at it.
- ultralytics reaches for the network: ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=False``, settings
  ``sync=False``, hub off, and a local font copied in as ``Arial.ttf`` into a private config
  directory (it would download one even with plots off).
- No pretrained weights: the model is built from ``models/slit_yolo.yaml`` and trained from scratch.

Everything is seeded (dataset seeds, ultralytics ``seed`` and ``deterministic``): the same config
gives the same dataset bit for bit (tested); the trained weights are meant to repeat on the same
machine and thread count (not verified bit for bit). A ``time_hours`` cap makes the epoch count
depend on the machine's speed: leave it unset for a reproducible run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from tenmon.core.errors import TenmonError
from tenmon.vision.slit import render as ir_render
from tenmon.vision.slit.polar import StripGeometry, StripMapper, to_gray
from tenmon.vision.slit.features import CLASSES, MODEL_GEOMETRY, model_input, slit_boxes
from tenmon.vision.slit.reading import Calibration, atomic_write_text

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"  # vision/slit/models
MODEL_YAML = MODELS_DIR / "slit_yolo.yaml"
DEFAULT_MODEL = MODELS_DIR / "slit.onnx"

#: Seed ranges: training frames use TRAIN_SEED_BASE + i, validation VAL_SEED_BASE + i. Benchmarks
#: and acceptance figures use seeds from EVAL_SEED_BASE up, which training never touches.
TRAIN_SEED_BASE = 1_000_000
VAL_SEED_BASE = 2_000_000
EVAL_SEED_BASE = 9_000_000


class TrainingError(TenmonError):
    """Training could not run (missing ``train`` extra, failed export)."""


@dataclass
class TrainConfig:
    """Everything that decides a training run (written beside the model as ``config.json``)."""

    n_train: int = 2500
    n_val: int = 250
    seed: int = 0
    epochs: int = 75
    batch: int = 32
    scale: str = "p"
    lr0: float = 0.01
    patience: int = 100
    workers: int = 2
    max_render_pixels: int = 500_000
    geometry: dict[str, Any] = field(default_factory=lambda: asdict(MODEL_GEOMETRY))
    calibration_jitter: bool = True
    threads: int = 2
    time_hours: float | None = None  # optional cap on training time (ultralytics ``time``)

    @property
    def strip_geometry(self) -> StripGeometry:
        return StripGeometry(**self.geometry)


# --------------------------------------------------------------------------- dataset


def _jittered_calibration(cal: Calibration, rng: np.random.Generator) -> Calibration:
    """A slightly wrong calibration, as a site's would be (centre, radius, lens model, offset).

    The azimuth keys stay exact so the labels stay right; the model learns to read the slit from
    a strip that is a little bent.
    """
    hr = cal.horizon_radius
    kw = dict(center_x=cal.center_x + rng.normal(0, 0.006) * hr,
              center_y=cal.center_y + rng.normal(0, 0.006) * hr,
              horizon_radius=hr * float(np.exp(rng.normal(0, 0.02))))
    if rng.random() < 0.3:
        kw["projection"] = "equidistant"
    if rng.random() < 0.3:
        kw.update(camera_offset_east=0.0, camera_offset_north=0.0, camera_offset_up=0.0)
    return Calibration(**{**cal.to_dict(), **kw})


def render_sample(seed: int, geometry: StripGeometry, *, max_pixels: int = 500_000,
                  jitter: bool = True) -> tuple[np.ndarray, list[str], dict]:
    """One training sample: the model-input strip, its YOLO label lines and the truth.

    Frames larger than ``max_pixels`` are rendered at a smaller size of the same shape (the
    strip is 640 px wide, so bigger frames add rendering time, not information).
    """
    rng = np.random.default_rng(seed)
    az, frac = ir_render.random_slit(rng)
    params = ir_render.random_params(rng, slit_azimuth_deg=az)
    if params.width * params.height > max_pixels:
        f = math.sqrt(max_pixels / (params.width * params.height))
        params = params.scaled_to(int(params.width * f), int(params.height * f))
    res = ir_render.render(az, frac, params, seed=seed)
    tr = res.truth
    cal = _jittered_calibration(tr.calibration, rng) if jitter else tr.calibration
    mapper = StripMapper(cal, res.image.shape, geometry)
    strip = mapper.unwrap(to_gray(res.image))
    img = model_input(strip, mapper.valid)
    lines: list[str] = []
    if tr.slit_visible:
        for box in slit_boxes(geometry, tr.azimuth_deg, tr.open_fraction, tr.state,
                              tr.slit_width_frac, tr.slit_length_deg, params.rail_width):
            lines.append(box.yolo_line(geometry.width, geometry.height))
    return img, lines, {"seed": seed, **tr.to_dict()}


def _write_sample(args: tuple[int, str, str, dict, int, bool]) -> dict:
    seed, img_dir, lbl_dir, geometry, max_pixels, jitter = args
    name = f"{seed:08d}"
    img_path = Path(img_dir) / f"{name}.png"
    lbl_path = Path(lbl_dir) / f"{name}.txt"
    truth_path = Path(lbl_dir).parent.parent / "truth" / Path(lbl_dir).name / f"{name}.json"
    if img_path.exists() and lbl_path.exists() and truth_path.exists():
        return json.loads(truth_path.read_text())  # resume: the same seed renders the same sample
    img, lines, truth = render_sample(seed, StripGeometry(**geometry), max_pixels=max_pixels,
                                      jitter=jitter)
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(img_path), img)
    lbl_path.write_text("".join(line + "\n" for line in lines))
    atomic_write_text(truth_path, json.dumps(truth))
    return truth


def generate_dataset(cfg: TrainConfig, out_dir: Path, *, progress: bool = True) -> Path:
    """Render the training and validation strips in YOLO layout; returns the dataset yaml path.

    Layout: ``images/{train,val}/*.png``, ``labels/{train,val}/*.txt``, ``truth_{split}.jsonl``
    and ``data.yaml``. Existing samples with the same seed are kept (a rerun resumes).
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    jobs = []
    for split, base, n in (("train", TRAIN_SEED_BASE, cfg.n_train), ("val", VAL_SEED_BASE, cfg.n_val)):
        img_dir, lbl_dir = out_dir / "images" / split, out_dir / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seed = base + cfg.seed * 100_000 + i
            jobs.append((split, (seed, str(img_dir), str(lbl_dir), cfg.geometry,
                                 cfg.max_render_pixels, cfg.calibration_jitter)))
    truths: dict[str, list[dict]] = {"train": [], "val": []}
    bar = tqdm(total=len(jobs), desc="rendering", unit="frame",
               disable=not (progress and sys.stderr.isatty()))
    with ProcessPoolExecutor(max_workers=max(1, cfg.workers)) as pool:
        for (split, _), truth in zip(jobs, pool.map(_write_sample, [j for _, j in jobs], chunksize=4)):
            truths[split].append(truth)
            bar.update()
    bar.close()
    for split, rows in truths.items():
        atomic_write_text(out_dir / f"truth_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    data_yaml = out_dir / "data.yaml"
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    atomic_write_text(data_yaml, f"path: {out_dir.resolve()}\ntrain: images/train\nval: images/val\n"
                                 f"names:\n{names}\n")
    return data_yaml


# --------------------------------------------------------------------------- offline ultralytics


def _plain_nms(boxes, scores, iou_threshold: float):
    """Greedy NMS in plain PyTorch (torchvision's semantics), for the CPU-only environment."""
    import torch

    order = scores.argsort(descending=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(i)
        if order.numel() == 1:
            break
        rest = order[1:]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter + 1e-12)
        order = rest[iou <= iou_threshold]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.long)


_prepared = False


def prepare_offline_training(config_dir: Path, threads: int = 2) -> None:
    """Make torch/torchvision/ultralytics importable and silent offline. Call before importing them.

    Raises:
        TrainingError: torch or ultralytics is not installed (the ``train`` extra).
    """
    global _prepared
    if _prepared:
        return
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("MPLBACKEND", "Agg")
    # ultralytics fetches Arial.ttf into its config dir (YOLO_CONFIG_DIR/Ultralytics) unless a
    # font is already there, plots or not.
    (config_dir / "Ultralytics").mkdir(exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = config_dir / "Ultralytics" / name
        if not target.exists():
            font = _local_font()
            if font is not None:
                shutil.copyfile(font, target)
    try:
        import torch
    except ImportError as exc:
        raise TrainingError("training needs the 'train' extra (torch): see tenmon.vision.slit.training.detector") from exc
    torch.set_num_threads(max(1, threads))
    if "torchvision" not in sys.modules:
        # The registry's torchvision 0.28.0 is a CUDA build whose C++ ops do not load on CPU
        # torch; its import registers fake kernels for torchvision::nms/qnms and fails when the
        # operators do not exist. Define them (plain PyTorch) before the import.
        lib = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.impl(op, _plain_nms, "CPU")
        globals()["_torchvision_lib"] = lib  # keep the registration alive
    import torchvision
    import torchvision.ops

    try:
        torchvision.ops.nms(torch.zeros((1, 4)), torch.zeros(1), 0.5)
    except RuntimeError:
        torchvision.ops.nms = _plain_nms
        torchvision.ops.boxes.nms = _plain_nms
    try:
        from ultralytics.utils import SETTINGS
    except ImportError as exc:
        raise TrainingError("training needs the 'train' extra (ultralytics): see tenmon.vision.slit.training.detector") from exc
    wanted = {"sync": False, "hub": False, "tensorboard": False, "wandb": False, "mlflow": False,
              "clearml": False, "comet": False, "dvc": False, "neptune": False, "raytune": False,
              "vscode_msg": False, "openvino_msg": False, "datasets_dir": str(config_dir / "datasets"),
              "weights_dir": str(config_dir / "weights"), "runs_dir": str(config_dir / "runs")}
    SETTINGS.update({k: v for k, v in wanted.items() if k in SETTINGS})
    _prepared = True


def _local_font() -> Path | None:
    """A TrueType font already on this machine (matplotlib's DejaVu, or the system's)."""
    candidates = []
    try:
        import matplotlib

        candidates.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    except ImportError:
        pass
    candidates += [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
                   Path("/usr/share/fonts/TTF/DejaVuSans.ttf")]
    return next((c for c in candidates if c.is_file()), None)


def ultralytics_available() -> bool:
    """True when the ``train`` extra is importable (without importing it)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "ultralytics", "onnx"))


# --------------------------------------------------------------------------- training


def model_yaml(cfg: TrainConfig, out_dir: Path) -> Path:
    """The architecture yaml for this run: ``models/slit_yolo.yaml`` keeping only the chosen scale.

    ultralytics sets the scale from the file name (``yolo11n.yaml`` -> ``n``) and, when the name
    says nothing, takes the first scale listed, whatever a ``scale:`` key says; a yaml that lists
    only the chosen scale is the reliable way to get it.
    """
    import yaml

    data = yaml.safe_load(MODEL_YAML.read_text())
    if cfg.scale not in data["scales"]:
        raise TrainingError(f"unknown model scale {cfg.scale!r}; choose one of {', '.join(data['scales'])}")
    data["scales"] = {cfg.scale: data["scales"][cfg.scale]}
    path = Path(out_dir) / f"slit_yolo_{cfg.scale}.yaml"
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def train(cfg: TrainConfig, out_dir: Path, *, model_out: Path | None = None, progress: bool = True,
          evaluate: Callable[[Path, Path], dict] | None = None) -> dict:
    """Generate the data, train from scratch, export ONNX, write the report. Returns the report.

    Args:
        cfg: the run's settings.
        out_dir: working directory (dataset, ultralytics run, report).
        model_out: where the ONNX model goes (atomically); ``models/slit.onnx`` when None.
        progress: tqdm bars for rendering (ultralytics prints its own epoch bars).
        evaluate: optional ``evaluate(onnx_path, out_dir) -> dict`` run on the exported model
            (the encoder's own accuracy figures on validation frames) and added to the report.

    Raises:
        TrainingError: the ``train`` extra is missing or the export failed.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    prepare_offline_training(out_dir / "ultralytics_config", cfg.threads)
    from ultralytics import YOLO

    atomic_write_text(out_dir / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    t0 = time.monotonic()
    data_yaml = generate_dataset(cfg, out_dir / "data", progress=progress)
    t_data = time.monotonic() - t0
    geom = cfg.strip_geometry
    model = YOLO(str(model_yaml(cfg, out_dir)), task="detect")
    t1 = time.monotonic()
    model.train(
        data=str(data_yaml), epochs=cfg.epochs, imgsz=geom.width, batch=cfg.batch, rect=True,
        device="cpu", workers=min(cfg.workers, 2), seed=cfg.seed, deterministic=True,
        project=str(out_dir), name="train", exist_ok=True, pretrained=False, amp=False,
        plots=False, val=True, patience=cfg.patience, lr0=cfg.lr0, cos_lr=True,
        warmup_epochs=min(3.0, max(cfg.epochs / 10, 0.0)), close_mosaic=0, mosaic=0.0,
        mixup=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, degrees=0.0, translate=0.05, scale=0.1,
        shear=0.0, perspective=0.0, flipud=0.0, fliplr=0.5, erasing=0.0, verbose=False,
        cache=False, **({"time": cfg.time_hours} if cfg.time_hours else {}))
    t_train = time.monotonic() - t1
    best = out_dir / "train" / "weights" / "best.pt"
    if not best.exists():
        best = out_dir / "train" / "weights" / "last.pt"
    if not best.exists():
        raise TrainingError(f"training produced no weights in {out_dir / 'train' / 'weights'}")
    exported = export_onnx(best, geom)
    target = Path(model_out) if model_out else DEFAULT_MODEL
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(exported, tmp)
    os.replace(tmp, target)
    report: dict[str, Any] = {
        "config": asdict(cfg),
        "seconds": {"dataset": round(t_data, 1), "training": round(t_train, 1),
                    "total": round(time.monotonic() - t0, 1)},
        "threads": cfg.threads,
        "model": str(target),
        "model_bytes": target.stat().st_size,
        "ultralytics_metrics": _last_metrics(out_dir / "train" / "results.csv"),
    }
    if evaluate is not None:
        report["evaluation"] = evaluate(target, out_dir)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out_dir / "report.md", _report_markdown(report))
    return report


def export_onnx(weights: Path, geometry: StripGeometry) -> Path:
    """Export trained weights to ONNX (fixed 1x3xHxW input, opset 17, simplified); returns the path.

    Raises:
        TrainingError: the export failed.
    """
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    try:
        path = model.export(format="onnx", imgsz=(geometry.height, geometry.width), opset=17,
                            simplify=True, dynamic=False, half=False, nms=False, device="cpu")
    except Exception as exc:  # ultralytics raises many types here; name the step
        raise TrainingError(f"ONNX export of {weights} failed: {exc}") from exc
    return Path(path)


def _last_metrics(results_csv: Path) -> dict:
    if not results_csv.exists():
        return {}
    lines = [ln for ln in results_csv.read_text().splitlines() if ln.strip()]
    if len(lines) < 2:
        return {}
    keys = [k.strip() for k in lines[0].split(",")]
    vals = [v.strip() for v in lines[-1].split(",")]
    out = {}
    for k, v in zip(keys, vals):
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def _report_markdown(report: dict) -> str:
    cfg = report["config"]
    lines = ["# Slit detector training report", "",
             f"- frames: {cfg['n_train']} training, {cfg['n_val']} validation (seed {cfg['seed']})",
             f"- epochs: {cfg['epochs']}, batch {cfg['batch']}, scale `{cfg['scale']}`, "
             f"{report['threads']} threads",
             f"- time: dataset {report['seconds']['dataset']} s, training {report['seconds']['training']} s",
             f"- model: `{report['model']}` ({report['model_bytes'] / 1e6:.2f} MB)", ""]
    m = report.get("ultralytics_metrics", {})
    if m:
        lines += ["## ultralytics validation (last epoch)", ""]
        lines += [f"- {k}: {v}" for k, v in m.items()]
        lines.append("")
    ev = report.get("evaluation")
    if ev:
        lines += ["## Encoder evaluation on validation frames", "", "```", json.dumps(ev, indent=2), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m tenmon.vision.slit.training.detector OUT_DIR [key=value ...]`` (TrainConfig fields)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(main.__doc__)
        return 2
    out = Path(argv[0])
    kwargs: dict[str, Any] = {}
    for kv in argv[1:]:
        k, _, v = kv.partition("=")
        default = getattr(TrainConfig(), k)
        kwargs[k] = float(v) if default is None else type(default)(v)
    logging.basicConfig(level=logging.INFO)
    report = train(TrainConfig(**kwargs), out)
    print(json.dumps(report["seconds"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
