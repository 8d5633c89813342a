"""Shot by shot: the cuts of a title (PySceneDetect's ``ContentDetector``), one shot's search-and-encode (the
batch task ``shot``), and the join of the shots' encodes into one file without re-encoding.

**Detection.** PySceneDetect's ``ContentDetector`` (its default threshold 27 on the HSV + luma frame difference,
``min_scene_len`` the minimum shot length) is fed the frames tinysal's own readers decode (raw YUV, Y4M and every
container alike, 8 or 10 bits), downscaled to ~256 pixels wide as PySceneDetect's own scene manager does. Chosen
over FFmpeg's ``scdet`` by measurement (bench/bench_auto_encode.py, docs/benchmarks.md): on a title cut from 16
DAVIS sequences (15 cuts, fast camera motion) ContentDetector found 14 with 1 false cut, ``scdet`` at its default
threshold 11 with 1 false and fired twice on many cuts at lower thresholds; both were exact on bikes.mp4.

**A shot's job.** crf-search on the shot's own frames (whole when shorter than the samples together, samples when
longer), the shot encoded at the answer (a keyframe at its first frame: each shot is an encode of its own), then
measured: VMAF (and ``vmaf_roi``) of that encode against the shot's frames. A target the shot cannot reach gets
the best reachable CRF, and the shot says so (``reached`` false).

**The join.** The shots' packets are copied into one file at the input's own frame times (a variable-rate input
keeps them), with the input's audio, subtitles, metadata and tags kept as ``encode`` keeps them, written beside
OUTPUT and renamed when complete. The codec's ``join_params`` (x264 ``stitchable``, x265 without its info SEI)
make every shot's stream headers identical, so one header serves the whole file; the join checks they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinysal.encode.codecs import CODECS
from tinysal.encode.encoder import LAYOUTS, EncodeOptions, check_codec
from tinysal.encode.search import SearchTargets
from tinysal.errors import TinysalError

#: ContentDetector's own default threshold
SCENE_THRESHOLD = 27.0
#: frames are downscaled to about this width before detection (PySceneDetect's scene manager does the same)
DETECT_WIDTH = 256


def _small_bgr(fr: Any, size: tuple[int, int]) -> np.ndarray:
    """A YuvFrame as the small 8-bit BGR image PySceneDetect's detectors take."""
    import cv2

    shift = fr.bitdepth - 8
    planes = []
    for p in (fr.y, fr.u, fr.v):
        a = (p >> shift).astype(np.uint8) if shift else p.astype(np.uint8, copy=False)
        planes.append(cv2.resize(a, size, interpolation=cv2.INTER_AREA))
    return cv2.cvtColor(np.dstack(planes), cv2.COLOR_YUV2BGR)


class ShotDetector:
    """Frames in, cuts out: ``add(i, frame)`` for each frame in order, then ``cuts()`` (the first frame of every
    shot after the first)."""

    def __init__(self, width: int, height: int, fps: float, min_frames: int, threshold: float = SCENE_THRESHOLD):
        from scenedetect import ContentDetector

        self.fps = fps
        w = min(width, DETECT_WIDTH)
        self.size = (w, max(2, round(height * w / width)))
        self.det = ContentDetector(threshold=threshold, min_scene_len=max(1, min_frames))
        self.found: list[int] = []
        self.last = -1

    def add(self, i: int, fr: Any) -> None:
        from scenedetect import FrameTimecode

        self.last = i
        self.found += [c.frame_num for c in self.det.process_frame(FrameTimecode(i, fps=self.fps),
                                                                   _small_bgr(fr, self.size))]  # fmt: skip

    def cuts(self) -> list[int]:
        from scenedetect import FrameTimecode

        post = getattr(self.det, "post_process", None)
        if post is not None and self.last >= 0:
            self.found += [c.frame_num for c in post(FrameTimecode(self.last, fps=self.fps)) or []]
        return sorted({c for c in self.found if 0 < c <= self.last})


