"""``tinysal plot-run``: training curves of one or more runs, to look at rather than read.

A run is its metrics JSON (``--metrics-out``, or ``metrics.json`` in the run folder when it has ended) or, while
it is still going, the ``trace.json`` the trainer rewrites after every epoch. Runs are compared side by side:
the validation score the trainer selects on (best epoch marked), training and validation loss, and per source
the validation IoU and MAE; where a run's crop size changes is marked. Only the JSON is read: no PyTorch needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinysal.errors import TinysalError

TRACE_NAME = "trace.json"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"name", "trace", "best", "epochs"}`` from a metrics JSON, a trace JSON or a run folder; ``best`` is the
    trace record of the selected epoch (None when the file names none), ``epochs`` the planned count or None.

    Every record is checked (an epoch number, finite losses and scores): a file that is not a training run is one
    clear error, not a traceback from deep inside matplotlib."""
    from tinysal.fileio import read_json

    p = Path(path)
    if p.is_dir():
        # the newer of the two: a run started again in the same folder leaves the last run's metrics.json behind
        found = [p / n for n in ("metrics.json", TRACE_NAME) if (p / n).is_file()]
        if not found:
            raise TinysalError(f"{path}: no metrics.json or {TRACE_NAME} in this folder (is it a run's --out-dir?)")
        p = max(found, key=lambda f: f.stat().st_mtime_ns)
    doc = read_json(p, "run metrics")
    trace = doc.get("trace") if isinstance(doc, dict) else None
    if not isinstance(trace, list):
        raise TinysalError(f"{p}: not a training run's metrics (no per-epoch 'trace' list)")
    if not trace:
        raise TinysalError(f"{p}: the run has no finished epoch yet")
    for k, rec in enumerate(trace):
        ep = rec.get("epoch") if isinstance(rec, dict) else None
        ok = _whole(ep) and 0 <= ep < 1_000_000
        ok = ok and all(_number(rec.get(f)) for f in ("train_loss", "val_loss", "val_iou"))
        per = rec.get("val_per_source", {}) if ok else None
        ok = ok and isinstance(per, dict)
        ok = ok and all(isinstance(v, dict) and _number(v.get("iou")) and _number(v.get("mae")) for v in per.values())
        if not ok:
            raise TinysalError(f"{p}: trace record {k} is not an epoch record (epoch, losses, val_iou, per source)")
    best_epoch, planned = doc.get("best_epoch"), doc.get("epochs")
    return {
        "name": p.parent.name if p.name in ("metrics.json", TRACE_NAME) else p.stem,
        "trace": trace,
        "best": next((r for r in trace if r["epoch"] == best_epoch), None) if _whole(best_epoch) else None,
        "epochs": planned if _whole(planned) else None,
    }


def _stages(trace: Sequence[dict[str, Any]]) -> list[tuple[int, int, Any]]:
    """(first epoch, last epoch, crop) runs of equal crop size."""
    out: list[tuple[int, int, Any]] = []
    for rec in trace:
        crop = rec.get("crop")
        if out and out[-1][2] == crop and out[-1][1] == rec["epoch"] - 1:
            out[-1] = (out[-1][0], rec["epoch"], crop)
        else:
            out.append((rec["epoch"], rec["epoch"], crop))
    return out


def plot_runs(
    runs: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str = "", log_x: bool = False
) -> None:
    """One PNG, four panels: selection score, losses, per-source IoU, per-source MAE (epochs
    counted from 1); each run's crop-size stages marked where they change. ``log_x``: epochs on a logarithmic
    axis, where a score that gains the same for every doubling of the samples is a straight line."""
    from tinysal.fileio import atomic_open

    fig = figure(runs, title, log_x)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def figure(runs: Sequence[dict[str, Any]], title: str = "", log_x: bool = False) -> Any:
    """The matplotlib Figure ``plot_runs`` writes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 7.5), dpi=100)
    ax_score, ax_loss, ax_iou, ax_mae = (fig.add_subplot(2, 2, k) for k in range(1, 5))
    styles = ["-", "--", ":", "-."]
    sources = sorted({s for r in runs for rec in r["trace"] for s in rec.get("val_per_source", {})})
    colour = {s: f"C{k % 10}" for k, s in enumerate(sources)}
    for ri, run in enumerate(runs):
        ls, own = styles[ri % len(styles)], f"C{ri % 10}"
        tr = run["trace"]
        ep = [rec["epoch"] + 1 for rec in tr]
        label = run["name"]
        ax_score.plot(ep, [rec["val_iou"] for rec in tr], ls=ls, color=own, label=label)
        if run["best"] is not None:
            e, v = run["best"]["epoch"] + 1, run["best"]["val_iou"]
            ax_score.plot([e], [v], "o", color=own, label=f"{label}: best epoch {e} ({v:.3f})")
        ax_loss.plot(ep, [rec["train_loss"] for rec in tr], ls=ls, color="C0", label=f"{label} train")
        ax_loss.plot(ep, [rec["val_loss"] for rec in tr], ls=ls, color="C1", label=f"{label} validation")
        for s in sources:
            pts = [(rec["epoch"] + 1, rec["val_per_source"][s]) for rec in tr if s in rec.get("val_per_source", {})]
            if not pts:
                continue
            for ax, key in ((ax_iou, "iou"), (ax_mae, "mae")):
                ax.plot([e for e, _ in pts], [v[key] for _, v in pts], ls=ls, color=colour[s],
                        label=s + (f" ({label})" if len(runs) > 1 else ""))  # fmt: skip
        # the run's crop-size stages: a vertical line in its colour and style where the crop changes, named at the top
        for k, (a, b, crop) in enumerate(_stages(tr)):
            if k:
                for ax in (ax_score, ax_loss, ax_iou, ax_mae):
                    ax.axvline(a + 0.5, color=own, ls=ls, lw=0.8, alpha=0.6)
            if crop is not None:
                ax_score.annotate(f"crop {crop}", xy=((a + b) / 2 + 1, 1 + 0.045 * ri), ha="center", va="bottom",
                                  xycoords=("data", "axes fraction"), fontsize=7, color=own)  # fmt: skip
    _label_axes((ax_score, ax_loss, ax_iou, ax_mae), log_x)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _label_axes(axes: Sequence[Any], log_x: bool) -> None:
    """The four panels' labels, grids and legends (score, loss, per-source IoU, per-source MAE)."""
    names = ("validation score (selection rule)", "loss", "validation IoU@0.5 per source", "validation MAE per source")
    for ax, name in zip(axes, names):
        ax.set_ylabel(name)
        ax.set_xlabel("epoch (log scale)" if log_x else "epoch")
        if log_x:
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, framealpha=0.8)
