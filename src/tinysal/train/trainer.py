"""``tinysal train``: the trainer. Reference recipe by default; a CPU preset that trains a useful model on 2 cores.

Design points:
- data comes from a pre-resized uint8 cache (built once, memory-mapped): no JPEG decoding per epoch;
- every epoch's randomness is derived from (seed, epoch), and the model, optimiser and scheduler are saved after
  every epoch, so ``--resume`` after a kill continues to the same result as an uninterrupted run;
- channels-last on CPU; CUDA is used automatically when present, with the same command.

The run is in pieces, each in its own module: ``config`` (the recipes and their checks), ``sampling`` (the data,
the sampler and the augmentations), ``step`` (one optimiser step and one epoch of them), ``validation``,
``state`` (checkpoint and resume) and ``selection`` (final checkpoint, calibration, export, metrics). This module
runs them in order.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinysal.errors import TinysalError
from tinysal.train import state
from tinysal.train.config import TrainConfig, validate_config
from tinysal.train.sampling import RunData, prepare_data
from tinysal.train.selection import finish
from tinysal.train.step import EpochStats, Learner, train_epoch
from tinysal.train.validation import validate_epoch


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


def _pick_device(torch: Any, name: str) -> Any:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TinysalError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


def _epoch_record(epoch: int, crop: int, stats: EpochStats, lr_used: float, val_loss: float, val_iou: float,
                  val: dict[str, Any] | None, secs: float) -> dict[str, Any]:  # fmt: skip
    rec = {
        "epoch": epoch,
        "crop": crop,
        "train_loss": round(stats.loss_sum / max(stats.seen, 1), 6),
        "val_loss": round(val_loss, 6),
        "val_iou": round(val_iou, 6),
        "lr": lr_used,
        "seconds": round(secs, 2),
        "images_per_s": round(stats.seen / max(stats.seconds, 1e-9), 2),
    }
    if stats.skipped:
        rec["skipped_steps"] = stats.skipped
        rec["skipped_because"] = dict(stats.skip_causes)
    if val:
        rec["val_per_source"] = val["per_source"]
    return rec


def _report(cfg: TrainConfig, rec: dict[str, Any], stats: EpochStats, eta: float) -> None:
    per = ""
    if "val_per_source" in rec:
        per = " (" + ", ".join(
            f"{n} IoU {v['iou']:.3f} MAE {v['mae']:.3f}" for n, v in rec["val_per_source"].items()
        ) + ")"  # fmt: skip
    skipped = ""
    if stats.skipped:
        c = stats.skip_causes
        skipped = f"; skipped {stats.skipped} step(s): non-finite loss {c['loss']}, gradient {c['gradient']}"
    print(
        f"epoch {rec['epoch'] + 1}/{cfg.epochs} crop {rec['crop']}: train_loss {rec['train_loss']:.4f} "
        f"val_loss {rec['val_loss']:.4f} val_iou {rec['val_iou']:.4f}{per} ({rec['images_per_s']:.1f} img/s, "
        f"{rec['seconds']:.0f}s; ETA {eta / 60:.1f} min){skipped}",
        file=sys.stderr,
        flush=True,
    )


def _run_epoch(torch: Any, cfg: TrainConfig, lr: Learner, data: RunData, log: state.RunLog, epoch: int,
               progress: bool) -> None:  # fmt: skip
    """Train one epoch, validate (the EMA weights when there is an EMA), save best.pt if it improved and the whole
    state to last.pt, and report."""
    import time

    from tinysal.model.nets import save_checkpoint

    out = Path(cfg.out_dir)
    stats = train_epoch(torch, cfg, lr, data, epoch, progress)
    lr_used = lr.opt.param_groups[0]["lr"]
    lr.sched.step()
    if lr.ema:
        lr.eval_model.load_state_dict(lr.ema.state)
    val_loss, val_iou, val = validate_epoch(torch, cfg, lr.eval_model, data, lr.device, lr.channels_last)
    secs = time.time() - stats.started
    rec = _epoch_record(epoch, cfg.crop_for_epoch(epoch), stats, lr_used, val_loss, val_iou, val, secs)
    log.trace.append(rec)
    if val_iou > log.best["val_iou"]:
        log.best = {"epoch": epoch, "val_iou": round(val_iou, 6), "val_loss": round(val_loss, 6)}
        save_checkpoint(out / "best.pt", lr.eval_model, cfg.arch, epoch=epoch, val_iou=round(val_iou, 6))
    state.save(torch, out / "last.pt", cfg, lr, epoch, log)
    state.write_trace(out, cfg, log, data.val_groups())
    if progress:
        eta = eta_seconds(
            [(r["crop"], r["seconds"]) for r in log.trace if r["epoch"] >= log.start_epoch],  # timed in this process
            [cfg.crop_for_epoch(e) for e in range(epoch + 1, cfg.epochs)],
        )
        _report(cfg, rec, stats, eta)


def train(cfg: TrainConfig, resume: bool = False, metrics_out: str | None = None, progress: bool = True) -> dict:
    """Run (or resume) training; return the metrics dict (also written to ``metrics_out`` if given)."""
    import importlib.util

    validate_config(cfg)
    if importlib.util.find_spec("torch") is None:
        raise TinysalError("training needs PyTorch: pip install 'tinysal[train]'")
    out = Path(cfg.out_dir)
    state_path = out / "last.pt"
    if metrics_out:
        from tinysal.fileio import check_writable_target

        check_writable_target(metrics_out)
    if state_path.is_file() and not resume:
        raise TinysalError(f"{state_path} exists: pass --resume to continue it, or choose another --out-dir")
    data = prepare_data(cfg, out, progress)  # before importing torch (seconds): bad data is said at once
    import torch

    lr = Learner.build(torch, cfg, _pick_device(torch, cfg.device))
    log = state.resume(torch, state_path, cfg, lr) if resume and state_path.is_file() else state.RunLog()
    if progress:
        data.describe(cfg.sampling == "balanced")
    for epoch in range(log.start_epoch, cfg.epochs):
        _run_epoch(torch, cfg, lr, data, log, epoch, progress)
    return finish(torch, cfg, lr, data, log, resume=resume, metrics_out=metrics_out, progress=progress)
