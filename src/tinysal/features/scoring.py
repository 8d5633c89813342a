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
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.features.mobilesal import MobileSal, feature_from_params
from tinysal.features.output import POOL_METHODS, pool, write_result
from tinysal.features.vmaf import (
    DEFAULT_MODEL,
    RAW_PIX_FMTS,
    Source,
    VmafFeature,
    VmafJob,
    VmafModel,
    frame_scores,
    model_names,
)
from tinysal.video.readers import YuvFrame, open_video

FEATURES = ("mobilesal",)


def as_frame(obj: Any, bitdepth: int | None = None, pix_fmt: str | None = None) -> YuvFrame:
    """A :class:`YuvFrame`, or a (y, u, v) tuple of numpy planes (4:2:0/4:2:2/4:4:4 inferred from shapes; 8-bit
    from uint8 planes, 10-bit from uint16 ones, unless ``bitdepth`` says)."""
    if isinstance(obj, YuvFrame):
        return obj
    try:
        y, u, v = (np.asarray(p) for p in obj)
    except (TypeError, ValueError):
        raise TinysalError("a picture is a YuvFrame or a (y, u, v) tuple of 2-D numpy arrays") from None
    if y.ndim != 2 or u.shape != v.shape or u.ndim != 2:
        raise TinysalError("planes must be 2-D, with u and v of equal shape")
    if min(y.shape) < 1 or min(u.shape) < 1:
        raise TinysalError(f"planes must not be empty, got luma {y.shape} and chroma {u.shape}")
    if bitdepth is None:  # from the samples' type: uint8 is 8-bit, uint16 10-bit (little values, not 16-bit)
        bitdepth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 10}.get(y.dtype, 0)
    if bitdepth not in (8, 10):
        raise TinysalError(f"planes are uint8 (8-bit) or uint16 (10-bit) code values, got {y.dtype}")
    want = np.uint8 if bitdepth == 8 else np.uint16
    for name, p in (("y", y), ("u", u), ("v", v)):
        # samples are integer code values: floats in [0, 1], negatives or complex numbers would be scored as
        # nonsense without a word, and 16-bit samples above 1023 are not 10-bit video
        if p.dtype != want:
            raise TinysalError(f"plane {name} is {p.dtype}; {bitdepth}-bit planes are {np.dtype(want).name}")
        if bitdepth == 10 and int(p.max()) > 1023:
            raise TinysalError(f"plane {name} holds {int(p.max())}, above the 10-bit maximum 1023")
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
        if not 0 <= threads <= 64:
            raise TinysalError(f"threads must be 0 (all cores) to 64, got {threads}")
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
        #: libvmaf (through FFmpeg) for score_files: models, extra libvmaf features, no_prediction
        self.vmaf_models: list[VmafModel] = []
        self.vmaf_features: list[VmafFeature] = []
        self.no_prediction = False
        #: libvmaf's own pooled values for its metrics (computed at full precision, as libvmaf reports them)
        self.vmaf_pooled: dict[str, dict[str, float]] = {}
        self.vmaf_metrics: list[str] = []

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

    def use_vmaf(
        self,
        models: Sequence[str] = (DEFAULT_MODEL,),
        features: Sequence[tuple[str, dict[str, str]]] = (),
        no_prediction: bool = False,
    ) -> None:
        """Compute real VMAF (libvmaf in FFmpeg) in :func:`score_files`: ``models`` as libvmaf's ``--model``
        (``version=vmaf_v0.6.1``, ``path=model.json``, optional ``:name=``), extra libvmaf ``features`` as
        (name, params), ``no_prediction`` to report features only."""
        self.vmaf_models = [VmafModel.parse(m) for m in models] or [VmafModel.parse(DEFAULT_MODEL)]
        model_names(self.vmaf_models)  # refuse clashing score names now
        self.vmaf_features = [VmafFeature.parse(n, dict(p)) for n, p in features]
        self.no_prediction = no_prediction

    def add_vmaf_metric(self, name: str) -> None:
        """Record a libvmaf-side metric name (these come first in the output, in libvmaf's order)."""
        if name not in self.vmaf_metrics:
            self.vmaf_metrics.append(name)

    @property
    def wants_vmaf(self) -> bool:
        return bool(self.vmaf_models) and (not self.no_prediction or bool(self.vmaf_features))

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
        from tinysal._version import __version__

        # libvmaf's metrics first, in its order, then the saliency ones
        names = [m for m in self.vmaf_metrics if m in self.scores]
        names += [m for m in self.scores if m not in self.vmaf_metrics]
        frames_idx = sorted({i for d in self.scores.values() for i in d})
        frames = [
            {"frameNum": i, "metrics": {m: self.scores[m][i] for m in names if i in self.scores[m]}} for i in frames_idx
        ]
        pooled = {
            m: self.vmaf_pooled.get(m) or {p: pool(list(self.scores[m].values()), p) for p in POOL_METHODS}
            for m in names
            if self.scores[m]
        }
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


