"""``tinysal eval``: standard salient-object-detection metrics of an ONNX model on image/mask datasets.

Per dataset: mean IoU@0.5 (per image), MAE, max-F and mean-F (beta^2 = 0.3), S-measure and E-measure (mean),
computed with pysodmetrics. ``max_f`` is the maximum over 256 thresholds of the per-image F averaged over images
(pysodmetrics' curve); ``max_f_pr`` the older toolkits' form: F of the per-image precision and recall averaged over
images, at each threshold. Inference runs at a chosen short side (default 256; 0 = native), padded to a
multiple of 8; the map is resized back to the mask's size before scoring.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tinysal.errors import TinysalError


def predict_image(sess: Any, rgb_u8: np.ndarray, short_side: int) -> np.ndarray:
    """Saliency map (float32, mask-size) for one uint8 RGB image."""
    from tinysal.model.inputs import bilinear_matrix, normalise_and_pad, target_size

    h, w = rgb_u8.shape[:2]
    tw, th = target_size(w, h, short_side)
    img = Image.fromarray(rgb_u8)
    if (tw, th) != (w, h):
        img = img.resize((tw, th), Image.BILINEAR)
    x = normalise_and_pad(np.asarray(img, dtype=np.float32) / 255.0, sess.input_multiple)
    m = sess.run(x)[0, 0, :th, :tw]
    if not np.all(np.isfinite(m)):
        raise TinysalError(f"model {sess.path} produced NaN or infinite saliency values")
    if (tw, th) != (w, h):
        m = (bilinear_matrix(th, h) @ m.astype(np.float64) @ bilinear_matrix(tw, w).T).astype(np.float32)
    return np.clip(m, 0.0, 1.0)


def evaluate(
    model: str | os.PathLike[str],
    roots: Sequence[str | os.PathLike[str]],
    short_side: int = 256,
    groups: Sequence[str] = (),
    threads: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics per dataset root (optionally restricted to some groups, e.g. held-out sequences)."""
    import py_sod_metrics as M

    from tinysal.model.session import create_session
    from tinysal.train.data import filter_groups, find_pairs, load_pair
    from tinysal.train.validation import iou_per_image

    sess = create_session(model, threads=threads)
    out: dict[str, Any] = {"model": os.fspath(model), "short_side": short_side, "groups": list(groups), "datasets": []}
    for root in roots:
        pairs = find_pairs(root)
        if groups:
            pairs = filter_groups(pairs, groups, keep=True)
            if not pairs:
                raise TinysalError(f"{root}: none of the groups {list(groups)} found")
        with warnings.catch_warnings():  # pysodmetrics nudges towards FmeasureV2; Fmeasure is the standard one
            warnings.simplefilter("ignore")
            fm, mae, sm, em = M.Fmeasure(), M.MAE(), M.Smeasure(), M.Emeasure()
        ious, per_image = [], []
        t0 = time.perf_counter()
        it = pairs
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            it = tqdm(pairs, desc=f"eval {Path(root).name}", unit="img", leave=False)
        for p in it:
            rgb, mask = load_pair(p)
            pred = predict_image(sess, rgb, short_side)
            pred_u8 = (pred * 255 + 0.5).astype(np.uint8)
            for metric in (fm, mae, sm, em):
                metric.step(pred=pred_u8, gt=mask)
            obj = mask > 127
            ious.append(float(iou_per_image(pred[None], obj[None].astype(np.float32))[0]))
            per_image.append(_image_stats(pred, obj, ious[-1]))
        fres = fm.get_results()
        f, pr = fres["fm"], fres["pr"]
        # the toolkit form of max-F: F of the precision and recall averaged over images, at each threshold
        pr_f = 1.3 * pr["p"] * pr["r"] / np.maximum(0.3 * pr["p"] + pr["r"], 1e-12)
        e = em.get_results()["em"]
        out["datasets"].append(
            {
                "root": os.path.abspath(root),
                "n_images": len(pairs),
                "groups": sorted({p.group for p in pairs}) if groups else None,
                "iou": float(np.mean(ious)),
                "mae": float(mae.get_results()["mae"]),
                "max_f": float(np.max(f["curve"])),
                "max_f_pr": float(np.max(pr_f)),
                "mean_f": float(np.mean(f["curve"])),
                "s_measure": float(sm.get_results()["sm"]),
                "e_measure": float(np.mean(e["curve"])),
                "by_size": by_size(per_image),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    return out


#: object-size bins by the mask's share of the image: (name, lower bound, upper bound)
SIZE_BINS = (("small", 0.0, 0.1), ("medium", 0.1, 0.3), ("large", 0.3, 1.01))


def _image_stats(pred: np.ndarray, obj: np.ndarray, iou: float) -> dict[str, float]:
    """One image's share of object, IoU@0.5 and @0.3, MAE, and the mean map inside the object (fill: 1 is full
    confidence) and outside it (spill)."""
    from tinysal.train.validation import iou_per_image

    return {
        "area": float(obj.mean()),
        "iou": iou,
        "iou_03": float(iou_per_image(pred[None], obj[None].astype(np.float32), 0.3)[0]),
        "mae": float(np.abs(pred - obj).mean()),
        "fill": float(pred[obj].mean()) if obj.any() else float("nan"),
        "spill": float(pred[~obj].mean()) if not obj.all() else float("nan"),
    }


def by_size(stats: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Means of :func:`_image_stats` per object-size bin (``SIZE_BINS``): where a model is under-confident (low
    fill on large objects) or over-marks (high spill on small ones), and how much the 0.5 threshold costs."""
    out = {}
    for name, lo, hi in SIZE_BINS:
        sel = [s for s in stats if lo <= s["area"] < hi]
        if not sel:
            continue
        row: dict[str, float] = {"n": len(sel)}
        for k in ("iou", "iou_03", "mae", "fill", "spill"):
            vals = [s[k] for s in sel if np.isfinite(s[k])]
            row[k] = round(float(np.mean(vals)), 4) if vals else float("nan")
        out[name] = row
    return out


@dataclass
class EvalOptions:
    """The ``eval`` task's options (the command's flags): an ONNX model, dataset roots, the inference short side
    (0 = native), the groups to keep (empty: all) and ONNX Runtime's threads (0 = one per core)."""

    model: str
    roots: list[str]
    short_side: int = 256
    groups: list[str] = field(default_factory=list)
    threads: int = 0

    def check(self) -> None:
        if self.short_side < 0:
            raise TinysalError("--short-side must be >= 0 (0 = native resolution)")
        if not 0 <= self.threads <= 64:
            raise TinysalError(f"--threads must be 0..64, got {self.threads}")
        if not self.roots:
            raise TinysalError("no dataset root given")


def run_eval(opts: EvalOptions, progress: bool = True) -> dict[str, Any]:
    """Check ``opts`` and evaluate: metrics per dataset root (``evaluate``)."""
    opts.check()
    return evaluate(opts.model, opts.roots, opts.short_side, opts.groups, opts.threads, progress)
