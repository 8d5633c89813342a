"""Scoring files: ``score_files`` runs the stages of ``features.pipeline`` on a pair with a ``VmafContext``;
``score_video`` is the one-call API (``tinysal.score_video("clip.mp4")``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from tinysal.errors import TinysalError
from tinysal.features.context import VmafContext, as_frame
from tinysal.features.output import write_result
from tinysal.features.pipeline import (
    analyse_frames,
    check_libvmaf_input,
    collect_libvmaf,
    open_pair,
    plan,
    start_libvmaf,
)
from tinysal.features.vmaf import DEFAULT_MODEL, VmafJob


def score_files(
    ctx: VmafContext,
    reference: str | os.PathLike[str] | None,
    distorted: str | os.PathLike[str],
    width: int | None = None,
    height: int | None = None,
    pix_fmt: str | None = None,
    bitdepth: int | None = None,
    frame_cnt: int = 0,
    frame_skip_ref: int = 0,
    frame_skip_dist: int = 0,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    scaler: str | None = "bicubic",
) -> dict[str, Any]:
    """Score a clip pair with the context's features and, when asked (:meth:`VmafContext.use_vmaf`), real VMAF.

    libvmaf runs in an FFmpeg child process on the two files while saliency runs here, so the two overlap.
    Saliency (``saliency_mean``) is no-reference: it runs on the distorted frames. ``roi_score`` also analyses
    the reference frames and streams a masked copy of the distorted clip into a second libvmaf pass. A distorted
    of another size is scaled to the reference's with ``scaler`` (an FFmpeg swscale name) for libvmaf, as
    ffmpeg-quality-metrics does, and the result names it; ``scaler=None`` refuses such a pair.
    Returns facts about the run; results stay in ``ctx``."""
    if not ctx.features and not ctx.wants_vmaf:
        raise TinysalError("nothing to compute: use a feature (mobilesal) or VMAF")
    pair = open_pair(ctx, reference, distorted, (width, height, pix_fmt, bitdepth), frame_cnt,
                      (frame_skip_ref, frame_skip_dist), warn, scaler)  # fmt: skip
    roi = next((f for f in ctx.features if f.uses_reference), None)
    check_libvmaf_input(ctx, pair, roi)
    t0 = time.perf_counter()
    done = 0
    jobs: list[VmafJob] = []
    try:
        how = plan(ctx, pair, roi)  # the route, decided once: every stage below reads it
        plain, masked, tapped = start_libvmaf(ctx, pair, how, (reference, distorted), jobs)
        if ctx.features:
            done = analyse_frames(ctx, pair, roi, masked, progress, how, tapped)
        elif plain is not None and progress:  # VMAF alone: follow FFmpeg's progress reports
            while not plain.poll(0.5):
                progress(min(plain.frames_done(), pair.n), pair.n)
        vmaf_done = collect_libvmaf(ctx, plain, masked, roi, progress, pair.n)
        if not ctx.features:
            done = vmaf_done
    finally:
        for job in jobs:
            job.close()
    dist = pair.dist
    if not ctx.features:
        ctx.set_geometry(dist.width, dist.height)
    if pair.scale is not None:  # the quality is measured at the reference's size
        w, h, scaler = pair.scale
        scaling = {"distorted": f"{dist.width}x{dist.height}", "scaled_to": f"{w}x{h}", "scaler": scaler}
        if masked is not None:  # roi_score: how its masked copy was made from a distorted of another size
            scaling["masked_copy"] = (f"the distorted scaled to {w}x{h} ({scaler}), then merged towards the "
                                      "reference outside the reference's salient region")  # fmt: skip
        ctx.set_geometry(w, h, scaling)
    elapsed = time.perf_counter() - t0
    return {
        "frames_scored": done,
        "route": how.route,
        "frames": pair.n,
        "seconds": elapsed,
        "fps": done / elapsed if elapsed > 0 else float("nan"),
        "width": dist.width,
        "height": dist.height,
        "source_fps": getattr(dist, "fps", None),
        "colorspace": (ctx.features[0].colorspace if ctx.features else None) or pair.cs,
        "range": (ctx.features[0].color_range if ctx.features else None) or pair.cr,
        "notes": pair.notes,
    }


def score_video(
    path: str | os.PathLike[str],
    model_path: str | os.PathLike[str] | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    pix_fmt: str = "420",
    bitdepth: int = 8,
    short_side: int = 256,
    threads: int = 0,
    subsample: int = 1,
    frame_cnt: int = 0,
    extra_stats: bool = False,
    output: str | os.PathLike[str] | None = None,
    fmt: str = "json",
    reference: str | os.PathLike[str] | None = None,
    vmaf_models: Sequence[str] = (DEFAULT_MODEL,),
    roi_score: bool = False,
) -> dict[str, Any]:
    """Score one clip with mobilesal in one call; returns the libvmaf-layout result dict.

    With a ``reference`` the result also holds real VMAF (libvmaf, ``vmaf_models`` as ``--model`` takes them)
    and, with ``roi_score``, the saliency-weighted ``vmaf_masked``/``vmaf_roi``/``psnr_y_saliency``.
    ``model_path`` None means ``$VMAF_MOBILESAL_MODEL_PATH``, then the registry's production model.
    """
    from tinysal.features.output import RENDERERS

    if fmt not in RENDERERS:  # checked before the work, not after scoring
        raise TinysalError(f"unknown output format {fmt!r}; choose {', '.join(RENDERERS)}")
    ctx = VmafContext(threads=threads, subsample=subsample)
    params: dict[str, Any] = {"short_side": short_side, "extra_stats": int(extra_stats), "roi_score": int(roi_score)}
    if model_path is not None:
        params["model_path"] = os.fspath(model_path)
    ctx.use_feature("mobilesal", params)
    if reference is not None:
        ctx.use_vmaf(vmaf_models)
    if output:
        from tinysal.fileio import check_writable_target

        check_writable_target(output)
    run = score_files(ctx, reference, path, width, height, pix_fmt, bitdepth, frame_cnt=frame_cnt)
    res = ctx.result(run["fps"])
    if output:
        write_result(output, res, fmt)
    return res


__all__ = ["VmafContext", "score_video", "score_files", "as_frame"]
