"""The recipe's sampler and augmentations: which cached images an epoch draws (uniform or balanced over sources and
groups), and how each becomes a training crop (window or random resized crop, copy-paste, composite onto a
background, colour jitter, flip); centre crops for validation.

Every epoch's randomness comes from one generator seeded by (seed, epoch), and a random draw for an optional
augmentation happens only when it is enabled, so a recipe's stream of random numbers does not depend on options it
does not use (``--resume`` continues bit for bit).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.train.config import TrainConfig


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


def _source_groups(pairs: Sequence[Any], kept: Sequence[int]) -> dict[str, list[list[int]]]:
    """source name -> groups -> cache indices (a group is a scene or video sequence)."""
    by: dict[str, dict[str, list[int]]] = {}
    for j, pi in enumerate(kept):
        p = pairs[pi]
        src = p.group.split("/", 1)[0]
        by.setdefault(src, {}).setdefault(p.group, []).append(j)
    return {s: list(g.values()) for s, g in sorted(by.items())}


def check_source_weights(cfg: TrainConfig) -> None:
    """``--source-weights`` names only the dataset roots' sources (checked before any work)."""
    from tinysal.train import data as D

    unknown = set(cfg.source_weights) - {D.source_name(r) for r in cfg.roots}
    if unknown:
        raise TinysalError(f"source weights name {sorted(unknown)}, which are not among the dataset roots' names")


@dataclass
class RunData:
    """What a run trains and validates on: the split, the caches, the backgrounds and the sampling weights."""

    train_pairs: list[Any]
    val_pairs: list[Any]
    train_cache: Any
    val_cache: Any
    backgrounds: list[np.ndarray]
    sources: dict[str, list[list[int]]]  # source name -> groups -> training cache indices
    weights: list[float]  # sampling weight of each source, in the order of ``sources``
    val_sources: list[str]  # source name of each validation cache entry
    roots_info: list[dict[str, Any]]  # path, pair count and content hash of each dataset root (provenance)
    cache_root: str

    def describe(self, balanced: bool) -> None:
        names = list(self.sources)
        mix = ", ".join(f"{n} {len(self.sources[n])} groups/{sum(len(g) for g in self.sources[n])} img" for n in names)
        print(f"train: {len(self.train_cache)} images ({mix}); validation: {len(self.val_cache)} images",
              file=sys.stderr)  # fmt: skip
        if balanced:
            tot = sum(self.weights)
            print("sampling: " + ", ".join(f"{n} {w / tot:.0%}" for n, w in zip(names, self.weights)),
                  file=sys.stderr)  # fmt: skip

    def val_groups(self) -> list[str]:
        """The held-out groups (sequences, or single images), as the metrics and the live trace record them."""
        return sorted({p.group for p in self.val_pairs})

    def source_summary(self) -> dict[str, dict[str, Any]]:
        tot = sum(self.weights)
        return {
            n: {"groups": len(g), "images": sum(len(x) for x in g), "weight": w / tot}
            for (n, g), w in zip(self.sources.items(), self.weights)
        }


def split_pairs(cfg: TrainConfig, pairs: list[Any]) -> tuple[list[Any], list[Any]]:
    """Training and validation pairs, split by whole group; balanced sampling takes a validation split from every
    source (not from whichever is biggest), or the named ``val_groups`` of the sources that have them."""
    from tinysal.train import data as D

    if cfg.sampling != "balanced":
        return D.split_by_group(pairs, cfg.val_fraction, cfg.seed, cfg.val_groups)
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
    return train_pairs, val_pairs


def prepare_data(cfg: TrainConfig, out: Path, progress: bool) -> RunData:
    """Find the pairs, split them, build (or reuse) the caches and load the backgrounds."""
    from tinysal.train import data as D

    pairs = D.find_all_pairs(cfg.roots, cfg.skip_bad)
    if cfg.exclude_groups:
        pairs = D.filter_groups(pairs, cfg.exclude_groups, keep=False)
    if cfg.limit:
        pairs = pairs[: cfg.limit]
    train_pairs, val_pairs = split_pairs(cfg, pairs)
    check_source_weights(cfg)
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
    weights = [cfg.source_weights.get(n, math.sqrt(sum(len(g) for g in sources[n]))) for n in sources]
    if sum(weights) <= 0:
        raise TinysalError("source weights are all zero")
    val_sources = [val_pairs[pi].group.split("/", 1)[0] for pi in val_cache.kept]
    return RunData(train_pairs, val_pairs, train_cache, val_cache, list(backgrounds), sources, weights, val_sources,
                   roots_info, cache_root)  # fmt: skip
