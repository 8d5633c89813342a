"""Encoding with libx264/libx265, plain or saliency-guided (ROI): ``EncodeOptions`` in, the encode's summary out.

The ROI path is one that stock encoders honour: each frame passes through a small PyAV filter graph of ``addroi``
filters, which attach AVRegionOfInterest side data, and goes to PyAV's own libx264/libx265 encoder (adaptive
quantisation on, which libx264 needs for ROI). Regions follow the saliency of every ``roi_every``-th frame (a
segment of at most one second), inside a single encode; the graph is rebuilt only when they change. The output is
written to a temporary file beside it and moved into place when complete (never over a file that appeared
meanwhile, unless ``overwrite``); the input's audio, subtitles and metadata are kept (``encode.streams``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tinysal.encode.codecs import CODECS, Codec, codec
from tinysal.encode.roi import (
    MAP_SUFFIX,
    Region,
    SaliencyBlocks,
    block_offsets,
    layered_regions,
    offsets_from_means,
    read_map,
)
from tinysal.errors import TinysalError
from tinysal.features.vmaf import RAW_PIX_FMTS
from tinysal.video.readers import VideoInput, YuvFrame

#: a raw layout (pixel_format, bitdepth) by FFmpeg's pixel-format name (RAW_PIX_FMTS the other way round)
LAYOUTS = {name: layout for layout, name in RAW_PIX_FMTS.items()}

#: the encoders (the codec table's entries)
ENCODERS = tuple(CODECS)
#: the frame rate given to raw YUV input, which carries none, unless ``--fps`` says otherwise
DEFAULT_RAW_FPS = 25


def default_preset(codec: str, preset: str | None) -> str | None:
    """``preset``, or the codec's default preset when None (an unknown codec keeps None: its check says why)."""
    if preset is not None:
        return str(preset)
    entry = CODECS.get(codec)
    return entry.default_preset if entry else None


@dataclass
class EncodeSettings:
    codec: str = "libx264"
    bitrate: int = 0  # bits/s; 0 = use crf
    no_audio: bool = False  # drop the input's audio (subtitles, tags, metadata and chapters are kept)
    crf: float = 23.0
    preset: str | None = None  # None: the codec's default preset (the codec table)
    roi: bool = False
    roi_strength: float | None = None  # None: the codec's default (the codec table)
    roi_every: int = 0  # frames per saliency update; 0 = about a third of a second
    roi_maps: str = ""  # folder of x264-format maps (roi-maps --encoder x264) instead of the model
    model_path: str | None = None
    block: int = 16
    threads: int = 0  # the encoder's threads (x264 threads, x265 pools); 0: the encoder's default (all cores)
    encoder_args: str = ""  # the encoder's own parameters (k=v:k2=v2), passed through its -*-params option


def check_codec(name: str, preset: str | None) -> Codec:
    """The flags ``--codec`` and ``--preset`` of the commands that encode many times (crf-search, ladder): one line
    each for a codec tinysal does not encode with, one this build lacks, an unknown preset. The table's entry."""
    c = codec(name)
    c.check_preset(default_preset(name, preset) or "")
    return c


def check_settings(s: EncodeSettings) -> None:
    c = codec(s.codec)
    s.preset = default_preset(s.codec, s.preset)
    c.check_preset(s.preset or "")
    if s.bitrate and not 10_000 <= s.bitrate <= 500_000_000:
        raise TinysalError(f"--bitrate must be 10k..500M bits/s, got {s.bitrate}")
    if not s.bitrate:
        c.check_crf(s.crf)
    if s.roi_maps and c.saliency != "qp-offsets":
        raise TinysalError(f"--roi-maps are QP offsets, which {s.codec} does not take: use --roi (the model)")
    if s.roi and not c.saliency:
        raise TinysalError(f"--roi with {s.codec}: no saliency route reaches this encoder yet (its FFmpeg wrapper "
                           "ignores ROI side data, measured: byte-identical output); encode without --roi, or use "
                           f"{', '.join(k for k, v in CODECS.items() if v.saliency)}")  # fmt: skip
    if s.roi and s.roi_strength is None and c.roi_strength is None:
        raise TinysalError(f"--roi with {s.codec} needs --roi-strength (the pre-filter's blur sigma in pixels, e.g. "
                           "0.5): no strength keeps VMAF within +5% while moving quality into the salient region "
                           "(roi-eval on held-out DAVIS: 0.5 gives object BD-rate -9% at VMAF +15%; "
                           "docs/benchmarks.md)")  # fmt: skip
    if s.roi_strength is None:
        s.roi_strength = c.roi_strength if c.roi_strength is not None else 0.0
    if not 0 <= s.roi_strength <= 12:
        raise TinysalError(f"--roi-strength must be 0..12 (QP), got {s.roi_strength:g}")
    if not 0 <= s.threads <= 256:
        raise TinysalError(f"--threads must be 0..256, got {s.threads}")
    c.check_params(s.encoder_args)


