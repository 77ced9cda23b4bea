"""Training data of the slit band network: rendered frames cut into bands, with their labels.

No torch here (the data is made with the base install; :mod:`slit_band_train` trains on it).
Per rendered frame (:func:`tenmon.vision.slit.render.render_random`, true calibration):

- a *positive* band at the true azimuth jittered by 0.4 degrees (sd), labelled with the frame's
  state, its per-row sky / cover / occluded labels (:func:`slit_band.row_labels` with
  :func:`ir_render.slit_line_visibility`) and ``here`` = 1 when the slit is visible
  (visibility >= 0.5), 0 when hidden (< 0.2; every row then occluded), ignored in between;
- a *negative* band at a wrong azimuth (5-15 degrees off for half of them, 15-180 for the rest),
  ``here`` = 0, no row or state labels.

Shards are ``.npz`` files written by :func:`write_shard`; ``python -m tenmon.vision.slit.band_data
OUT_DIR --first SEED --count N --workers 2`` writes N frames in shards of 200.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Frames per shard.
SHARD = 200


def frame_examples(seed: int, *, rng: np.random.Generator | None = None) -> dict:
    """The positive and negative band of one rendered frame, with labels (see the module doc)."""
    from tenmon.vision.slit import render as ir_render
    from tenmon.vision.slit.polar import StripMapper, to_gray
    from tenmon.vision.slit.band import BAND_T, STATES, extract_band, frame_levels, row_labels
    from tenmon.vision.slit.features import MODEL_GEOMETRY

    rng = rng or np.random.default_rng(seed + 77)
    res = ir_render.render_random(seed)
    tr = res.truth
    gray = to_gray(res.image)
    mm = StripMapper(tr.calibration, gray.shape, MODEL_GEOMETRY)
    levels = frame_levels(mm.unwrap(gray), mm.valid)
    az_pos = tr.azimuth_deg + float(rng.normal(0.0, 0.4))
    off = float(rng.uniform(5.0, 15.0) if rng.random() < 0.5 else rng.uniform(15.0, 180.0))
    az_neg = tr.azimuth_deg + off * (1 if rng.random() < 0.5 else -1)
    bp, vp = extract_band(gray, tr.calibration, az_pos)
    bn, vn = extract_band(gray, tr.calibration, az_neg)
    _, _, params = ir_render.random_frame_params(seed)
    if tr.visibility < 0.2:
        seen = np.zeros_like(BAND_T)
    else:
        seen = ir_render.slit_line_visibility(params, tr.azimuth_deg, BAND_T)
    here = 1 if tr.visibility >= 0.5 else (0 if tr.visibility < 0.2 else -1)
    return dict(seed=seed, band_pos=bp, valid_pos=vp, band_neg=bn, valid_neg=vn,
                levels=np.array(levels, np.float32),
                rows=row_labels(tr.open_fraction, tr.slit_length_deg, seen).astype(np.int8),
                state=STATES.index(tr.state), here=here, visibility=tr.visibility,
                open_fraction=tr.open_fraction)


def write_shard(seeds, path: Path) -> int:
    """Render ``seeds`` and write their examples to ``path`` (npz); returns the frames written."""
    ex = [frame_examples(s) for s in seeds]
    keys = ("band_pos", "valid_pos", "band_neg", "valid_neg", "levels", "rows")
    arrays = {k: np.stack([e[k] for e in ex]) for k in keys}
    for k in ("seed", "state", "here", "visibility", "open_fraction"):
        arrays[k] = np.array([e[k] for e in ex])
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return len(ex)


def _work(job: tuple[int, int, str]) -> str:
    first, count, path = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    p = Path(path)
    if not p.exists():
        write_shard(range(first, first + count), p)
    return path


def make_dataset(out_dir: Path, first: int, count: int, workers: int = 2, progress: bool = True) -> list[Path]:
    """Write ``count`` frames from seed ``first`` as shards in ``out_dir`` (existing shards kept)."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(s, min(SHARD, first + count - s), str(out_dir / f"band_{s}.npz"))
            for s in range(first, first + count, SHARD)]
    done = []
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for path in tqdm(ex.map(_work, jobs), total=len(jobs), desc="band data", unit="shard",
                         disable=not progress):
            done.append(Path(path))
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    make_dataset(args.out, args.first, args.count, args.workers, progress=sys.stderr.isatty())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
