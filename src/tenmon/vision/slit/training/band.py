"""Training the slit band network (torch, the ``train`` extra), exported to ONNX for onnxruntime.

::

    python -m tenmon.vision.slit.band_data DATA --first 1000000 --count 5000 --workers 2
    python -m tenmon.vision.slit.training.band DATA OUT.onnx [--epochs 24] [--seed 0]

The data (:mod:`slit_band_data`) is rendered frames cut into bands along the slit. The network
(:class:`BandNet`, about 0.1 M parameters) convolves the band, pools across the slit, then runs
dilated 1-D convolutions along it; three heads: per-row sky / cover / occluded, the state, and
``here`` (a slit centred in the band). The last shard is held out for validation; the report
(per-head validation accuracy, epochs, time) is written beside the model as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def load_shards(paths: list[Path]) -> dict[str, np.ndarray]:
    """Concatenate shards written by :func:`tenmon.vision.slit.band_data.write_shard`."""
    parts = [dict(np.load(p)) for p in paths]
    return {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}


def examples(d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Network inputs and labels (rows, state, here; -1 = no label) from loaded shards."""
    from tenmon.vision.slit.band import band_input

    n = len(d["seed"])
    xs, rows, states, heres = [], [], [], []
    for i in range(n):
        lv = tuple(float(v) for v in d["levels"][i])
        here = int(d["here"][i])
        xs.append(band_input(d["band_pos"][i], d["valid_pos"][i], lv))
        rows.append(d["rows"][i].astype(np.int64))
        states.append(int(d["state"][i]) if here == 1 or (here == -1) else -1)
        heres.append(here)
        xs.append(band_input(d["band_neg"][i], d["valid_neg"][i], lv))
        rows.append(np.full(d["rows"].shape[1], -1, np.int64))
        states.append(-1)
        heres.append(0)
    return (np.stack(xs).astype(np.float32), np.stack(rows), np.array(states, np.int64),
            np.array(heres, np.int64))


def build_net():
    """The band network (a torch module)."""
    import torch
    from torch import nn

    from tenmon.vision.slit.band import BAND_U, CHANNELS

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.MaxPool2d((1, 2)))

    class Res1d(nn.Module):
        def __init__(self, ch, dil):
            super().__init__()
            self.c = nn.Sequential(nn.Conv1d(ch, ch, 5, padding=2 * dil, dilation=dil, bias=False),
                                   nn.BatchNorm1d(ch), nn.ReLU())

        def forward(self, x):
            return x + self.c(x)

    class BandNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(block(CHANNELS, 12), block(12, 24), block(24, 40))
            w = len(BAND_U) // 8
            self.across = nn.Sequential(nn.Conv2d(40, 64, (1, w), bias=False), nn.BatchNorm2d(64), nn.ReLU())
            self.along = nn.Sequential(Res1d(64, 1), Res1d(64, 2), Res1d(64, 4), Res1d(64, 8), Res1d(64, 16))
            self.rows = nn.Conv1d(64, 3, 1)
            self.state = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 3))
            self.here = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1))

        def forward(self, x):
            f = self.across(self.conv(x)).squeeze(3)       # N x 64 x T
            f = self.along(f)
            g = torch.cat([f.mean(dim=2), f.amax(dim=2)], dim=1)
            return self.rows(f), self.state(g), self.here(g)

    return BandNet()