class _RoiApplier:
    """Attaches AVRegionOfInterest side data through an ``addroi`` filter graph. ``prepare`` builds the graph for a
    region list (only when it differs from the previous list; it runs in the worker thread, ahead of the encoder),
    ``apply`` pushes one frame through a prepared graph (the encoding thread)."""

    def __init__(self, width: int, height: int, time_base: Fraction, pix_fmt: str = "yuv420p") -> None:
        self.width, self.height, self.time_base, self.pix_fmt = width, height, time_base, pix_fmt
        self.regions: list[Region] | None = None
        self.graph: Any = None
        self.rebuilds = 0

    def prepare(self, regions: list[Region]) -> Any:
        from av.filter import Graph

        if not regions:
            return None
        if regions != self.regions:
            g = Graph()
            last = g.add_buffer(width=self.width, height=self.height, format=self.pix_fmt, time_base=self.time_base)
            for r in regions:
                f = g.add("addroi", r.filter_args())
                last.link_to(f)
                last = f
            sink = g.add("buffersink")
            last.link_to(sink)
            g.configure()
            self.graph, self.regions = g, regions
            self.rebuilds += 1
        return self.graph

    def apply(self, frame: Any, graph: Any) -> Any:
        if graph is None:
            return frame
        pts = frame.pts
        graph.push(frame)
        out = graph.pull()
        out.pts, out.time_base = pts, self.time_base
        return out


@dataclass
class Clock:
    """The output's frame times: ``pts(i)`` in ``time_base`` and ``seconds(i)`` (``i`` up to the frame count: the
    end). A constant rate by default; a variable-rate input keeps each frame's own time (its timestamps, from 0),
    as FFmpeg keeps them, so the encode lasts as long as the input and its audio stays in sync."""

    rate: Fraction
    time_base: Fraction
    stamps: list[int] | None = None  # per frame, in time_base, from 0; None: i / rate
    end: int = 0  # the last frame's end, in time_base

    @classmethod
    def of(cls, reader: Any, rate: Fraction) -> Clock:
        pts = getattr(reader, "pts", None)
        if getattr(reader, "vfr", False) and pts:
            tb = Fraction(reader.time_base)
            stamps = [p - pts[0] for p in pts]
            end = stamps[-1] + round((stamps[-1] - stamps[0]) / (len(stamps) - 1))
            return cls(rate, tb, stamps, end)
        return cls(rate, 1 / rate)

    def pts(self, i: int) -> int:
        """Frame ``i``'s time; before the first frame (a reordered stream's decode times) one average frame apart."""
        if self.stamps is None:
            return i
        if i < 0:
            return self.stamps[0] + i * max(1, round((self.end - self.stamps[0]) / len(self.stamps)))
        return self.stamps[i] if i < len(self.stamps) else self.end

    def seconds(self, i: int) -> float:
        return float(self.pts(i) * self.time_base)


#: output extensions -> FFmpeg muxers
MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".ts": "mpegts"}


def open_container(path: Path) -> Any:
    """An output container for ``path`` by its extension. Matroska and WebM keep negative times as they are (an
    AAC track's priming packet, 1024 samples before 0), as FFmpeg's own stream copy does: by default the muxer moves
    every stream later instead, so the video's first frame would land at 23 ms, not at the input's 0."""
    import av

    muxer = MUXERS.get(path.suffix.lower())
    opts = {"avoid_negative_ts": "disabled"} if muxer in ("matroska", "webm") else {}
    return av.open(str(path), "w", format=muxer, options=opts)


