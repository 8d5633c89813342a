"""``tinysal roi-eval``: the A/B proof of saliency-guided encoding on clips with ground-truth object masks.

For each sequence: encode plain and ROI at several bitrates (one encode each, regions following the saliency of
the frames), decode, and measure per rate point the bitrate, whole-frame PSNR-Y and VMAF (libvmaf, as the ``vmaf``
command computes it), object-region PSNR-Y (pixels inside the ground-truth mask) and background PSNR-Y. Then
Bjøntegaard delta rate of each ROI curve against the plain one, for object PSNR and for VMAF. An *oracle* run uses
the ground-truth mask as the saliency map: the ceiling for any model.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.video.readers import YuvFrame

MIN_OVERLAP_DB = 0.5  # BD-rate refuses curves whose quality ranges overlap less than this (VMAF: points)


# ------------------------------------------------------------------------------------------- BD-rate
def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson slopes of the monotone piecewise-cubic Hermite interpolant (as scipy's PchipInterpolator)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        return np.full(n, delta[0])
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

    def end(h0: float, h1: float, m0: float, m1: float) -> float:
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(e) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(e) > abs(3 * m0):
            return 3 * m0
        return e

    d[0] = end(h[0], h[1], delta[0], delta[1])
    d[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def pchip(x: Sequence[float], y: Sequence[float], xs: np.ndarray) -> np.ndarray:
    """Evaluate the PCHIP interpolant through (x, y) (x strictly increasing) at ``xs`` inside [x0, xn]."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    d = _pchip_slopes(xa, ya)
    k = np.clip(np.searchsorted(xa, xs, side="right") - 1, 0, len(xa) - 2)
    h = xa[k + 1] - xa[k]
    t = (xs - xa[k]) / h
    h00, h10, h01, h11 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t, -2 * t**3 + 3 * t**2, t**3 - t**2
    return h00 * ya[k] + h10 * h * d[k] + h01 * ya[k + 1] + h11 * h * d[k + 1]


def bd_rate(rate_a: Sequence[float], q_a: Sequence[float], rate_b: Sequence[float], q_b: Sequence[float],
            min_overlap: float = MIN_OVERLAP_DB) -> float:  # fmt: skip
    """Bjøntegaard delta rate of B against A, in percent (negative: B needs fewer bits for the same quality).

    log10(rate) is interpolated as a piecewise-cubic (PCHIP) function of quality for each curve and the two are
    averaged over their overlapping quality range; a range narrower than ``min_overlap`` is refused."""
    curves = []
    for r, q in ((rate_a, q_a), (rate_b, q_b)):
        if len(r) < 2 or len(r) != len(q):
            raise TinysalError("BD-rate needs at least two rate points per curve")
        order = np.argsort(q)
        qs, lr = np.asarray(q, float)[order], np.log10(np.asarray(r, float))[order]
        if np.any(np.diff(qs) <= 0):
            raise TinysalError("BD-rate needs quality strictly increasing with rate on each curve")
        curves.append((qs, lr))
    lo = max(curves[0][0][0], curves[1][0][0])
    hi = min(curves[0][0][-1], curves[1][0][-1])
    if hi - lo < min_overlap:
        raise TinysalError(f"quality ranges overlap by {max(hi - lo, 0):.2f} (< {min_overlap}): no BD-rate")
    xs = np.linspace(lo, hi, 1001)
    ia = np.trapezoid(pchip(*curves[0], xs), xs)
    ib = np.trapezoid(pchip(*curves[1], xs), xs)
    return float((10 ** ((ib - ia) / (hi - lo)) - 1) * 100)


# ------------------------------------------------------------------------------------------- data
class FrameList:
    """An in-memory clip that quacks like the video readers (what ``encode_video`` needs)."""

    def __init__(self, frames: list[YuvFrame], fps: float, path: str) -> None:
        self._frames = frames
        self.frame_count = len(frames)
        self.width, self.height = frames[0].width, frames[0].height
        self.pix_fmt, self.bitdepth, self.fps, self.path = "420", 8, fps, path
        self.colorspace, self.range = "bt709", "limited"

    def frames(self, start: int = 0):  # noqa: ANN201
        yield from self._frames[start:]


