"""``tinysal plot-run``: training curves of one or more runs (validation score, losses, per source)."""

from __future__ import annotations

import argparse

from tinysal.cli.common import precheck
from tinysal.errors import TinysalError

HELP = "training curves of one or more runs (validation score, losses, per source)"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("runs",), ("output",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("runs", nargs="+", help="a run's --out-dir (also while it trains) or its metrics JSON")
    sp.add_argument("--output", "-o", required=True, help="PNG to write")
    sp.add_argument("--labels", help="comma-separated names, one per run (default: the folder or file name)")
    sp.add_argument("--title")
    sp.add_argument(
        "--log-x",
        action="store_true",
        help="epochs on a logarithmic axis (equal gains per doubling of the samples show as a line)",
    )


def run(args: argparse.Namespace) -> int:
    from tinysal.train.curves import load_run, plot_runs

    precheck(args.output)
    runs = [load_run(p) for p in args.runs]
    if args.labels:
        labels = args.labels.split(",")
        if len(labels) != len(runs) or not all(labels):
            raise TinysalError(f"--labels needs one non-empty name per run ({len(runs)}), got {args.labels!r}")
        for run, name in zip(runs, labels):
            run["name"] = name
    plot_runs(runs, args.output, args.title or "", log_x=args.log_x)
    for run in runs:
        tr, best = run["trace"], run["best"]
        planned = f"/{run['epochs']}" if run["epochs"] else ""
        tail = f", best epoch {best['epoch'] + 1} ({best['val_iou']:.4f})" if best else ""
        print(f"{run['name']}: {len(tr)}{planned} epochs, last validation score {tr[-1]['val_iou']:.4f}{tail}")
    return 0


def expand(path: str) -> list[str]:
    """What plot-run reads of a run: the folder's metrics.json and trace.json, or the file named."""
    from pathlib import Path

    from tinysal.train.curves import TRACE_NAME

    p = Path(path)
    return [str(p / n) for n in ("metrics.json", TRACE_NAME)] if p.is_dir() else [path]
