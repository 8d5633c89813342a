"""``tinysal ladder``: a per-title bitrate ladder, plain and with ROI encoding, and what ROI saves on it.

Every rung (height x CRF, and with ``--roi`` the same with ROI encoding at the codec's default strength) is encoded
from the source scaled to its height, and scored at the source's resolution: the encode is scaled back up with one
stated scaler (``--scaler``, bicubic by default) before libvmaf sees it, as Netflix scores rungs, so that rungs of
different heights compare. The convex hull of bitrate against VMAF (upper hull in log-bitrate, the per-title
ladder's envelope) is taken for plain and for ROI encodes, and the BD-rate between the two hulls is reported on
VMAF and, with ``--roi``, on the saliency-weighted ``vmaf_roi`` (its own hulls). Rungs run as jobs on a process
pool (``--jobs``); each is one encode and one score, by the ``encode`` and ``score`` tasks.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinysal.encode.encoder import EncodeOptions, check_codec, encode
from tinysal.encode.roi import DEFAULT_ROI_STRENGTH
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
        if h < 16 or h % 2:
            raise TinysalError(f"--heights: {h} is not an even height of at least 16 lines")
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
        if not (math.isfinite(c) and 0 <= c <= 51):
            raise TinysalError(f"--crfs: CRF {c:g} is outside 0..51")
    if len(crfs) > 64:
        raise TinysalError(f"--crfs {t!r}: {len(crfs)} CRFs per height is more than 64")
    return crfs


@dataclass(kw_only=True)
class LadderOptions(VideoInput):
    """The ``ladder`` task's options; the names are the command's flags."""

    codec: str = "libx264"
    heights: str = "1080,720,540,360"
    crfs: str = "18:42:4"
    roi: bool = False
    preset: str = "medium"
    scaler: str = "bicubic"
    fps: float | None = None  # raw YUV only
    frame_cnt: int = 0
    jobs: int = 1
    threads: int = 0
    out_json: str | None = None
    plot: str | None = None
    model_path: str | None = None

    def check(self) -> tuple[list[int], list[float]]:
        """Refuse, before any work, what cannot run (one line each); the heights (tallest first) and CRFs."""
        check_codec(self.codec, self.preset)
        if self.scaler not in SCALERS:
            raise TinysalError(f"--scaler must be one of {', '.join(SCALERS)}")
        if not 1 <= self.jobs <= 256:
            raise TinysalError(f"--jobs must be 1..256, got {self.jobs}")
        from tinysal.fileio import check_writable_target

        for p in (self.out_json, self.plot):
            if p:
                check_writable_target(p)
        return parse_heights(self.heights), parse_crfs(self.crfs)


def _ffmpeg(args: list[str], what: str) -> None:
    from tinysal.features.vmaf import ffmpeg_exe

    p = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                       capture_output=True, text=True)  # fmt: skip
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no message"])[-1]
        raise TinysalError(f"{what}: FFmpeg failed: {tail}")


def _raw(w: int, h: int, fmt: str) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", fmt, "-s", f"{w}x{h}"]


@dataclass(frozen=True)
class Rung:
    """One job: encode the source scaled to ``height`` at ``crf`` (ROI at ``roi_strength``, 0 = plain), score it
    at the source's size."""

    height: int
    width: int
    crf: float
    roi_strength: float


