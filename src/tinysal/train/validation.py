"""Validation of a training run: per-image IoU, whole-image validation per source at the inference scale, and
centre-crop validation (the reference recipe)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tinysal.model.arch import input_multiple
from tinysal.train.config import TrainConfig
from tinysal.train.sampling import RunData, make_val_batch
from tinysal.train.step import recipe_loss
from tinysal.train.tensors import to_tensor as _to_tensor


def iou_per_image(prob: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> np.ndarray:
    """IoU at threshold per image; an image where prediction and mask are both empty scores 1."""
    p = prob.reshape(prob.shape[0], -1) >= thr
    g = gt.reshape(gt.shape[0], -1) >= 0.5
    inter = (p & g).sum(1)
    union = (p | g).sum(1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def evaluate_whole(
    torch: Any,
    model: Any,
    cache: Any,
    sources: Sequence[str],
    device: Any,
    channels_last: bool,
    kind: str,
    multiple: int = 8,
) -> dict[str, Any]:
    """Whole cached images (already at the inference short side), edge-padded to the model's stride as at
    inference; per source mean IoU@0.5 and MAE; ``score`` is the mean over sources of their IoU, so a big source
    does not outvote a small one."""
    F = torch.nn.functional
    model.eval()
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i in range(len(cache)):
        by_shape.setdefault(cache.shapes[i], []).append(i)
    ious = np.zeros(len(cache))
    maes = np.zeros(len(cache))
    losses = np.zeros(len(cache))
    with torch.no_grad():
        for (h, w), items in by_shape.items():
            ph, pw = -h % multiple, -w % multiple
            for s in range(0, len(items), 16):
                idx = items[s : s + 16]
                imgs = np.stack([cache.get(i)[0] for i in idx])
                masks = np.stack([cache.get(i)[1] for i in idx])
                x, y = _to_tensor(torch, imgs, masks, device, channels_last)
                if ph or pw:
                    x = F.pad(x, (0, pw, 0, ph), mode="replicate")
                logits = model.logits(x)[:, :, :h, :w].float()
                losses[idx] = float(recipe_loss(torch, logits, y, kind))
                prob = torch.sigmoid(logits).cpu().numpy()
                gt = y.cpu().numpy()
                ious[idx] = iou_per_image(prob, gt)
                maes[idx] = np.abs(prob - gt).reshape(len(idx), -1).mean(1)
    per: dict[str, dict[str, float]] = {}
    src = np.asarray(sources)
    for n in sorted(set(sources)):
        sel = src == n
        per[n] = {
            "images": int(sel.sum()),
            "iou": round(float(ious[sel].mean()), 6),
            "mae": round(float(maes[sel].mean()), 6),
        }
    score = float(np.mean([v["iou"] for v in per.values()])) if per else 0.0
    return {"loss": float(losses.mean()) if len(cache) else 0.0, "score": score, "per_source": per}


def evaluate_cache(
    torch: Any,
    model: Any,
    cache: Any,
    crop: int,
    device: Any,
    channels_last: bool,
    bs: int = 16,
    kind: str = "bce_dice",
) -> tuple[float, float]:
    """(mean loss, mean per-image IoU@0.5) over centre crops of a cached set."""
    model.eval()
    losses, ious = [], []
    with torch.no_grad():
        for s in range(0, len(cache), bs):
            idx = list(range(s, min(len(cache), s + bs)))
            imgs, masks = make_val_batch(cache, idx, crop)
            x, y = _to_tensor(torch, imgs, masks, device, channels_last)
            logits = model.logits(x)
            losses.append(float(recipe_loss(torch, logits, y, kind)) * len(idx))
            ious.extend(iou_per_image(torch.sigmoid(logits).cpu().numpy(), y.cpu().numpy()).tolist())
    return sum(losses) / max(len(cache), 1), float(np.mean(ious)) if ious else 0.0


def validate_epoch(torch: Any, cfg: TrainConfig, model: Any, data: RunData, device: Any, channels_last: bool
                   ) -> tuple[float, float, dict[str, Any] | None]:  # fmt: skip
    """(validation loss, validation score, per-source figures or None) of ``model`` as the recipe validates."""
    if cfg.val_mode == "whole":
        val = evaluate_whole(torch, model, data.val_cache, data.val_sources, device, channels_last, cfg.loss,
                             input_multiple(cfg.arch))  # fmt: skip
        return val["loss"], val["score"], val
    loss, iou = evaluate_cache(torch, model, data.val_cache, cfg.val_crop, device, channels_last, kind=cfg.loss)
    return loss, iou, None