def _source(reader: Any, path: str | os.PathLike[str]) -> Source:
    """How FFmpeg should read a file that a tinysal reader opened."""
    from tinysal.video.readers import RawYuvReader

    if isinstance(reader, RawYuvReader):
        return Source(os.fspath(path), (reader.width, reader.height, reader.pix_fmt, reader.bitdepth))
    return Source(os.fspath(path))


@dataclass
class _Pair:
    """The opened inputs of a scoring run and what was decided about them before any work."""

    ref: Any
    dist: Any
    n: int  # frames to score
    frame_skip_ref: int
    frame_skip_dist: int
    cs: str | None  # colour matrix and range of the distorted, and of the reference
    cr: str | None
    ref_cs: str | None
    ref_cr: str | None
    notes: list[str] = field(default_factory=list)
    warn: Callable[[str], None] | None = None

    def note(self, msg: str | None) -> None:
        if msg:
            self.notes.append(msg)
            if self.warn:
                self.warn(msg)


def _open_pair(
    ctx: VmafContext,
    reference: str | os.PathLike[str] | None,
    distorted: str | os.PathLike[str],
    geometry: tuple[int | None, int | None, str | None, int | None],
    frame_cnt: int,
    skips: tuple[int, int],
    warn: Callable[[str], None] | None,
) -> _Pair:
    """Sources: open both clips, check they can be compared, and settle the frame count (the common prefix after
    skips, as libvmaf does) and the colour matrix and range each is read in."""
    frame_skip_ref, frame_skip_dist = skips
    dist = open_video(distorted, *geometry)
    pair = _Pair(None, dist, dist.frame_count - frame_skip_dist, frame_skip_ref, frame_skip_dist, None, None, None,
                 None, warn=warn)  # fmt: skip
    pair.note(getattr(dist, "note", None))
    if reference is not None:
        ref = pair.ref = open_video(reference, *geometry)
        if reference != distorted:
            pair.note(getattr(ref, "note", None))
        if (ref.width, ref.height) != (dist.width, dist.height):
            raise TinysalError(f"reference is {ref.width}x{ref.height} but distorted is {dist.width}x{dist.height}")
        n, n_ref = pair.n, ref.frame_count - frame_skip_ref
        if n_ref != n:
            pair.note(
                f"reference has {max(n_ref, 0)} frames and distorted {max(n, 0)} (after skips): scoring the common "
                f"{max(min(n, n_ref), 0)} frames, as libvmaf does"
            )
        pair.n = min(n, n_ref)
    if frame_cnt:
        pair.n = min(pair.n, frame_cnt)
    if pair.n <= 0:
        raise TinysalError("no frames to score (check --frame_skip_* and --frame_cnt)")
    pair.cs = getattr(dist, "colorspace", None) or ctx.colorspace
    pair.cr = getattr(dist, "range", None) or ctx.color_range
    pair.ref_cs = getattr(pair.ref, "colorspace", None) or ctx.colorspace
    pair.ref_cr = getattr(pair.ref, "range", None) or ctx.color_range
    return pair


def _check_libvmaf_input(ctx: VmafContext, pair: _Pair, roi: MobileSal | None) -> None:
    if (ctx.wants_vmaf or roi) and pair.ref is None:
        raise TinysalError("VMAF and saliency-weighted scores need a reference")
    if not (ctx.wants_vmaf or (roi and roi.roi_score)):
        return
    ref, dist = pair.ref, pair.dist
    for r in (ref, dist):
        if (getattr(r, "pix_fmt", None), getattr(r, "bitdepth", None)) not in RAW_PIX_FMTS:
            raise TinysalError(f"libvmaf needs 8- or 10-bit 4:2:0/4:2:2/4:4:4 input; {r.path} is not")
    if (ref.pix_fmt, ref.bitdepth) != (dist.pix_fmt, dist.bitdepth):
        raise TinysalError(
            f"reference is {ref.pix_fmt} {ref.bitdepth}-bit but distorted is {dist.pix_fmt} {dist.bitdepth}-bit:"
            " libvmaf compares pictures of one format"
        )


