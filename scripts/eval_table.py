#!/usr/bin/env python3
"""Print a markdown table of `tinysal eval` metrics for several models on the same data (the model card's table).

    python scripts/eval_table.py --root ../shared/data/davis2016 --groups blackswan,car-roundabout,dance-twirl,libby \
        v2=src/tinysal/models/saliency_student_v2.onnx v1=src/tinysal/models/saliency_student_v1.onnx \
        yardstick-v2=../shared/reference/fork_saliency_student_v2.onnx
"""

from __future__ import annotations

import argparse
import json
import sys

from tinysal.evaluate import evaluate


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", help="NAME=PATH.onnx")
    ap.add_argument("--root", required=True)
    ap.add_argument("--groups", default="")
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--json")
    a = ap.parse_args()
    groups = [g for g in a.groups.split(",") if g]
    rows = []
    print(f"data: {a.root} groups: {','.join(groups) or 'all'}; inference short side {a.short_side or 'native'}")
    print()
    print("| model | n | IoU@0.5 | MAE ↓ | max-F | mean-F | S-measure | E-measure |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for spec in a.models:
        name, _, path = spec.partition("=")
        d = evaluate(path, [a.root], a.short_side, groups, progress=False)["datasets"][0]
        rows.append({"model": name, "path": path, **d})
        print(
            f"| {name} | {d['n_images']} | {d['iou']:.3f} | {d['mae']:.3f} | {d['max_f']:.3f} | {d['mean_f']:.3f} "
            f"| {d['s_measure']:.3f} | {d['e_measure']:.3f} |",
            flush=True,
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
