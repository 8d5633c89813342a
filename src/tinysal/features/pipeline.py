"""The stages of scoring a pair of files, in order: sources (open both clips, check they compare, settle the frame
count and colour), the libvmaf passes (FFmpeg children on the files, and on the saliency-masked copy for
``roi_score``), the per-frame features (a pool that reads, computes and records in order) and the sinks (libvmaf's
scores into the context). ``scoring.score_files`` runs them; the batch runner and the one-decode path reuse them."""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.features.context import VmafContext
from tinysal.features.mobilesal import MobileSal
from tinysal.features.vmaf import RAW_PIX_FMTS, RoiMerge, Source, Tap, VmafJob, frame_scores
from tinysal.video.readers import YuvFrame, open_video


def source_of(reader: Any, path: str | os.PathLike[str]) -> Source:
    """How FFmpeg should read a file that a tinysal reader opened."""
    from tinysal.video.readers import RawYuvReader

    if isinstance(reader, RawYuvReader):
        return Source(os.fspath(path), (reader.width, reader.height, reader.pix_fmt, reader.bitdepth))
    return Source(os.fspath(path))


@dataclass
class Pair:
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
    #: (width, height, scaler) the distorted is scaled to for libvmaf when its size is not the reference's
    scale: tuple[int, int, str] | None = None

    def note(self, msg: str | None) -> None:
        if msg:
            self.notes.append(msg)
            if self.warn:
                self.warn(msg)


def open_pair(
    ctx: VmafContext,
    reference: str | os.PathLike[str] | None,
    distorted: str | os.PathLike[str],
    geometry: tuple[int | None, int | None, str | None, int | None],
    frame_cnt: int,
    skips: tuple[int, int],
    warn: Callable[[str], None] | None,
    scaler: str | None = "bicubic",
) -> Pair:
    """Sources: open both clips, check they can be compared, and settle the frame count (the common prefix after
    skips, as libvmaf does) and the colour matrix and range each is read in. A distorted of another size is scaled
    to the reference's with ``scaler`` for libvmaf (None: refused); a frame-rate conversion is refused
    (``_check_rates``)."""
    frame_skip_ref, frame_skip_dist = skips
    dist = open_video(distorted, *geometry)
    pair = Pair(None, dist, dist.frame_count - frame_skip_dist, frame_skip_ref, frame_skip_dist, None, None, None,
                 None, warn=warn)  # fmt: skip
    pair.note(getattr(dist, "note", None))
    if reference is not None:
        ref = pair.ref = open_video(reference, *geometry)
        if reference != distorted:
            pair.note(getattr(ref, "note", None))
        _check_rates(ref, dist, pair)
        if (ref.width, ref.height) != (dist.width, dist.height):
            sizes = f"reference is {ref.width}x{ref.height} but distorted is {dist.width}x{dist.height}"
            if scaler is None:
                raise TinysalError(f"{sizes} (scaling is off)")
            pair.scale = (ref.width, ref.height, scaler)
            pair.note(f"{sizes}: the distorted is scaled to {ref.width}x{ref.height} ({scaler}) for VMAF")
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
    if pair.ref is not None and ctx.wants_vmaf and pair.ref_cr != pair.cr:
        # libvmaf compares code values: a full-range picture and the same picture in limited range differ
        # everywhere. Scored as decoded, as libvmaf's own tool on the raw planes would; said, so nobody mistakes
        # the range difference for coding loss
        pair.note(f"reference is {pair.ref_cr} range and distorted {pair.cr} range: VMAF compares the planes as "
                  "decoded, so the range difference counts as distortion; convert one to the other's range first "
                  "for a like-for-like score")  # fmt: skip
    return pair


def _check_rates(ref: Any, dist: Any, pair: Pair) -> None:
    """Two clips whose declared frame rates differ: if they hold the same number of frames, the rate is a label on
    the same pictures (re-muxed, or a raw file given a rate) and they are scored frame by frame, as libvmaf's tool
    does; if not, one was converted to another rate (frames dropped or repeated over the same duration) and pairing
    by index would compare unrelated pictures: refused. Raw YUV carries no rate and is not checked."""
    a, b = getattr(ref, "fps", None), getattr(dist, "fps", None)
    if not (a and b) or abs(a - b) <= 0.001 * max(a, b):
        return
    na, nb = ref.frame_count, dist.frame_count
    if abs(na - nb) <= 1:
        pair.note(f"reference is {a:.6g} fps and distorted {b:.6g} fps, with the same frame count: scored frame by "
                  "frame")  # fmt: skip
        return
    raise TinysalError(
        f"reference is {a:.6g} fps ({na} frames) but distorted is {b:.6g} fps ({nb} frames): different frame rates "
        "pair unrelated frames; convert the distorted to the reference's rate first (ffmpeg -i DIST -r RATE ...)"
    )


