"""Saliency-guided (ROI) encoding: per-block QP offsets from saliency, written as the reference system's sidecar
maps (``tinysal roi-maps``) or applied inside a real encode (``tinysal encode --roi``).

The encode path is one that stock encoders honour: each frame passes through a small PyAV filter graph of
``addroi`` filters, which attach AVRegionOfInterest side data, and goes to PyAV's own libx264/libx265 encoder
(adaptive quantisation on, which libx264 needs for ROI). Regions follow the saliency of every ``roi_every``-th
frame (a segment of at most one second), inside a single encode; the graph is rebuilt only when they change.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tinysal.errors import TinysalError
from tinysal.video.readers import YuvFrame

MAX_OFFSET = 12
#: encoder -> default block (CTU / macroblock) size, as in the reference system
DEFAULT_CTU = {"x265": 64, "svt-av1": 64, "x264": 16, "vvenc": 64}
#: QP range of 8-bit H.264/HEVC: AVRegionOfInterest.qoffset is a fraction of it
QP_RANGE = 51
ENCODERS = ("libx264", "libx265")
#: per-codec default ROI strength, chosen by the roi-eval sweep with the production model (v3) on the held-out DAVIS
#: sequences: the strongest setting whose mean whole-frame VMAF BD-rate stays <= +5% (docs/benchmarks.md).
#: libx264 at 3: object-region BD-rate -25.7%, VMAF +3.3%; libx265 at 2: -19.2%, +2.0%
DEFAULT_ROI_STRENGTH = {"libx264": 3.0, "libx265": 2.0}


#: containers ``encode`` writes H.264/H.265 into (a raw stream or an image format is refused before any work)
CONTAINERS = (".mp4", ".mkv", ".mov", ".m4v", ".ts")
#: the frame rate given to raw YUV input, which carries none, unless ``--fps`` says otherwise
DEFAULT_RAW_FPS = 25


def round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def block_means(smap: np.ndarray, block: int) -> np.ndarray:
    """Mean of a frame-size map over ``block`` x ``block`` blocks; partial edge blocks averaged over their real
    pixels (grid ceil(H/block) x ceil(W/block))."""
    h, w = smap.shape
    rows, cols = math.ceil(h / block), math.ceil(w / block)
    s = np.zeros((rows * block, cols * block), np.float64)
    n = np.zeros_like(s)
    s[:h, :w] = smap
    n[:h, :w] = 1
    sums = s.reshape(rows, block, cols, block).sum((1, 3))
    counts = n.reshape(rows, block, cols, block).sum((1, 3))
    return sums / counts


def block_offsets(smap: np.ndarray, block: int, strength: float) -> np.ndarray:
    """The reference formula: offset = round_half_away(-strength * (2s - 1)), clamped to +-12, per block (int8)."""
    return offsets_from_means(block_means(smap, block), strength)


def offsets_from_means(s: np.ndarray, strength: float) -> np.ndarray:
    """Block means of saliency -> QP offsets: round_half_away(-strength * (2s - 1)), clamped to +-12 (int8)."""
    return np.clip(round_half_away(-strength * (2 * s - 1)), -MAX_OFFSET, MAX_OFFSET).astype(np.int8)


@dataclass(frozen=True)
class Region:
    x: int
    y: int
    w: int
    h: int
    offset: int  # QP offset: negative = better quality

    def filter_args(self) -> str:
        return f"x={self.x}:y={self.y}:w={self.w}:h={self.h}:qoffset={self.offset}/{QP_RANGE}"


def regions_from_offsets(grid: np.ndarray, block: int, width: int, height: int) -> list[Region]:
    """Non-overlapping rectangles covering every non-zero block: runs of equal offset along each block row,
    merged downwards while the run below is identical."""
    runs: list[tuple[int, int, int, int]] = []  # (row, c0, c1, offset)
    for r, row in enumerate(grid):
        c = 0
        while c < len(row):
            v = int(row[c])
            c1 = c
            while c1 + 1 < len(row) and int(row[c1 + 1]) == v:
                c1 += 1
            if v:
                runs.append((r, c, c1, v))
            c = c1 + 1
    open_: dict[tuple[int, int, int], list[int]] = {}  # (c0, c1, v) -> [first row, last row]
    out: list[Region] = []

    def close(key: tuple[int, int, int], rows: list[int]) -> None:
        c0, c1, v = key
        x, y = c0 * block, rows[0] * block
        out.append(Region(x, y, min(width, (c1 + 1) * block) - x, min(height, (rows[1] + 1) * block) - y, v))

    for r, c0, c1, v in runs:
        key = (c0, c1, v)
        if key in open_ and open_[key][1] == r - 1:
            open_[key][1] = r
        else:
            if key in open_:
                close(key, open_.pop(key))
            open_[key] = [r, r]
        for k in [k for k, rows in open_.items() if rows[1] < r - 1]:
            close(k, open_.pop(k))
    for k, rows in open_.items():
        close(k, rows)
    return sorted(out, key=lambda g: (g.y, g.x))


def layered_regions(grid: np.ndarray, block: int, width: int, height: int) -> list[Region]:
    """The same per-block offsets as :func:`regions_from_offsets` in far fewer regions, using the
    AVRegionOfInterest rule that where regions overlap the earlier one in the list wins (FFmpeg's libx264 and
    libx265 wrappers apply the list from the end). Offsets are listed from the lowest (most salient) up; the
    rectangles of level ``v`` cover every block whose offset is ``<= v`` (blocks below ``v`` are already taken by
    earlier regions), and the highest offset is one whole-frame region at the end. Because the offset is a
    monotone function of a smooth map, each level is a few blobs, a few rectangles: the per-frame ``addroi``
    chain stays short where one rectangle per run of equal blocks needed hundreds."""
    levels = np.unique(grid)
    if len(levels) == 1 and levels[0] == 0:
        return []
    out: list[Region] = []
    for v in levels[:-1]:
        mask = (grid <= v).astype(np.int8)
        out += [Region(r.x, r.y, r.w, r.h, int(v)) for r in regions_from_offsets(mask, block, width, height)]
    return out + [Region(0, 0, width, height, int(levels[-1]))]


# ------------------------------------------------------------------------------------------- sidecar maps
def write_map(path: Path, grid: np.ndarray, encoder: str, frame: int, ctu: int, strength: float) -> None:
    """One frame's map in the reference system's format for ``encoder`` (atomically)."""
    from tinysal.fileio import atomic_open

    rows, cols = grid.shape
    if encoder == "svt-av1":  # raw signed int8 per block, row-major, no header
        with atomic_open(path, "wb") as f:
            f.write(grid.astype(np.int8).tobytes())
        return
    lines: list[str]
    if encoder == "x265":
        lines = ["# tinysal roi-maps: per-CTU QP offsets (negative = more bits)",
                 f"# frame={frame} ctu={ctu} cols={cols} rows={rows} strength={strength:g}"]  # fmt: skip
        lines += [" ".join(str(int(v)) for v in row) for row in grid]
    elif encoder == "x264":  # x264 qpfile: the frame line, then per-macroblock rows
        lines = [f"{frame} P -1"] + [" ".join(str(int(v)) for v in row) for row in grid]
    else:  # vvenc: comma-separated rows
        lines = [",".join(str(int(v)) for v in row) for row in grid]
    with atomic_open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


MAP_SUFFIX = {"x265": ".txt", "x264": ".qp", "svt-av1": ".bin", "vvenc": ".csv"}


# ------------------------------------------------------------------------------------------- saliency
class SaliencyBlocks:
    """Saliency of a frame at frame size (bilinear from the model's inference size), for block maps."""

    def __init__(self, model_path: str | None = None, short_side: int = 256, threads: int = 0) -> None:
        from tinysal.features.mobilesal import MobileSal

        self.feature = MobileSal(model_path, short_side=short_side, threads=threads)

    def _map(self, frame: YuvFrame, colorspace: str, color_range: str) -> np.ndarray:
        """The map at inference size."""
        return self.feature.infer(self.feature.preprocess(frame, colorspace, color_range), frame.width, frame.height)

    def frame_map(self, frame: YuvFrame, colorspace: str = "bt709", color_range: str = "limited") -> np.ndarray:
        from tinysal.features.mobilesal import upsampled_map

        return upsampled_map(self._map(frame, colorspace, color_range), frame.width, frame.height)

    def block_means(
        self, frame: YuvFrame, block: int, colorspace: str = "bt709", color_range: str = "limited"
    ) -> np.ndarray:
        """Block means of the frame-size map without building it: the bilinear resize (half-pixel centres, as the
        model's own Resize) and the block averaging are both linear and separable, so they fold into one small
        matrix per axis (rows x h and w x cols, cached per geometry)."""
        m = self._map(frame, colorspace, color_range)
        ry = _block_resize_matrix(m.shape[0], frame.height, block)
        rx = _block_resize_matrix(m.shape[1], frame.width, block)
        return ry @ m.astype(np.float64) @ rx.T


@lru_cache(maxsize=16)
def _block_resize_matrix(n_in: int, n_out: int, block: int) -> np.ndarray:
    """(ceil(n_out / block), n_in): a 1-D bilinear resize n_in -> n_out followed by the mean over each block of
    ``block`` outputs (a partial last block averaged over its real samples)."""
    from tinysal.model.inputs import bilinear_matrix

    nb = math.ceil(n_out / block)
    pool = np.zeros((nb, n_out))
    for b in range(nb):
        lo, hi = b * block, min(n_out, (b + 1) * block)
        pool[b, lo:hi] = 1.0 / (hi - lo)
    return pool @ bilinear_matrix(n_in, n_out)


#: the names roi-maps writes (any encoder's): a folder holding only these may be replaced by a new run
_MAP_NAME = re.compile(r"frame_\d{6}(" + "|".join(re.escape(x) for x in MAP_SUFFIX.values()) + ")")


def roi_maps(
    reader: Any,
    outdir: str | os.PathLike[str],
    encoder: str = "x265",
    ctu: int | None = None,
    strength: float = 6.0,
    every: int = 1,
    model_path: str | None = None,
    frame_cnt: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a block map for every ``every``-th frame of ``reader`` into ``outdir`` (``frame_NNNNNN`` + suffix)."""
    if encoder not in DEFAULT_CTU:
        raise TinysalError(f"unknown encoder {encoder!r}; choose {', '.join(DEFAULT_CTU)}")
    ctu = ctu or DEFAULT_CTU[encoder]
    if not 8 <= ctu <= 128:
        raise TinysalError(f"--ctu must be 8..128, got {ctu}")
    if not 0 <= strength <= 64:
        raise TinysalError(f"--strength must be 0..64, got {strength}")
    if every < 1:
        raise TinysalError("--every must be >= 1")
    from tinysal.fileio import atomic_dir

    out = Path(outdir)
    sal = SaliencyBlocks(model_path)
    n = reader.frame_count if not frame_cnt else min(frame_cnt, reader.frame_count)
    written = []
    cs = getattr(reader, "colorspace", None) or "bt709"
    cr = getattr(reader, "range", None) or "limited"
    # all or nothing: the maps are written into a temp folder that replaces ``outdir`` when every map is there, so
    # an interrupted run leaves the old folder as it was and no stale maps of another clip stay mixed in
    with atomic_dir(out, replaceable=lambda name: bool(_MAP_NAME.fullmatch(name))) as tmp:
        for i, fr in enumerate(reader.frames()):
            if i >= n:
                break
            if i % every:
                continue
            grid = offsets_from_means(sal.block_means(fr, ctu, cs, cr), strength)
            name = f"frame_{i:06d}{MAP_SUFFIX[encoder]}"
            write_map(tmp / name, grid, encoder, i, ctu, strength)
            written.append(str(out / name))
            if progress:
                progress(i + 1, n)
    return {"encoder": encoder, "ctu": ctu, "strength": strength, "every": every, "maps": written, "frames": n,
            "grid": [math.ceil(reader.height / ctu), math.ceil(reader.width / ctu)]}  # fmt: skip


def read_map(path: Path, encoder: str, rows: int, cols: int) -> np.ndarray:
    """Read back one sidecar map, checking that its geometry fits the video."""
    try:
        if encoder == "svt-av1":
            data = np.frombuffer(path.read_bytes(), np.int8)
            if data.size != rows * cols:
                raise TinysalError(f"{path}: {data.size} blocks, the video needs {rows}x{cols} = {rows * cols}")
            return data.reshape(rows, cols)
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        if encoder == "x264":
            lines = lines[1:]
        sep = "," if encoder == "vvenc" else None
        grid = np.array([[int(v) for v in ln.split(sep)] for ln in lines], np.int64)
    except (OSError, ValueError) as e:
        raise TinysalError(f"{path}: not a readable {encoder} map ({e})") from None
    if grid.shape != (rows, cols):
        raise TinysalError(f"{path}: map is {grid.shape[0]}x{grid.shape[1]} blocks, the video needs {rows}x{cols}")
    if np.abs(grid).max(initial=0) > MAX_OFFSET:
        raise TinysalError(f"{path}: offsets beyond +-{MAX_OFFSET}")
    return grid.astype(np.int8)


# ------------------------------------------------------------------------------------------- encoding
@dataclass
class EncodeSettings:
    codec: str = "libx264"
    bitrate: int = 0  # bits/s; 0 = use crf
    no_audio: bool = False  # drop the input's audio (subtitles, tags, metadata and chapters are kept)
    crf: float = 23.0
    preset: str = "medium"
    roi: bool = False
    roi_strength: float | None = None  # None: the codec's default (DEFAULT_ROI_STRENGTH)
    roi_every: int = 0  # frames per saliency update; 0 = about a third of a second
    roi_maps: str = ""  # folder of x264-format maps (roi-maps --encoder x264) instead of the model
    model_path: str | None = None
    block: int = 16


def check_settings(s: EncodeSettings) -> None:
    import av

    if s.codec not in ENCODERS:
        raise TinysalError(f"--codec {s.codec!r}: ROI encoding supports {', '.join(ENCODERS)}")
    if s.codec not in av.codecs_available:
        raise TinysalError(f"this FFmpeg build (PyAV) has no {s.codec} encoder")
    if s.bitrate and not 10_000 <= s.bitrate <= 500_000_000:
        raise TinysalError(f"--bitrate must be 10k..500M bits/s, got {s.bitrate}")
    if not s.bitrate and not 0 <= s.crf <= 51:
        raise TinysalError(f"--crf must be 0..51, got {s.crf:g}")
    if s.roi_strength is None:
        s.roi_strength = DEFAULT_ROI_STRENGTH[s.codec]
    if not 0 <= s.roi_strength <= 12:
        raise TinysalError(f"--roi-strength must be 0..12 (QP), got {s.roi_strength:g}")
    presets = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
    if s.preset not in presets:
        raise TinysalError(f"--preset must be one of {', '.join(presets)}")


class _RoiApplier:
    """Attaches AVRegionOfInterest side data through an ``addroi`` filter graph. ``prepare`` builds the graph for a
    region list (only when it differs from the previous list; it runs in the worker thread, ahead of the encoder),
    ``apply`` pushes one frame through a prepared graph (the encoding thread)."""

    def __init__(self, width: int, height: int, time_base: Fraction) -> None:
        self.width, self.height, self.time_base = width, height, time_base
        self.regions: list[Region] | None = None
        self.graph: Any = None
        self.rebuilds = 0

    def prepare(self, regions: list[Region]) -> Any:
        from av.filter import Graph

        if not regions:
            return None
        if regions != self.regions:
            g = Graph()
            last = g.add_buffer(width=self.width, height=self.height, format="yuv420p", time_base=self.time_base)
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


def _open_output(path: Path, s: EncodeSettings, width: int, height: int, fps: Fraction) -> tuple[Any, Any]:
    import av

    container = av.open(str(path), "w", format="mp4" if path.suffix.lower() in (".mp4", ".tmp") else None)
    st = container.add_stream(s.codec, rate=fps)
    st.width, st.height, st.pix_fmt = width, height, "yuv420p"
    st.codec_context.time_base = 1 / fps
    opts = {"preset": s.preset}
    if s.bitrate:
        st.bit_rate = s.bitrate
    else:
        opts["crf"] = f"{s.crf:g}"
    if s.codec == "libx264":
        # libx264 applies ROI through adaptive quantisation and skips it when AQ is off (x264's ultrafast preset
        # turns it off): keep AQ on in every encode, plain or ROI, so the two stay comparable
        opts["aq-mode"] = "1" if s.preset == "ultrafast" else "-1"
    if s.codec == "libx265":
        opts["x265-params"] = "log-level=error"
    st.options = opts
    return container, st


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
    """Encode ``reader``'s frames (8-bit 4:2:0) to ``output``; with ``settings.roi``, regions of interest from the
    saliency of the frames (the model, ``settings.roi_maps``, or ``saliency(i, frame)`` -> a frame-size map in
    [0, 1], e.g. ground truth for an oracle). Written to a temp file beside ``output``, renamed when complete."""
    import av

    from tinysal.fileio import check_writable_target

    check_settings(settings)
    out = Path(output)
    if out.suffix.lower() not in CONTAINERS:
        raise TinysalError(f"cannot write {settings.codec} to {out.name!r}: give a {'/'.join(CONTAINERS)} output")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise TinysalError(f"{out} exists: pass --overwrite to replace it")
    check_writable_target(out)
    if out.is_symlink():  # --overwrite of a link replaces what it points to; the link stays a link
        out = Path(os.path.realpath(out))
    if (reader.pix_fmt, reader.bitdepth) != ("420", 8):
        raise TinysalError(f"encode takes 8-bit 4:2:0 input; {reader.path} is {reader.pix_fmt} {reader.bitdepth}-bit")
    if fps is not None and reader.fps:
        raise TinysalError(f"--fps is for raw YUV input; {reader.path} has its own frame rate ({reader.fps:g} fps)")
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        raise TinysalError(f"--fps must be a frame rate in (0, 1000], got {fps}")
    rate = Fraction(fps or reader.fps or DEFAULT_RAW_FPS).limit_denominator(1001)
    n = reader.frame_count if not frame_cnt else min(frame_cnt, reader.frame_count)
    every = settings.roi_every or max(1, round(float(rate) / 3))
    if settings.roi and every > float(rate):
        raise TinysalError(f"--roi-every {every} is more than one second of frames ({float(rate):g} fps)")
    # one ORT thread: the saliency runs in a worker thread beside the encoder's own threads, where a second ORT
    # thread only contends with them (measured: the same wall time per map for ~40% less CPU)
    use_model = saliency is None and settings.roi and not settings.roi_maps
    model = SaliencyBlocks(settings.model_path, threads=1) if use_model else None

    maps_dir = Path(settings.roi_maps) if settings.roi_maps else None
    rows, cols = math.ceil(reader.height / settings.block), math.ceil(reader.width / settings.block)
    if maps_dir is not None and not maps_dir.is_dir():
        raise TinysalError(f"--roi-maps folder not found: {maps_dir}")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp{out.suffix}")
    t0 = time.perf_counter()
    applier = _RoiApplier(reader.width, reader.height, 1 / rate)
    job_seconds: list[float] = []
    offsets_used: list[float] = []

    def segment(i: int, fr: YuvFrame) -> Any:
        """Saliency -> block offsets -> regions -> addroi graph for the segment starting at frame ``i``; runs in the
        worker thread while the encoder works through the previous segment."""
        ts = time.perf_counter()
        if maps_dir is not None:
            mp = maps_dir / f"frame_{i:06d}{MAP_SUFFIX['x264']}"
            if not mp.is_file():
                raise TinysalError(f"{mp}: no map for frame {i} (make them with roi-maps --every {every})")
            grid = read_map(mp, "x264", rows, cols)
        elif model is not None:
            grid = offsets_from_means(model.block_means(fr, settings.block), settings.roi_strength)
        else:
            assert saliency is not None
            grid = block_offsets(saliency(i, fr), settings.block, settings.roi_strength)
        graph = applier.prepare(layered_regions(grid, settings.block, reader.width, reader.height))
        offsets_used.append(float(np.mean(grid)))
        job_seconds.append(time.perf_counter() - ts)
        return graph

    done = 0
    # frames read but not yet encoded, each with the future of its segment's graph: at most one segment (<= 1 s)
    pending: deque[tuple[Any, Future[Any] | None]] = deque()
    # BLAS (the block means' small matrix products, the resize) single-threaded for the encode: OpenBLAS's idle
    # threads busy-wait, taking CPU from the encoder for products too small to gain from a second thread
    blas_limit = threadpool_limits(limits=1, user_api="blas")
    try:
        container, st = _open_output(tmp, settings, reader.width, reader.height, rate)
        from tinysal.encode.streams import Passthrough
        from tinysal.video.readers import AvReader

        keep = Passthrough(reader.path if isinstance(reader, AvReader) else None, keep_audio=not settings.no_audio)
        try:
            keep.attach(container, st)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinysal-roi") as pool:

                def flush() -> None:
                    nonlocal done
                    while pending:
                        vf, fut = pending.popleft()
                        if fut is not None:
                            vf = applier.apply(vf, fut.result())
                        for pkt in st.encode(vf):
                            container.mux(pkt)
                        done += 1
                        keep.mux_until(container, done / float(rate))
                        if progress:
                            progress(done, n)

                job: Future[Any] | None = None
                for i, fr in enumerate(reader.frames()):
                    if i >= n:
                        break
                    vf = av.VideoFrame(reader.width, reader.height, "yuv420p")
                    for plane, arr in zip(vf.planes, (fr.y, fr.u, fr.v)):
                        _copy_plane(plane, arr)
                    vf.pts, vf.time_base = i, 1 / rate
                    if settings.roi and i % every == 0:
                        # this segment's regions are worked out while the previous segment is encoded
                        job = pool.submit(segment, i, fr)
                        flush()
                    pending.append((vf, job))
                    if not settings.roi:
                        flush()
                flush()
            for pkt in st.encode():
                container.mux(pkt)
            kept = keep.finish(container, done / float(rate))
        finally:
            keep.close()
            container.close()
        if done == 0:
            raise TinysalError("no frames to encode")
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
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        blas_limit.restore_original_limits()
    wall = time.perf_counter() - t0
    size = out.stat().st_size
    return {
        "output": str(out),
        "frames": done,
        "bytes": size,
        "kbps": size * 8 / (done / float(rate)) / 1000,
        "seconds": wall,
        # time in the worker thread (saliency, regions, filter graphs), mostly hidden behind the encoder
        "saliency_seconds": sum(job_seconds),
        "roi": settings.roi,
        "roi_every": every if settings.roi else None,
        "graph_rebuilds": applier.rebuilds,
        "kept": kept,
        "mean_offset": float(np.mean(offsets_used)) if offsets_used else 0.0,
    }


def _copy_plane(plane: Any, arr: np.ndarray) -> None:
    """Copy a numpy plane into a PyAV plane (whose rows may be padded to a larger line size)."""
    h, w = arr.shape
    buf = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    buf[:h, :w] = arr


def iter_progress(total: int, desc: str, quiet: bool) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A tqdm progress callback on a TTY (and its closer)."""
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="frame", leave=False)

    def cb(i: int, n: int) -> None:
        bar.update(i - bar.n)

    return cb, bar.close


__all__ = ["block_offsets", "regions_from_offsets", "roi_maps", "encode_video", "EncodeSettings", "Region"]
