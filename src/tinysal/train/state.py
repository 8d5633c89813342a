"""Checkpoints and resume: the training state saved after every epoch (``last.pt``, atomically), the per-epoch trace
readable while a run goes on, and loading a state back (safely: ``weights_only``; a corrupt, foreign or
differently-configured state is one clear line)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinysal.errors import TinysalError
from tinysal.train.config import TrainConfig
from tinysal.train.step import Learner

STATE_FORMAT = "tinysal-train-state-1"


@dataclass
class RunLog:
    """The epochs done so far: their records, the best epoch, and where this process started."""

    trace: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": -1, "val_iou": -1.0})
    start_epoch: int = 0


def _fingerprint(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(cfg.fingerprint()))


def resume(torch: Any, path: Path, cfg: TrainConfig, lr: Learner) -> RunLog:
    """Load ``path`` into the learner; the run's log so far."""
    st = _load_state(torch, path)
    if st.get("config") != _fingerprint(cfg):
        raise TinysalError(f"{path} was written by a different configuration; use a new --out-dir")
    try:
        lr.model.load_state_dict(st["state_dict"])
        lr.opt.load_state_dict(st["optimizer"])
        lr.sched.load_state_dict(st["scheduler"])
        if lr.ema:
            lr.ema.state = {k: v.to(lr.device) for k, v in st["ema"].items()}
            lr.ema.steps = int(st["ema_steps"])
            lr.eval_model.load_state_dict(lr.ema.state)  # a finished run resumed straight to the end needs it too
        log = RunLog(list(st["trace"]), dict(st["best"]), int(st["epoch"]) + 1)
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise TinysalError(f"{path} is not a usable training state: {str(e).splitlines()[0]}") from None
    print(f"resuming from {path}: {log.start_epoch}/{cfg.epochs} epochs done", file=sys.stderr)
    return log


def save(torch: Any, path: Path, cfg: TrainConfig, lr: Learner, epoch: int, log: RunLog) -> None:
    """The whole state after ``epoch``, written to a temporary file and renamed over ``path``."""
    st = {
        "format": STATE_FORMAT,
        "arch": cfg.arch,
        "state_dict": lr.model.state_dict(),
        "optimizer": lr.opt.state_dict(),
        "scheduler": lr.sched.state_dict(),
        "epoch": epoch,
        "trace": log.trace,
        "best": log.best,
        "config": _fingerprint(cfg),
    }
    if lr.ema:
        st["ema"], st["ema_steps"] = lr.ema.state, lr.ema.steps
    tmp = path.with_name(path.name + ".tmp")
    torch.save(st, tmp)
    os.replace(tmp, path)


def write_trace(out: Path, cfg: TrainConfig, log: RunLog, val_groups: list[str]) -> None:
    """The curves so far, for ``tinysal plot-run OUT_DIR`` while the run goes on (no torch needed to read them),
    and the validation groups, so that ``tinysal calibrate --metrics OUT_DIR/trace.json`` can calibrate (and so
    measure) a checkpoint of a run that has not finished; a convenience: it never stops a run."""
    from tinysal.fileio import write_json
    from tinysal.train.curves import TRACE_NAME

    try:
        write_json(out / TRACE_NAME, {"arch": cfg.arch, "epochs": cfg.epochs, "stages": cfg.stages,
                                      "best_epoch": log.best["epoch"], "trace": log.trace,
                                      "val_groups": val_groups})  # fmt: skip
    except (OSError, ValueError) as e:
        print(f"warning: could not write {out / TRACE_NAME}: {e}", file=sys.stderr)


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
    if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
        raise TinysalError(f"cannot resume from {path}: not a tinysal training state")
    return st
