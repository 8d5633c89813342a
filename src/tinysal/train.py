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

from tinysal.arch import IMAGENET_MEAN, IMAGENET_STD
from tinysal.errors import TinysalError

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
        for k in ("out_dir", "device", "cache_dir", "export"):
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
    f = (f - grey) * s + grey
    f = (f - f.mean()) * c + f.mean()
    return np.clip(f * b, 0, 255).astype(np.uint8)


def make_train_batch(
    cache: Any,
    idx: Sequence[int],
    crop: int,
    rng: np.random.Generator,
    scale_range: Sequence[float],
    copy_paste: float,
    pool: Sequence[int],
    color_jitter: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (B, crop, crop, 3) and masks (B, crop, crop): random crop (with scale jitter), h-flip,
    optional copy-paste (another training image's masked object pasted in) and colour jitter.

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
        if color_jitter > 0:
            ci = _colour_jitter(ci, rng, color_jitter)
        if size != crop:
            ci = np.asarray(Image.fromarray(ci).resize((crop, crop), Image.BILINEAR))
            cm = (np.asarray(Image.fromarray(cm).resize((crop, crop), Image.BILINEAR)) >= 128).astype(np.uint8) * 255
        if rng.random() < 0.5:
            ci, cm = ci[:, ::-1], cm[:, ::-1]
        imgs[k], masks[k] = ci, cm
    return imgs, masks


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
def _to_tensor(torch: Any, imgs: np.ndarray, masks: np.ndarray, device: Any, channels_last: bool):
    x = torch.from_numpy(imgs).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = ((x - mean) / std).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    y = torch.from_numpy(masks).to(device).unsqueeze(1).float().div_(255.0)
    return x, y


def _loss(torch: Any, logits: Any, target: Any) -> Any:
    """BCE + Dice (per image, smoothed by 1)."""
    F = torch.nn.functional
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


def _pick_device(torch: Any, name: str) -> Any:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TinysalError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


def train(cfg: TrainConfig, resume: bool = False, metrics_out: str | None = None, progress: bool = True) -> dict:
    """Run (or resume) training; return the metrics dict (also written to ``metrics_out`` if given)."""
    try:
        import torch
    except ImportError:
        raise TinysalError("training needs PyTorch: pip install 'tinysal[train]'") from None
    from tqdm import tqdm

    from tinysal import data as D
    from tinysal.fileio import write_json
    from tinysal.model import count_params, create_model, save_checkpoint
    from tinysal.provenance import run_provenance

    if cfg.select not in ("best", "last"):
        raise TinysalError(f"select must be 'best' or 'last', got {cfg.select!r}")
    if cfg.amp not in ("off", "bf16"):
        raise TinysalError(f"amp must be 'off' or 'bf16', got {cfg.amp!r}")
    if not cfg.roots:
        raise TinysalError("no dataset root given")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "last.pt"
    if metrics_out:
        from tinysal.fileio import check_writable_target

        check_writable_target(metrics_out)

    pairs = D.find_all_pairs(cfg.roots)
    if cfg.exclude_groups:
        pairs = D.filter_groups(pairs, cfg.exclude_groups, keep=False)
    if cfg.limit:
        pairs = pairs[: cfg.limit]
    train_pairs, val_pairs = D.split_by_group(pairs, cfg.val_fraction, cfg.seed, cfg.val_groups)
    roots_info = []
    for root in cfg.roots:
        rp = [p for p in pairs if p.root == str(Path(root))]
        roots_info.append({"path": os.path.abspath(root), "pairs": len(rp), "content_sha256": D.content_hash(rp)})
    cache_root = cfg.cache_dir or str(out / "cache")
    train_cache = D.PairCache.build(train_pairs, cfg.resize, cache_root, progress)
    val_cache = D.PairCache.build(val_pairs, cfg.resize, cache_root, progress)

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

    trace: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": -1, "val_iou": -1.0}
    start_epoch = 0
    if resume and state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st.get("config") != json.loads(json.dumps(cfg.fingerprint())):
            raise TinysalError(f"{state_path} was written by a different configuration; use a new --out-dir")
        model.load_state_dict(st["state_dict"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        trace, best, start_epoch = list(st["trace"]), dict(st["best"]), int(st["epoch"]) + 1
        print(f"resuming from {state_path}: {start_epoch}/{cfg.epochs} epochs done", file=sys.stderr)
    elif state_path.is_file() and not resume:
        raise TinysalError(f"{state_path} exists: pass --resume to continue it, or choose another --out-dir")

    n_train = len(train_cache)
    run_t0 = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        crop = cfg.crop_for_epoch(epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        perm = rng.permutation(n_train)
        bs = cfg.batch_size
        nb = max(1, n_train // bs) if n_train >= 2 * bs else max(1, math.ceil(n_train / bs))
        model.train()
        t0 = time.time()
        total_loss, seen = 0.0, 0
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
                train_cache, idx, crop, rng, cfg.scale_range, cfg.copy_paste, perm, cfg.color_jitter
            )
            x, y = _to_tensor(torch, imgs, masks, device, channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
                logits = model.logits(x)
            loss = _loss(torch, logits.float(), y)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", img_s=f"{seen / (time.time() - t0):.1f}")
        bar.close()
        train_secs = time.time() - t0
        lr_used = opt.param_groups[0]["lr"]
        sched.step()
        val_loss, val_iou = evaluate_cache(torch, model, val_cache, cfg.val_crop, device, channels_last)
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
        trace.append(rec)
        if val_iou > best["val_iou"]:
            best = {"epoch": epoch, "val_iou": round(val_iou, 6), "val_loss": round(val_loss, 6)}
            save_checkpoint(out / "best.pt", model, cfg.arch, epoch=epoch, val_iou=round(val_iou, 6))
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
        tmp = out / "last.pt.tmp"
        torch.save(st, tmp)
        os.replace(tmp, state_path)
        # ETA weighs the remaining epochs by pixels per crop (a 256 epoch costs ~4x a 128 one)
        elapsed = time.time() - run_t0
        cost_done = sum(cfg.crop_for_epoch(e) ** 2 for e in range(start_epoch, epoch + 1))
        cost_left = sum(cfg.crop_for_epoch(e) ** 2 for e in range(epoch + 1, cfg.epochs))
        eta = elapsed / cost_done * cost_left
        if progress:
            print(
                f"epoch {epoch + 1}/{cfg.epochs} crop {crop}: train_loss {rec['train_loss']:.4f} "
                f"val_loss {val_loss:.4f} val_iou {val_iou:.4f} ({rec['images_per_s']:.1f} img/s, "
                f"{secs:.0f}s; ETA {eta / 60:.1f} min)",
                file=sys.stderr,
                flush=True,
            )

    final = trace[-1] if trace else {"epoch": -1, "val_iou": 0.0}
    save_checkpoint(out / "final.pt", model, cfg.arch, epoch=final["epoch"], val_iou=final["val_iou"])
    chosen = out / ("final.pt" if cfg.select == "last" else "best.pt")
    metrics: dict[str, Any] = {
        "arch": cfg.arch,
        "epochs": cfg.epochs,
        "trace": trace,
        "best_epoch": best["epoch"],
        "best_val_iou": best["val_iou"],
        "param_count": count_params(create_model(cfg.arch)),
        "train_pairs": len(train_pairs),
        "val_pairs": len(val_pairs),
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
    if cfg.export:
        from tinysal.checks import check_ops
        from tinysal.export import export_checkpoint
        from tinysal.parity import parity

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


def evaluate_cache(
    torch: Any, model: Any, cache: Any, crop: int, device: Any, channels_last: bool, bs: int = 16
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
            losses.append(float(_loss(torch, logits, y)) * len(idx))
            ious.extend(iou_per_image(torch.sigmoid(logits).cpu().numpy(), y.cpu().numpy()).tolist())
    return sum(losses) / max(len(cache), 1), float(np.mean(ious)) if ious else 0.0
