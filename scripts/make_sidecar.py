#!/usr/bin/env python3
"""Write a model's sidecar JSON from the metrics JSON that `tinysal train --metrics-out` produced.

    python scripts/make_sidecar.py runs/davis-v2-metrics.json --id saliency_student_v2 --status production \
        --command "tinysal train ..." --hardware "2 CPU cores (x86_64), no GPU" --test-groups a,b,c
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinysal.fileio import write_json
from tinysal.model.arch import INPUT_NAME, OPSET, OUTPUT_NAME

LOSSES = {
    "structure": "boundary-weighted BCE + weighted IoU",
    "structure_mae": "boundary-weighted BCE + weighted IoU + the map's mean absolute error",
    "bce_dice": "BCE + Dice",
}


def samples(metrics: dict, epochs: int | None = None) -> int:
    """Training samples the run drew in ``epochs`` (default: all of them): epochs x samples per epoch (balanced
    sampling), or x train pairs."""
    args = metrics["run_provenance"]["args"]
    per_epoch = args.get("epoch_samples") if args.get("sampling") == "balanced" else metrics["train_pairs"]
    return int(metrics["epochs"] if epochs is None else epochs) * int(per_epoch)


def parent_record(a: argparse.Namespace, init: str) -> dict:
    """What a fine-tune started from: the parent run's schedule, so a card can give the model's whole history."""
    if not a.parent_metrics:
        raise SystemExit(f"this run was initialised from {init} (--init): pass --parent-metrics for its history")
    pm = json.loads(Path(a.parent_metrics).read_text())
    return {
        "init_checkpoint": init,
        "command": a.parent_command or " ".join(["tinysal", *pm["run_provenance"]["argv"][1:]]),
        "epochs": pm["epochs"],
        "samples": samples(pm),
        "selected_epoch_samples": samples(pm, pm["best_epoch"] + 1),  # what the weights it handed on had seen
        "selected_epoch": pm["best_epoch"],
        "best_val_iou": pm["best_val_iou"],
        "training_wall_clock_seconds": pm["train_seconds_total"],
        "resumes": a.parent_resumes,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("metrics")
    ap.add_argument("--id", required=True)
    ap.add_argument("--status", required=True, choices=["production", "candidate", "superseded"])
    ap.add_argument("--display-name")
    ap.add_argument("--command", required=True)
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--wall-clock", type=float, help="seconds, if different from the sum of epoch times")
    ap.add_argument("--test-groups", default="")
    ap.add_argument("--card", default="")
    ap.add_argument("--notes", default="")
    ap.add_argument("--checkpoint", required=True, help="the checkpoint that was exported (e.g. runs/v2/last.pt)")
    ap.add_argument("--onnx", required=True, help="the shipped ONNX file")
    ap.add_argument("--selected", choices=["best", "last"], default="best")
    ap.add_argument("--eval-json", action="append", default=[],
                    help="rows written by scripts/eval_table.py --json (held-out test metrics; repeatable)")
    ap.add_argument("--eval-name", help="the row of --eval-json that is this model")
    ap.add_argument("--parent-metrics", help="a fine-tune (--init): the metrics JSON of the run its start came from")
    ap.add_argument("--parent-command", default="", help="a fine-tune: the command of that run")
    ap.add_argument("--parent-resumes", type=int, help="a fine-tune: how many times that run was resumed")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    m = json.loads(Path(a.metrics).read_text())
    prov = m["run_provenance"]
    args = prov["args"]
    side = {
        "id": a.id,
        "display_name": a.display_name or a.id,
        "arch": m["arch"],
        "kind": "nr",
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "onnx_opset": OPSET,
        "param_count": m["param_count"],
        "status": a.status,
        "notes": a.notes,
        "training": {
            "smoke": False,
            "command": a.command,
            "dataset": prov["datasets"],
            "recipe": {
                k: args[k]
                for k in (
                    "preset",
                    "stages",
                    "batch_size",
                    "lr",
                    "resize",
                    "val_crop",
                    "scale_range",
                    "copy_paste",
                    "seed",
                    "sampling",
                    "epoch_samples",
                    "source_weights",
                    "crop_mode",
                    "rrc_area",
                    "composite",
                    "color_jitter",
                    "loss",
                    "ema",
                    "val_mode",
                    "amp",
                )
                if k in args
            },
            "sources": m.get("sources"),
            "calibration": {k: m["calibration"][k] for k in ("a", "b", "pooled", "kept")}
            if m.get("calibration")
            else None,
            "loss": LOSSES[args.get("loss", "bce_dice")],
            "optimizer": f"Adam lr={args['lr']}, CosineAnnealingLR(T_max={m['epochs']})",
            "epochs": m["epochs"],
            "seed": args["seed"],
            "train_pairs": m["train_pairs"],
            "val_pairs": m["val_pairs"],
            "val_groups": args["val_groups"],
            "excluded_groups": args["exclude_groups"],
            "test_groups": [g for g in a.test_groups.split(",") if g],
            "best_epoch": m["best_epoch"],
            "best_val_iou": m["best_val_iou"],
            "selected_checkpoint": {
                "rule": a.selected,
                "epoch": m["best_epoch"] if a.selected == "best" else m["trace"][-1]["epoch"],
                "val_score": m["best_val_iou"] if a.selected == "best" else m["trace"][-1]["val_iou"],
                "val_per_source": (m["trace"][m["best_epoch"]] if a.selected == "best" else m["trace"][-1]).get(
                    "val_per_source"
                ),
                "export_command": f"tinysal export {a.checkpoint} --output {a.onnx}",
            },
            "pt_onnx_max_abs_diff": None,
            "training_wall_clock_seconds": a.wall_clock or m["train_seconds_total"],
            "training_hardware": a.hardware,
            "device": m["device"],
            "torch_version": prov["versions"]["torch"],
            "onnx_op_set": None,
        },
    }
    side["training"]["samples"] = samples(m)
    selected_epoch = side["training"]["selected_checkpoint"]["epoch"]
    side["training"]["selected_weights_samples"] = samples(m, selected_epoch + 1)
    if args.get("init"):
        parent = parent_record(a, args["init"])
        side["training"]["fine_tuned_from"] = parent
        side["training"]["total_samples"] = parent["samples"] + side["training"]["samples"]
        side["training"]["selected_weights_samples"] += parent["selected_epoch_samples"]
        side["training"]["total_wall_clock_seconds"] = (
            parent["training_wall_clock_seconds"] + side["training"]["training_wall_clock_seconds"]
        )
    if a.card:
        side["card"] = a.card
    from tinysal.model.checks import check_ops
    from tinysal.model.parity import parity

    side["training"]["onnx_op_set"] = check_ops(a.onnx)["op_types"]
    side["training"]["pt_onnx_max_abs_diff"] = parity(a.checkpoint, a.onnx)["max_abs_diff"]
    if a.eval_json:
        rows = [r for f in a.eval_json for r in json.loads(Path(f).read_text())]
        side["heldout_eval"] = [
            {"data": r.get("data", ""), "short_side": 256}
            | {k: r.get(k) for k in ("n_images", "iou", "mae", "max_f", "max_f_pr", "mean_f", "s_measure", "e_measure")}
            for r in rows
            if r["model"] == a.eval_name
        ]
    write_json(a.out, side)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
