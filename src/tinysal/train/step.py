"""One optimiser step of the recipe: the losses, the EMA of the weights, and the guard that skips a step whose loss
or gradient is not finite (undoing its BatchNorm statistics) and stops a run that diverges."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.train import sampling
from tinysal.train.config import TrainConfig
from tinysal.train.tensors import to_tensor

#: consecutive optimizer steps with a non-finite loss or gradient (each skipped) that count as divergence
MAX_BAD_STEPS_IN_A_ROW = 20


def recipe_loss(torch: Any, logits: Any, target: Any, kind: str = "bce_dice") -> Any:
    """``bce_dice``: BCE + Dice (per image, smoothed by 1). ``structure``: BCE and IoU both weighted per pixel by
    1 + 5·|local mean of the mask − mask| (a 31×31 box), so pixels near object boundaries count up to 6×; the
    IoU term penalises confident false positives anywhere in the background (the calibration that BCE alone
    leaves soft). ``structure_mae`` adds the map's mean absolute error, whose gradient does not fade as BCE's does
    near 0 and 1: it pushes haze down and object interiors up alike (the trade a global calibration cannot make)."""
    F = torch.nn.functional
    if kind == "structure_mae":
        mae = (torch.sigmoid(logits) - target).abs().mean()
        return recipe_loss(torch, logits, target, "structure") + mae
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


class Ema:
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


def _deterministic(torch: Any, on: bool) -> None:
    """``torch.use_deterministic_algorithms(on, warn_only=True)`` without its import of ``torch._inductor`` (3 s
    of every training process, to set a flag only ``torch.compile`` reads; tinysal trains eagerly)."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # another torch: the public call
        torch.use_deterministic_algorithms(on, warn_only=True)
    else:
        setter(on, warn_only=True)


@dataclass
class Learner:
    """The model being trained, its optimiser and schedule, the EMA, and the model validation and checkpoints use
    (the EMA weights when there is an EMA, else the model itself)."""

    model: Any
    opt: Any
    sched: Any
    ema: Ema | None
    eval_model: Any
    device: Any
    channels_last: bool
    run_of_bad: int = 0  # consecutive skipped steps, across epochs

    @classmethod
    def build(cls, torch: Any, cfg: TrainConfig, device: Any) -> Learner:
        """Seeded, then created in a fixed order (the model's initial weights are the first random draws)."""
        from tinysal.model.nets import create_model

        channels_last = device.type == "cpu"
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        _deterministic(torch, device.type == "cpu")
        model = create_model(cfg.arch).to(device)
        if cfg.init:  # a fine-tune: the weights of an earlier tinysal run (loaded with weights_only=True)
            from tinysal.model.nets import load_checkpoint

            start, arch, _ = load_checkpoint(cfg.init)
            if arch != cfg.arch:
                raise TinysalError(f"--init {cfg.init} holds {arch} weights, not {cfg.arch}")
            model.load_state_dict(start.state_dict())
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        ema = Ema(torch, model, cfg.ema) if cfg.ema > 0 else None
        eval_model = create_model(cfg.arch).to(device) if ema else model
        if ema and channels_last:
            eval_model = eval_model.to(memory_format=torch.channels_last)
        return cls(model, opt, sched, ema, eval_model, device, channels_last)


@dataclass
class EpochStats:
    loss_sum: float = 0.0  # sum over trained samples of the batch loss
    seen: int = 0
    started: float = 0.0  # time.time() at the epoch's start
    seconds: float = 0.0  # of training (validation not included)
    skip_causes: dict[str, int] = field(default_factory=lambda: {"loss": 0, "gradient": 0})

    @property
    def skipped(self) -> int:
        return sum(self.skip_causes.values())


def _step(torch: Any, cfg: TrainConfig, lr: Learner, x: Any, y: Any, stats: EpochStats) -> Any:
    """One optimiser step; returns the loss, or None when the step was skipped for a non-finite loss or gradient."""
    model = lr.model
    lr.opt.zero_grad(set_to_none=True)
    saved_buffers = [b.detach().clone() for b in model.buffers()]  # BatchNorm statistics: a few KB
    with torch.autocast(lr.device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
        logits = model.logits(x)
    loss = recipe_loss(torch, logits.float(), y, cfg.loss)
    finite = bool(torch.isfinite(loss))
    if not finite:
        stats.skip_causes["loss"] += 1
    else:
        loss.backward()
        finite = all(bool(torch.isfinite(q.grad).all()) for q in model.parameters() if q.grad is not None)
        if not finite:
            stats.skip_causes["gradient"] += 1
    if finite:
        lr.run_of_bad = 0
        lr.opt.step()
        if lr.ema:
            lr.ema.update(model)
        return loss
    # a non-finite loss or gradient (a rare overflow): skip the step, as AMP loss scalers do, and undo its
    # BatchNorm statistics, so one bad batch cannot poison the weights; many in a row is divergence
    with torch.no_grad():
        for b, v in zip(model.buffers(), saved_buffers):
            b.copy_(v)
    lr.run_of_bad += 1
    return None


def train_epoch(
    torch: Any, cfg: TrainConfig, lr: Learner, data: sampling.RunData, epoch: int, progress: bool
) -> EpochStats:
    """One epoch of optimiser steps over the epoch's draws (its generator seeded by (seed, epoch))."""
    from tqdm import tqdm

    crop = cfg.crop_for_epoch(epoch)
    rng = np.random.default_rng([cfg.seed, epoch])
    perm = sampling.epoch_order(rng, len(data.train_cache), cfg.sampling, cfg.epoch_samples,
                                list(data.sources.values()), data.weights)  # fmt: skip
    n_ep, bs = len(perm), cfg.batch_size
    nb = max(1, n_ep // bs) if n_ep >= 2 * bs else max(1, math.ceil(n_ep / bs))
    lr.model.train()
    t0 = time.time()
    stats = EpochStats(started=t0)
    bar = tqdm(range(nb), desc=f"epoch {epoch + 1}/{cfg.epochs} crop {crop}", unit="batch", leave=False,
               disable=not (progress and sys.stderr.isatty()))  # fmt: skip
    for b in bar:
        idx = perm[b * bs : (b + 1) * bs]
        if len(idx) < 2:  # BatchNorm needs two samples
            continue
        imgs, masks = sampling.make_train_batch(
            data.train_cache, idx, crop, rng, cfg.scale_range, cfg.copy_paste, perm, cfg.color_jitter,
            cfg.crop_mode, cfg.rrc_area, data.backgrounds, cfg.composite,
        )  # fmt: skip
        x, y = to_tensor(torch, imgs, masks, lr.device, lr.channels_last)
        loss = _step(torch, cfg, lr, x, y, stats)
        if loss is None:
            if lr.run_of_bad >= MAX_BAD_STEPS_IN_A_ROW:
                raise TinysalError(
                    f"training diverged at epoch {epoch + 1} ({lr.run_of_bad} steps in a row with a non-finite loss "
                    "or gradient); last.pt holds the previous epoch: lower --lr"
                )
            continue
        stats.loss_sum += float(loss.detach()) * len(idx)
        stats.seen += len(idx)
        bar.set_postfix(loss=f"{stats.loss_sum / stats.seen:.4f}", img_s=f"{stats.seen / (time.time() - t0):.1f}")
    bar.close()
    if stats.skipped and not stats.seen:  # nothing trained this epoch: every step was skipped
        raise TinysalError(
            f"training diverged at epoch {epoch + 1} (every step: a non-finite loss or gradient); last.pt "
            "holds the previous epoch: lower --lr"
        )
    stats.seconds = time.time() - t0
    return stats