def check_libvmaf_input(ctx: VmafContext, pair: Pair, roi: MobileSal | None) -> None:
    if (ctx.wants_vmaf or roi) and pair.ref is None:
        raise TinysalError("VMAF and saliency-weighted scores need a reference")
    if roi is not None and pair.scale is not None and plan(ctx, pair, roi).merge is None:
        w, h, _ = pair.scale
        raise TinysalError(
            f"the distorted is {pair.dist.width}x{pair.dist.height}, the reference {w}x{h}: roi_score scales it to the "
            "reference's size as VMAF does only beside libvmaf at a reduced inference size (short_side > 0) without "
            "saliency maps written out; psnr_saliency alone compares the clips pixel by pixel"
        )
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


#: ``TINYSAL_ONE_DECODE=0`` sends every frame through the Python readers (the reference the one-decode route is
#: tested and benchmarked against)
ONE_DECODE_ENV = "TINYSAL_ONE_DECODE"


def saliency_tap(ctx: VmafContext, pair: Pair, roi: MobileSal | None) -> Tap | None:
    """The one-decode route for the saliency feature, when it applies: the FFmpeg child that decodes the distorted
    file (for libvmaf, or for saliency alone) also scales its frames to the model's input grid and pipes them here,
    so Python never reads, converts or resizes a full-size plane. It applies to one ``mobilesal`` feature at a
    reduced inference size (``short_side`` > 0); with ``roi_score`` beside libvmaf the tap carries the reference's
    small frames too and the masked copy is built in FFmpeg (:class:`RoiMerge`). What needs full-size pixels here
    (``psnr_saliency`` without ``roi_score`` or without libvmaf, saliency maps or contact sheets written out) takes
    the Python path."""
    from tinysal.model.inputs import target_size

    if os.environ.get(ONE_DECODE_ENV, "1") == "0" or ctx.map_sink is not None:
        return None
    if len(ctx.features) != 1 or ctx.features[0].short_side <= 0:
        return None
    if roi is not None and not (roi.roi_score and ctx.wants_vmaf):
        return None
    dist = pair.dist
    tw, th = target_size(dist.width, dist.height, ctx.features[0].short_side)
    # at the frame's own size the Python path repeats chroma samples (no resize): so does the tap
    scaler = "neighbor" if (tw, th) == (dist.width, dist.height) else "bilinear+accurate_rnd"
    # Pillow's reducing_gap=2 on the Python path: a box reduction by int(ratio / 2) per axis, then bilinear. The tap
    # does the same in two steps (the box step straight to 4:4:4, so the chroma planes are reduced by their own
    # factor as Pillow reduces each plane): at 1080p and 2160p it halves the maps' difference from the Python path
    # against one bilinear step (docs/benchmarks.md)
    kx, ky = max(1, int(dist.width / tw / 2.0)), max(1, int(dist.height / th / 2.0))
    pre = (-(-dist.width // kx), -(-dist.height // ky)) if scaler != "neighbor" and (kx > 1 or ky > 1) else None
    return Tap(tw, th, dist.bitdepth, ctx.subsample, scaler, pre, reference=roi is not None)


@dataclass(frozen=True)
class ScorePlan:
    """How a pair is scored, decided once by :func:`plan` and read by every stage (the children started, the
    frames analysed, the masked pass fed, the logs collected) instead of each deciding again.

    Routes: libvmaf on the two files (``libvmaf``); the saliency model fed small frames from an FFmpeg child
    (``tap``: libvmaf's own child, or one that only decodes when there is no libvmaf) or full frames read in
    Python (no tap); ``roi_score``'s masked pass built in FFmpeg from the reference's maps (``merge``) or fed
    masked frames from Python (``masked == "python"``)."""

    libvmaf: bool
    saliency: bool  # the context has a saliency feature
    tap: Tap | None
    masked: str | None  # None | "merge" | "python"
    merge: RoiMerge | None
    lv_threads: int

    @property
    def route(self) -> str:
        """The route in words (the result's info says which ran)."""
        parts = ["libvmaf"] if self.libvmaf else []
        if self.saliency:
            parts.append("saliency from the FFmpeg child's small frames" if self.tap else "saliency from Python frames")
        if self.masked:
            parts.append("masked copy built in FFmpeg" if self.masked == "merge" else "masked copy from Python")
        return " + ".join(parts)


def plan(ctx: VmafContext, pair: Pair, roi: MobileSal | None) -> ScorePlan:
    """The scoring route for this pair and context (see :class:`ScorePlan`)."""
    tap = saliency_tap(ctx, pair, roi) if ctx.features else None
    roi_pass = bool(roi and roi.roi_score)
    merge = None
    if roi_pass and tap is not None:  # at the reference's size: a distorted of another size is scaled to it first
        ref, dist = pair.ref, pair.dist
        merge = RoiMerge(ref.width, ref.height, dist.pix_fmt, dist.bitdepth, tap.width, tap.height,
                         roi.roi_threshold, roi.roi_fade)  # fmt: skip
    # libvmaf's n_threads: with roi_score two libvmaf processes run side by side and each gets half (measured at
    # 1080p on 2 cores: as fast as two 2-thread passes, 140 MB less resident memory; docs/benchmarks.md)
    lv_threads = max(1, ctx.threads // 2) if roi_pass else ctx.threads
    masked = ("merge" if merge is not None else "python") if roi_pass else None
    return ScorePlan(ctx.wants_vmaf, bool(ctx.features), tap, masked, merge, lv_threads)


def tap_frames(job: VmafJob, pair: Pair) -> Iterator[tuple[int, YuvFrame, YuvFrame | None]]:
    """(index, small 4:4:4 distorted frame, small reference frame or None) from a job's tap, as :func:`_frames`
    gives full-size ones."""
    tap = job.tap
    assert tap is not None
    dt = np.uint8 if tap.bitdepth == 8 else np.dtype("<u2")
    expected = len(range(0, pair.n, tap.subsample))
    k = -1
    for k, buf in enumerate(job.tap_frames()):
        # vstack stacks plane by plane: Y of the distorted then of the reference, then U, then V
        planes = np.frombuffer(buf, dtype=dt).reshape(3, 1 + tap.reference, tap.height, tap.width)
        small = [YuvFrame(planes[0, j], planes[1, j], planes[2, j], tap.bitdepth, "444") for j in range(len(planes[0]))]
        yield k * tap.subsample, small[0], small[1] if tap.reference else None
    if k + 1 < expected:
        pair.note(f"the clips ended after {(k + 1) * tap.subsample} of {pair.n} expected frames (truncated?): "
                  "scored those")  # fmt: skip


def _preflight(pair: Pair, paths: tuple[str | os.PathLike[str], str | os.PathLike[str]], tap: Tap | None) -> None:
    """What the Python readers would have found before the FFmpeg children start, in words naming the file (FFmpeg
    says only "Error opening input files"): an input this process may not read; and, on the tap route, raw 10-bit
    data whose first frame holds samples above 1023 (16-bit or big-endian data given as 10-bit: the Python route
    checks every frame it reads; the tap's frames are already scaled, so the first full-size frame is checked here)."""
    from tinysal.video.readers import RawYuvReader

    for path in paths:
        if path is None or os.fspath(path) == "-":  # no reference (saliency alone), or frames on stdin
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise TinysalError(f"{os.fspath(path)}: cannot read: {e.strerror or e}") from None
    if tap is not None and isinstance(pair.dist, RawYuvReader) and pair.dist.bitdepth == 10:
        next(pair.dist.frames(pair.frame_skip_dist), None)


def start_libvmaf(
    ctx: VmafContext,
    pair: Pair,
    how: ScorePlan,
    paths: tuple[str | os.PathLike[str], str | os.PathLike[str]],
    jobs: list[VmafJob],
) -> tuple[VmafJob | None, VmafJob | None, VmafJob | None]:
    """The FFmpeg children the plan calls for (each appended to ``jobs`` as it starts): libvmaf on the two files,
    and with ``roi_score`` on the reference against the saliency-masked distorted. The third is the job whose tap
    feeds the saliency feature: the libvmaf job itself, or, without libvmaf, a child that only decodes and scales;
    None when the feature reads frames in Python."""
    reference, distorted = paths
    ref, dist, n = pair.ref, pair.dist, pair.n
    _preflight(pair, paths, how.tap)
    plain = masked = None
    if how.libvmaf:
        plain = VmafJob(
            source_of(dist, distorted), source_of(ref, reference), n, pair.frame_skip_dist, pair.frame_skip_ref,
            ctx.vmaf_models, ctx.vmaf_features, how.lv_threads, ctx.subsample, scale=pair.scale, tap=how.tap,
            xpsnr=ctx.xpsnr,
        )  # fmt: skip
        jobs.append(plain.start())
    elif how.tap is not None:
        tapped = VmafJob(source_of(dist, distorted), None, n, pair.frame_skip_dist, tap=how.tap, label="saliency")
        jobs.append(tapped.start())
        return None, None, tapped
    if how.masked == "merge":  # one decode: the masked copy is built in FFmpeg
        masked = VmafJob(
            source_of(dist, distorted), source_of(ref, reference), n, pair.frame_skip_dist, pair.frame_skip_ref,
            ctx.vmaf_models[:1] or (), (), how.lv_threads, ctx.subsample, label="VMAF of the saliency-masked copy",
            merge=how.merge, scale=pair.scale,
        )  # fmt: skip
        jobs.append(masked.start())
    elif how.masked == "python":
        raw = (dist.width, dist.height, dist.pix_fmt, dist.bitdepth)
        masked = VmafJob(
            Source("-", raw), source_of(ref, reference), n, 0, pair.frame_skip_ref, ctx.vmaf_models[:1] or (),
            (), how.lv_threads, ctx.subsample, label="VMAF of the saliency-masked copy",
        )  # fmt: skip
        jobs.append(masked.start())
    return plain, masked, plain if how.tap is not None else None


def frame_work(
    ctx: VmafContext, pair: Pair, roi: MobileSal | None, masked: VmafJob | None, how: ScorePlan
) -> Callable[[YuvFrame, YuvFrame | None, bool], tuple[list[np.ndarray], dict[str, Any]]]:
    """Features: what a worker computes for one frame: the features' maps of the distorted frame and, with a
    reference-using feature, the saliency-weighted PSNR and the masked frame's bytes for the second libvmaf pass
    (on the one-decode route, small frames in: the reference's map for FFmpeg to build both from, and its mean)."""
    merge = how.merge if masked is not None else None
    W, H = (merge.width, merge.height) if merge is not None else (pair.dist.width, pair.dist.height)

    def compute(fr: YuvFrame, rf: YuvFrame | None, scored: bool) -> tuple[list[np.ndarray], dict[str, Any]]:
        maps = ctx.compute_maps(fr, pair.cs, pair.cr) if scored else []
        extra: dict[str, Any] = {}
        if rf is None or roi is None:
            return maps, extra
        if merge is not None:  # rf is the tap's small reference frame
            from tinysal.features.mobilesal import METRIC

            rm = roi.infer(roi.preprocess(rf, pair.ref_cs, pair.ref_cr), W, H)
            wmean = roi.statistics(rm, W, H)[METRIC]
            weighted = wmean * W * H > 1e-9  # else every pixel weighs 1 (weighted_psnr_y's rule)
            extra["wmean"] = wmean if weighted else 1.0  # the PSNR's denominator, mean(w)
            extra["bytes"] = merge_maps(rm, weighted)
            return maps, extra
        from tinysal.features.mobilesal import masked_frame, roi_alpha, upsampled_map, weighted_psnr_y
        from tinysal.video.readers import frame_bytes_of

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


def merge_maps(m: np.ndarray, weighted: bool = True) -> bytes:
    """One frame of a :class:`RoiMerge`'s map stream: the map above the PSNR's weights, 16-bit. A map of zeros
    weighs every pixel alike in the PSNR (ones below), as :func:`weighted_psnr_y` does."""
    q = np.rint(np.clip(m, 0.0, 1.0) * 65535.0).astype("<u2")
    return np.concatenate([q, q if weighted else np.full_like(q, 65535)]).tobytes()


def _frames(pair: Pair, with_reference: bool) -> Iterator[tuple[int, YuvFrame, YuvFrame | None]]:
    """(index, distorted frame, reference frame or None) for the frames to score; a clip that ends early is noted
    and scored as far as it goes."""
    dframes = pair.dist.frames(pair.frame_skip_dist)
    rframes = pair.ref.frames(pair.frame_skip_ref) if with_reference else None
    for i in range(pair.n):
        fr = next(dframes, None)
        rf = next(rframes, None) if rframes is not None else None
        if fr is None or (rframes is not None and rf is None):
            pair.note(f"the clips ended after {i} of {pair.n} expected frames (truncated?): scored those")
            return
        yield i, fr, rf


class _MaskedFeed:
    """What the masked pass reads on stdin, frame by frame in order: the masked frames (Python route), or the
    reference's maps (:class:`RoiMerge`), where frames the tap skipped (``--subsample``) get a map of zeros (alpha
    0: the masked copy is the reference there, not scored by libvmaf either). Without a masked pass, nothing."""

    def __init__(self, job: VmafJob | None) -> None:
        self.job, self.fed = job, 0
        m = job.merge if job is not None else None
        self.filler = merge_maps(np.zeros((m.map_height, m.map_width), np.float32)) if m is not None else None

    def put(self, i: int, extra: dict[str, Any]) -> None:
        if self.job is None:
            return
        if self.filler is not None:
            self.finish(i)
            self.job.weights[i] = extra["wmean"]
        self.job.write(extra["bytes"])
        self.fed = i + 1

    def finish(self, n: int) -> None:
        """Fill up to frame ``n`` (merge route; the Python route is given every frame)."""
        while self.job is not None and self.filler is not None and self.fed < n:
            self.job.write(self.filler)
            self.fed += 1


def analyse_frames(
    ctx: VmafContext,
    pair: Pair,
    roi: MobileSal | None,
    masked: VmafJob | None,
    progress: Callable[[int, int], None] | None,
    how: ScorePlan,
    tapped: VmafJob | None = None,
) -> int:
    """Frames are read here, in order (from the files, or small ones from ``tapped``'s tap), and computed by a pool
    of workers; results are recorded (and masked frames streamed) in order. At most 2 * workers frames are in
    flight, so memory stays flat. Returns frames scored."""
    compute = frame_work(ctx, pair, roi, masked, how)
    size = (pair.dist.width, pair.dist.height)  # the statistics are of the map as resized to the frame
    frames = tap_frames(tapped, pair) if tapped is not None else _frames(pair, roi is not None)
    n, workers = pair.n, ctx.threads
    done = 0
    feed = _MaskedFeed(masked)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mobilesal") as executor:
        pending: collections.deque[tuple[int, YuvFrame, bool, Future[Any]]] = collections.deque()

        def collect() -> None:
            nonlocal done
            i, fr, scored, fut = pending.popleft()
            maps, extra = fut.result()
            if scored:
                ctx.record_frame(fr, i, maps, size)
                if "psnr" in extra:
                    ctx.scores.setdefault("psnr_y_saliency", {})[i] = extra["psnr"]
                done += 1
            feed.put(i, extra)
            if progress and scored:
                progress(i + 1, n)

        try:
            for i, fr, rf in frames:
                scored = not (ctx.subsample > 1 and i % ctx.subsample)
                if not scored and masked is None:
                    continue
                pending.append((i, fr, scored, executor.submit(compute, fr, rf, scored)))
                if len(pending) >= 2 * workers:
                    collect()
            while pending:
                collect()
            feed.finish(n)
        except BaseException:
            for *_, fut in pending:
                fut.cancel()
            raise
    return done


def collect_libvmaf(
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
            ctx.record_metric(f"{name}_masked", scores.get(name, {}))
            if job.merge is not None:  # the weighted PSNR came from the same child
                from tinysal.features.mobilesal import psnr_of_mse

                ctx.scores["psnr_y_saliency"] = {
                    i: psnr_of_mse(job.weighted_mse[i] / w, job.merge.bitdepth)
                    for i, w in sorted(job.weights.items()) if i in job.weighted_mse
                }  # fmt: skip
            continue
        for m, d in scores.items():
            if ctx.no_prediction and m in job.names:
                continue
            ctx.record_metric(m, d, pooled.get(m))
        done = len(next(iter(scores.values()), {}))
        if progress and not ctx.features:
            progress(n, n)
    if masked is not None and plain is not None and roi is not None:
        first = plain.names[0]
        w = roi.roi_weight
        vm, mk = ctx.scores.get(first, {}), ctx.scores[f"{first}_masked"]
        ctx.record_metric(f"{first}_roi", {i: (1 - w) * vm[i] + w * mk[i] for i in vm if i in mk})
    return done