def run_rung(rung: Rung, ctx: dict[str, Any]) -> dict[str, Any]:
    """Encode and score one rung (a process-pool job: every argument is plain data). Its files are removed."""
    from tinysal.features.task import ScoreOptions, score

    folder, W, H, fmt = Path(ctx["folder"]), ctx["width"], ctx["height"], ctx["pix_fmt"]
    tag = f"{rung.height}-{rung.crf:g}-{rung.roi_strength:g}"
    src = ctx["rung_sources"][str(rung.height)]
    enc = folder / f"enc-{tag}.mp4"
    up = folder / f"up-{tag}.yuv"
    t0 = time.perf_counter()
    try:
        eo = EncodeOptions(input=src, width=rung.width, height=rung.height, pixel_format=ctx["pixel_format"],
                           bitdepth=ctx["bitdepth"], output=str(enc), fps=ctx["fps"], codec=ctx["codec"],
                           crf=rung.crf, preset=ctx["preset"], roi=rung.roi_strength > 0,
                           roi_strength=rung.roi_strength or None, overwrite=True, no_audio=True,
                           threads=ctx["threads"], model_path=ctx["model_path"])  # fmt: skip
        info = encode(eo)
        dist = enc
        if rung.height != H:  # scored at the source's size: scaled back up with the ladder's one scaler
            _ffmpeg(["-i", str(enc), "-vf", f"scale={W}:{H}:flags={ctx['scaler']}", *_raw(W, H, fmt)[:4], str(up)],
                    f"scaling the {rung.height}-line encode up")  # fmt: skip
            dist = up
        feat = ["mobilesal:roi_score=1"] if ctx["roi"] else []
        params = [f"mobilesal:model_path={ctx['model_path']}"] if feat and ctx["model_path"] else []
        so = ScoreOptions(reference=ctx["source"], distorted=str(dist), width=W, height=H,
                          pixel_format=ctx["pixel_format"], bitdepth=ctx["bitdepth"], feature=feat,
                          feature_params=params, threads=ctx["threads"])  # fmt: skip
        res = score(so).result
    finally:
        enc.unlink(missing_ok=True)
        up.unlink(missing_ok=True)
    frames = res["frames"]
    seconds = len(frames) / ctx["fps"]
    vm = [f["metrics"]["vmaf"] for f in frames]
    roi = [f["metrics"]["vmaf_roi"] for f in frames if "vmaf_roi" in f["metrics"]]
    return {
        "height": rung.height, "width": rung.width, "crf": rung.crf, "roi_strength": rung.roi_strength,
        "bytes": int(info["bytes"]), "kbps": round(info["bytes"] * 8 / seconds / 1000, 2),
        "vmaf": round(float(np.mean(vm)), 4), "vmaf_roi": round(float(np.mean(roi)), 4) if roi else None,
        "frames": len(frames), "seconds": round(time.perf_counter() - t0, 2),
    }  # fmt: skip


