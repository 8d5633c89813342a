"""Video readers: raw planar YUV, Y4M, and anything FFmpeg decodes (via PyAV). All stream frame by frame.

Each reader yields :class:`YuvFrame` objects (planes as numpy arrays of code values) and knows its frame count
up front where the format allows it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinysal.errors import TinysalError

SUBSAMPLING = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}
#: Refuse frames whose decoded float working set would exceed this (bytes): protects against typos in -w/-h.
MAX_FRAME_PIXELS = 8192 * 8192


def ffmpeg_url(path: str | os.PathLike[str]) -> str:
    """The name to give FFmpeg for a local file: ``file:`` first, so a name with a colon (``take:2.mp4``) is not
    read as a protocol."""
    return "file:" + os.fspath(path)


@dataclass
class YuvFrame:
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    bitdepth: int
    pix_fmt: str  # "420" | "422" | "444"

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])


def _check_geometry(width: int, height: int, pix_fmt: str, bitdepth: int) -> None:
    if width <= 0 or height <= 0:
        raise TinysalError(f"width and height must be positive, got {width}x{height}")
    if pix_fmt not in SUBSAMPLING:
        if pix_fmt in ("400", "gray", "mono"):
            raise TinysalError("pixel format 4:0:0 (luma only) is not supported: saliency needs colour")
        raise TinysalError(f"unsupported pixel format {pix_fmt!r}; use 420, 422 or 444")
    if bitdepth not in (8, 10):
        raise TinysalError(f"unsupported bit depth {bitdepth}; use 8 or 10")
    sx, sy = SUBSAMPLING[pix_fmt]
    if width % sx or height % sy:
        raise TinysalError(
            f"{width}x{height} is not a valid size for 4:{pix_fmt[1]}:{pix_fmt[2]} "
            f"(width must be a multiple of {sx}, height of {sy})"
        )
    if width * height > MAX_FRAME_PIXELS:
        need = width * height * 4 * 8 / 2**30
        raise TinysalError(
            f"{width}x{height} is too large: one frame would need about {need:.1f} GiB of working "
            f"memory (limit {MAX_FRAME_PIXELS} pixels)"
        )


def frame_bytes(width: int, height: int, pix_fmt: str, bitdepth: int) -> int:
    sx, sy = SUBSAMPLING[pix_fmt]
    bps = 1 if bitdepth == 8 else 2
    return (width * height + 2 * (width // sx) * (height // sy)) * bps


def _split_planes(buf: bytes, width: int, height: int, pix_fmt: str, bitdepth: int) -> YuvFrame:
    """One frame's bytes (Y, then U, then V, planar) as a YuvFrame of views into the buffer."""
    dt = np.uint8 if bitdepth == 8 else np.dtype("<u2")
    sx, sy = SUBSAMPLING[pix_fmt]
    cw, ch = width // sx, height // sy
    ny, nc = width * height, cw * ch
    a = np.frombuffer(buf, dtype=dt)
    return YuvFrame(
        a[:ny].reshape(height, width),
        a[ny : ny + nc].reshape(ch, cw),
        a[ny + nc : ny + 2 * nc].reshape(ch, cw),
        bitdepth,
        pix_fmt,
    )


class RawYuvReader:
    """Headerless planar YUV (I420/I422/I444; 10-bit as little-endian 16-bit words)."""

    def __init__(
        self, path: str | os.PathLike[str], width: int, height: int, pix_fmt: str = "420", bitdepth: int = 8
    ) -> None:
        _check_geometry(width, height, pix_fmt, bitdepth)
        self.path = Path(path)
        if not self.path.is_file():
            raise TinysalError(f"video file not found: {self.path}")
        self.width, self.height, self.pix_fmt, self.bitdepth = width, height, pix_fmt, bitdepth
        self.frame_size = frame_bytes(width, height, pix_fmt, bitdepth)
        size = self.path.stat().st_size
        if size == 0:
            raise TinysalError(f"{self.path}: file is empty (zero frames)")
        n, rest = divmod(size, self.frame_size)
        if rest:
            raise TinysalError(
                f"{self.path}: size {size} bytes is not a whole number of {width}x{height} {pix_fmt} "
                f"{bitdepth}-bit frames ({self.frame_size} bytes each): {n} frames and {rest} bytes left over"
            )
        self.frame_count = n
        self.colorspace: str | None = None
        self.range: str | None = None
        self.fps: float | None = None
        self.note: str | None = None

    def frames(self, start: int = 0) -> Iterator[YuvFrame]:
        with open(self.path, "rb") as f:
            f.seek(start * self.frame_size)
            for i in range(start, self.frame_count):
                buf = f.read(self.frame_size)
                if len(buf) < self.frame_size:
                    return
                fr = _split_planes(buf, self.width, self.height, self.pix_fmt, self.bitdepth)
                if self.bitdepth == 10:
                    top = max(int(fr.y.max()), int(fr.u.max()), int(fr.v.max()))
                    if top > 1023:
                        raise TinysalError(
                            f"{self.path}: frame {i} has a sample of {top}, above 10-bit's 1023: not 10-bit "
                            "little-endian data (16-bit? big-endian? the wrong --bitdepth?)"
                        )
                yield fr


