"""The end of a run: the final checkpoint, the one selected (best validation epoch or last), the optional
calibration on the validation split, the ONNX export with its parity and op checks, and the metrics record."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from tinysal.train.config import TrainConfig
from tinysal.train.sampling import RunData
from tinysal.train.state import RunLog
from tinysal.train.step import Learner


def _calibrate(cfg: TrainConfig, data: RunData, out: Path, metrics: dict[str, Any], progress: bool) -> None:
    """Fit the logit scale/shift on the validation split; keep it only if the pooled validation MAE improves
    without costing IoU (then the calibrated checkpoint is the selected one)."""
    from tinysal.train.calibrate import calibrate

    chosen = Path(metrics["selected"]["checkpoint"])
    rep = calibrate(chosen, metrics["val_groups"], cfg.roots, out / "calibrated.pt", data.cache_root,
                    short_side=cfg.val_crop if cfg.val_mode == "whole" else 256)  # fmt: skip
    pooled = rep["pooled"]
    rep["kept"] = pooled["mae_after"] < pooled["mae_before"] and pooled["iou_after"] >= pooled["iou_before"] - 0.01
    metrics["calibration"] = rep
    if rep["kept"]:
        metrics["selected"]["checkpoint"] = str(out / "calibrated.pt")
    if progress:
        print(f"calibration: logit x{rep['a']:.3f} {rep['b']:+.3f}; validation MAE {pooled['mae_before']:.4f} -> "
              f"{pooled['mae_after']:.4f}, IoU {pooled['iou_before']:.4f} -> {pooled['iou_after']:.4f}; "
              + ("kept" if rep["kept"] else "not kept"), file=sys.stderr)  # fmt: skip


def _export(cfg: TrainConfig, out: Path, metrics: dict[str, Any]) -> None:
    from tinysal.model.checks import check_ops
    from tinysal.model.export import export_checkpoint
    from tinysal.model.parity import parity

    chosen = Path(metrics["selected"]["checkpoint"])
    onnx_path = out / f"{cfg.arch}.onnx"
    export_checkpoint(chosen, onnx_path)
    metrics["onnx"] = str(onnx_path)
    metrics["parity_max_abs_diff"] = parity(chosen, onnx_path)["max_abs_diff"]
    metrics["op_check"] = check_ops(onnx_path)["ok"]


def finish(torch: Any, cfg: TrainConfig, lr: Learner, data: RunData, log: RunLog, *, resume: bool,
           metrics_out: str | None, progress: bool) -> dict[str, Any]:  # fmt: skip
    """Write final.pt, select, calibrate, export; return the metrics (also written to ``metrics_out`` and
    OUT_DIR/metrics.json)."""
    from tinysal.fileio import write_json
    from tinysal.model.nets import count_params, create_model, save_checkpoint
    from tinysal.provenance import run_provenance

    out = Path(cfg.out_dir)
    trace, best = log.trace, log.best
    final = trace[-1] if trace else {"epoch": -1, "val_iou": 0.0}
    save_checkpoint(out / "final.pt", lr.eval_model, cfg.arch, epoch=final["epoch"], val_iou=final["val_iou"])
    chosen = out / ("final.pt" if cfg.select == "last" else "best.pt")
    metrics: dict[str, Any] = {
        "arch": cfg.arch,
        "epochs": cfg.epochs,
        "trace": trace,
        "best_epoch": best["epoch"],
        "best_val_iou": best["val_iou"],
        "param_count": count_params(create_model(cfg.arch)),
        "train_pairs": len(data.train_cache),
        "val_pairs": len(data.val_cache),
        "skipped_bad_pairs": len(data.train_cache.meta.get("skipped", []))
        + len(data.val_cache.meta.get("skipped", [])),
        "sources": data.source_summary(),
        "val_groups": data.val_groups(),
        "train_seconds_total": round(sum(r["seconds"] for r in trace), 1),
        "device": str(lr.device),
        "torch_threads": torch.get_num_threads(),
        "selected": {
            "rule": cfg.select,
            "checkpoint": str(chosen),
            "epoch": best["epoch"] if cfg.select == "best" else final["epoch"],
            "val_iou": best["val_iou"] if cfg.select == "best" else final["val_iou"],
        },
    }
    if cfg.calibrate:
        _calibrate(cfg, data, out, metrics, progress)
    if cfg.export:
        _export(cfg, out, metrics)
    metrics["run_provenance"] = run_provenance(
        args={**dataclasses.asdict(cfg), "resume": resume},
        outputs=[p for p in (metrics_out, str(out / "best.pt"), str(out / "final.pt")) if p],
        extra={"datasets": data.roots_info, "device": str(lr.device)},
    )
    if metrics_out:
        write_json(metrics_out, metrics)
    write_json(out / "metrics.json", metrics)
    return metrics
