"""Saliency-guided (ROI) encoding, the maps: per-block QP offsets from saliency, as regions for the encoder
(``encode.encoder``, ``tinysal encode --roi``) or written as the reference system's sidecar maps
(``tinysal roi-maps``)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.video.readers import VideoInput, YuvFrame

MAX_OFFSET = 12
#: encoder -> default block (CTU / macroblock) size, as in the reference system
DEFAULT_CTU = {"x265": 64, "svt-av1": 64, "x264": 16, "vvenc": 64}
#: QP range of 8-bit H.264/HEVC: AVRegionOfInterest.qoffset is a fraction of it
QP_RANGE = 51
#: per-codec default ROI strength, chosen by the roi-eval sweep with the production model (v3) on the held-out DAVIS
#: sequences: the strongest setting whose mean whole-frame VMAF BD-rate stays <= +5% (docs/benchmarks.md).
#: libx264 at 3: object-region BD-rate -25.7%, VMAF +3.3%; libx265 at 2: -19.2%, +2.0%. Re-swept with v3_long
#: (production since 2026-12-05): 3 and 2 are still the strongest within +5% (-29.0% / +3.4%, -22.2% / +1.0%).
# (the default ROI strength per codec is the codec table's: encode.codecs.CODECS[...].roi_strength)


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


@dataclass(kw_only=True)
class RoiMapsOptions(VideoInput):
    """The ``roi-maps`` task's options (the command's flags): the input, the folder the maps replace as a whole,
    the encoder whose map format is written, its block size, the strength and how often a map is made."""

    outdir: str
    frame_cnt: int = 0
    model_path: str | None = None
    encoder: str = "x265"
    ctu: int | None = None  # None: the encoder's default block (DEFAULT_CTU)
    strength: float = 6.0
    every: int = 1


def make_roi_maps(opts: RoiMapsOptions, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Open the input and write its maps (``roi_maps``); the summary, with ``notes`` on the input."""
    reader = opts.open_input()
    note = getattr(reader, "note", None)
    info = roi_maps(reader, opts.outdir, opts.encoder, opts.ctu, opts.strength, opts.every, opts.model_path,
                    opts.frame_cnt, progress)  # fmt: skip
    info["notes"] = [note] if note else []
    return info


__all__ = ["block_offsets", "regions_from_offsets", "roi_maps", "make_roi_maps", "RoiMapsOptions", "Region",
           "SaliencyBlocks"]  # fmt: skip