def _read_image(path: Path, mode: str) -> np.ndarray:
    """An image as an array in ``mode``; unreadable files and decompression bombs (PIL's pixel limit, which it
    only warns about below twice the limit) are one TinysalError line."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return np.asarray(im.convert(mode))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise TinysalError(f"{path}: image too large to read (over {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise TinysalError(f"{path}: not a readable image ({str(e).splitlines()[0] if str(e) else e})") from None


def load_sequence(root: Path, seq: str, limit: int = 0) -> tuple[FrameList, list[np.ndarray]]:
    """A DAVIS-layout sequence (images/<seq>/*.jpg, masks/<seq>/*.png) as 8-bit 4:2:0 BT.709 frames + masks,
    cropped to even sizes."""
    from tinysal.video.colour import rgb_to_yuv444

    idir, mdir = root / "images" / seq, root / "masks" / seq
    if not idir.is_dir() or not mdir.is_dir():
        raise TinysalError(f"{root}: no sequence {seq!r} (expected images/{seq}/ and masks/{seq}/)")
    imgs = sorted(p for p in idir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if limit:
        imgs = imgs[:limit]
    frames, masks = [], []
    for p in imgs:
        mp = mdir / (p.stem + ".png")
        if not mp.is_file():
            raise TinysalError(f"{mp}: no ground-truth mask for frame {p.name}")
        rgb = _read_image(p, "RGB")
        m = _read_image(mp, "L") >= 128
        if m.shape != rgb.shape[:2]:
            raise TinysalError(f"{mp}: mask {m.shape[1]}x{m.shape[0]} does not match its frame "
                               f"{rgb.shape[1]}x{rgb.shape[0]}")  # fmt: skip
        h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
        if frames and (w, h) != (frames[0].width, frames[0].height):
            raise TinysalError(f"{p}: frame size differs from the sequence's first frame")
        rgb, m = rgb[:h, :w], m[:h, :w]
        y, u, v = rgb_to_yuv444(rgb.astype(np.float64) / 255.0, 8, "bt709", "limited")
        u = u.astype(np.float64).reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        v = v.astype(np.float64).reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        frames.append(YuvFrame(*(np.rint(a).astype(np.uint8) for a in (y, u, v)), 8, "420"))
        masks.append(m)
    if len(frames) < 2:
        raise TinysalError(f"sequence {seq}: fewer than two frames")
    if not any(m.any() for m in masks):
        raise TinysalError(f"sequence {seq}: no mask marks an object, so object-region quality is undefined")
    return FrameList(frames, 24.0, str(idir)), masks


# ------------------------------------------------------------------------------------------- measure
def _decode_y(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def _psnr(mse: float) -> float:
    return 100.0 if mse <= 1e-10 else 10 * math.log10(255.0**2 / mse)


def measure(src: FrameList, masks: list[np.ndarray], encoded: Path, raw_ref: Path, threads: int = 0) -> dict:
    """Per-frame-averaged PSNR-Y (whole, object, background) and pooled VMAF of a decoded encode."""
    from tinysal.features.vmaf import Source, VmafJob, frame_scores

    dec = _decode_y(encoded)
    if len(dec) != src.frame_count:
        raise TinysalError(f"{encoded}: decoded {len(dec)} frames, expected {src.frame_count}")
    whole, obj, bg = [], [], []
    for fr, d, m in zip(src.frames(), dec, masks):
        err = (fr.y.astype(np.float64) - d[: fr.height, : fr.width]) ** 2
        whole.append(_psnr(float(err.mean())))
        if m.any():
            obj.append(_psnr(float(err[m].mean())))
        if (~m).any():
            bg.append(_psnr(float(err[~m].mean())))
    job = VmafJob(Source(str(encoded)), Source(str(raw_ref), (src.width, src.height, "420", 8)), src.frame_count,
                  threads=threads)  # fmt: skip
    with job:
        vm = frame_scores(job.wait())["vmaf"]
    return {
        "psnr_y": float(np.mean(whole)),
        "psnr_y_object": float(np.mean(obj)) if obj else float("nan"),
        "psnr_y_background": float(np.mean(bg)) if bg else float("nan"),
        "vmaf": float(np.mean(list(vm.values()))),
    }


def _saliency_sources(
    models: Sequence[tuple[str, str | None]], masks: Sequence[np.ndarray], oracle: bool
) -> dict[str, Callable[[int, YuvFrame], np.ndarray]]:
    """name -> saliency(i, frame): each model's maps (computed once per frame, shared by its strengths) and the
    ground-truth oracle."""
    from tinysal.encode.roi import SaliencyBlocks

    out: dict[str, Callable[[int, YuvFrame], np.ndarray]] = {}
    for name, path in models:
        sb = SaliencyBlocks(path)
        cache: dict[int, np.ndarray] = {}

        def fn(i: int, fr: YuvFrame, sb: SaliencyBlocks = sb, cache: dict = cache) -> np.ndarray:
            if i not in cache:
                cache[i] = sb.frame_map(fr)
            return cache[i]

        out[name] = fn
    if oracle:
        out["oracle"] = lambda i, fr, masks=masks: masks[i].astype(np.float32)
    return out


def _bd_rates(runs: dict[str, list[dict]]) -> dict[str, dict[str, float | str]]:
    """Each ROI run's BD-rate against plain, on object PSNR, VMAF and whole-frame PSNR."""
    bd: dict[str, dict[str, float | str]] = {}
    base = runs["plain"]
    for label, pts in runs.items():
        if label == "plain":
            continue
        row: dict[str, float | str] = {}
        for metric, key in (("object_psnr", "psnr_y_object"), ("vmaf", "vmaf"), ("psnr_y", "psnr_y")):
            try:
                row[metric] = bd_rate([p["video_kbps"] for p in base], [p[key] for p in base],
                                      [p["video_kbps"] for p in pts], [p[key] for p in pts])  # fmt: skip
            except TinysalError as e:
                row[metric] = f"n/a: {e}"
        bd[label] = row
    return bd


@dataclass
class _Experiment:
    codec: str
    bitrates: Sequence[int]
    strengths: Sequence[float]
    models: Sequence[tuple[str, str | None]]
    oracle: bool
    preset: str
    frame_limit: int
    progress: Callable[[str], None] | None
    tmp: Path

    def sequence(self, root: Path, seq: str) -> dict[str, Any]:
        """Every configuration (plain, then each saliency source at each strength) at every bitrate."""
        from tinysal.video.readers import frame_bytes_of

        src, masks = load_sequence(root, seq, self.frame_limit)
        raw = self.tmp / f"{seq}.yuv"
        with open(raw, "wb") as f:
            for fr in src.frames():
                f.write(frame_bytes_of(fr))
        sal = _saliency_sources(self.models, masks, self.oracle)
        configs = [("plain", None, 0.0)] + [(f"{n}@{st:g}", fn, st) for n, fn in sal.items() for st in self.strengths]
        runs = {label: [self._point(src, masks, raw, seq, label, fn, st, br) for br in self.bitrates]
                for label, fn, st in configs}  # fmt: skip
        raw.unlink()
        return {"frames": src.frame_count, "size": [src.width, src.height], "runs": runs, "bd_rate_percent":
                _bd_rates(runs)}  # fmt: skip

    def _point(self, src: Any, masks: Any, raw: Path, seq: str, label: str, fn: Any, st: float, br: int) -> dict:
        from tinysal.encode.encoder import EncodeSettings, encode_video

        enc = self.tmp / f"{seq}-{label}-{br}.mp4"
        s = EncodeSettings(codec=self.codec, bitrate=br, preset=self.preset, roi=fn is not None, roi_strength=st)
        t0 = time.perf_counter()
        info = encode_video(src, enc, s, overwrite=True, saliency=fn)
        m = measure(src, masks, enc, raw)
        enc.unlink()
        if self.progress:
            self.progress(f"{seq} {label} {br // 1000}k: {info['video_kbps']:.0f} kbit/s, object PSNR "
                          f"{m['psnr_y_object']:.2f}, VMAF {m['vmaf']:.2f}")  # fmt: skip
        return {"target_kbps": br / 1000, "video_kbps": info["video_kbps"], "encode_seconds": info["seconds"], **m,
                "seconds": time.perf_counter() - t0}  # fmt: skip


def run_roi_eval(
    root: str | os.PathLike[str],
    sequences: Sequence[str],
    bitrates: Sequence[int],
    codec: str = "libx264",
    strengths: Sequence[float] = (6.0,),
    models: Sequence[tuple[str, str | None]] = (("model", None),),
    oracle: bool = True,
    preset: str = "medium",
    frame_limit: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The A/B experiment; returns every rate point and the BD-rates (see the module docstring)."""
    if len(bitrates) < 4:
        raise TinysalError("roi-eval needs at least 4 bitrates for a BD-rate")
    out: dict[str, Any] = {"codec": codec, "bitrates": list(bitrates), "strengths": list(strengths), "sequences": {}}
    from tinysal.fileio import work_dir

    tmp = work_dir("roi-eval")
    exp = _Experiment(codec, bitrates, strengths, models, oracle, preset, frame_limit, progress, tmp)
    try:
        for seq in sequences:
            out["sequences"][seq] = exp.sequence(Path(root), seq)
    finally:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()
    return out


def plot_rd(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Rate-quality curves per sequence: object PSNR-Y and VMAF against kbit/s, one line per configuration."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    from tinysal.fileio import atomic_open

    seqs = list(result["sequences"])
    fig = Figure(figsize=(10, 3.4 * len(seqs)), dpi=100)
    for r, seq in enumerate(seqs):
        runs = result["sequences"][seq]["runs"]
        for c, (key, label) in enumerate((("psnr_y_object", "object-region PSNR-Y (dB)"), ("vmaf", "VMAF"))):
            ax = fig.add_subplot(len(seqs), 2, 2 * r + c + 1)
            for name, pts in runs.items():
                bd = result["sequences"][seq]["bd_rate_percent"].get(name, {})
                val = bd.get("object_psnr" if c == 0 else "vmaf")
                tag = f" (BD-rate {val:+.1f}%)" if isinstance(val, float) else ""
                ax.plot([p["video_kbps"] for p in pts], [p[key] for p in pts], marker="o", ms=3,
                        ls="--" if name == "plain" else "-", label=name + tag)  # fmt: skip
            ax.set_xscale("log")
            ax.set_xlabel("kbit/s")
            ax.set_ylabel(label)
            ax.set_title(f"{seq} ({result['codec']})", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


@dataclass
class RoiEvalOptions:
    """The ``roi-eval`` task's options (the command's flags): a DAVIS-layout root, its sequences, the bitrates
    (at least 4), the codec and preset, the ROI strengths (empty: the codec's encode default), the models as
    ``NAME=PATH.onnx`` (empty: the production model), whether the ground-truth oracle runs, the first N frames."""

    root: str
    sequences: list[str]
    bitrates: list[int]
    codec: str = "libx264"
    strengths: list[float] = field(default_factory=list)
    model: list[str] = field(default_factory=list)
    no_oracle: bool = False
    preset: str | None = None  # None: the codec's default preset
    frames: int = 0

    def models(self) -> list[tuple[str, str | None]]:
        """(name, path) of each model compared; the production model alone when none is named."""
        if not self.model:
            return [("model", None)]
        out: list[tuple[str, str | None]] = []
        for spec in self.model:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise TinysalError(f"--model {spec!r}: expected NAME=PATH.onnx (the name labels its rows)")
            if name in ("oracle", "plain") or name in {n for n, _ in out}:
                raise TinysalError(f"--model name {name!r} is taken (plain, oracle, or an earlier --model)")
            out.append((name, path))
        return out

    def check(self) -> None:
        if not self.sequences:
            raise TinysalError("--sequences names no sequence")
        self.models()


def roi_eval(opts: RoiEvalOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Check ``opts`` and run the A/B experiment (``run_roi_eval``)."""
    from tinysal.encode.codecs import CODECS
    from tinysal.encode.encoder import default_preset

    opts.check()
    default = CODECS[opts.codec].roi_strength if opts.codec in CODECS else None
    if not opts.strengths and default is None:
        raise TinysalError(f"roi-eval with {opts.codec}: give --strengths (it has no default ROI strength: no "
                           "strength of its route met the bar; docs/codecs.md)")  # fmt: skip
    strengths = opts.strengths or [default]
    return run_roi_eval(opts.root, opts.sequences, opts.bitrates, opts.codec, strengths, opts.models(),
                        not opts.no_oracle, default_preset(opts.codec, opts.preset) or "medium", opts.frames,
                        progress)  # fmt: skip