def shots_from_cuts(cuts: list[int], total: int, min_frames: int) -> list[tuple[int, int]]:
    """(start, frames) of each shot; a cut that would leave a shot shorter than ``min_frames`` (either side,
    the title's ends included) is dropped, merging the short shot into its neighbour."""
    kept: list[int] = []
    for c in sorted(set(cuts)):
        if 0 < c < total and c - (kept[-1] if kept else 0) >= min_frames and total - c >= min_frames:
            kept.append(c)
    bounds = [0, *kept, total]
    return [(a, b - a) for a, b in zip(bounds, bounds[1:]) if b > a]


def join_args(codec: str, encoder_args: str) -> str:
    """The user's encoder parameters plus the codec's ``join_params`` (headers the same in every shot), unless the
    user set those keys."""
    c = CODECS[codec]
    mine = c.check_params(encoder_args)
    extra = [kv for kv in c.join_params.split(":") if kv and kv.split("=", 1)[0] not in mine]
    return ":".join([p for p in (encoder_args, *extra) if p])


@dataclass(kw_only=True)
class ShotOptions(SearchTargets):
    """One shot of a title, the batch task ``shot`` that ``auto-encode --per-shot`` writes: search ``source`` (the
    shot's frames, raw, in ``pix_fmt``) for the highest CRF meeting the targets, encode it to ``output`` at that
    CRF and measure the encode."""

    source: str
    width: int
    height: int
    pix_fmt: str = "yuv420p"
    fps: float
    output: str
    start_frame: int = 0  # where the shot starts in the title (for the documents)
    crf: float | None = None  # a set CRF: no search (the bitrate-budget mode encodes each shot at its CRF)
    roi_strength: float = 0.0  # with ``crf``: the ROI strength to encode at
    model_path: str | None = None
    encoder_args: str = ""
    threads: int = 0
    overwrite: bool = False
    # the title's tags, into every shot's bitstream (its headers say how to show the pictures, as encode's do)
    color_range: str | None = None  # "limited" | "full"
    color_primaries: int | None = None
    color_trc: int | None = None
    colorspace: int | None = None
    sar: str | None = None  # "num:den"

    def search_options(self) -> Any:
        from tinysal.encode.search import CrfSearchOptions

        pix, depth = LAYOUTS[self.pix_fmt]
        return CrfSearchOptions(input=self.source, width=self.width, height=self.height, pixel_format=pix,
                                bitdepth=depth, fps=self.fps, threads=self.threads, model_path=self.model_path,
                                encoder_args=join_args(self.codec, self.encoder_args),
                                **self.target_fields())  # fmt: skip

    def check(self, files: bool = True) -> None:
        if self.pix_fmt not in LAYOUTS:
            raise TinysalError(f"pix_fmt must be one of {', '.join(LAYOUTS)}, got {self.pix_fmt!r}")
        if self.width < 1 or self.height < 1 or not (math.isfinite(self.fps) and self.fps > 0):
            raise TinysalError("width, height and fps must be above 0")
        if self.start_frame < 0:
            raise TinysalError(f"start_frame must be at least 0, got {self.start_frame}")
        if self.color_range not in (None, "limited", "full"):
            raise TinysalError(f"color_range must be limited or full, got {self.color_range!r}")
        if self.sar is not None and not _is_ratio(self.sar):
            raise TinysalError(f"sar must be N:D (whole numbers above 0), got {self.sar!r}")
        if self.crf is not None:
            check_codec(self.codec, self.preset).check_crf(self.crf, "crf")
        self.search_options().check(files=False)


def _is_ratio(text: str) -> bool:
    parts = text.split(":")
    return len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts)


