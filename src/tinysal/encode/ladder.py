"""``tinysal ladder``: a per-title bitrate ladder, plain and with ROI encoding, and what ROI saves on it.

Every rung (height x CRF, and with ``--roi`` the same with ROI encoding at the codec's default strength) is encoded
from the source scaled to its height, and scored at the source's resolution: the encode is scaled back up with one
stated scaler (``--scaler``, bicubic by default) before libvmaf sees it, as Netflix scores rungs, so that rungs of
different heights compare. The convex hull of bitrate against VMAF (upper hull in log-bitrate, the per-title
ladder's envelope) is taken for plain and for ROI encodes, and the BD-rate between the two hulls is reported on
VMAF and, with ``--roi``, on the saliency-weighted ``vmaf_roi`` (its own hulls). Each rung is a job of the batch
task ``rung`` (:class:`RungOptions`: one encode and one score, by the encode and score tasks); ``tinysal.batch.ladder``
writes them as a manifest and runs it with the batch runner, locally or on Ray. This module is the rung and the
arithmetic; it imports nothing of the batch layer.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinysal.encode.codecs import CODECS
from tinysal.encode.encoder import LAYOUTS, EncodeOptions, check_codec, default_preset, encode
from tinysal.errors import TinysalError
from tinysal.video.readers import VideoInput

#: swscale scalers a ladder may name (down to the rung, and back up for scoring)
SCALERS = ("bicubic", "bilinear", "lanczos", "spline", "area", "neighbor")
DEFAULT_FPS = 25.0


def parse_heights(text: str) -> list[int]:
    try:
        hs = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise TinysalError(f"--heights {text!r}: expected heights like 1080,720,540,360") from None
    if not hs:
        raise TinysalError("--heights: give at least one height")
    for h in hs:
        if h < 16:
            raise TinysalError(f"--heights: {h} is not a height of at least 16 lines")
    if len(set(hs)) != len(hs):
        raise TinysalError(f"--heights {text!r}: a height is given twice")
    return sorted(hs, reverse=True)


def parse_crfs(text: str) -> list[float]:
    """``18:42:4`` (first:last:step, last included when the steps reach it) or ``20,26,32``."""
    t = str(text)
    try:
        if ":" in t:
            parts = [float(x) for x in t.split(":")]
            if len(parts) != 3:
                raise ValueError
            a, b, step = parts
            if not (step > 0 and a <= b):
                raise TinysalError(f"--crfs {t!r}: expected FIRST:LAST:STEP with FIRST <= LAST and STEP > 0")
            crfs = [a + k * step for k in range(int(math.floor((b - a) / step + 1e-9)) + 1)]
        else:
            crfs = sorted({float(x) for x in t.split(",") if x.strip()})
    except ValueError:
        raise TinysalError(f"--crfs {t!r}: expected FIRST:LAST:STEP (18:42:4) or a list (20,26,32)") from None
    if not crfs:
        raise TinysalError("--crfs: give at least one CRF")
    for c in crfs:
        if not (math.isfinite(c) and 0 <= c <= 63):  # the codec's own range is checked with the codec
            raise TinysalError(f"--crfs: CRF {c:g} is outside 0..63")
    if len(crfs) > 64:
        raise TinysalError(f"--crfs {t!r}: {len(crfs)} CRFs per height is more than 64")
    return crfs


#: the rung heights without --heights: those up to the source's height are used
DEFAULT_HEIGHTS = "1080,720,540,360"


def default_heights(source_height: int) -> list[int]:
    """DEFAULT_HEIGHTS up to the source's height; the source's own (even) height when none fits."""
    fit = [h for h in parse_heights(DEFAULT_HEIGHTS) if h <= source_height]
    return fit or [source_height - source_height % 2]


@dataclass(kw_only=True)
class LadderOptions(VideoInput):
    """The ``ladder`` task's options; the names are the command's flags."""

    codec: str = "libx264"
    heights: str | None = None  # None: DEFAULT_HEIGHTS up to the source's height
    crfs: str = "18:42:4"
    roi: bool = False
    preset: str | None = None  # None: the codec's default preset
    scaler: str = "bicubic"
    fps: float | None = None  # raw YUV only
    frame_cnt: int = 0
    jobs: int = 1
    threads: int = 0
    out_json: str | None = None
    plot: str | None = None
    model_path: str | None = None
    engine: str = "local"  # where the rungs run, as batch jobs: local processes or Ray
    address: str | None = None
    work_dir: str | None = None  # keeps the rung sources, the manifest and the records: a rerun resumes
    encoder_args: str = ""  # the encoder's own parameters for every rung (k=v:k2=v2)
    keep_encodes: str | None = None  # a folder: each rung's encode kept there as <rung id>.mp4
    keep_sources: bool = False  # with work_dir: keep the raw rung sources when the ladder finishes

    def __post_init__(self) -> None:
        self.preset = default_preset(self.codec, self.preset)

    def check(self) -> tuple[list[int], list[float]]:
        """Refuse, before any work, what cannot run (one line each); the heights (tallest first) and CRFs."""
        c = check_codec(self.codec, self.preset)
        if self.roi and c.roi_strength is None:
            raise TinysalError(f"--roi with {self.codec}: it has no default ROI strength (no strength of its route "
                               "meets roi-eval's bar; docs/codecs.md)")  # fmt: skip
        for crf in parse_crfs(self.crfs):
            c.check_crf(crf, "--crfs")
        c.check_params(self.encoder_args)
        if self.scaler not in SCALERS:
            raise TinysalError(f"--scaler must be one of {', '.join(SCALERS)}")
        if not 1 <= self.jobs <= 256:
            raise TinysalError(f"--jobs must be 1..256, got {self.jobs}")
        if self.engine not in ("local", "ray"):
            raise TinysalError(f"--engine must be local or ray, got {self.engine!r}")
        from tinysal.fileio import check_writable_target

        for p in (self.out_json, self.plot):
            if p:
                check_writable_target(p)
        return parse_heights(self.heights or DEFAULT_HEIGHTS), parse_crfs(self.crfs)


def _ffmpeg(args: list[str], what: str) -> None:
    from tinysal.video.ffmpeg import ffmpeg_exe

    p = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                       capture_output=True, text=True)  # fmt: skip
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no message"])[-1]
        raise TinysalError(f"{what}: FFmpeg failed: {tail}")


def _raw(w: int, h: int, fmt: str) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", fmt, "-s", f"{w}x{h}"]


@dataclass(kw_only=True)
class RungOptions:
    """One rung, the batch task ``rung``: encode ``rung_source`` (the source scaled to ``rung_width`` x
    ``rung_height``, raw 8-bit 4:2:0) at ``crf`` (ROI at ``roi_strength``; 0 = plain), scale the encode back up to
    ``width`` x ``height`` with ``scaler`` and score it against ``source`` (raw, that size), with ``vmaf_roi`` when
    ``roi``. The ladder writes these as a manifest; ``tinysal batch`` runs them like any other job."""

    source: str
    rung_source: str
    width: int
    height: int
    rung_width: int
    rung_height: int
    crf: float
    roi_strength: float = 0.0
    codec: str = "libx264"
    preset: str | None = None
    scaler: str = "bicubic"
    fps: float = DEFAULT_FPS
    roi: bool = False
    model_path: str | None = None
    threads: int = 0
    pix_fmt: str = "yuv420p"  # the raw layout of source and rung_source (the codec's for the title's source)
    encoder_args: str = ""
    keep_encode: str | None = None  # keep the rung's encode here (ladder --keep-encodes)

    def __post_init__(self) -> None:
        self.preset = default_preset(self.codec, self.preset)

    def check(self, files: bool = True) -> None:
        if self.pix_fmt not in LAYOUTS:
            raise TinysalError(f"pix_fmt must be one of {', '.join(LAYOUTS)}, got {self.pix_fmt!r}")
        c = check_codec(self.codec, self.preset)
        if self.scaler not in SCALERS:
            raise TinysalError(f"scaler must be one of {', '.join(SCALERS)}, got {self.scaler!r}")
        c.check_params(self.encoder_args)
        lo, hi = c.crf_range
        if not (math.isfinite(self.crf) and lo <= self.crf <= hi):
            raise TinysalError(f"crf {self.crf:g} is outside {lo}..{hi}")
        if not (0 < self.rung_height <= self.height and 0 < self.rung_width <= self.width):
            raise TinysalError(f"a {self.rung_width}x{self.rung_height} rung of a {self.width}x{self.height} source")
        if not (math.isfinite(self.fps) and self.fps > 0) or self.roi_strength < 0:
            raise TinysalError("fps must be above 0 and roi_strength at least 0")


def run_rung(opts: RungOptions) -> dict[str, Any]:
    """Encode and score one rung: its point (size, bitrate, mean VMAF and vmaf_roi). Its files are removed."""
    from tinysal.encode.sampling import score_frames

    opts.check()
    W, H = opts.width, opts.height
    from tinysal.fileio import work_dir

    folder = work_dir("rung")
    enc, up = folder / "enc.mp4", folder / "up.yuv"
    t0 = time.perf_counter()
    try:
        pix, depth = LAYOUTS[opts.pix_fmt]
        eo = EncodeOptions(input=opts.rung_source, width=opts.rung_width, height=opts.rung_height,
                           pixel_format=pix, bitdepth=depth, output=str(enc), fps=opts.fps, codec=opts.codec,
                           crf=opts.crf, preset=opts.preset, roi=opts.roi_strength > 0,
                           roi_strength=opts.roi_strength or None, overwrite=True, no_audio=True,
                           threads=opts.threads, model_path=opts.model_path,
                           encoder_args=opts.encoder_args)  # fmt: skip
        info = encode(eo)
        if opts.keep_encode:
            from tinysal.fileio import atomic_open

            with atomic_open(opts.keep_encode, "wb") as f, open(enc, "rb") as src:
                shutil.copyfileobj(src, f)
        dist = enc
        if (opts.rung_width, opts.rung_height) != (W, H):  # scored at the source's size, scaled with one scaler
            _ffmpeg(["-i", str(enc), "-vf", f"scale={W}:{H}:flags={opts.scaler}", *_raw(W, H, opts.pix_fmt)[:4],
                     str(up)], f"scaling the {opts.rung_height}-line encode up")  # fmt: skip
            dist = up
        sc = score_frames(opts.source, str(dist), W, H, opts.pix_fmt, opts.threads, opts.model_path, 0, opts.roi)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    vm, roi = sc["vmaf"], sc["vmaf_roi"]
    seconds = len(vm) / opts.fps
    return {
        "height": opts.rung_height, "width": opts.rung_width, "crf": opts.crf, "roi_strength": opts.roi_strength,
        "bytes": int(info["bytes"]), "video_kbps": round(info["video_bytes"] * 8 / seconds / 1000, 2),
        "total_kbps": round(info["bytes"] * 8 / seconds / 1000, 2),
        "vmaf": round(float(np.mean(vm)), 4), "vmaf_roi": round(float(np.mean(roi)), 4) if roi else None,
        "frames": len(vm), "seconds": round(time.perf_counter() - t0, 2),
    }  # fmt: skip


def convex_hull(points: list[dict[str, Any]], metric: str = "vmaf") -> list[dict[str, Any]]:
    """The upper convex hull of quality against log10(bitrate), from the cheapest point to the best: the rungs
    no mix of two other rungs beats (a point under the chord of its neighbours is dropped), quality rising."""
    pts = sorted((p for p in points if p.get(metric) is not None), key=lambda p: (p["video_kbps"], -p[metric]))
    hull: list[dict[str, Any]] = []
    for p in pts:
        if hull and p[metric] <= hull[-1][metric]:
            continue  # costs more for no better quality
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = ((math.log10(q["video_kbps"]), q[metric]) for q in hull[-2:])
            x3, y3 = math.log10(p["video_kbps"]), p[metric]
            if (x2 - x1) * (y3 - y1) - (y2 - y1) * (x3 - x1) >= 0:  # hull[-1] is on or under the chord
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def hull_bd_rate(a: list[dict[str, Any]], b: list[dict[str, Any]], metric: str) -> float | str:
    """BD-rate (%) of hull ``b`` against hull ``a`` on ``metric``, or why there is none."""
    from tinysal.encode.roi_eval import bd_rate

    try:
        return round(bd_rate([p["video_kbps"] for p in a], [p[metric] for p in a], [p["video_kbps"] for p in b],
                             [p[metric] for p in b]), 2)  # fmt: skip
    except TinysalError as e:
        return str(e)


def plot_ladder(doc: dict[str, Any], path: str) -> None:
    """Every rung and both hulls, bitrate (log) against VMAF (and vmaf_roi with ROI), as PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinysal.fileio import atomic_open

    metrics = ["vmaf"] + (["vmaf_roi"] if doc["roi"] else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.8), squeeze=False)
    heights = sorted({p["height"] for p in doc["points"]}, reverse=True)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(heights)))
    for ax, metric in zip(axes[0], metrics):
        for kind, marker, style in (("plain", "o", "-"), ("roi", "^", "--")):
            pts = [p for p in doc["points"] if (p["roi_strength"] > 0) == (kind == "roi")]
            if not pts:
                continue
            for h, c in zip(heights, colours):
                sel = [p for p in pts if p["height"] == h]
                ax.scatter([p["video_kbps"] for p in sel], [p[metric] for p in sel], color=c, marker=marker, s=22,
                           label=f"{h}p {kind}", alpha=0.8)  # fmt: skip
            hull = doc["hulls"][metric][kind]
            ax.plot([p["video_kbps"] for p in hull], [p[metric] for p in hull], style, color="black" if kind == "plain"
                    else "crimson", lw=1.5, label=f"{kind} hull")  # fmt: skip
        bd = doc["bd_rate"].get(metric)
        ax.set_xscale("log")
        ax.set_xlabel("bitrate (kbit/s)")
        ax.set_ylabel(f"{metric} (at {doc['source']['width']}x{doc['source']['height']}, {doc['scaler']})")
        title = f"{Path(doc['input']).name} {doc['codec']}: {metric}"
        if isinstance(bd, float):
            title += f" — ROI BD-rate {bd:+.1f}%"
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def check_source(opts: LadderOptions, reader: Any, heights: list[int]) -> None:
    W, H = reader.width, reader.height
    for h in heights:
        if h > H:
            raise TinysalError(f"--heights: a {h}-line rung is taller than the source ({W}x{H}); rungs are at most "
                               f"{H} lines")  # fmt: skip
    for h in heights:  # after the source's height: 289 on a 288-line source is first of all too tall
        if h % 2:
            raise TinysalError(f"--heights: {h} is odd; a rung's height is even (its 4:2:0 chroma has half the lines)")