_Y4M_C = {
    "420jpeg": ("420", 8),
    "420paldv": ("420", 8),
    "420mpeg2": ("420", 8),
    "420": ("420", 8),
    "422": ("422", 8),
    "444": ("444", 8),
    "420p10": ("420", 10),
    "422p10": ("422", 10),
    "444p10": ("444", 10),
}


def _y4m_tags(path: Path, tags: list[str]) -> tuple[int | None, int | None, str, float | None, str | None,
                                                  tuple[int, int] | None]:  # fmt: skip
    """(width, height, colour format, frame rate, range, sample aspect ratio or None when unknown) from a Y4M
    header's tags; a malformed tag is one line."""

    def number(tag: str, text: str) -> int:
        if not text.isdigit() or len(text) > 9:
            raise TinysalError(f"{path}: Y4M header tag {tag}{text!r} is not a whole number")
        return int(text)

    def ratio(tag: str, text: str, what: str) -> tuple[int, int]:
        num, sep, den = text.partition(":")
        if not sep:
            raise TinysalError(f"{path}: Y4M {what} {tag}{text!r} is not NUM:DEN")
        return number(tag, num), number(tag, den)

    w = h = None
    c, fps, rng = "420jpeg", None, None
    sar: tuple[int, int] | None = None
    for t in tags:
        k, val = t[0], t[1:]
        if k == "W":
            w = number("W", val)
        elif k == "H":
            h = number("H", val)
        elif k == "C":
            c = val
        elif k == "F":
            n_, d_ = ratio("F", val, "frame rate")
            fps = n_ / d_ if d_ else None
        elif k == "A":
            an, ad = ratio("A", val, "aspect")
            sar = (an, ad) if an and ad else None  # A0:0: unknown
        elif k == "X" and val.upper().startswith("COLORRANGE="):
            rng = "full" if val.split("=", 1)[1].upper() == "FULL" else "limited"
    return w, h, c, fps, rng, sar