def run_shot(opts: ShotOptions) -> dict[str, Any]:
    """Search, encode and measure one shot; its document."""
    from tinysal.encode.sampling import pooled_xpsnr, score_frames
    from tinysal.encode.search import margin, pooled, search

    opts.check()
    so = opts.search_options()
    if opts.crf is None:
        found = search(so, quiet=True, whole_if_short=True, refine=True)
        reached = found["crf"] is not None
        pick = found["predicted"] if reached else found["best_reachable"]
        crf, strength = pick["crf"], pick["roi_strength"]
        predicted = {k: pick.get(k) for k in ("vmaf", "vmaf_roi", "xpsnr", "video_kbps")}
        attempts = found["attempts"]
    else:
        found, reached, crf, strength = {}, True, opts.crf, opts.roi_strength
        predicted, attempts = None, []
    enc = _encode_shot(opts, crf, strength, so.encoder_args)
    roi = opts.min_vmaf_roi is not None or opts.roi
    sc = score_frames(opts.source, opts.output, opts.width, opts.height, opts.pix_fmt, opts.threads,
                      opts.model_path, 0, roi, opts.min_xpsnr is not None)  # fmt: skip
    vm, rv = sc["vmaf"], sc["vmaf_roi"]
    measured = {"vmaf": pooled(vm, opts.pool), "vmaf_min": min(vm), "vmaf_roi": pooled(rv, opts.pool) if rv else None,
                "xpsnr": pooled_xpsnr(sc, opts.pool), "frames": vm}  # fmt: skip
    if opts.crf is not None:  # a set CRF (budget mode): reached is what the encode measures
        reached = margin(opts, measured) >= 0
    doc: dict[str, Any] = {
        "start_frame": opts.start_frame, "frames": enc["frames"], "crf": crf, "roi_strength": strength,
        "reached": reached, "predicted": predicted, "measured": measured,
        "encode": {k: enc[k] for k in ("output", "frames", "bytes", "video_bytes", "video_kbps", "seconds")},
        "attempts": attempts, "samples": found.get("samples"),
    }  # fmt: skip
    if not reached:
        doc["unreachable"] = found.get("unreachable") or f"below the targets at crf {crf:g}"
    return doc


def _encode_shot(opts: ShotOptions, crf: float, strength: float, encoder_args: str) -> dict[str, Any]:
    """The shot encoded at ``crf`` with the title's tags (range, colour, SAR) in its bitstream."""
    from tinysal.encode.encoder import encode_video

    pix, depth = LAYOUTS[opts.pix_fmt]
    eo = EncodeOptions(input=opts.source, width=opts.width, height=opts.height, pixel_format=pix, bitdepth=depth,
                       output=opts.output, fps=opts.fps, codec=opts.codec, crf=crf, preset=opts.preset,
                       roi=strength > 0, roi_strength=strength or None, overwrite=True, no_audio=True,
                       threads=opts.threads, model_path=opts.model_path, encoder_args=encoder_args)  # fmt: skip
    settings = eo.check(files=False)
    reader = eo.open_input()
    reader.range = opts.color_range
    if opts.sar:
        reader.sar = tuple(int(x) for x in opts.sar.split(":"))
    reader.colour = {"color_primaries": opts.color_primaries, "color_trc": opts.color_trc,
                     "colorspace": opts.colorspace}  # fmt: skip
    info = encode_video(reader, opts.output, settings, overwrite=True, fps=opts.fps)
    return {k: v for k, v in info.items() if k != "notes"}


def title_tags(reader: Any, source: str | None) -> dict[str, Any]:
    """The title's range, colour tags and SAR as ShotOptions fields: from the container (``source``) or from the
    reader (Y4M's header, raw YUV's --range)."""
    from tinysal.encode.streams import Passthrough

    keep = Passthrough(source, keep_audio=False)
    try:
        have = keep.video_tags()
    finally:
        keep.close()
    rng = {1: "limited", 2: "full"}.get(int(have.get("color_range") or 0)) or getattr(reader, "range", None)
    sar = have.get("sample_aspect_ratio")
    sar_t = (sar.numerator, sar.denominator) if sar else getattr(reader, "sar", None)
    out: dict[str, Any] = {"color_range": rng if rng in ("limited", "full") else None,
                           "sar": f"{sar_t[0]}:{sar_t[1]}" if sar_t else None}  # fmt: skip
    for k in ("color_primaries", "color_trc", "colorspace"):
        out[k] = int(have[k]) if have.get(k) else None
    return out


@dataclass
class ShotFile:
    path: str
    start: int
    frames: int


def _delay(path: str, fps: float) -> tuple[int, bytes | None]:
    """(frames of reordering delay of an encode's first packet, its stream header)."""
    import av

    with av.open(path) as c:
        st = c.streams.video[0]
        extradata = st.codec_context.extradata
        for pkt in c.demux(st):
            if pkt.pts is None or pkt.dts is None:
                continue
            return max(0, round(float((pkt.pts - pkt.dts) * pkt.time_base) * fps)), extradata
    return 0, extradata


