"""Fine-tuning the slit band network on a site's labelled bands (torch, the ``train`` extra).

The shipped network is ONNX only; its weights are loaded back into :func:`slit_band_train.build_net`
(the export folded each batch norm into the convolution before it: the convolution takes the
folded weights and the batch norm becomes a plain bias, kept frozen in eval mode, which is also
what small-data fine-tuning wants). Training runs on CPU with a fixed number of steps (about a
minute for a few hundred frames on 2 cores), with the training augmentations (mirror, gain, level).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def load_onnx_into(net, path: Path) -> None:
    """Copy the weights of an exported band network (ONNX) into a fresh torch ``net``.

    Raises:
        ValueError: the ONNX file does not match the network's layout.
    """
    import onnx
    import torch
    from onnx import numpy_helper
    from torch import nn

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    # folded conv weights and biases, in graph order (the order the convolutions run)
    conv_params = []
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) >= 2 and node.input[1] in inits:
            w = inits[node.input[1]]
            b = inits[node.input[2]] if len(node.input) > 2 and node.input[2] in inits else None
            conv_params.append((w, b))
    mods = list(net.modules())
    pairs = []
    for i, m in enumerate(mods):
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.bias is None:
            bn = next((x for x in mods[i + 1:] if isinstance(x, (nn.BatchNorm1d, nn.BatchNorm2d))), None)
            pairs.append((m, bn))
    heads = [m for m in mods if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.bias is not None]
    if len(conv_params) != len(pairs) + len(heads):
        raise ValueError(f"{path}: {len(conv_params)} convolutions, the network has {len(pairs) + len(heads)}")
    with torch.no_grad():
        for (w, b), (conv, bn) in zip(conv_params[:len(pairs)], pairs):
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(f"{path}: weight {w.shape} does not fit {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(np.array(b) if b is not None else np.zeros(w.shape[0], np.float32)))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        sd = net.state_dict()
        for name, arr in inits.items():
            if name in sd:
                if tuple(sd[name].shape) != tuple(arr.shape):
                    raise ValueError(f"{path}: {name} {arr.shape} does not fit {tuple(sd[name].shape)}")
                sd[name].copy_(torch.from_numpy(np.array(arr)))


def fine_tune(base: Path, data: dict[str, np.ndarray], out: Path, *, steps: int | None = None,
              batch: int = 32, lr: float = 1e-3, seed: int = 0, threads: int = 2,
              progress: bool = False, train_front: bool = False) -> dict:
    """Fine-tune the band network ``base`` (ONNX) on ``data`` (:func:`slit_adapt.band_examples`)
    and export it to ``out``. Returns a small report (steps, losses, seconds).

    By default the convolutional front (``net.conv``: local edges and levels) stays as trained;
    its features of every band (and of its mirror image) are computed once, and only what reads
    them (across the slit, along it, the three heads) learns the site: a few hundred cheap steps.
    With ``train_front`` the whole network learns (at a tenth of the rate in the front), each step
    on augmented bands (mirror, gain, level): slower, for a site whose textures differ.
    """
    import torch
    from torch import nn

    from tenmon.vision.slit.training.band import build_net, export

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    net = build_net()
    load_onnx_into(net, base)
    net.eval()  # batch norms frozen (folded statistics); the network has no dropout
    x_all, r_all, s_all, h_all = data["x"], data["rows"], data["state"], data["here"]
    n = len(x_all)
    t0 = time.monotonic()
    feats = []
    with torch.no_grad():
        for flip in (() if train_front else (False, True)):
            parts = []
            for k in range(0, n, 64):
                xb = x_all[k:k + 64]
                if flip:
                    xb = xb[:, :, :, ::-1]
                parts.append(net.conv(torch.from_numpy(np.ascontiguousarray(xb))).to(torch.float16))
            feats.append(torch.cat(parts))
    t_feats = time.monotonic() - t0
    if steps is None:
        steps = int(np.clip(8 * n // batch, 150, 500))
    if train_front:
        front = list(net.conv.parameters())
        rest = [p for name, p in net.named_parameters() if not name.startswith("conv.")]
        groups = [{"params": front, "lr": 0.1 * lr}, {"params": rest, "lr": lr}]
        max_lr = [0.1 * lr, lr]
    else:
        for p in net.conv.parameters():
            p.requires_grad_(False)
        groups = [{"params": [p for p in net.parameters() if p.requires_grad], "lr": lr}]
        max_lr = lr
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=0.1)
    ce = nn.CrossEntropyLoss(ignore_index=-1)
    bce = nn.BCEWithLogitsLoss(reduction="none")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="adapting the band reader", unit="step", file=sys.stderr)
    losses = []
    for step in range(steps):
        idx = rng.integers(0, n, min(batch, n))
        if train_front:
            x = x_all[idx].copy()
            fl = rng.random(len(idx)) < 0.5
            x[fl] = x[fl][:, :, :, ::-1]
            gain = rng.uniform(0.8, 1.25, (len(idx), 1, 1)).astype(np.float32)
            x[:, 0] = (x[:, 0] * gain + rng.normal(0, 0.03, (len(idx), 1, 1)).astype(np.float32)) * x[:, 1]
            f = net.conv(torch.from_numpy(np.ascontiguousarray(x)))
        else:
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            ii = torch.from_numpy(idx)
            f = torch.where(flip[:, None, None, None], feats[1][ii], feats[0][ii]).float()
        g = net.along(net.across(f).squeeze(3))
        pooled = torch.cat([g.mean(dim=2), g.amax(dim=2)], dim=1)
        r, s, h = net.rows(g), net.state(pooled), net.here(pooled)
        lr_ = ce(r, torch.from_numpy(r_all[idx])) if (r_all[idx] >= 0).any() else r.sum() * 0
        ls = ce(s, torch.from_numpy(s_all[idx])) if (s_all[idx] >= 0).any() else s.sum() * 0
        hm = torch.from_numpy((h_all[idx] >= 0).astype(np.float32))
        lh = (bce(h[:, 0], torch.from_numpy(np.maximum(h_all[idx], 0).astype(np.float32))) * hm).sum() \
            / hm.sum().clamp(min=1)
        loss = lr_ + ls + lh
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if bar:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    if bar:
        bar.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    export(net, out)
    return {"steps": steps, "batch": batch, "lr": lr, "bands": int(n),
            "loss_first": round(float(np.mean(losses[:20])), 4),
            "loss_last": round(float(np.mean(losses[-20:])), 4), "features_s": round(t_feats, 1),
            "seconds": round(time.monotonic() - t0, 1), "threads": threads, "train_front": train_front}


def build_finder():
    """The slit finder (a torch module): 2 x 96 x 288 strip -> 288 column logits (circular)."""
    import torch
    from torch import nn

    def cpad(x, k):  # circular padding of the columns, zero padding of the rows
        x = torch.cat([x[..., -k:], x, x[..., :k]], dim=-1)
        return nn.functional.pad(x, (0, 0, k, k))

    class Finder(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(2, 12, 3, stride=(2, 1))
            self.c2 = nn.Conv2d(12, 16, 3)
            self.c3 = nn.Conv2d(16, 32, 3)
            self.pool = nn.MaxPool2d((2, 1))
            self.l1 = nn.Conv1d(64, 48, 5)
            self.l2 = nn.Conv1d(48, 1, 1)

        def forward(self, x):
            x = self.pool(torch.relu(self.c1(cpad(x, 1))))
            x = self.pool(torch.relu(self.c2(cpad(x, 1))))
            x = self.pool(torch.relu(self.c3(cpad(x, 1))))
            f = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)      # N x 64 x cols
            f = torch.cat([f[..., -2:], f, f[..., :2]], dim=-1)
            return self.l2(torch.relu(self.l1(f)))[:, 0]              # N x cols

    return Finder()


def train_finder(x_all: np.ndarray, az_all: np.ndarray, out: Path, *, steps: int | None = None,
                 batch: int = 12, lr: float = 3e-3, seed: int = 0, threads: int = 2,
                 progress: bool = False) -> dict:
    """Train the slit finder on strips ``x_all`` (N x 2 x 96 x 288) with slit azimuths ``az_all``
    (rolled strips teach every azimuth) and export it to ``out`` (ONNX)."""
    import os

    import torch

    from tenmon.vision.slit.adapt import FINDER_GEOMETRY, finder_target

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed + 1)
    net = build_finder()
    n = len(x_all)
    if steps is None:
        steps = int(np.clip(3 * n // batch, 120, 300))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    w = FINDER_GEOMETRY.width
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="slit finder", unit="step", file=sys.stderr)
    t0 = time.monotonic()
    losses = []
    net.train()
    for step in range(steps):
        idx = rng.integers(0, n, min(batch, n))
        shifts = rng.integers(0, w, len(idx))
        xs, ts = [], []
        for i, k in zip(idx, shifts):
            x = np.roll(x_all[i], int(k), axis=-1)
            g = rng.uniform(0.8, 1.25)
            x = x.copy()
            x[0] = (x[0] * g + rng.normal(0, 0.03)) * x[1]
            xs.append(x)
            ts.append(finder_target(float(az_all[i]) + k * FINDER_GEOMETRY.az_step_deg))
        z = net(torch.from_numpy(np.stack(xs)))
        loss = -(torch.from_numpy(np.stack(ts)) * torch.log_softmax(z, dim=1)).sum(dim=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if bar:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    if bar:
        bar.close()
    net.eval()
    tmp = out.with_suffix(".tmp.onnx")
    import warnings

    with warnings.catch_warnings():  # "constant folding not applied" to the circular padding
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(net, (torch.zeros(1, 2, FINDER_GEOMETRY.height, w),), str(tmp),
                          input_names=["strip"], output_names=["logits"], opset_version=17, dynamo=False)
    os.replace(tmp, out)
    return {"steps": steps, "strips": int(n), "loss_first": round(float(np.mean(losses[:20])), 4),
            "loss_last": round(float(np.mean(losses[-20:])), 4),
            "seconds": round(time.monotonic() - t0, 1)}


if __name__ == "__main__":  # pragma: no cover - a check that the loaded weights reproduce the ONNX outputs
    from tenmon.vision.slit.band import DEFAULT_BAND_MODEL

    import torch

    from tenmon.vision.slit.training.band import build_net
    from tenmon.core.onnx_session import load_session

    net = build_net()
    load_onnx_into(net, DEFAULT_BAND_MODEL)
    net.eval()
    x = np.random.default_rng(0).normal(0, 1, (1, 4, 112, 48)).astype(np.float32)
    sess = load_session(DEFAULT_BAND_MODEL, 1)
    a = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        b = net(torch.from_numpy(x))
    print(json.dumps([float(np.abs(p - q.numpy()).max()) for p, q in zip(a, b)]))
