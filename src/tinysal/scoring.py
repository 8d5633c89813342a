"""The scoring context: frames in, per-frame metrics collected, pooled like libvmaf.

Mirrors libvmaf's C usage::

    ctx = VmafContext(threads=2)
    ctx.use_feature("mobilesal", {"model_path": "model.onnx"})
    for i, (ref, dist) in enumerate(frames):
        ctx.read_pictures(ref, dist, i)
    ctx.score_pooled("saliency_mean", "mean")

or, in one call, ``tinysal.score_video("clip.mp4")``.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.mobilesal import MobileSal, feature_from_params
from tinysal.output import POOL_METHODS, pool, write_result
from tinysal.video import YuvFrame, open_video

FEATURES = ("mobilesal",)


def as_frame(obj: Any, bitdepth: int = 8, pix_fmt: str | None = None) -> YuvFrame:
    """A :class:`YuvFrame`, or a (y, u, v) tuple of numpy planes (4:2:0/4:2:2/4:4:4 inferred from shapes)."""
    if isinstance(obj, YuvFrame):
        return obj
    try:
        y, u, v = (np.asarray(p) for p in obj)
    except (TypeError, ValueError):
        raise TinysalError("a picture is a YuvFrame or a (y, u, v) tuple of 2-D numpy arrays") from None
    if y.ndim != 2 or u.shape != v.shape or u.ndim != 2:
        raise TinysalError("planes must be 2-D, with u and v of equal shape")
    h, w = y.shape
    ch, cw = u.shape
    fmt = pix_fmt or {(h, w): "444", (h, (w + 1) // 2): "422", ((h + 1) // 2, (w + 1) // 2): "420"}.get((ch, cw))
    if fmt is None:
        raise TinysalError(f"chroma planes {u.shape} do not fit luma {y.shape} as 4:2:0, 4:2:2 or 4:4:4")
    return YuvFrame(y, u, v, bitdepth, fmt)


class VmafContext:
    """Collects per-frame metrics from the features in use and pools them.

    ``threads`` is how many frames :func:`score_files` scores side by side (0 = one per core), each on one ONNX
    Runtime thread. :meth:`read_pictures` scores the frame it is given in the caller's thread, so with the default
    it runs single-threaded; ``VmafContext(threads=1)`` instead gives each frame every core.
    """

    def __init__(
        self, threads: int = 0, subsample: int = 1, colorspace: str = "bt709", color_range: str = "limited"
    ) -> None:
        if subsample < 1:
            raise TinysalError("subsample must be >= 1")
        if threads < 0:
            raise TinysalError("threads must be >= 0 (0 = all cores)")
        #: frames scored in parallel by score_files, each on one ONNX Runtime thread: for a network this small,
        #: N single-threaded runs side by side beat one run on N threads (see docs/benchmarks.md)
        self.threads = threads or (os.cpu_count() or 1)
        self.subsample = subsample
        self.colorspace = colorspace
        self.color_range = color_range
        self.features: list[MobileSal] = []
        self.scores: dict[str, dict[int, float]] = {}
        #: called as ``map_sink(index, frame, map, feature)`` after each frame (maps are not kept in memory)
        self.map_sink: Callable[[int, YuvFrame, np.ndarray, MobileSal], None] | None = None
        self.width = self.height = 0

    # -- set-up ---------------------------------------------------------------------------------------
    def use_feature(self, name: str, params: dict[str, Any] | None = None) -> MobileSal:
        """Register a feature by name with its parameters (``model_path``, ``short_side``, ...)."""
        if name not in FEATURES:
            raise TinysalError(f"unknown feature {name!r}; available: {', '.join(FEATURES)}")
        feat = feature_from_params({k: str(v) for k, v in (params or {}).items()}, threads=1 if self.threads > 1 else 0)
        self.features.append(feat)
        for m in feat.metric_names:
            self.scores.setdefault(m, {})
        return feat

    # -- frames ---------------------------------------------------------------------------------------
    def read_pictures(self, ref: Any, dist: Any, index: int) -> None:
        """Score one frame pair. Saliency is no-reference: only ``dist`` is analysed (``ref`` may be None)."""
        if not self.features:
            raise TinysalError("no feature in use: call use_feature first")
        if self.subsample > 1 and index % self.subsample:
            return
        frame = as_frame(dist)
        self._score(frame, index)

    def _compute(
        self, frame: YuvFrame, colorspace: str | None = None, color_range: str | None = None
    ) -> list[np.ndarray]:
        """Each feature's inference-size map for one frame (thread-safe: no context state is touched)."""
        cs, cr = colorspace or self.colorspace, color_range or self.color_range
        return [feat.infer(feat.preprocess(frame, cs, cr), frame.width, frame.height) for feat in self.features]

    def _record(self, frame: YuvFrame, index: int, maps: list[np.ndarray]) -> None:
        self.width, self.height = frame.width, frame.height
        for feat, m in zip(self.features, maps):
            for k, v in feat.statistics(m, frame.width, frame.height).items():
                self.scores[k][index] = v
            if self.map_sink is not None:
                self.map_sink(index, frame, m, feat)

    def _score(
        self, frame: YuvFrame, index: int, colorspace: str | None = None, color_range: str | None = None
    ) -> None:
        self._record(frame, index, self._compute(frame, colorspace, color_range))

    # -- results --------------------------------------------------------------------------------------
    def score_at_index(self, metric: str, index: int) -> float:
        try:
            return self.scores[metric][index]
        except KeyError:
            raise TinysalError(f"no {metric!r} score for frame {index}") from None

    def score_pooled(
        self, metric: str, method: str = "mean", start: int | None = None, end: int | None = None
    ) -> float:
        """Pool a metric over frames [start, end] (inclusive, like libvmaf) with min/max/mean/harmonic_mean."""
        if metric not in self.scores:
            raise TinysalError(f"unknown metric {metric!r}; have {sorted(self.scores)}")
        vals = [
            v
            for i, v in sorted(self.scores[metric].items())
            if (start is None or i >= start) and (end is None or i <= end)
        ]
        if not vals:
            raise TinysalError(f"no frames scored for {metric!r}")
        return pool(vals, method)

    def result(self, fps: float = float("nan")) -> dict[str, Any]:
        """The libvmaf-layout result dict (what the writers render)."""
        from tinysal import __version__

        frames_idx = sorted({i for d in self.scores.values() for i in d})
        frames = [
            {"frameNum": i, "metrics": {m: self.scores[m][i] for m in self.scores if i in self.scores[m]}}
            for i in frames_idx
        ]
        pooled = {m: {p: pool(list(d.values()), p) for p in POOL_METHODS} for m, d in self.scores.items() if d}
        return {
            "version": f"tinysal-{__version__}",
            "fps": fps,
            "frames": frames,
            "pooled_metrics": pooled,
            "aggregate_metrics": {},
            "width": self.width,
            "height": self.height,
        }

    def write_output(self, path: str | os.PathLike[str], fmt: str = "json", fps: float = float("nan")) -> None:
        write_result(path, self.result(fps), fmt)


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
) -> dict[str, Any]:
    """Stream the distorted clip through ``ctx`` (the reference only fixes the frame count, as saliency is
    no-reference). Returns facts about the run; results stay in ``ctx``."""
    if not ctx.features:
        raise TinysalError("no feature in use: call use_feature first")
    dist = open_video(distorted, width, height, pix_fmt, bitdepth)
    n = dist.frame_count - frame_skip_dist
    notes = []
    if reference is not None:
        ref = open_video(reference, width, height, pix_fmt, bitdepth)
        if (ref.width, ref.height) != (dist.width, dist.height):
            raise TinysalError(f"reference is {ref.width}x{ref.height} but distorted is {dist.width}x{dist.height}")
        n_ref = ref.frame_count - frame_skip_ref
        if n_ref != n:
            msg = (
                f"reference has {n_ref} frames and distorted {n} (after skips): scoring the common "
                f"{min(n, n_ref)} frames, as libvmaf does"
            )
            notes.append(msg)
            if warn:
                warn(msg)
        n = min(n, n_ref)
    if frame_cnt:
        n = min(n, frame_cnt)
    if n <= 0:
        raise TinysalError("no frames to score (check --frame_skip_* and --frame_cnt)")
    feat = ctx.features[0]
    # Media colour metadata (Y4M/FFmpeg) applies unless the feature was given explicit colour options.
    cs = getattr(dist, "colorspace", None) or ctx.colorspace
    cr = getattr(dist, "range", None) or ctx.color_range
    workers = ctx.threads
    t0 = time.perf_counter()
    done = 0
    # Frames are read here, in order, and scored by a pool of workers; results are recorded in order.
    # At most 2 * workers frames are in flight, so memory stays flat in clip length.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mobilesal") as executor:
        pending: collections.deque[tuple[int, YuvFrame, Future[list[np.ndarray]]]] = collections.deque()

        def collect() -> None:
            nonlocal done
            i, fr, fut = pending.popleft()
            ctx._record(fr, i, fut.result())
            done += 1
            if progress:
                progress(i + 1, n)

        try:
            for i, fr in enumerate(dist.frames(frame_skip_dist)):
                if i >= n:
                    break
                if ctx.subsample > 1 and i % ctx.subsample:
                    continue
                pending.append((i, fr, executor.submit(ctx._compute, fr, cs, cr)))
                if len(pending) >= 2 * workers:
                    collect()
            while pending:
                collect()
        except BaseException:
            for _, _, fut in pending:
                fut.cancel()
            raise
    elapsed = time.perf_counter() - t0
    return {
        "frames_scored": done,
        "frames": n,
        "seconds": elapsed,
        "fps": done / elapsed if elapsed > 0 else float("nan"),
        "width": dist.width,
        "height": dist.height,
        "source_fps": getattr(dist, "fps", None),
        "colorspace": feat.colorspace or cs,
        "range": feat.color_range or cr,
        "notes": notes,
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
) -> dict[str, Any]:
    """Score one clip with mobilesal in one call; returns the libvmaf-layout result dict.

    ``model_path`` None means ``$VMAF_MOBILESAL_MODEL_PATH``, then the registry's production model.
    """
    ctx = VmafContext(threads=threads, subsample=subsample)
    params: dict[str, Any] = {"short_side": short_side, "extra_stats": int(extra_stats)}
    if model_path is not None:
        params["model_path"] = os.fspath(model_path)
    ctx.use_feature("mobilesal", params)
    if output:
        from tinysal.fileio import check_writable_target

        check_writable_target(output)
    run = score_files(ctx, None, path, width, height, pix_fmt, bitdepth, frame_cnt=frame_cnt)
    res = ctx.result(run["fps"])
    if output:
        write_result(output, res, fmt)
    return res


__all__ = ["VmafContext", "score_video", "score_files", "as_frame"]
