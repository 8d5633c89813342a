"""``tinysal eval``: SOD metrics (IoU, MAE, max/mean-F, S, E) of an ONNX model on datasets."""

from __future__ import annotations

import argparse
import os

from tinysal.cli.args import int_in
from tinysal.cli.common import precheck, report

HELP = "SOD metrics (IoU, MAE, max/mean-F, S, E) of an ONNX model on datasets"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("model", "roots"), ("out_json",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model")
    sp.add_argument("roots", nargs="+")
    sp.add_argument("--short-side", type=int, default=256, help="inference short side (0 = native)")
    sp.add_argument("--groups", help="comma-separated groups (sequences) to evaluate on, e.g. held-out ones")
    sp.add_argument("--threads", type=int_in(0, 64), default=0, help="ONNX Runtime threads (0 = one per core)")
    sp.add_argument("--by-size", action="store_true", help="also print the metrics per object size (the mask's "
                    "share of the image: small < 10%%, medium < 30%%, large): IoU at 0.5 and 0.3, MAE, the mean map "
                    "inside the object (fill) and outside it (spill); always in --out-json")  # fmt: skip
    sp.add_argument("--out-json")


def run(args: argparse.Namespace) -> int:
    from tinysal.train.evaluate import EvalOptions, run_eval

    opts = EvalOptions(args.model, list(args.roots), args.short_side, [g for g in (args.groups or "").split(",") if g],
                       args.threads)  # fmt: skip
    opts.check()
    precheck(args.out_json)
    rep = run_eval(opts)
    report(args.out_json, rep, args, [args.model])
    print(f"{'dataset':<20} {'n':>5} {'IoU':>7} {'MAE':>7} {'maxF':>7} {'maxF-PR':>7} {'meanF':>7} {'S':>7} {'E':>7}")
    for d in rep["datasets"]:
        print(
            f"{os.path.basename(d['root']):<20} {d['n_images']:>5} {d['iou']:>7.4f} {d['mae']:>7.4f} "
            f"{d['max_f']:>7.4f} {d['max_f_pr']:>7.4f} {d['mean_f']:>7.4f} {d['s_measure']:>7.4f} "
            f"{d['e_measure']:>7.4f}"
        )
    if args.by_size:
        print(f"\n{'dataset':<20} {'size':<7} {'n':>5} {'IoU@.5':>7} {'IoU@.3':>7} {'MAE':>7} {'fill':>7} {'spill':>7}")
        for d in rep["datasets"]:
            for name, b in d["by_size"].items():
                print(f"{os.path.basename(d['root']):<20} {name:<7} {b['n']:>5} {b['iou']:>7.4f} {b['iou_03']:>7.4f} "
                      f"{b['mae']:>7.4f} {b['fill']:>7.4f} {b['spill']:>7.4f}")  # fmt: skip
    return 0
