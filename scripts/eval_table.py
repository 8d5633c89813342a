#!/usr/bin/env python3
"""Print a markdown table of `tinysal eval` metrics for several models on the same data (the model card's tables).

    python scripts/eval_table.py --root ../datasets/DUTS-TE \
        v2=src/tinysal/models/saliency_student_v2.onnx yardstick-v2=../shared/reference/fork_saliency_student_v2.onnx
    python scripts/eval_table.py --root ../shared/data/davis2016 --groups blackswan,car-roundabout,dance-twirl,libby ...
    python scripts/eval_table.py --val-from runs/v2/metrics.json --root ../datasets/DUTS-TR --root ... v2=...

``--val-from`` evaluates each root on the validation groups that training run held out (its metrics JSON), so the
validation split is reported per source through the same inference path as everything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinysal.train.data import source_name
from tinysal.train.evaluate import evaluate


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", help="NAME=PATH.onnx")
    ap.add_argument("--root", action="append", required=True, help="dataset root (repeatable)")
    ap.add_argument("--groups", default="")
    ap.add_argument("--val-from", help="a training run's metrics JSON: evaluate each root on its validation groups")
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    groups = {r: [g for g in a.groups.split(",") if g] for r in a.root}
    if a.val_from:
        held = json.loads(Path(a.val_from).read_text())["val_groups"]
        for r in a.root:
            name = source_name(r)
            groups[r] = [g.split("/", 1)[1] for g in held if g.split("/", 1)[0] == name]
            if not groups[r]:
                raise SystemExit(f"{a.val_from} holds no validation groups of {name}")
    rows = []
    print(f"inference short side {a.short_side or 'native'}")
    print()
    print("| data | model | n | IoU@0.5 | MAE ↓ | max-F | mean-F | S-measure | E-measure |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for root in a.root:
        label = source_name(root) + (" (validation split)" if a.val_from else "")
        if groups[root] and not a.val_from:
            label += f" ({', '.join(groups[root])})"
        for spec in a.models:
            name, _, path = spec.partition("=")
            d = evaluate(path, [root], a.short_side, groups[root], threads=a.threads, progress=False)["datasets"][0]
            d.pop("groups", None)
            rows.append({"data": label, "model": name, "path": path, **d})
            print(
                f"| {label} | {name} | {d['n_images']} | {d['iou']:.3f} | {d['mae']:.3f} | {d['max_f']:.3f} "
                f"| {d['mean_f']:.3f} | {d['s_measure']:.3f} | {d['e_measure']:.3f} |",
                flush=True,
            )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