def _open_output(path: Path, s: EncodeSettings, width: int, height: int, clock: Clock,
                 pix_fmt: str) -> tuple[Any, Any]:  # fmt: skip

    from tinysal.encode.codecs import quiet_encoders

    quiet_encoders()
    container = open_container(path)
    st = container.add_stream(s.codec, rate=clock.rate)
    st.width, st.height, st.pix_fmt = width, height, pix_fmt
    st.codec_context.time_base = clock.time_base
    if s.bitrate:
        st.bit_rate = s.bitrate
    st.options = CODECS[s.codec].options(s.preset or "", None if s.bitrate else s.crf, s.bitrate, s.threads,
                                         s.encoder_args)  # fmt: skip
    return container, st


class _ProgramStream:
    """For an encoder that is in the bundled FFmpeg program but not in PyAV (libaom-av1): the same interface as a
    PyAV stream/container pair for ``encode_video``; frames (after any saliency pre-filter) are piped raw to an
    FFmpeg child that encodes and muxes them, copying the input's audio and subtitles itself. It starts at the first
    frame, after the colour tags are set on ``codec_context``."""

    def __init__(self, path: Path, s: EncodeSettings, width: int, height: int, clock: Clock, pix_fmt: str,
                 source: str | None) -> None:  # fmt: skip
        from types import SimpleNamespace

        self.path, self.s, self.width, self.height, self.clock, self.pix_fmt = path, s, width, height, clock, pix_fmt
        self.source = source
        self.codec_context = SimpleNamespace(color_range=None, sample_aspect_ratio=None)
        self.proc: Any = None

    def _start(self) -> None:
        import subprocess

        import imageio_ffmpeg

        entry = CODECS[self.s.codec]
        rate = self.clock.rate
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-f", "rawvideo", "-pix_fmt", self.pix_fmt, "-s", f"{self.width}x{self.height}",
               "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0"]  # fmt: skip
        maps = ["-map", "0:v"]
        if self.source:
            cmd += ["-i", self.source]
            maps += ["-map_metadata", "1", "-map_chapters", "1", "-map", "1:s?", "-c:s", "copy"]
            if not self.s.no_audio:
                maps += ["-map", "1:a?", "-c:a", "copy"]
        opts = entry.options(self.s.preset or "", None if self.s.bitrate else self.s.crf, self.s.bitrate,
                             self.s.threads, self.s.encoder_args)  # fmt: skip
        enc = ["-c:v", self.s.codec, "-pix_fmt", self.pix_fmt]
        for k, v in opts.items():
            enc += [f"-{k}", v]
        if self.s.bitrate:
            enc += ["-b:v", str(self.s.bitrate)]
        cc = self.codec_context
        if cc.color_range in (1, 2):
            enc += ["-color_range", "pc" if cc.color_range == 2 else "tv"]
        if cc.sample_aspect_ratio:
            enc += ["-aspect", str(cc.sample_aspect_ratio * self.width / self.height)]
        self.err = open(self.path.with_suffix(self.path.suffix + ".log"), "w+b")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([*cmd, *maps, *enc, str(self.path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=self.err)  # fmt: skip

    def encode(self, frame: Any = None) -> list[Any]:
        if frame is None:
            return []
        if self.proc is None:
            self._start()
        try:
            for data in packed_planes(frame):
                self.proc.stdin.write(data)
        except BrokenPipeError:
            self.close()
        return []

    def mux(self, pkt: Any) -> None:  # the program muxes
        pass

    def close(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.close()
        rc = proc.wait()
        self.err.seek(0)
        msg = self.err.read().decode("utf-8", "replace").strip().splitlines()
        self.err.close()
        with contextlib.suppress(OSError):
            os.unlink(self.err.name)
        if rc != 0:
            raise TinysalError(f"{self.s.codec} (the bundled FFmpeg program) failed: {msg[-1] if msg else rc}")


def _formats(codec_name: str, reader: Any) -> tuple[tuple[str, str], str | None]:
    """((the source's raw pixel format, the one the codec encodes it in), a note when they differ)."""
    out_fmt, note = CODECS[codec_name].pix_fmt_for(reader.pix_fmt, reader.bitdepth)
    return (RAW_PIX_FMTS[(reader.pix_fmt, reader.bitdepth)], out_fmt), note


def _program_clock(codec_name: str, clock: Clock, rate: Fraction, note: str | None) -> tuple[Clock, str | None]:
    """The program route pipes raw frames at one rate: a variable-rate input is re-timed at its average, and said."""
    if not CODECS[codec_name].program or clock.stamps is None:
        return clock, note
    said = f"{codec_name} runs in the FFmpeg program: the variable frame timing is re-timed at the average rate"
    return Clock(rate, 1 / rate), "; ".join(x for x in (note, said) if x)


def _outputs(tmp: Path, s: EncodeSettings, reader: Any, clock: Clock, pix_fmt: str, source: str | None) -> Any:
    """(container, stream): PyAV's, or the FFmpeg program's for an encoder PyAV lacks (both roles in one)."""
    if CODECS[s.codec].program:
        ps = _ProgramStream(tmp, s, reader.width, reader.height, clock, pix_fmt, source)
        return ps, ps
    return _open_output(tmp, s, reader.width, reader.height, clock, pix_fmt)


def _video_bytes_of(path: Path) -> int:
    """The bytes of a file's video packets (what the program route cannot count as it muxes)."""
    import av

    with av.open(str(path)) as c:
        return sum(p.size for p in c.demux(video=0) if p.size)


def check_container(output: str | os.PathLike[str], codec_name: str) -> None:
    """An output name whose container can hold the codec (by its extension, the codec table's list), or one line."""
    out = Path(output)
    entry = CODECS.get(codec_name)
    holds = entry.containers if entry else ()
    if out.suffix.lower() not in holds:
        raise TinysalError(f"cannot write {codec_name} to {out.name!r}: give a {'/'.join(holds) or 'video'} output")


def check_count(flag: str, v: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TinysalError(f"{flag} must be a whole number >= 0, got {v!r}")


def check_fps(fps: float | None) -> None:
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        raise TinysalError(f"--fps must be a frame rate in (0, 1000], got {fps}")


def output_path(output: str | os.PathLike[str], codec: str, overwrite: bool) -> Path:
    """The file the encode ends in (a symlink's target: ``--overwrite`` of a link keeps the link), checked."""
    from tinysal.fileio import check_writable_target

    out = Path(output)
    check_container(out, codec)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise TinysalError(f"{out} exists: pass --overwrite to replace it")
    check_writable_target(out)
    if out.is_symlink():  # --overwrite of a link replaces what it points to; the link stays a link
        out = Path(os.path.realpath(out))
    return out


def _frame_rate(reader: Any, fps: float | None) -> Fraction:
    if fps is not None and reader.fps:
        raise TinysalError(f"--fps is for raw YUV input; {reader.path} has its own frame rate ({reader.fps:g} fps)")
    check_fps(fps)
    return Fraction(fps or reader.fps or DEFAULT_RAW_FPS).limit_denominator(1001)


class _Prefilter:
    """The route for encoders that take no QP map (AV1): each frame is blended with a Gaussian-blurred copy of
    itself, weight 1 - saliency per pixel (the saliency of the segment's first frame, block means bilinearly
    spread over the frame), blur sigma = the ROI strength in pixels, so the non-salient regions carry less detail
    and the encoder's own rate control spends the bits where the saliency is. FFmpeg does the pixel work (gblur,
    maskedmerge) in one PyAV graph; ``prepare`` builds the segment's mask frame (worker thread), ``apply`` pushes one
    frame through (the encoding thread)."""

    def __init__(self, width: int, height: int, time_base: Fraction, pix_fmt: str, sigma: float) -> None:
        from av.filter import Graph

        self.width, self.height, self.time_base, self.pix_fmt = width, height, time_base, pix_fmt
        self.rebuilds = 0
        self.graph = None
        if sigma <= 0:
            return
        g = Graph()
        self.src = g.add_buffer(width=width, height=height, format=pix_fmt, time_base=time_base)
        self.msk = g.add_buffer(width=width, height=height, format=pix_fmt, time_base=time_base)
        split, blur, merge = g.add("split"), g.add("gblur", f"sigma={sigma:g}"), g.add("maskedmerge")
        self.sink = g.add("buffersink")
        self.src.link_to(split)
        split.link_to(merge, 0, 0)
        split.link_to(blur, 1, 0)
        blur.link_to(merge, 0, 1)
        self.msk.link_to(merge, 0, 2)
        merge.link_to(self.sink)
        g.configure()
        self.graph = g

    def prepare(self, weight: np.ndarray) -> Any:
        """The mask frame for a frame-size (or coarser) weight map in [0, 1] (1: fully the blurred copy)."""
        import av
        from PIL import Image

        if self.graph is None:
            return None
        deep = self.pix_fmt.endswith("10le")
        top = 1023 if deep else 255
        mf = av.VideoFrame(self.width, self.height, self.pix_fmt)
        w = Image.fromarray(np.asarray(weight, np.float32), "F")
        for k, plane in enumerate(mf.planes):
            pw, ph = (self.width, self.height) if k == 0 else (plane.width, plane.height)
            a = np.asarray(w.resize((pw, ph), Image.BILINEAR))
            code = np.clip(np.rint(a * top), 0, top).astype("<u2" if deep else np.uint8)
            _copy_plane(plane, code)
        self.rebuilds += 1
        return mf

    def apply(self, frame: Any, mask: Any) -> Any:
        if mask is None or self.graph is None:
            return frame
        pts = frame.pts
        frame.pts = mask.pts = 0 if pts is None else pts
        self.src.push(frame)
        self.msk.push(mask)
        out = self.sink.pull()
        out.pts, out.time_base = pts, self.time_base
        return out


def _applier(s: EncodeSettings, width: int, height: int, time_base: Fraction, pix_fmt: str) -> Any:
    """How saliency reaches the codec (the table's route): QP offsets through addroi, or the pre-filter."""
    if s.roi and CODECS[s.codec].saliency == "prefilter":
        return _Prefilter(width, height, time_base, pix_fmt, s.roi_strength or 0.0)
    return _RoiApplier(width, height, time_base, pix_fmt)


@dataclass
class _Segments:
    """Saliency -> block offsets -> regions -> addroi graph for the segment starting at a frame; runs in the worker
    thread while the encoder works through the previous segment. The saliency comes from ``settings.roi_maps``,
    else ``saliency(i, frame)`` when given (e.g. ground truth for an oracle), else the model."""

    settings: EncodeSettings
    width: int
    height: int
    every: int
    applier: _RoiApplier | _Prefilter
    saliency: Callable[[int, YuvFrame], np.ndarray] | None = None
    seconds: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        # one ORT thread: the saliency runs in a worker thread beside the encoder's own threads, where a second ORT
        # thread only contends with them (measured: the same wall time per map for ~40% less CPU)
        use_model = self.saliency is None and s.roi and not s.roi_maps
        self.model = SaliencyBlocks(s.model_path, threads=1) if use_model else None
        self.maps_dir = Path(s.roi_maps) if s.roi_maps else None
        self.rows, self.cols = math.ceil(self.height / s.block), math.ceil(self.width / s.block)
        if self.maps_dir is not None and not self.maps_dir.is_dir():
            raise TinysalError(f"--roi-maps folder not found: {self.maps_dir}")

    def __call__(self, i: int, fr: YuvFrame) -> Any:
        s = self.settings
        ts = time.perf_counter()
        if isinstance(self.applier, _Prefilter):  # no QP map: a per-pixel blend weight, 1 - saliency
            sal = self.model.block_means(fr, s.block) if self.model is not None else self.saliency(i, fr)  # type: ignore[misc]
            weight = 1.0 - np.clip(np.asarray(sal, np.float32), 0, 1)
            mask = self.applier.prepare(weight)
            self.offsets.append(float(np.mean(weight)) * (s.roi_strength or 0))
            self.seconds.append(time.perf_counter() - ts)
            return mask
        if self.maps_dir is not None:
            mp = self.maps_dir / f"frame_{i:06d}{MAP_SUFFIX['x264']}"
            if not mp.is_file():
                raise TinysalError(f"{mp}: no map for frame {i} (make them with roi-maps --every {self.every})")
            grid = read_map(mp, "x264", self.rows, self.cols)
        elif self.model is not None:
            grid = offsets_from_means(self.model.block_means(fr, s.block), s.roi_strength)
        else:
            assert self.saliency is not None
            grid = block_offsets(self.saliency(i, fr), s.block, s.roi_strength)
        graph = self.applier.prepare(layered_regions(grid, s.block, self.width, self.height))
        self.offsets.append(float(np.mean(grid)))
        self.seconds.append(time.perf_counter() - ts)
        return graph


def _encode_frames(
    reader: Any, n: int, clock: Clock, segments: _Segments, container: Any, st: Any, keep: Any,
    progress: Callable[[int, int], None] | None, video_bytes: list[int], formats: tuple[str, str],
) -> int:  # fmt: skip
    """Feed the frames to the encoder (through their segment's addroi graph with ROI); returns frames encoded and
    adds the video packets' bytes to ``video_bytes[0]``."""

    done = 0
    roi, every, applier = segments.settings.roi, segments.every, segments.applier
    # frames read but not yet encoded, each with the future of its segment's graph: at most one segment (<= 1 s)
    pending: deque[tuple[Any, Future[Any] | None]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinysal-roi") as pool:

        def flush() -> None:
            nonlocal done
            while pending:
                vf, fut = pending.popleft()
                if fut is not None:
                    vf = applier.apply(vf, fut.result())
                for pkt in st.encode(vf):
                    video_bytes[0] += pkt.size
                    container.mux(pkt)
                done += 1
                keep.mux_until(container, clock.seconds(done))
                if progress:
                    progress(done, n)

        job: Future[Any] | None = None
        for i, fr in enumerate(reader.frames()):
            if i >= n:
                break
            vf = video_frame(fr, formats[0])
            if formats[1] != formats[0]:  # a layout the codec cannot carry: swscale converts it (said in the notes)
                vf = vf.reformat(format=formats[1])
            vf.pts, vf.time_base = clock.pts(i), clock.time_base
            if roi and i % every == 0:
                # this segment's regions are worked out while the previous segment is encoded
                job = pool.submit(segments, i, fr)
                flush()
            pending.append((vf, job))
            if not roi:
                flush()
        flush()
    return done


@contextlib.contextmanager
def written_beside(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temp path beside ``out`` (named by its owner, so a dead run's is reaped) that becomes ``out`` when the
    block ends well and is removed when it does not: no half-written output, ever."""
    from tinysal.fileio import temp_beside

    tmp = out.with_name(f"{temp_beside(out)}.tmp{out.suffix}")
    try:
        yield tmp
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    from tinysal.fileio import _umask

    os.chmod(tmp, 0o666 & ~_umask())
    if overwrite:
        os.replace(tmp, out)
    else:  # no-clobber: a file that appeared at ``out`` during the encode (another run's) is never replaced
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise TinysalError(f"{out} appeared while encoding (another run?): not replaced") from None
        os.unlink(tmp)


def encode_video(
    reader: Any,
    output: str | os.PathLike[str],
    settings: EncodeSettings,
    overwrite: bool = False,
    frame_cnt: int = 0,
    progress: Callable[[int, int], None] | None = None,
    saliency: Callable[[int, YuvFrame], np.ndarray] | None = None,
    fps: float | None = None,
) -> dict[str, Any]:
    """Encode ``reader``'s frames (in the pixel format the codec takes for them) to ``output``; with
    ``settings.roi``, regions of interest (or the pre-filter, by the codec's route) from the saliency of the
    frames (the model, ``settings.roi_maps``, or ``saliency(i, frame)`` -> a frame-size map in [0, 1], e.g. ground
    truth for an oracle). Written to a temp file beside ``output``, renamed when complete."""
    from tinysal.encode.streams import Passthrough
    from tinysal.video.readers import AvReader

    check_settings(settings)
    out = output_path(output, settings.codec, overwrite)
    rate = _frame_rate(reader, fps)
    (src_fmt, out_fmt), fmt_note = _formats(settings.codec, reader)
    n = reader.frame_count if not frame_cnt else min(frame_cnt, reader.frame_count)
    every = settings.roi_every or max(1, round(float(rate) / 3))
    if settings.roi and every > float(rate):
        raise TinysalError(f"--roi-every {every} is more than one second of frames ({float(rate):g} fps)")
    clock = Clock.of(reader, rate)
    applier = _applier(settings, reader.width, reader.height, clock.time_base, out_fmt)
    segments = _Segments(settings, reader.width, reader.height, every, applier, saliency)
    t0 = time.perf_counter()
    # BLAS (the block means' small matrix products, the resize) single-threaded for the encode: OpenBLAS's idle
    # threads busy-wait, taking CPU from the encoder for products too small to gain from a second thread
    blas_limit = threadpool_limits(limits=1, user_api="blas")
    video_bytes = [0]
    program = CODECS[settings.codec].program
    clock, fmt_note = _program_clock(settings.codec, clock, rate, fmt_note)
    try:
        with written_beside(out, overwrite) as tmp:
            source = str(reader.path) if isinstance(reader, AvReader) else None
            container, st = _outputs(tmp, settings, reader, clock, out_fmt, source)
            keep = Passthrough(None if program else source, keep_audio=not settings.no_audio)
            try:
                keep.attach(container, st)
                _tag_video(st, reader, keep)
                done = _encode_frames(reader, n, clock, segments, container, st, keep, progress, video_bytes,
                                      (src_fmt, out_fmt))  # fmt: skip
                for pkt in st.encode():
                    video_bytes[0] += pkt.size
                    container.mux(pkt)
                kept = keep.finish(container, clock.seconds(done))
            finally:
                keep.close()
                container.close()
            if done == 0:
                raise TinysalError("no frames to encode")
            if program:
                video_bytes[0] = _video_bytes_of(tmp)
    finally:
        blas_limit.restore_original_limits()
    size = out.stat().st_size
    return {
        "output": str(out),
        "frames": done,
        "bytes": size,
        "video_bytes": video_bytes[0],
        "codec": settings.codec,
        "crf": None if settings.bitrate else settings.crf,  # the CRF used (the codec's default when not given)
        "preset": settings.preset,
        "pix_fmt": out_fmt,
        "pix_fmt_note": fmt_note,
        "encoder_args": settings.encoder_args,
        # the video stream alone, and the whole file (audio, subtitles and container included): named so, everywhere
        "video_kbps": video_bytes[0] * 8 / clock.seconds(done) / 1000,
        "total_kbps": size * 8 / clock.seconds(done) / 1000,
        "duration": clock.seconds(done),
        "variable_frame_rate": clock.stamps is not None,
        "seconds": time.perf_counter() - t0,
        # time in the worker thread (saliency, regions, filter graphs), mostly hidden behind the encoder
        "saliency_seconds": sum(segments.seconds),
        "roi": settings.roi,
        "roi_every": every if settings.roi else None,
        "graph_rebuilds": applier.rebuilds,
        "kept": kept,
        "mean_offset": float(np.mean(segments.offsets)) if segments.offsets else 0.0,
    }


def _tag_video(st: Any, reader: Any, keep: Any) -> None:
    """The range and sample aspect ratio of an input that is not a container (Y4M's ``XCOLORRANGE`` and ``A``, raw
    YUV's ``--range``) onto the output stream, as FFmpeg keeps them (a container's tags are copied by ``keep``):
    full-range planes tagged limited are shown with crushed blacks and clipped whites by every player and tool."""
    have = keep.video_tags()
    cc = st.codec_context
    rng = getattr(reader, "range", None)
    if rng in ("full", "limited") and "color_range" not in have:
        cc.color_range = 2 if rng == "full" else 1  # AVCOL_RANGE_JPEG / AVCOL_RANGE_MPEG
    sar = getattr(reader, "sar", None)
    if sar and "sample_aspect_ratio" not in have:
        cc.sample_aspect_ratio = Fraction(*sar)
    for k, v in (getattr(reader, "colour", None) or {}).items():  # a shot of a title: the title's colour tags
        if v and k not in have:
            setattr(cc, k, v)


def video_frame(fr: YuvFrame, pix_fmt: str) -> Any:
    """A PyAV frame holding a YuvFrame's planes (``pix_fmt``: its raw layout, RAW_PIX_FMTS' name for it)."""
    import av

    vf = av.VideoFrame(fr.width, fr.height, pix_fmt)
    for plane, arr in zip(vf.planes, (fr.y, fr.u, fr.v)):
        _copy_plane(plane, arr)
    return vf


def packed_planes(vf: Any) -> Iterator[bytes]:
    """A PyAV frame's planes as raw bytes, each without the row padding of its line size."""
    bps = 2 if vf.format.name.endswith("10le") else 1
    for plane in vf.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        yield rows[: plane.height, : plane.width * bps].tobytes()


def raw_in(fr: YuvFrame, layout: str) -> bytes:
    """A frame's raw planes in ``layout`` (an FFmpeg pixel-format name): as decoded when it is the frame's own,
    else converted by swscale as an encode to that layout converts it."""
    from tinysal.video.readers import frame_bytes_of

    own = RAW_PIX_FMTS[(fr.pix_fmt, fr.bitdepth)]
    if layout == own:
        return frame_bytes_of(fr)
    return b"".join(packed_planes(video_frame(fr, own).reformat(format=layout)))


def _copy_plane(plane: Any, arr: np.ndarray) -> None:
    """Copy a numpy plane (8-bit, or 10-bit in little-endian 16-bit words) into a PyAV plane (whose rows may be
    padded to a larger line size)."""
    if arr.dtype != np.uint8:
        arr = np.ascontiguousarray(arr, dtype="<u2").view(np.uint8)
    h, w = arr.shape
    buf = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    buf[:h, :w] = arr


@dataclass(kw_only=True)
class EncodeOptions(VideoInput):
    """The ``encode`` task's options: the input (as ``tinysal encode`` reads it), the output and the encoder
    settings; the names are the command's flags (``--roi-strength`` is ``roi_strength``)."""

    output: str
    frame_cnt: int = 0
    fps: float | None = None  # raw YUV only: it carries no frame rate (default 25)
    codec: str = "libx264"
    bitrate: int = 0  # bits/s; 0: constant quality at ``crf``
    crf: float | None = None  # None: the codec's default (23 for x264/x265, 35 for SVT-AV1; unless ``bitrate``)
    preset: str | None = None  # None: the codec's default preset (the codec table)
    roi: bool = False
    roi_strength: float | None = None  # None: the codec's default
    roi_every: int = 0  # frames per saliency update; 0: about a third of a second
    roi_maps: str = ""  # x264 maps (roi-maps --encoder x264) instead of the model; implies ROI
    model_path: str | None = None
    no_audio: bool = False
    overwrite: bool = False
    threads: int = 0  # the encoder's threads; 0: its default (as many as the machine has)
    color_range: str | None = None  # raw YUV (or a Y4M without XCOLORRANGE): limited or full; the output is tagged
    encoder_args: str = ""  # the encoder's own parameters, k=v:k2=v2 (x264-params, x265-params, svtav1-params)

    def __post_init__(self) -> None:
        self.preset = default_preset(self.codec, self.preset)

    def settings(self) -> EncodeSettings:
        """The encoder settings, checked (one ``TinysalError`` line for options that cannot go together)."""
        if self.bitrate and self.crf is not None:
            raise TinysalError("give --bitrate or --crf, not both")
        if not (self.roi or self.roi_maps):
            for flag, v in (("--roi-strength", self.roi_strength), ("--roi-every", self.roi_every or None)):
                if v is not None:
                    raise TinysalError(f"{flag} applies to ROI encodes: add --roi")
        entry = CODECS.get(self.codec)
        s = EncodeSettings(
            codec=self.codec, bitrate=self.bitrate or 0,
            crf=(entry.crf_default if entry else 23.0) if self.crf is None else self.crf,
            encoder_args=self.encoder_args,
            preset=self.preset, roi=self.roi or bool(self.roi_maps), roi_strength=self.roi_strength,
            roi_every=self.roi_every, roi_maps=self.roi_maps or "", model_path=self.model_path,
            no_audio=self.no_audio, threads=self.threads,
        )  # fmt: skip
        check_settings(s)
        return s

    def check(self, files: bool = True) -> EncodeSettings:
        """Refuse, before any work, what cannot run (one line each); the settings. ``files=False``: the values
        only (a batch checks every row's files at once)."""
        s = self.settings()
        if self.color_range not in (None, "limited", "full"):
            raise TinysalError(f"--range must be limited or full, got {self.color_range!r}")
        check_count("--frame-cnt", self.frame_cnt)
        check_fps(self.fps)
        if files:
            output_path(self.output, self.codec, self.overwrite)  # the container too
        else:
            check_container(self.output, self.codec)
        return s


def encode(opts: EncodeOptions, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Check ``opts``, open the input and encode it; the summary (output, frames, bytes, kbit/s, seconds, ROI,
    streams kept) with ``notes`` on the input (e.g. a truncated file, encoded as far as it goes)."""
    s = opts.check(files=False)
    reader = opts.open_input()
    if opts.color_range is not None:
        if getattr(reader, "range", None) not in (None, opts.color_range):
            raise TinysalError(f"--range {opts.color_range}: {opts.input} says it is {reader.range} range")
        reader.range = opts.color_range
    note = getattr(reader, "note", None)
    info = encode_video(reader, opts.output, s, overwrite=opts.overwrite, frame_cnt=opts.frame_cnt,
                        progress=progress, fps=opts.fps)  # fmt: skip
    info["notes"] = [n for n in (note, info.get("pix_fmt_note")) if n]
    return info