class Y4mReader:
    """YUV4MPEG2: size, chroma format, bit depth, frame rate and (``XCOLORRANGE``) range from the header."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TinysalError(f"video file not found: {self.path}")
        with open(self.path, "rb") as f:
            header = f.readline(4096)
        if not header.startswith(b"YUV4MPEG2 ") or not header.endswith(b"\n"):
            raise TinysalError(f"{self.path}: not a Y4M file (no YUV4MPEG2 header line)")
        self.header_len = len(header)
        w, h, c, self.fps, self.range, self.sar = _y4m_tags(self.path, header.decode("ascii", "replace").split()[1:])
        self.colorspace: str | None = None
        if w is None or h is None:
            raise TinysalError(f"{self.path}: Y4M header lacks W or H")
        if c.startswith("mono"):
            raise TinysalError(f"{self.path}: Y4M colour format {c} (4:0:0) is not supported: saliency needs colour")
        if c not in _Y4M_C:
            raise TinysalError(f"{self.path}: unsupported Y4M colour format C{c}")
        self.pix_fmt, self.bitdepth = _Y4M_C[c]
        _check_geometry(w, h, self.pix_fmt, self.bitdepth)
        self.width, self.height = w, h
        self.frame_size = frame_bytes(w, h, self.pix_fmt, self.bitdepth)
        self.frame_count = self._count_frames()
        if self.frame_count == 0:
            raise TinysalError(f"{self.path}: no frames")

    def _count_frames(self) -> int:
        size = self.path.stat().st_size
        n, pos = 0, self.header_len
        with open(self.path, "rb") as f:
            while pos < size:
                f.seek(pos)
                line = f.readline(1024)
                if not line.startswith(b"FRAME"):
                    raise TinysalError(f"{self.path}: bad frame header at byte {pos}")
                pos += len(line) + self.frame_size
                if pos > size:
                    raise TinysalError(f"{self.path}: frame {n} is truncated ({pos - size} bytes missing)")
                n += 1
        return n

    def frames(self, start: int = 0) -> Iterator[YuvFrame]:
        with open(self.path, "rb") as f:
            f.seek(self.header_len)
            for i in range(self.frame_count):
                f.readline(1024)
                if i < start:
                    f.seek(self.frame_size, os.SEEK_CUR)
                    continue
                yield _split_planes(f.read(self.frame_size), self.width, self.height, self.pix_fmt, self.bitdepth)


_AV_FORMATS = {
    "yuv420p": ("420", 8),
    "yuvj420p": ("420", 8),
    "yuv422p": ("422", 8),
    "yuvj422p": ("422", 8),
    "yuv444p": ("444", 8),
    "yuvj444p": ("444", 8),
    "yuv420p10le": ("420", 10),
    "yuv422p10le": ("422", 10),
    "yuv444p10le": ("444", 10),
}


class AvReader:
    """Any container/codec FFmpeg decodes, through PyAV. Frames in other pixel formats are converted to
    yuv420p (8-bit sources) or yuv420p10le (deeper sources) by FFmpeg's swscale."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise TinysalError(f"video file not found: {self.path}")
        try:
            with av.open(ffmpeg_url(self.path)) as c:
                if not c.streams.video:
                    raise TinysalError(f"{self.path}: no video stream")
                s = c.streams.video[0]
                cc = s.codec_context
                self.width, self.height = int(cc.width), int(cc.height)
                fmt = cc.pix_fmt or "yuv420p"
                self.fps = float(s.average_rate) if s.average_rate else None
                self.range = "full" if (fmt.startswith("yuvj") or getattr(cc, "color_range", 0) == 2) else None
                self.colorspace = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020"}.get(
                    int(getattr(cc, "colorspace", 2) or 2)
                )
                # count what is really there (one demux pass, no decoding), each frame's time with it, and compare
                # with what the header announces: a file cut short is scored on what remains, with a warning, as
                # FFmpeg does
                packets = [(p.pts, p.size) for p in c.demux(s) if p.size]
                pts = [p for p, _ in packets]
                self.video_bytes = sum(size for _, size in packets)  # the video stream alone (audio left out)
                n = len(pts)
                self._timing(s, pts)
                self.note = self._truncated(c, s, n)
        except TinysalError:
            raise
        except Exception as e:  # av raises many types (InvalidDataError, ValueError...)
            raise TinysalError(
                f"cannot decode {self.path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            ) from None
        if fmt in _AV_FORMATS:
            self.av_format = fmt
        else:
            self.av_format = "yuv420p10le" if ("10" in fmt or "12" in fmt or "16" in fmt) else "yuv420p"
        if fmt.startswith("gray"):
            raise TinysalError(f"{self.path}: pixel format {fmt} (4:0:0) is not supported: saliency needs colour")
        self.pix_fmt, self.bitdepth = _AV_FORMATS[self.av_format]
        _check_geometry(self.width, self.height, self.pix_fmt, self.bitdepth)
        self.frame_count = n
        if n == 0:
            raise TinysalError(f"{self.path}: no frames")

    def _timing(self, s: Any, pts: list[int | None]) -> None:
        """Each frame's presentation timestamp (packets sorted: decode order is not display order), whether the
        frames are spaced unevenly (variable frame rate: the spacing differs from the mean by more than 10%),
        and for those the true average rate (what a container of one rate can hold)."""
        self.time_base = s.time_base
        self.pts: list[int] | None = None
        self.vfr = False
        if len(pts) < 3 or any(p is None for p in pts) or not s.time_base:
            return
        self.pts = sorted(int(p) for p in pts if p is not None)
        steps = np.diff(np.asarray(self.pts, dtype=np.float64))
        mean = float(steps.mean())
        if mean <= 0:
            self.pts = None
            return
        self.vfr = bool(np.abs(steps - mean).max() > 0.1 * mean)
        if self.vfr:
            self.fps = 1 / (mean * float(s.time_base))

    def duration(self) -> float | None:
        """Seconds from the first frame's start to the last frame's end (by the frames' own times), or None."""
        if not self.pts:
            return None
        span = (self.pts[-1] - self.pts[0]) * float(self.time_base)
        return span * len(self.pts) / (len(self.pts) - 1)

    def _truncated(self, c: Any, s: Any, n: int) -> str | None:
        """A note when fewer frames are there than the header announces: the container's frame count where it
        keeps one, else its duration against the frames' own times (a frame count made of duration x average
        rate is wrong for a variable-rate file)."""
        announced = int(s.frames or 0)
        if announced:
            short = n < announced - 1
        else:
            header = float(s.duration * s.time_base) if s.duration and s.time_base else (c.duration or 0) / 1e6
            have = self.duration()
            if not header or not self.fps:
                return None
            if have is None:
                have = n / self.fps
            short = have < header - max(2 / self.fps, 0.02 * header)
            announced = round(header * self.fps)
        if not short:
            return None
        return (f"{self.path}: only {n} frames can be read of the {announced} its header announces (truncated?): "
                "scoring those")  # fmt: skip

    def frames(self, start: int = 0) -> Iterator[YuvFrame]:
        import av

        sx, sy = SUBSAMPLING[self.pix_fmt]
        bps = 1 if self.bitdepth == 8 else 2
        dt = np.uint8 if self.bitdepth == 8 else np.dtype("<u2")
        try:
            with av.open(ffmpeg_url(self.path)) as c:
                s = c.streams.video[0]
                s.thread_type = "AUTO"
                for i, fr in enumerate(c.decode(s)):
                    if i < start:
                        continue
                    if fr.format.name != self.av_format:
                        fr = fr.reformat(format=self.av_format)
                    planes = []
                    for k, (w, h) in enumerate(
                        ((self.width, self.height),) + ((self.width // sx, self.height // sy),) * 2
                    ):
                        p = fr.planes[k]
                        a = np.frombuffer(p, dtype=np.uint8).reshape(-1, p.line_size)[:h, : w * bps]
                        planes.append(np.ascontiguousarray(a).view(dt).reshape(h, w))
                    yield YuvFrame(planes[0], planes[1], planes[2], self.bitdepth, self.pix_fmt)
        except av.error.FFmpegError as e:
            raise TinysalError(f"decoding {self.path} failed: {e}") from None


def open_video(
    path: str | os.PathLike[str],
    width: int | None = None,
    height: int | None = None,
    pix_fmt: str | None = None,
    bitdepth: int | None = None,
) -> RawYuvReader | Y4mReader | AvReader:
    """Pick a reader by extension: ``.yuv`` (needs width/height), ``.y4m``, anything else via FFmpeg."""
    p = Path(path)
    if not p.exists():
        raise TinysalError(f"video file not found: {p}")
    ext = p.suffix.lower()
    if ext == ".y4m":
        return Y4mReader(p)
    containers = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".ts", ".m2ts", ".ivf", ".flv")
    if ext in (".yuv", ".raw", ".i420", ".bin") or (width is not None and height is not None and ext not in containers):
        if width is None or height is None:
            raise TinysalError(f"{p}: raw YUV needs --width and --height")
        return RawYuvReader(p, int(width), int(height), str(pix_fmt or "420"), int(bitdepth or 8))
    return AvReader(p)


def pix_fmt_bitdepth(text: str) -> int | None:
    """The bit depth a pixel-format name implies (``yuv420p10le`` -> 10, ``yuv420p`` -> 8), or None (``420``)."""
    t = str(text).lower()
    m = re.fullmatch(r"yuv(4[024]{2})p(\d+)?(le|be)?", t)
    if not m:
        return None
    if m.group(3) == "be":
        raise TinysalError(f"pixel format {text}: big-endian samples are not supported (use little-endian)")
    return int(m.group(2) or 8)


def resolve_bitdepth(pixel_format: str, bitdepth: int | None) -> int:
    """The bit depth to read raw YUV with: ``--bitdepth`` if given (refused when the pixel-format name says
    otherwise, e.g. ``-p yuv420p10le -b 8``), else what the name implies, else 8."""
    implied = pix_fmt_bitdepth(pixel_format)
    if bitdepth is None:
        return implied or 8
    if implied and implied != bitdepth:
        raise TinysalError(f"--pixel_format {pixel_format} is {implied}-bit but --bitdepth is {bitdepth}")
    return bitdepth


def parse_pix_fmt(text: str) -> str:
    """``420``, ``yuv420p``, ``i420`` -> ``420`` etc."""
    t = str(text).lower()
    m = re.search(r"(4[024]{2})", t)
    if t in ("i420", "yv12"):
        return "420"
    if m:
        return m.group(1)
    return t


@dataclass(kw_only=True)
class VideoInput:
    """The input of a task that reads one video, as the commands name it: a file (raw ``.yuv`` needs ``width``
    and ``height``), with the raw format's ``pixel_format`` and ``bitdepth``. Task options extend it."""

    input: str
    width: int | None = None
    height: int | None = None
    pixel_format: str = "420"
    bitdepth: int | None = None  # None: what pixel_format implies, else 8

    def open_input(self) -> Any:
        """The reader (with a ``note`` attribute when the file is cut short: worked on as far as it goes)."""
        self.bitdepth = resolve_bitdepth(self.pixel_format, self.bitdepth)
        return open_video(self.input, self.width, self.height, parse_pix_fmt(self.pixel_format), self.bitdepth)


def frame_bytes_of(frame: YuvFrame) -> bytes:
    """Raw planar bytes of a frame (Y, U, V; 10-bit as little-endian 16-bit words)."""
    dt = np.uint8 if frame.bitdepth == 8 else np.dtype("<u2")
    return b"".join(np.ascontiguousarray(p, dtype=dt).tobytes() for p in (frame.y, frame.u, frame.v))
