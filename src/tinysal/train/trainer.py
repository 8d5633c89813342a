"""``tinysal train``: the trainer. Reference recipe by default; a CPU preset that trains a useful model on 2 cores.

Design points:
- data comes from a pre-resized uint8 cache (built once, memory-mapped): no JPEG decoding per epoch;
- every epoch's randomness is derived from (seed, epoch), and the model, optimiser and scheduler are saved after
  every epoch, so ``--resume`` after a kill continues to the same result as an uninterrupted run;
- channels-last on CPU; CUDA is used automatically when present, with the same command.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.model.arch import input_multiple
from tinysal.train.tensors import to_tensor as _to_tensor

#: Named recipes. ``reference`` is the published recipe (50 epochs at crop 256); ``cpu`` reaches a useful model
#: on 2 CPU cores by spending most epochs on cheap 128-pixel crops (same object scale: crops are cut from the
#: same 288-short-side images) and finishing at 256.
PRESETS: dict[str, dict[str, Any]] = {
    "reference": {
        "stages": [[256, 50]],
        "batch_size": 32,
        "lr": 1e-3,
        "resize": 288,
        "val_crop": 256,
        "scale_range": [1.0, 1.0],
        "copy_paste": 0.0,
        "select": "best",
    },
    # The salient-object recipe the shipped weights use: every source of a multi-source run sampled so that none
    # dominates (sources by sqrt of their size, scenes uniformly within a source), random-resized crops that keep
    # most of the scene (not object fragments), composites onto object-free backgrounds, colour jitter, a
    # boundary-weighted BCE + IoU loss, an EMA of the weights, whole-image validation at the inference scale
    # (short side 256) per source, and a finishing stage at crop 256.
    "sod": {
        "stages": [[192, 24], [256, 6]],
        "val_fraction": 0.03,
        "batch_size": 16,
        "lr": 2e-3,
        "resize": 288,
        "val_crop": 256,
        "scale_range": [1.0, 1.0],
        "copy_paste": 0.0,
        "color_jitter": 0.2,
        "select": "best",
        "sampling": "balanced",
        "epoch_samples": 6000,
        "crop_mode": "rrc",
        "rrc_area": [0.35, 1.0],
        "composite": 0.15,
        "loss": "structure",
        "ema": 0.999,
        "val_mode": "whole",
        "amp": "bf16",
        "calibrate": True,
    },
    "cpu": {
        "stages": [[128, 60], [256, 12]],
        "batch_size": 16,
        "lr": 2e-3,
        "resize": 288,
        "val_crop": 256,
        "scale_range": [0.75, 1.25],
        "copy_paste": 0.0,
        "select": "last",
    },
}


@dataclass
class TrainConfig:
    arch: str = "saliency_student_v2"
    roots: list[str] = field(default_factory=list)
    out_dir: str = "runs/train"
    preset: str = "reference"
    stages: list[list[int]] = field(default_factory=lambda: [[256, 50]])  # [[crop, epochs], ...]
    batch_size: int = 32
    lr: float = 1e-3
    resize: int = 288
    val_crop: int = 256
    val_fraction: float = 0.05
    val_groups: list[str] = field(default_factory=list)
    exclude_groups: list[str] = field(default_factory=list)
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    copy_paste: float = 0.0
    color_jitter: float = 0.0
    seed: int = 42
    limit: int = 0  # use only the first N pairs (smoke runs, tests)
    cache_dir: str = ""
    device: str = "auto"
    export: bool = True
    #: which checkpoint is exported: "best" (highest validation IoU, the reference recipe) or "last" (the
    #: cosine-annealed final epoch; steadier when the validation set is a handful of sequences)
    select: str = "best"
    #: "bf16": bfloat16 autocast for the training forward pass (2-2.5x faster on CPUs with AVX512-BF16/AMX and
    #: on recent GPUs). Off by default: the shipped weights were trained in float32.
    amp: str = "off"
    #: "uniform": every training image once per epoch; "balanced": ``epoch_samples`` draws per epoch, a source
    #: (dataset root) by ``source_weights`` (default: proportional to the square root of its training images),
    #: then a group (scene, video sequence) uniformly, then one of its images
    sampling: str = "uniform"
    epoch_samples: int = 0
    source_weights: dict[str, float] = field(default_factory=dict)
    #: "window": a crop x crop window of the cached image (scale jitter by ``scale_range``); "rrc": a random
    #: resized crop covering ``rrc_area`` of the image (aspect 3:4..4:3), resized to crop x crop
    crop_mode: str = "window"
    rrc_area: list[float] = field(default_factory=lambda: [0.35, 1.0])
    #: probability of compositing the sample's object onto an object-free background from ``backgrounds``
    backgrounds: str = ""
    composite: float = 0.0
    #: "bce_dice" (the reference recipe) or "structure" (boundary-weighted BCE + weighted IoU)
    loss: str = "bce_dice"
    #: decay of an exponential moving average of the weights (0 = off); validation and checkpoints use the EMA
    ema: float = 0.0
    #: "crop": centre crops of ``val_crop``; "whole": whole images at short side ``val_crop``, per source
    val_mode: str = "crop"
    #: leave bad pairs (unreadable, mask of another size, empty mask, no mask) out, counted, instead of stopping
    skip_bad: bool = False
    #: after selection, fit a logit scale/shift on the validation split and fold it into the head
    #: (``tinysal calibrate``); kept only if the pooled validation MAE improves without costing IoU
    calibrate: bool = False

    @property
    def epochs(self) -> int:
        return sum(int(e) for _, e in self.stages)

    def crop_for_epoch(self, epoch: int) -> int:
        e = epoch
        for crop, n in self.stages:
            if e < n:
                return int(crop)
            e -= n
        return int(self.stages[-1][0])

    def fingerprint(self) -> dict[str, Any]:
        """The fields that must match for ``--resume`` to continue the same run."""
        d = dataclasses.asdict(self)
        for k in ("out_dir", "device", "cache_dir", "export", "skip_bad", "calibrate"):
            d.pop(k)
        return d


def parse_stages(text: str) -> list[list[int]]:
    """``"128:40,256:8"`` -> ``[[128, 40], [256, 8]]``."""
    out = []
    try:
        for part in text.split(","):
            c, e = part.split(":")
            out.append([int(c), int(e)])
    except ValueError:
        raise TinysalError(f"bad --stages {text!r}: expected CROP:EPOCHS[,CROP:EPOCHS...], e.g. 128:40,256:8") from None
    if not out or any(c % 8 or c <= 0 or e <= 0 for c, e in out):
        raise TinysalError(f"bad --stages {text!r}: crops must be positive multiples of 8 and epochs positive")
    return out


# ---------------------------------------------------------------------------------------------- batches
def _crop_window(rng: np.random.Generator, h: int, w: int, size: int) -> tuple[int, int, int]:
    size = min(size, h, w)
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return y, x, size


def _object_window(rng: np.random.Generator, mask: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of a ``size`` window around the mask's foreground (random offset), or a random window."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask[::4, ::4])
    if len(ys) == 0:
        y, x, _ = _crop_window(rng, h, w, size)
        return y, x
    cy, cx = int(ys.mean()) * 4, int(xs.mean()) * 4
    jit = size // 4
    y = int(np.clip(cy - size // 2 + rng.integers(-jit, jit + 1), 0, h - size))
    x = int(np.clip(cx - size // 2 + rng.integers(-jit, jit + 1), 0, w - size))
    return y, x


def _colour_jitter(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Random brightness, contrast and saturation in [1 - amount, 1 + amount]."""
    b, c, s = rng.uniform(1 - amount, 1 + amount, 3)
    f = img.astype(np.float32)
    grey = f.mean(axis=2, keepdims=True)
    # ((f - grey) * s + grey - mean) * c + mean, times b, in place: the same float64 arithmetic (NumPy promotes at
    # the float64 factor s) as the plain expression, bit for bit, at half the time (no temporaries, one mean)
    g = (f - grey) * s
    g += grey
    m = g.mean()
    g -= m
    g *= c
    g += m
    g *= b
    np.clip(g, 0, 255, out=g)
    return g.astype(np.uint8)