def rung_width(width: int, height: int, h: int) -> int:
    """A rung's width: the source's aspect at ``h`` lines, even."""
    return width if h == height else max(2, round(width * h / height / 2) * 2)


def write_sources(reader: Any, total: int, heights: list[int], folder: Path, scaler: str,
                  layout: str = "yuv420p") -> tuple[int, dict]:  # fmt: skip
    """Decode the source once to raw frames in ``layout`` (the pixel format the codec encodes it in: what every rung
    is cut from and scored against) and scale it to each rung's height: (frames, {height: raw file})."""
    from tinysal.encode.encoder import raw_in

    W, H = reader.width, reader.height
    source = folder / "source.yuv"
    n = 0
    with open(source, "wb") as f:
        for fr in reader.frames():
            if n >= total:
                break
            f.write(raw_in(fr, layout))
            n += 1
    if n < 2:
        raise TinysalError(f"{reader.path}: a ladder needs at least 2 frames, got {n}")
    files = {H: str(source)}
    for h in heights:
        if h != H:
            w = rung_width(W, H, h)
            out = folder / f"source-{h}.yuv"
            _ffmpeg([*_raw(W, H, layout), "-i", str(source), "-vf", f"scale={w}:{h}:flags={scaler}",
                     *_raw(w, h, layout)[:4], str(out)], f"scaling the source to {h} lines")  # fmt: skip
            files[h] = str(out)
    return n, files