def _start_libvmaf(
    ctx: VmafContext,
    pair: _Pair,
    roi: MobileSal | None,
    paths: tuple[str | os.PathLike[str], str | os.PathLike[str]],
    jobs: list[VmafJob],
) -> tuple[VmafJob | None, VmafJob | None]:
    """The libvmaf passes (each an FFmpeg child, appended to ``jobs`` as it starts): on the two files, and with
    ``roi_score`` on the reference against the saliency-masked distorted frames streamed from here."""
    reference, distorted = paths
    ref, dist, n = pair.ref, pair.dist, pair.n
    # libvmaf's n_threads: with roi_score two libvmaf processes run side by side and each gets half (measured at
    # 1080p on 2 cores: as fast as two 2-thread passes, 140 MB less resident memory; docs/benchmarks.md)
    lv_threads = max(1, ctx.threads // 2) if roi and roi.roi_score else ctx.threads
    plain = masked = None
    if ctx.wants_vmaf:
        plain = VmafJob(
            _source(dist, distorted), _source(ref, reference), n, pair.frame_skip_dist, pair.frame_skip_ref,
            ctx.vmaf_models, ctx.vmaf_features, lv_threads, ctx.subsample,
        )  # fmt: skip
        jobs.append(plain.start())
    if roi and roi.roi_score:
        raw = (dist.width, dist.height, dist.pix_fmt, dist.bitdepth)
        masked = VmafJob(
            Source("-", raw), _source(ref, reference), n, 0, pair.frame_skip_ref, ctx.vmaf_models[:1] or (),
            (), lv_threads, ctx.subsample, label="VMAF of the saliency-masked copy",
        )  # fmt: skip
        jobs.append(masked.start())
    return plain, masked


def _frame_work(
    ctx: VmafContext, pair: _Pair, roi: MobileSal | None, masked: VmafJob | None
) -> Callable[[YuvFrame, YuvFrame | None, bool], tuple[list[np.ndarray], dict[str, Any]]]:
    """Features: what a worker computes for one frame: the features' maps of the distorted frame and, with a
    reference-using feature, the saliency-weighted PSNR and the masked frame's bytes for the second libvmaf pass."""

    def compute(fr: YuvFrame, rf: YuvFrame | None, scored: bool) -> tuple[list[np.ndarray], dict[str, Any]]:
        maps = ctx._compute(fr, pair.cs, pair.cr) if scored else []
        extra: dict[str, Any] = {}
        if rf is None or roi is None:
            return maps, extra
        from tinysal.features.mobilesal import frame_bytes_of, masked_frame, roi_alpha, upsampled_map, weighted_psnr_y

        if scored:
            rm = roi.infer(roi.preprocess(rf, pair.ref_cs, pair.ref_cr), rf.width, rf.height)
            smap = upsampled_map(rm, rf.width, rf.height)
            extra["psnr"] = weighted_psnr_y(rf.y, fr.y, smap, fr.bitdepth)
            if masked is not None:
                alpha = roi_alpha(smap, roi.roi_threshold, roi.roi_fade)
                extra["bytes"] = frame_bytes_of(masked_frame(rf, fr, alpha))
        elif masked is not None:  # not scored by libvmaf either: any content will do
            extra["bytes"] = frame_bytes_of(fr)
        return maps, extra

    return compute


def _analyse_frames(
    ctx: VmafContext,
    pair: _Pair,
    roi: MobileSal | None,
    masked: VmafJob | None,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Frames are read here, in order, and computed by a pool of workers; results are recorded (and masked frames
    streamed) in order. At most 2 * workers frames are in flight, so memory stays flat. Returns frames scored."""
    compute = _frame_work(ctx, pair, roi, masked)
    n, workers = pair.n, ctx.threads
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mobilesal") as executor:
        pending: collections.deque[tuple[int, YuvFrame, bool, Future[Any]]] = collections.deque()

        def collect() -> None:
            nonlocal done
            i, fr, scored, fut = pending.popleft()
            maps, extra = fut.result()
            if scored:
                ctx._record(fr, i, maps)
                if "psnr" in extra:
                    ctx.scores.setdefault("psnr_y_saliency", {})[i] = extra["psnr"]
                done += 1
            if masked is not None:
                masked.write(extra["bytes"])
            if progress and scored:
                progress(i + 1, n)

        dframes = pair.dist.frames(pair.frame_skip_dist)
        rframes = pair.ref.frames(pair.frame_skip_ref) if roi is not None else None
        try:
            for i in range(n):
                fr = next(dframes, None)
                rf = next(rframes, None) if rframes is not None else None
                if fr is None or (rframes is not None and rf is None):
                    pair.note(f"the clips ended after {i} of {n} expected frames (truncated?): scored those")
                    break
                scored = not (ctx.subsample > 1 and i % ctx.subsample)
                if not scored and masked is None:
                    continue
                pending.append((i, fr, scored, executor.submit(compute, fr, rf, scored)))
                if len(pending) >= 2 * workers:
                    collect()
            while pending:
                collect()
        except BaseException:
            for *_, fut in pending:
                fut.cancel()
            raise
    return done


def _collect_libvmaf(
    ctx: VmafContext,
    plain: VmafJob | None,
    masked: VmafJob | None,
    roi: MobileSal | None,
    progress: Callable[[int, int], None] | None,
    n: int,
) -> int:
    """Sinks: wait for the libvmaf passes and record their per-frame and pooled scores in ``ctx`` (and the
    saliency-weighted ``vmaf_roi`` of the two passes); returns the frames libvmaf scored."""
    done = 0
    for job, suffix in ((plain, ""), (masked, "_masked")):
        if job is None:
            continue
        log = job.wait()
        scores = frame_scores(log)
        pooled = log.get("pooled_metrics", {})
        if suffix:  # only the model's score of the masked pass
            name = job.names[0]
            ctx.scores[f"{name}_masked"] = scores.get(name, {})
            ctx.add_vmaf_metric(f"{name}_masked")
            continue
        for m, d in scores.items():
            if ctx.no_prediction and m in job.names:
                continue
            ctx.scores[m] = d
            ctx.add_vmaf_metric(m)
            if m in pooled:
                ctx.vmaf_pooled[m] = {k: float(v) for k, v in pooled[m].items()}
        done = len(next(iter(scores.values()), {}))
        if progress and not ctx.features:
            progress(n, n)
    if masked is not None and plain is not None and roi is not None:
        first = plain.names[0]
        w = roi.roi_weight
        vm, mk = ctx.scores.get(first, {}), ctx.scores[f"{first}_masked"]
        ctx.scores[f"{first}_roi"] = {i: (1 - w) * vm[i] + w * mk[i] for i in vm if i in mk}
        ctx.add_vmaf_metric(f"{first}_roi")
    return done


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
    """Score a clip pair with the context's features and, when asked (:meth:`VmafContext.use_vmaf`), real VMAF.

    libvmaf runs in an FFmpeg child process on the two files while saliency runs here, so the two overlap.
    Saliency (``saliency_mean``) is no-reference: it runs on the distorted frames. ``roi_score`` also analyses
    the reference frames and streams a masked copy of the distorted clip into a second libvmaf pass.
    Returns facts about the run; results stay in ``ctx``."""
    if not ctx.features and not ctx.wants_vmaf:
        raise TinysalError("nothing to compute: use a feature (mobilesal) or VMAF")
    pair = _open_pair(ctx, reference, distorted, (width, height, pix_fmt, bitdepth), frame_cnt,
                      (frame_skip_ref, frame_skip_dist), warn)  # fmt: skip
    roi = next((f for f in ctx.features if f.uses_reference), None)
    _check_libvmaf_input(ctx, pair, roi)
    t0 = time.perf_counter()
    done = 0
    jobs: list[VmafJob] = []
    try:
        plain, masked = _start_libvmaf(ctx, pair, roi, (reference, distorted), jobs)
        if ctx.features:
            done = _analyse_frames(ctx, pair, roi, masked, progress)
        elif plain is not None and progress:  # VMAF alone: follow FFmpeg's progress reports
            while not plain.poll(0.5):
                progress(min(plain.frames_done(), pair.n), pair.n)
        vmaf_done = _collect_libvmaf(ctx, plain, masked, roi, progress, pair.n)
        if not ctx.features:
            done = vmaf_done
    finally:
        for job in jobs:
            job.close()
    dist = pair.dist
    if not ctx.features:
        ctx.width, ctx.height = dist.width, dist.height
    elapsed = time.perf_counter() - t0
    return {
        "frames_scored": done,
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