def convex_hull(points: list[dict[str, Any]], metric: str = "vmaf") -> list[dict[str, Any]]:
    """The upper convex hull of quality against log10(bitrate), from the cheapest point to the best: the rungs
    no mix of two other rungs beats (a point under the chord of its neighbours is dropped), quality rising."""
    pts = sorted((p for p in points if p.get(metric) is not None), key=lambda p: (p["kbps"], -p[metric]))
    hull: list[dict[str, Any]] = []
    for p in pts:
        if hull and p[metric] <= hull[-1][metric]:
            continue  # costs more for no better quality
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = ((math.log10(q["kbps"]), q[metric]) for q in hull[-2:])
            x3, y3 = math.log10(p["kbps"]), p[metric]
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
        return round(bd_rate([p["kbps"] for p in a], [p[metric] for p in a], [p["kbps"] for p in b],
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
                ax.scatter([p["kbps"] for p in sel], [p[metric] for p in sel], color=c, marker=marker, s=22,
                           label=f"{h}p {kind}", alpha=0.8)  # fmt: skip
            hull = doc["hulls"][metric][kind]
            ax.plot([p["kbps"] for p in hull], [p[metric] for p in hull], style, color="black" if kind == "plain"
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


def _check_source(opts: LadderOptions, reader: Any, heights: list[int]) -> None:
    W, H = reader.width, reader.height
    for h in heights:
        if h > H:
            raise TinysalError(f"--heights: a {h}-line rung is taller than the source ({W}x{H}); rungs are at most "
                               f"{H} lines")  # fmt: skip
    if (reader.pix_fmt, reader.bitdepth) != ("420", 8):
        raise TinysalError(f"{opts.input}: the ladder encodes with the encode task, which takes 8-bit 4:2:0 input; "
                           f"this is {reader.bitdepth}-bit {reader.pix_fmt}")  # fmt: skip


def _sources(reader: Any, total: int, heights: list[int], folder: Path, scaler: str) -> tuple[int, dict, dict]:
    """Decode the source once to raw frames (what every rung is cut from and scored against) and scale it to each
    rung's height: (frames, {height: raw file}, {height: width})."""
    from tinysal.features.mobilesal import frame_bytes_of

    W, H = reader.width, reader.height
    source = folder / "source.yuv"
    n = 0
    with open(source, "wb") as f:
        for fr in reader.frames():
            if n >= total:
                break
            f.write(frame_bytes_of(fr))
            n += 1
    if n < 2:
        raise TinysalError(f"{reader.path}: a ladder needs at least 2 frames, got {n}")
    files, widths = {str(H): str(source)}, {}
    for h in heights:
        w = W if h == H else max(2, round(W * h / H / 2) * 2)
        widths[h] = w
        if h != H:
            out = folder / f"source-{h}.yuv"
            _ffmpeg([*_raw(W, H, "yuv420p"), "-i", str(source), "-vf", f"scale={w}:{h}:flags={scaler}",
                     *_raw(w, h, "yuv420p")[:4], str(out)], f"scaling the source to {h} lines")  # fmt: skip
            files[str(h)] = str(out)
    return n, files, widths


def _run_rungs(rungs: list[Rung], ctx: dict[str, Any], jobs: int, say: Any) -> list[dict[str, Any]]:
    """Every rung, on a pool of ``jobs`` processes (or here), a line each as it finishes; in the rungs' order."""
    points: list[dict[str, Any]] = []

    def done(p: dict[str, Any]) -> None:
        points.append(p)
        roi = f" vmaf_roi {p['vmaf_roi']:.2f}" if p["vmaf_roi"] is not None else ""
        kind = f"roi {p['roi_strength']:g}" if p["roi_strength"] else "plain"
        say(f"[{len(points)}/{len(rungs)}] {p['height']}p crf {p['crf']:g} {kind}: {p['kbps']:.0f} kbit/s "
            f"vmaf {p['vmaf']:.2f}{roi}")  # fmt: skip

    if jobs == 1:
        for r in rungs:
            done(run_rung(r, ctx))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_rung, r, ctx) for r in rungs]
            try:
                for fut in as_completed(futures):
                    done(fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    order = {(r.height, r.crf, r.roi_strength): k for k, r in enumerate(rungs)}
    return sorted(points, key=lambda p: order[(p["height"], p["crf"], p["roi_strength"])])


def ladder(opts: LadderOptions, quiet: bool = False) -> dict[str, Any]:
    """Run the ladder; the document (``points``, ``hulls``, ``bd_rate``), also written to ``out_json``."""
    heights, crfs = opts.check()
    reader = opts.open_input()
    _check_source(opts, reader, heights)
    W, H = reader.width, reader.height
    fps = float(opts.fps or getattr(reader, "fps", None) or DEFAULT_FPS)
    total = min(reader.frame_count, opts.frame_cnt) if opts.frame_cnt else reader.frame_count
    strengths = [0.0] + ([DEFAULT_ROI_STRENGTH[opts.codec]] if opts.roi else [])

    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    folder = Path(tempfile.mkdtemp(prefix="tinysal-ladder-"))
    t0 = time.perf_counter()
    try:
        n, files, widths = _sources(reader, total, heights, folder, opts.scaler)
        ctx = {"folder": str(folder), "width": W, "height": H, "pix_fmt": "yuv420p", "pixel_format": "420",
               "bitdepth": 8, "fps": fps, "codec": opts.codec, "preset": opts.preset, "threads": opts.threads,
               "model_path": opts.model_path, "scaler": opts.scaler, "roi": opts.roi, "source": files[str(H)],
               "rung_sources": files}  # fmt: skip
        rungs = [Rung(h, widths[h], c, s) for h in heights for c in crfs for s in strengths]
        say(f"ladder: {len(rungs)} rungs ({len(heights)} heights x {len(crfs)} CRFs x "
            f"{'plain + ROI' if opts.roi else 'plain'}) of {n} frames at {W}x{H}, {opts.jobs} at a time")  # fmt: skip
        points = _run_rungs(rungs, ctx, opts.jobs, say)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    kinds = {"plain": [p for p in points if not p["roi_strength"]], "roi": [p for p in points if p["roi_strength"]]}
    metrics = ["vmaf"] + (["vmaf_roi"] if opts.roi else [])
    hulls = {m: {k: convex_hull(v, m) for k, v in kinds.items() if v} for m in metrics}
    bd = {m: hull_bd_rate(hulls[m]["plain"], hulls[m]["roi"], m) for m in metrics if opts.roi}
    doc: dict[str, Any] = {
        "input": opts.input, "codec": opts.codec, "preset": opts.preset, "scaler": opts.scaler, "roi": opts.roi,
        "roi_strength": strengths[-1] if opts.roi else None,
        "source": {"width": W, "height": H, "frames": n, "fps": fps},
        "heights": heights, "crfs": crfs, "points": points, "hulls": hulls, "bd_rate": bd,
        "seconds": round(time.perf_counter() - t0, 2),
    }  # fmt: skip
    if opts.out_json:
        from tinysal.fileio import write_json

        write_json(opts.out_json, doc)
    if opts.plot:
        plot_ladder(doc, opts.plot)
    return doc


__all__ = ["LadderOptions", "ladder", "convex_hull", "parse_crfs", "parse_heights"]
