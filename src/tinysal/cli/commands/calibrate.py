"""``tinysal calibrate``: fit a logit scale/shift on a run's validation split, fold it into the head."""

from __future__ import annotations

import argparse

from tinysal.cli.common import precheck, report
from tinysal.errors import TinysalError

HELP = "fit a logit scale/shift on a run's validation split, fold it into the head"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("checkpoint", "roots", "metrics"), ("output", "out_json"), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("checkpoint")
    sp.add_argument("roots", nargs="+", help="the dataset roots the run trained on")
    sp.add_argument(
        "--metrics",
        required=True,
        help="the run's metrics JSON, or its OUT_DIR/trace.json while it runs (either holds its validation groups)",
    )
    sp.add_argument("--output", "-o", required=True)
    sp.add_argument("--cache-dir")
    sp.add_argument("--out-json")


def run(args: argparse.Namespace) -> int:
    from tinysal.fileio import check_writable_target, read_json
    from tinysal.train.calibrate import calibrate

    check_writable_target(args.output)
    precheck(args.out_json)
    run = read_json(args.metrics, "training metrics")
    groups = run.get("val_groups") if isinstance(run, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        if isinstance(run, dict) and isinstance(run.get("trace"), list) and "val_groups" not in run:
            raise TinysalError(f"{args.metrics}: a per-epoch trace without the validation groups (written before "
                               "traces named them): pass the run's metrics JSON (--metrics-out) instead, or "
                               "resume the run once to rewrite its trace")
        raise TinysalError(f"{args.metrics}: not a training run's metrics (no 'val_groups' list of group names)")
    rep = calibrate(args.checkpoint, groups, args.roots, args.output, args.cache_dir or "")
    report(args.out_json, rep, args, [args.checkpoint, args.metrics])
    for n, v in rep["per_source"].items():
        print(f"{n:<18} {v['images']:>5} img  IoU {v['iou_before']:.4f} -> {v['iou_after']:.4f}  "
              f"MAE {v['mae_before']:.4f} -> {v['mae_after']:.4f}")  # fmt: skip
    print(f"logit scale {rep['a']:.4f} shift {rep['b']:+.4f} folded into the head; wrote {rep['output']}")
    return 0