def train(data_dir: Path, out: Path, *, epochs: int = 24, seed: int = 0, batch: int = 64,
          threads: int = 2, progress: bool = True) -> dict:
    """Train on the shards in ``data_dir`` (the last one held out) and export ``out`` (ONNX)."""
    import torch
    from torch import nn

    from tenmon.vision.slit.reading import atomic_write_text

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    shards = sorted(data_dir.glob("band_*.npz"), key=lambda p: int(p.stem.split("_")[1]))
    if len(shards) < 2:
        raise SystemExit(f"need at least 2 shards in {data_dir}, found {len(shards)}")
    t0 = time.monotonic()
    xtr, rtr, str_, htr = examples(load_shards(shards[:-1]))
    xva, rva, sva, hva = examples(load_shards(shards[-1:]))
    log.info("train %d bands, validation %d (%.0f s to load)", len(xtr), len(xva), time.monotonic() - t0)
    net = build_net()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(xtr) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    ce = nn.CrossEntropyLoss(ignore_index=-1)
    bce = nn.BCEWithLogitsLoss(reduction="none")
    history = []
    t_train = time.monotonic()
    for ep in range(epochs):
        net.train()
        order = rng.permutation(len(xtr))
        tot = 0.0
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            x = xtr[idx].copy()
            flip = rng.random(len(idx)) < 0.5
            x[flip] = x[flip][:, :, :, ::-1]
            gain = rng.uniform(0.8, 1.25, (len(idx), 1, 1)).astype(np.float32)
            x[:, 0] = x[:, 0] * gain + rng.normal(0, 0.03, (len(idx), 1, 1)).astype(np.float32)
            x[:, 0] *= x[:, 1]
            xt = torch.from_numpy(np.ascontiguousarray(x))
            r, s, h = net(xt)
            lr_ = ce(r, torch.from_numpy(rtr[idx]))
            ls = ce(s, torch.from_numpy(str_[idx])) if (str_[idx] >= 0).any() else r.sum() * 0
            hm = torch.from_numpy((htr[idx] >= 0).astype(np.float32))
            lh = (bce(h[:, 0], torch.from_numpy(np.maximum(htr[idx], 0).astype(np.float32))) * hm).sum() / hm.sum().clamp(min=1)
            loss = lr_ + ls + lh
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        m = evaluate(net, xva, rva, sva, hva)
        m.update(epoch=ep + 1, loss=round(tot / len(xtr), 4), elapsed_s=round(time.monotonic() - t_train, 1))
        history.append(m)
        if progress:
            print(json.dumps(m), file=sys.stderr, flush=True)
    export(net, out)
    report = {"trained": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "data": str(data_dir), "shards": [p.name for p in shards], "held_out": shards[-1].name,
              "train_bands": int(len(xtr)), "validation_bands": int(len(xva)), "epochs": epochs,
              "seed": seed, "threads": threads, "train_s": round(time.monotonic() - t_train, 1),
              "parameters": int(sum(p.numel() for p in net.parameters())),
              "model_bytes": out.stat().st_size, "last": history[-1], "history": history}
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    return report


def evaluate(net, x, r, s, h) -> dict:
    """Validation accuracy of each head."""
    import torch

    net.eval()
    rp, sp, hp = [], [], []
    with torch.no_grad():
        for k in range(0, len(x), 256):
            a, b, c = net(torch.from_numpy(x[k:k + 256]))
            rp.append(a.argmax(1).numpy())
            sp.append(b.argmax(1).numpy())
            hp.append(c[:, 0].numpy())
    rp, sp, hp = np.concatenate(rp), np.concatenate(sp), np.concatenate(hp)
    mr = r >= 0
    ms = s >= 0
    mh = h >= 0
    return {"rows_acc": round(float((rp[mr] == r[mr]).mean()), 4),
            "state_acc": round(float((sp[ms] == s[ms]).mean()), 4),
            "here_acc": round(float(((hp[mh] > 0) == (h[mh] == 1)).mean()), 4)}


def export(net, out: Path) -> None:
    """Write the network as ONNX (opset 17, batch of one), atomically."""
    import os

    import torch

    from tenmon.vision.slit.band import BAND_T, BAND_U, CHANNELS

    net.eval()
    x = torch.zeros(1, CHANNELS, len(BAND_T), len(BAND_U))
    tmp = out.with_suffix(".tmp.onnx")
    torch.onnx.export(net, (x,), str(tmp), input_names=["band"], output_names=["rows", "state", "here"],
                      opset_version=17, dynamo=False)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    rep = train(args.data, args.out, epochs=args.epochs, seed=args.seed, threads=args.threads)
    print(json.dumps(rep["last"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