def join(shots: list[ShotFile], reader: Any, source: str | None, output: str, codec: str, fps: float | None,
         overwrite: bool = False, keep_audio: bool = True) -> dict[str, Any]:  # fmt: skip
    """Copy the shots' packets into ``output`` at the input's frame times (``reader``'s clock), with ``source``'s
    other streams (a container input), atomically; ``fps``: a raw input's frame rate (the ``--fps`` flag). What
    was kept (``kept``) and the byte counts."""
    import av

    from tinysal.encode.encoder import Clock, _frame_rate, open_container, output_path, written_beside
    from tinysal.encode.streams import Passthrough

    out = output_path(output, codec, overwrite)
    clock = Clock.of(reader, _frame_rate(reader, fps))
    rate = float(clock.rate)  # the shots' encodes run at this rate: their packet times give each frame's index
    heads = [_delay(s.path, rate) for s in shots]
    for s, (_, head) in zip(shots, heads):
        if head != heads[0][1]:
            raise TinysalError(f"the encode of the shot at frame {s.start} has other stream headers than the first "
                               "shot's: they cannot be joined without re-encoding")  # fmt: skip
    delay = max(d for d, _ in heads)
    video_bytes = 0
    try:
        with written_beside(out, overwrite) as tmp:
            container = open_container(tmp)
            keep = Passthrough(source, keep_audio=keep_audio)
            try:
                with av.open(shots[0].path) as first:  # opaque: packets copied, no codec opened (none is needed,
                    # and PyAV would look for an encoder of the decoder's name: libdav1d for AV1)
                    st = container.add_stream_from_template(first.streams.video[0], opaque=True)
                st.time_base = clock.time_base
                keep.attach(container, st)  # the other streams and the metadata (the tags are in the bitstreams)
                for s in shots:
                    video_bytes += _copy_shot(container, st, keep, s, clock, delay, rate)
                total = shots[-1].start + shots[-1].frames
                kept = keep.finish(container, clock.seconds(total))
            finally:
                keep.close()
                container.close()
    except (av.error.FFmpegError, ValueError) as e:  # a stream FFmpeg cannot mux: one line, nothing left behind
        raise TinysalError(f"cannot join the shots' encodes into {out}: {e}") from None
    seconds = clock.seconds(total)
    size = out.stat().st_size
    return {"output": str(out), "frames": total, "bytes": size, "video_bytes": video_bytes,
            "video_kbps": video_bytes * 8 / seconds / 1000, "total_kbps": size * 8 / seconds / 1000,
            "duration": seconds, "kept": kept}  # fmt: skip


def _copy_shot(container: Any, st: Any, keep: Any, s: ShotFile, clock: Any, delay: int, fps: float) -> int:
    """One shot's packets into ``container``: presentation at the input's times of its frames, decode times one
    global reordering delay earlier (monotonic across shots whatever each shot's own delay)."""
    import av

    n = nbytes = 0
    with av.open(s.path) as c:
        src = c.streams.video[0]
        for pkt in c.demux(src):
            if pkt.pts is None:
                continue
            idx = round(float(pkt.pts * pkt.time_base) * fps)
            if not 0 <= idx < s.frames:
                raise TinysalError(f"the encode of the shot at frame {s.start} has a frame at {idx}, outside its "
                                   f"{s.frames} frames")  # fmt: skip
            i = s.start + idx
            pkt.stream = st
            pkt.time_base = clock.time_base
            pkt.pts, pkt.dts = clock.pts(i), clock.pts(s.start + n - delay)
            pkt.duration = clock.pts(i + 1) - clock.pts(i)
            keep.mux_until(container, clock.seconds(max(0, s.start + n - delay)))
            nbytes += pkt.size
            container.mux(pkt)
            n += 1
    if n != s.frames:
        raise TinysalError(f"the encode of the shot at frame {s.start} holds {n} frames, not {s.frames}")
    return nbytes


def frames_pts(path: str) -> list[float]:
    """Every video frame's presentation time (seconds) of a file, in order: what a join must keep."""
    import av

    with av.open(path) as c:
        st = c.streams.video[0]
        return sorted(float(p.pts * p.time_base) for p in c.demux(st) if p.pts is not None)


