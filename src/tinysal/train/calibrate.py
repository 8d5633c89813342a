"""Calibration of a trained checkpoint on its validation split (Platt scaling folded into the head).

The map is sigmoid(head(features)); a scale ``a`` and shift ``b`` of the logit, fitted by minimising BCE on the
validation images (each source weighted equally), are folded into the final 1x1 head convolution (weights x a,
bias x a + b). The bilinear resize after the head in v3 is linear with weights summing to one, so it commutes.
The architecture, parameter count and ONNX contract are unchanged; only two numbers of the head move. The
validation split is the one the training run held out (never the test set).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinysal.errors import TinysalError


def fold_into_head(model: Any, a: float, b: float) -> None:
    """logits -> a * logits + b, by scaling the final 1x1 head convolution (in place)."""
    import torch

    with torch.no_grad():
        model.head.weight.mul_(a)
        model.head.bias.mul_(a).add_(b)


def _val_logits(torch: Any, model: Any, cache: Any, multiple: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from tinysal.train.tensors import to_tensor as _to_tensor

    F = torch.nn.functional
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(len(cache)):
            img, mask = cache.get(i)
            h, w = mask.shape
            x, y = _to_tensor(torch, np.array(img[None]), np.array(mask[None]), torch.device("cpu"), False)
            x = F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")
            z = model.logits(x)[0, 0, :h, :w].numpy()
            out.append((z, y[0, 0].numpy()))
    return out


def _metrics(items: Sequence[tuple[np.ndarray, np.ndarray]], a: float, b: float) -> tuple[float, float]:
    ious, maes = [], []
    for z, t in items:
        p = 1 / (1 + np.exp(-(a * z + b)))
        pb, tb = p >= 0.5, t >= 0.5
        union = (pb | tb).sum()
        ious.append(1.0 if union == 0 else (pb & tb).sum() / union)
        maes.append(np.abs(p - t).mean())
    return float(np.mean(ious)), float(np.mean(maes))


def calibrate(
    checkpoint: str | os.PathLike[str],
    val_groups: Sequence[str],
    roots: Sequence[str],
    output: str | os.PathLike[str],
    cache_dir: str = "",
    short_side: int = 256,
    pixels_per_source: int = 400_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit (a, b) on a run's validation groups (its metrics JSON's ``val_groups``), write the calibrated
    checkpoint, report per-source IoU@0.5 and MAE before and after."""
    import torch

    from tinysal.model.arch import input_multiple
    from tinysal.model.nets import load_checkpoint, save_checkpoint
    from tinysal.train import data as D

    model, arch, meta = load_checkpoint(checkpoint)
    held = set(val_groups)
    if not held:
        raise TinysalError("no validation groups to calibrate on")
    pairs = [p for p in D.find_all_pairs(roots) if p.group in held]
    if not pairs:
        raise TinysalError("none of the run's validation groups are under the dataset roots given")
    cache = D.PairCache.build(pairs, short_side, cache_dir or os.path.join(os.path.dirname(os.fspath(output)) or ".",
                                                                          "cache"), progress=False)  # fmt: skip
    sources = [pairs[k].group.split("/", 1)[0] for k in cache.kept]
    items = _val_logits(torch, model, cache, input_multiple(arch))
    rng = np.random.default_rng(seed)
    zs, ts, ws = [], [], []
    names = sorted(set(sources))
    for n in names:
        zz = np.concatenate([items[i][0].ravel() for i, s in enumerate(sources) if s == n])
        tt = np.concatenate([items[i][1].ravel() for i, s in enumerate(sources) if s == n])
        pick = rng.choice(len(zz), size=min(pixels_per_source, len(zz)), replace=False)
        zs.append(zz[pick])
        ts.append(tt[pick])
        ws.append(np.full(len(pick), 1.0 / len(pick)))
    z = torch.from_numpy(np.concatenate(zs)).double()
    t = torch.from_numpy((np.concatenate(ts) >= 0.5).astype(np.float64))
    w = torch.from_numpy(np.concatenate(ws))
    ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = (w * torch.nn.functional.binary_cross_entropy_with_logits(ab[0] * z + ab[1], t, reduction="none")).sum()
        loss.backward()
        return loss

    opt.step(closure)
    a, b = (float(v) for v in ab.detach())
    if not (np.isfinite(a) and np.isfinite(b) and a > 0):
        raise TinysalError(f"calibration failed (a={a}, b={b})")
    per = {}
    for n in names:
        sel = [items[i] for i, s in enumerate(sources) if s == n]
        i0, m0 = _metrics(sel, 1.0, 0.0)
        i1, m1 = _metrics(sel, a, b)
        per[n] = {"images": len(sel), "iou_before": i0, "mae_before": m0, "iou_after": i1, "mae_after": m1}
    fold_into_head(model, a, b)
    save_checkpoint(output, model, arch, **{**meta, "calibration": {"a": a, "b": b, "from": os.fspath(checkpoint)}})
    mean = {k: float(np.mean([v[k] for v in per.values()])) for k in ("iou_before", "mae_before", "iou_after",
                                                                       "mae_after")}  # fmt: skip
    return {"a": a, "b": b, "per_source": per, "pooled": mean, "output": os.fspath(output), "arch": arch}