def _rrc_window(rng: np.random.Generator, h: int, w: int, area: Sequence[float]) -> tuple[int, int, int, int]:
    """(y, x, height, width) of a random resized crop covering a fraction ``area`` of the image, aspect 3:4..4:3."""
    a = float(rng.uniform(area[0], area[1])) * h * w
    r = math.exp(float(rng.uniform(math.log(3 / 4), math.log(4 / 3))))  # width / height of the window
    ch = max(8, min(h, round(math.sqrt(a / r))))
    cw = max(8, min(w, round(math.sqrt(a * r))))
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw


def make_train_batch(
    cache: Any,
    idx: Sequence[int],
    crop: int,
    rng: np.random.Generator,
    scale_range: Sequence[float],
    copy_paste: float,
    pool: Sequence[int],
    color_jitter: float = 0.0,
    crop_mode: str = "window",
    rrc_area: Sequence[float] = (0.35, 1.0),
    backgrounds: Sequence[np.ndarray] = (),
    composite: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (B, crop, crop, 3) and masks (B, crop, crop).

    ``window``: a random crop (with scale jitter), optional copy-paste (another training image's masked object
    pasted in); masks stay binary. ``rrc``: a random resized crop that keeps most of the scene; masks keep their
    resampled soft edges. Then optional composite onto a background (the object kept, everything else replaced),
    colour jitter and h-flip.

    Random draws for an optional augmentation happen only when it is enabled, so the reference recipe's stream
    of random numbers does not depend on options it does not use."""
    from PIL import Image

    b = len(idx)
    imgs = np.empty((b, crop, crop, 3), np.uint8)
    masks = np.empty((b, crop, crop), np.uint8)
    lo, hi = scale_range
    for k, i in enumerate(idx):
        img, mask = cache.get(int(i))
        h, w = mask.shape
        if crop_mode == "rrc":
            y, x, ch, cw = _rrc_window(rng, h, w, rrc_area)
            box = (x, y, x + cw, y + ch)
            ci = np.asarray(Image.fromarray(np.asarray(img)).resize((crop, crop), Image.BILINEAR, box=box))
            cm = np.asarray(Image.fromarray(np.asarray(mask)).resize((crop, crop), Image.BILINEAR, box=box))
        else:
            s = float(rng.uniform(lo, hi)) if hi > lo else 1.0
            y, x, size = _crop_window(rng, h, w, max(8, round(crop * s)))
            ci = np.array(img[y : y + size, x : x + size])
            cm = np.array(mask[y : y + size, x : x + size])
            if copy_paste > 0 and rng.random() < copy_paste:
                j = int(pool[int(rng.integers(0, len(pool)))])
                img2, mask2 = cache.get(j)
                if min(mask2.shape) >= size:
                    y2, x2 = _object_window(rng, mask2, size)
                    fg = mask2[y2 : y2 + size, x2 : x2 + size] > 127
                    ci[fg] = img2[y2 : y2 + size, x2 : x2 + size][fg]
                    cm[fg] = 255
            if size != crop:
                ci = np.asarray(Image.fromarray(ci).resize((crop, crop), Image.BILINEAR))
                cm = np.asarray(Image.fromarray(cm).resize((crop, crop), Image.BILINEAR))
                cm = (cm >= 128).astype(np.uint8) * 255
        if composite > 0 and backgrounds and rng.random() < composite:
            bg = backgrounds[int(rng.integers(0, len(backgrounds)))]
            by, bx, bs = _crop_window(rng, bg.shape[0], bg.shape[1], crop)
            bgc = bg[by : by + bs, bx : bx + bs]
            if bs != crop:
                bgc = np.asarray(Image.fromarray(bgc).resize((crop, crop), Image.BILINEAR))
            alpha = cm.astype(np.float32)[..., None] / 255.0
            ci = (ci * alpha + bgc * (1.0 - alpha) + 0.5).astype(np.uint8)
        if color_jitter > 0:
            ci = _colour_jitter(ci, rng, color_jitter)
        if rng.random() < 0.5:
            ci, cm = ci[:, ::-1], cm[:, ::-1]
        imgs[k], masks[k] = ci, cm
    return imgs, masks


def eta_seconds(done: Sequence[tuple[int, float]], left: Sequence[int]) -> float:
    """Seconds the epochs of crop sizes ``left`` will take, from (crop, seconds) of epochs already timed.

    A crop size already seen costs the mean of its epochs. An unseen one is scaled from the nearest seen crop by
    pixels: an upper bound, since part of an epoch (batch making, validation) does not grow with the crop; it is
    replaced by the measured figure after that stage's first epoch."""
    by_crop: dict[int, list[float]] = {}
    for crop, secs in done:
        by_crop.setdefault(int(crop), []).append(float(secs))
    if not by_crop:
        return 0.0
    mean = {c: sum(v) / len(v) for c, v in by_crop.items()}
    total = 0.0
    for c in left:
        if c in mean:
            total += mean[c]
        else:
            near = min(mean, key=lambda m: (abs(m - c), m))
            total += mean[near] * (c / near) ** 2
    return total


def epoch_order(
    rng: np.random.Generator,
    n_train: int,
    sampling: str,
    n_samples: int,
    sources: Sequence[Sequence[Sequence[int]]],
    weights: Sequence[float],
) -> np.ndarray:
    """Cache indices for one epoch: a permutation (``uniform``) or ``n_samples`` balanced draws: a source by
    weight, a group of that source uniformly, an image of the group uniformly."""
    if sampling == "uniform":
        return rng.permutation(n_train)
    src = rng.choice(len(sources), size=n_samples, p=np.asarray(weights) / np.sum(weights))
    out = np.empty(n_samples, np.int64)
    for k, si in enumerate(src):
        groups = sources[int(si)]
        g = groups[int(rng.integers(0, len(groups)))]
        out[k] = g[int(rng.integers(0, len(g)))]
    return out


def make_val_batch(cache: Any, idx: Sequence[int], crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre crops (pads with zeros if an image is smaller than the crop)."""
    b = len(idx)
    imgs = np.zeros((b, crop, crop, 3), np.uint8)
    masks = np.zeros((b, crop, crop), np.uint8)
    for k, i in enumerate(idx):
        img, mask = cache.get(int(i))
        h, w = mask.shape
        ch, cw = min(crop, h), min(crop, w)
        y, x = (h - ch) // 2, (w - cw) // 2
        imgs[k, :ch, :cw] = img[y : y + ch, x : x + cw]
        masks[k, :ch, :cw] = mask[y : y + ch, x : x + cw]
    return imgs, masks


def iou_per_image(prob: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> np.ndarray:
    """IoU at threshold per image; an image where prediction and mask are both empty scores 1."""
    p = prob.reshape(prob.shape[0], -1) >= thr
    g = gt.reshape(gt.shape[0], -1) >= 0.5
    inter = (p & g).sum(1)
    union = (p | g).sum(1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


# ---------------------------------------------------------------------------------------------- trainer
#: consecutive optimizer steps with a non-finite loss or gradient (each skipped) that count as divergence
MAX_BAD_STEPS_IN_A_ROW = 20


def _loss(torch: Any, logits: Any, target: Any, kind: str = "bce_dice") -> Any:
    """``bce_dice``: BCE + Dice (per image, smoothed by 1). ``structure``: BCE and IoU both weighted per pixel by
    1 + 5·|local mean of the mask − mask| (a 31×31 box), so pixels near object boundaries count up to 6×; the
    IoU term penalises confident false positives anywhere in the background (the calibration that BCE alone
    leaves soft)."""
    F = torch.nn.functional
    if kind == "structure":
        # the 31x31 box mean, separably (identical to avg_pool2d(31, padding=15), ~15x cheaper on CPU)
        local = F.avg_pool2d(target, kernel_size=(31, 1), stride=1, padding=(15, 0))
        local = F.avg_pool2d(local, kernel_size=(1, 31), stride=1, padding=(0, 15))
        weit = 1 + 5 * torch.abs(local - target)
        wbce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
        p = torch.sigmoid(logits)
        inter = (p * target * weit).sum(dim=(2, 3))
        union = ((p + target) * weit).sum(dim=(2, 3))
        wiou = 1 - (inter + 1) / (union - inter + 1)
        return (wbce + wiou).mean()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


class _Ema:
    """Exponential moving average of a model's weights and BatchNorm statistics (decay warmed up over the
    first steps, as in timm's ModelEmaV2 and TF's ExponentialMovingAverage with num_updates)."""

    def __init__(self, torch: Any, model: Any, decay: float) -> None:
        self.torch, self.decay, self.steps = torch, decay, 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, model: Any) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        with self.torch.no_grad():
            for k, v in model.state_dict().items():
                e = self.state[k]
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    e.copy_(v)


def _pick_device(torch: Any, name: str) -> Any:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TinysalError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


def validate_config(cfg: TrainConfig) -> None:
    """Refuse a configuration that cannot train, before any work (the CLI's argparse types check most of it)."""
    from tinysal.model.arch import ARCHITECTURES

    choices = {
        "select": ("best", "last"),
        "amp": ("off", "bf16"),
        "sampling": ("uniform", "balanced"),
        "crop_mode": ("window", "rrc"),
        "loss": ("bce_dice", "structure"),
        "val_mode": ("crop", "whole"),
    }
    for k, allowed in choices.items():
        if getattr(cfg, k) not in allowed:
            raise TinysalError(f"{k} must be one of {', '.join(allowed)}, got {getattr(cfg, k)!r}")
    if cfg.arch not in ARCHITECTURES:
        raise TinysalError(f"unknown architecture {cfg.arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    if not cfg.roots:
        raise TinysalError("no dataset root given")
    if cfg.batch_size < 2:
        raise TinysalError(f"batch size must be at least 2 (BatchNorm), got {cfg.batch_size}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise TinysalError(f"learning rate must be a positive finite number, got {cfg.lr}")
    if not cfg.stages or any(int(c) <= 0 or int(c) % 8 or int(e) <= 0 for c, e in cfg.stages):
        raise TinysalError(f"stages must be positive multiples of 8 with positive epochs, got {cfg.stages}")
    lo, hi = cfg.scale_range
    if not (0 < lo <= hi <= 4):
        raise TinysalError(f"scale range must satisfy 0 < LO <= HI <= 4, got {lo},{hi}")
    alo, ahi = cfg.rrc_area
    if not (0 < alo <= ahi <= 1):
        raise TinysalError(f"rrc area must satisfy 0 < LO <= HI <= 1, got {alo},{ahi}")
    for k in ("copy_paste", "composite", "color_jitter", "val_fraction"):
        if not 0 <= getattr(cfg, k) <= 1:
            raise TinysalError(f"{k} must be in [0, 1], got {getattr(cfg, k)}")
    if not 0 <= cfg.ema < 1:
        raise TinysalError(f"ema decay must be in [0, 1), got {cfg.ema}")
    if cfg.sampling == "balanced" and cfg.epoch_samples < 2:
        raise TinysalError("balanced sampling needs epoch_samples >= 2")
    if any(not (math.isfinite(w) and w >= 0) for w in cfg.source_weights.values()):
        raise TinysalError(f"source weights must be finite and >= 0, got {cfg.source_weights}")
    if cfg.composite > 0 and not cfg.backgrounds:
        raise TinysalError("composite > 0 needs a backgrounds folder (--backgrounds DIR)")
    mult = input_multiple(cfg.arch)
    if any(int(c) % mult for c, _ in cfg.stages) or cfg.val_crop % mult:
        raise TinysalError(
            f"{cfg.arch} takes inputs in multiples of {mult}: crops {cfg.stages}, val crop {cfg.val_crop}"
        )
    if cfg.resize < max(int(c) for c, _ in cfg.stages) or cfg.resize < 8:
        raise TinysalError(f"resize ({cfg.resize}) must be at least the largest crop")


def _source_groups(pairs: Sequence[Any], kept: Sequence[int]) -> dict[str, list[list[int]]]:
    """source name -> groups -> cache indices (a group is a scene or video sequence)."""
    by: dict[str, dict[str, list[int]]] = {}
    for j, pi in enumerate(kept):
        p = pairs[pi]
        src = p.group.split("/", 1)[0]
        by.setdefault(src, {}).setdefault(p.group, []).append(j)
    return {s: list(g.values()) for s, g in sorted(by.items())}


def train(cfg: TrainConfig, resume: bool = False, metrics_out: str | None = None, progress: bool = True) -> dict:
    """Run (or resume) training; return the metrics dict (also written to ``metrics_out`` if given)."""
    validate_config(cfg)
    try:
        import torch
    except ImportError:
        raise TinysalError("training needs PyTorch: pip install 'tinysal[train]'") from None
    from tqdm import tqdm

    from tinysal.fileio import write_json
    from tinysal.model.nets import count_params, create_model, save_checkpoint
    from tinysal.provenance import run_provenance
    from tinysal.train import data as D
    from tinysal.train.curves import TRACE_NAME

    out = Path(cfg.out_dir)
    state_path = out / "last.pt"
    if metrics_out:
        from tinysal.fileio import check_writable_target

        check_writable_target(metrics_out)
    if state_path.is_file() and not resume:
        raise TinysalError(f"{state_path} exists: pass --resume to continue it, or choose another --out-dir")

    pairs = D.find_all_pairs(cfg.roots, cfg.skip_bad)
    if cfg.exclude_groups:
        pairs = D.filter_groups(pairs, cfg.exclude_groups, keep=False)
    if cfg.limit:
        pairs = pairs[: cfg.limit]
    if cfg.sampling == "balanced":  # a validation split from every source, not from whichever is biggest
        train_pairs, val_pairs = [], []
        forced = set(cfg.val_groups)
        for root in cfg.roots:
            rp = [p for p in pairs if p.root == str(Path(root))]
            named = [p for p in rp if p.group in forced or p.group.split("/", 1)[-1] in forced]
            if named:
                tp, vp = D.split_by_group(rp, 0, cfg.seed, cfg.val_groups)
            else:
                tp, vp = D.split_by_group(rp, cfg.val_fraction, cfg.seed)
            train_pairs += tp
            val_pairs += vp
    else:
        train_pairs, val_pairs = D.split_by_group(pairs, cfg.val_fraction, cfg.seed, cfg.val_groups)
    unknown = set(cfg.source_weights) - {D.source_name(r) for r in cfg.roots}
    if unknown:
        raise TinysalError(f"source weights name {sorted(unknown)}, which are not among the dataset roots' names")
    roots_info = []
    for root in cfg.roots:
        rp = [p for p in pairs if p.root == str(Path(root))]
        roots_info.append({"path": os.path.abspath(root), "pairs": len(rp), "content_sha256": D.content_hash(rp)})
    out.mkdir(parents=True, exist_ok=True)
    cache_root = cfg.cache_dir or str(out / "cache")
    train_cache = D.PairCache.build(train_pairs, cfg.resize, cache_root, progress, cfg.skip_bad, "training set")
    val_short = cfg.val_crop if cfg.val_mode == "whole" else cfg.resize
    val_cache = D.PairCache.build(val_pairs, val_short, cache_root, progress, cfg.skip_bad, "validation set")
    backgrounds = D.load_backgrounds(cfg.backgrounds, cfg.resize) if cfg.composite > 0 else []
    sources = _source_groups(train_pairs, train_cache.kept)
    names = list(sources)
    weights = [cfg.source_weights.get(n, math.sqrt(sum(len(g) for g in sources[n]))) for n in names]
    if sum(weights) <= 0:
        raise TinysalError("source weights are all zero")
    val_sources = [val_pairs[pi].group.split("/", 1)[0] for pi in val_cache.kept]

    device = _pick_device(torch, cfg.device)
    channels_last = device.type == "cpu"
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)

    model = create_model(cfg.arch).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    ema = _Ema(torch, model, cfg.ema) if cfg.ema > 0 else None
    eval_model = create_model(cfg.arch).to(device) if ema else model
    if ema and channels_last:
        eval_model = eval_model.to(memory_format=torch.channels_last)

    trace: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": -1, "val_iou": -1.0}
    start_epoch = 0
    if resume and state_path.is_file():
        st = _load_state(torch, state_path)
        if st.get("config") != json.loads(json.dumps(cfg.fingerprint())):
            raise TinysalError(f"{state_path} was written by a different configuration; use a new --out-dir")
        try:
            model.load_state_dict(st["state_dict"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            if ema:
                ema.state = {k: v.to(device) for k, v in st["ema"].items()}
                ema.steps = int(st["ema_steps"])
                eval_model.load_state_dict(ema.state)  # a finished run resumed straight to the end needs it too
            trace, best, start_epoch = list(st["trace"]), dict(st["best"]), int(st["epoch"]) + 1
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise TinysalError(f"{state_path} is not a usable training state: {str(e).splitlines()[0]}") from None
        print(f"resuming from {state_path}: {start_epoch}/{cfg.epochs} epochs done", file=sys.stderr)

    n_train = len(train_cache)
    if progress:
        mix = ", ".join(f"{n} {len(sources[n])} groups/{sum(len(g) for g in sources[n])} img" for n in names)
        print(f"train: {n_train} images ({mix}); validation: {len(val_cache)} images", file=sys.stderr)
        if cfg.sampling == "balanced":
            tot = sum(weights)
            print("sampling: " + ", ".join(f"{n} {w / tot:.0%}" for n, w in zip(names, weights)), file=sys.stderr)
    run_of_bad = 0  # consecutive skipped steps, across epochs
    for epoch in range(start_epoch, cfg.epochs):
        crop = cfg.crop_for_epoch(epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        perm = epoch_order(rng, n_train, cfg.sampling, cfg.epoch_samples, list(sources.values()), weights)
        n_ep = len(perm)
        bs = cfg.batch_size
        nb = max(1, n_ep // bs) if n_ep >= 2 * bs else max(1, math.ceil(n_ep / bs))
        model.train()
        t0 = time.time()
        total_loss, seen = 0.0, 0
        skip_causes = {"loss": 0, "gradient": 0}  # steps skipped for a non-finite loss / gradient
        bar = tqdm(
            range(nb),
            desc=f"epoch {epoch + 1}/{cfg.epochs} crop {crop}",
            disable=not (progress and sys.stderr.isatty()),
            unit="batch",
            leave=False,
        )
        for b in bar:
            idx = perm[b * bs : (b + 1) * bs]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            imgs, masks = make_train_batch(
                train_cache,
                idx,
                crop,
                rng,
                cfg.scale_range,
                cfg.copy_paste,
                perm,
                cfg.color_jitter,
                cfg.crop_mode,
                cfg.rrc_area,
                backgrounds,
                cfg.composite,
            )
            x, y = _to_tensor(torch, imgs, masks, device, channels_last)
            opt.zero_grad(set_to_none=True)
            saved_buffers = [b.detach().clone() for b in model.buffers()]  # BatchNorm statistics: a few KB
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
                logits = model.logits(x)
            loss = _loss(torch, logits.float(), y, cfg.loss)
            finite = bool(torch.isfinite(loss))
            if not finite:
                skip_causes["loss"] += 1
            else:
                loss.backward()
                finite = all(bool(torch.isfinite(q.grad).all()) for q in model.parameters() if q.grad is not None)
                if not finite:
                    skip_causes["gradient"] += 1
            if not finite:
                # a non-finite loss or gradient (a rare overflow): skip the step, as AMP loss scalers do, and undo
                # its BatchNorm statistics, so one bad batch cannot poison the weights; many in a row is divergence
                with torch.no_grad():
                    for b, v in zip(model.buffers(), saved_buffers):
                        b.copy_(v)
                run_of_bad += 1
                if run_of_bad >= MAX_BAD_STEPS_IN_A_ROW:
                    raise TinysalError(
                        f"training diverged at epoch {epoch + 1} ({run_of_bad} steps in a row with a non-finite loss "
                        "or gradient); last.pt holds the previous epoch: lower --lr"
                    )
                continue
            run_of_bad = 0
            opt.step()
            if ema:
                ema.update(model)
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", img_s=f"{seen / (time.time() - t0):.1f}")
        bar.close()
        skipped = sum(skip_causes.values())
        if skipped and not seen:  # nothing trained this epoch: every step was skipped
            raise TinysalError(
                f"training diverged at epoch {epoch + 1} (every step: a non-finite loss or gradient); last.pt "
                "holds the previous epoch: lower --lr"
            )
        train_secs = time.time() - t0
        lr_used = opt.param_groups[0]["lr"]
        sched.step()
        if ema:
            eval_model.load_state_dict(ema.state)
        if cfg.val_mode == "whole":
            val = evaluate_whole(
                torch, eval_model, val_cache, val_sources, device, channels_last, cfg.loss, input_multiple(cfg.arch)
            )
            val_loss, val_iou = val["loss"], val["score"]
        else:
            val_loss, val_iou = evaluate_cache(
                torch, eval_model, val_cache, cfg.val_crop, device, channels_last, kind=cfg.loss
            )
            val = None
        secs = time.time() - t0
        rec = {
            "epoch": epoch,
            "crop": crop,
            "train_loss": round(total_loss / max(seen, 1), 6),
            "val_loss": round(val_loss, 6),
            "val_iou": round(val_iou, 6),
            "lr": lr_used,
            "seconds": round(secs, 2),
            "images_per_s": round(seen / max(train_secs, 1e-9), 2),
        }
        if skipped:
            rec["skipped_steps"] = skipped
            rec["skipped_because"] = dict(skip_causes)
        if val:
            rec["val_per_source"] = val["per_source"]
        trace.append(rec)
        if val_iou > best["val_iou"]:
            best = {"epoch": epoch, "val_iou": round(val_iou, 6), "val_loss": round(val_loss, 6)}
            save_checkpoint(out / "best.pt", eval_model, cfg.arch, epoch=epoch, val_iou=round(val_iou, 6))
        st = {
            "format": "tinysal-train-state-1",
            "arch": cfg.arch,
            "state_dict": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "trace": trace,
            "best": best,
            "config": json.loads(json.dumps(cfg.fingerprint())),
        }
        if ema:
            st["ema"], st["ema_steps"] = ema.state, ema.steps
        tmp = out / "last.pt.tmp"
        torch.save(st, tmp)
        os.replace(tmp, state_path)
        # the curves so far, for `tinysal plot-run OUT_DIR` while the run goes on (no torch needed to read them);
        # a convenience: it never stops a run
        try:
            write_json(out / TRACE_NAME, {"arch": cfg.arch, "epochs": cfg.epochs, "stages": cfg.stages,
                                          "best_epoch": best["epoch"], "trace": trace})  # fmt: skip
        except (OSError, ValueError) as e:
            print(f"warning: could not write {out / TRACE_NAME}: {e}", file=sys.stderr)
        eta = eta_seconds(
            [(r["crop"], r["seconds"]) for r in trace if r["epoch"] >= start_epoch],  # timed in this process
            [cfg.crop_for_epoch(e) for e in range(epoch + 1, cfg.epochs)],
        )
        if progress:
            per = ""
            if val:
                per = (
                    " ("
                    + ", ".join(f"{n} IoU {v['iou']:.3f} MAE {v['mae']:.3f}" for n, v in val["per_source"].items())
                    + ")"
                )
            print(
                f"epoch {epoch + 1}/{cfg.epochs} crop {crop}: train_loss {rec['train_loss']:.4f} "
                f"val_loss {val_loss:.4f} val_iou {val_iou:.4f}{per} ({rec['images_per_s']:.1f} img/s, "
                f"{secs:.0f}s; ETA {eta / 60:.1f} min)"
                + (
                    f"; skipped {skipped} step(s): non-finite loss {skip_causes['loss']}, gradient "
                    f"{skip_causes['gradient']}"
                    if skipped
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )

    final = trace[-1] if trace else {"epoch": -1, "val_iou": 0.0}
    save_checkpoint(out / "final.pt", eval_model, cfg.arch, epoch=final["epoch"], val_iou=final["val_iou"])
    chosen = out / ("final.pt" if cfg.select == "last" else "best.pt")
    metrics: dict[str, Any] = {
        "arch": cfg.arch,
        "epochs": cfg.epochs,
        "trace": trace,
        "best_epoch": best["epoch"],
        "best_val_iou": best["val_iou"],
        "param_count": count_params(create_model(cfg.arch)),
        "train_pairs": len(train_cache),
        "val_pairs": len(val_cache),
        "skipped_bad_pairs": len(train_cache.meta.get("skipped", [])) + len(val_cache.meta.get("skipped", [])),
        "sources": {
            n: {"groups": len(sources[n]), "images": sum(len(g) for g in sources[n]), "weight": w / sum(weights)}
            for n, w in zip(names, weights)
        },
        "val_groups": sorted({p.group for p in val_pairs}),
        "train_seconds_total": round(sum(r["seconds"] for r in trace), 1),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "selected": {
            "rule": cfg.select,
            "checkpoint": str(chosen),
            "epoch": best["epoch"] if cfg.select == "best" else final["epoch"],
            "val_iou": best["val_iou"] if cfg.select == "best" else final["val_iou"],
        },
    }
    if cfg.calibrate:
        from tinysal.train.calibrate import calibrate

        rep = calibrate(chosen, metrics["val_groups"], cfg.roots, out / "calibrated.pt", cache_root,
                        short_side=cfg.val_crop if cfg.val_mode == "whole" else 256)  # fmt: skip
        pooled = rep["pooled"]
        rep["kept"] = pooled["mae_after"] < pooled["mae_before"] and pooled["iou_after"] >= pooled["iou_before"] - 0.01
        metrics["calibration"] = rep
        if rep["kept"]:
            chosen = out / "calibrated.pt"
            metrics["selected"]["checkpoint"] = str(chosen)
        if progress:
            print(f"calibration: logit x{rep['a']:.3f} {rep['b']:+.3f}; validation MAE {pooled['mae_before']:.4f} -> "
                  f"{pooled['mae_after']:.4f}, IoU {pooled['iou_before']:.4f} -> {pooled['iou_after']:.4f}; "
                  + ("kept" if rep["kept"] else "not kept"), file=sys.stderr)  # fmt: skip
    if cfg.export:
        from tinysal.model.checks import check_ops
        from tinysal.model.export import export_checkpoint
        from tinysal.model.parity import parity

        onnx_path = out / f"{cfg.arch}.onnx"
        export_checkpoint(chosen, onnx_path)
        metrics["onnx"] = str(onnx_path)
        metrics["parity_max_abs_diff"] = parity(chosen, onnx_path)["max_abs_diff"]
        metrics["op_check"] = check_ops(onnx_path)["ok"]
    metrics["run_provenance"] = run_provenance(
        args={**dataclasses.asdict(cfg), "resume": resume},
        outputs=[p for p in (metrics_out, str(out / "best.pt"), str(out / "final.pt")) if p],
        extra={"datasets": roots_info, "device": str(device)},
    )
    if metrics_out:
        write_json(metrics_out, metrics)
    write_json(out / "metrics.json", metrics)
    return metrics


def _load_state(torch: Any, path: Path) -> dict[str, Any]:
    """A trainer state file, loaded safely; a corrupt or foreign file is one clear error."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle refused, garbage: torch raises several types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TinysalError(f"cannot resume from {path}: not a readable training state ({first[:200]})") from None
    if not isinstance(st, dict) or st.get("format") != "tinysal-train-state-1":
        raise TinysalError(f"cannot resume from {path}: not a tinysal training state")
    return st


def evaluate_whole(
    torch: Any, model: Any, cache: Any, sources: Sequence[str], device: Any, channels_last: bool, kind: str,
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
                losses[idx] = float(_loss(torch, logits, y, kind))
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
            losses.append(float(_loss(torch, logits, y, kind)) * len(idx))
            ious.extend(iou_per_image(torch.sigmoid(logits).cpu().numpy(), y.cpu().numpy()).tolist())
    return sum(losses) / max(len(cache), 1), float(np.mean(ious)) if ious else 0.0