def roi_strengths(opts: LadderOptions) -> list[float]:
    """0 (plain) and, with ``--roi``, the codec's default ROI strength."""
    d = CODECS[opts.codec].roi_strength
    return [0.0] + ([d] if opts.roi and d is not None else [])


def summarise(opts: LadderOptions, source: dict[str, Any], heights: list[int], crfs: list[float],
              points: list[dict[str, Any]], seconds: float) -> dict[str, Any]:  # fmt: skip
    """The ladder's document from its points (``points``, ``hulls``, ``bd_rate``), also written to ``out_json`` and
    drawn to ``plot``."""
    strengths = roi_strengths(opts)
    kinds = {"plain": [p for p in points if not p["roi_strength"]], "roi": [p for p in points if p["roi_strength"]]}
    metrics = ["vmaf"] + (["vmaf_roi"] if opts.roi else [])
    hulls = {m: {k: convex_hull(v, m) for k, v in kinds.items() if v} for m in metrics}
    bd = {m: hull_bd_rate(hulls[m]["plain"], hulls[m]["roi"], m) for m in metrics if opts.roi}
    doc: dict[str, Any] = {
        "input": opts.input, "codec": opts.codec, "preset": opts.preset, "scaler": opts.scaler, "roi": opts.roi,
        "roi_strength": strengths[-1] if opts.roi else None, "source": source,
        "heights": heights, "crfs": crfs, "points": points, "hulls": hulls, "bd_rate": bd,
        "seconds": round(seconds, 2),
    }  # fmt: skip
    from tinysal.features.task import provenance

    doc["run_provenance"] = provenance(opts)
    if opts.out_json:
        from tinysal.fileio import write_json

        write_json(opts.out_json, doc)
    if opts.plot:
        plot_ladder(doc, opts.plot)
    return doc


__all__ = ["LadderOptions", "RungOptions", "run_rung", "convex_hull", "parse_crfs", "parse_heights", "summarise"]
