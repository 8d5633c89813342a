"""Sample encodes: the layer that crf-search and auto-encode share (ab-av1's ``sample-encode``).

A clip (a title, or one shot of it) is represented by a few samples cut losslessly into raw files in the codec's
pixel format; :class:`SampleSet` encodes every sample at one CRF (and ROI strength) with the ``encode`` task and
scores each against exactly the frames it was made from with the ``score`` task, returning the per-frame scores and
the bytes. What to do with them (pooling, targets, the search) is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinysal.encode.encoder import LAYOUTS, EncodeOptions, encode
from tinysal.errors import TinysalError


@dataclass
class Sample:
    path: Path
    start: int  # first frame in the clip
    frames: int  # frames scored
    tail: int = 0  # frames encoded after them and not scored (the clip goes on there)


def plan_samples(total: int, fps: float, n: int, seconds: float,
                 whole_if_short: bool = False) -> list[tuple[int, int]]:  # fmt: skip
    """(start, frames) of each sample: ``n`` of ``seconds`` spread evenly (centred in equal parts of the clip), or
    the whole clip when it is not longer than the samples together. A clip shorter than one sample is refused, or
    with ``whole_if_short`` (a shot of a title) searched whole."""
    k = max(1, round(seconds * fps))
    if total < k and not whole_if_short:
        raise TinysalError(f"the clip is {total / fps:.2f} s ({total} frames), shorter than one sample "
                           f"({seconds:g} s): pass a smaller --sample-seconds")  # fmt: skip
    if total <= n * k:
        return [(0, total)]
    return [(min(total - k, max(0, round((i + 0.5) * total / n - k / 2))), k) for i in range(n)]


def cut_samples(reader: Any, plan: list[tuple[int, int]], folder: Path, total: int,
                layout: str | None = None) -> list[Sample]:  # fmt: skip
    """One decode of the input; each sample's frames written raw in ``layout`` (an FFmpeg pixel-format name: the one
    the codec encodes the source in; default the source's own), lossless when it is the source's."""
    from tinysal.encode.encoder import raw_in
    from tinysal.features.vmaf import RAW_PIX_FMTS
    from tinysal.video.readers import frame_bytes

    layout = layout or RAW_PIX_FMTS[(reader.pix_fmt, reader.bitdepth)]

    samples = [Sample(folder / f"sample{i}.yuv", s, k, min(k // 2, total - s - k)) for i, (s, k) in enumerate(plan)]
    files = [open(s.path, "wb") for s in samples]  # noqa: SIM115 - closed below
    end = max(s.start + s.frames + s.tail for s in samples)
    try:
        for i, fr in enumerate(reader.frames()):
            if i >= end:
                break
            for s, f in zip(samples, files):
                if s.start <= i < s.start + s.frames + s.tail:
                    f.write(raw_in(fr, layout))
    finally:
        for f in files:
            f.close()
    size = frame_bytes(reader.width, reader.height, *LAYOUTS[layout])
    for s in samples:
        got = s.path.stat().st_size // size
        if got < s.frames + s.tail:  # a clip that ends before its announced length
            s.frames, s.tail = min(s.frames, got), max(0, got - s.frames)
    samples = [s for s in samples if s.frames > 0]
    if not samples:
        raise TinysalError(f"{reader.path}: no frames could be read for the samples")
    return samples


@dataclass
class Probe:
    """Every sample encoded at one CRF and strength: the scored frames' VMAF (and vmaf_roi), the bytes, per sample."""

    vmaf: list[float] = field(default_factory=list)
    vmaf_roi: list[float] = field(default_factory=list)
    xpsnr: dict[str, list[float]] = field(default_factory=dict)  # xpsnr_y/_u/_v per scored frame
    bytes: int = 0
    frames_encoded: int = 0


@dataclass(kw_only=True)
class SampleSet:
    """The samples of one clip and how to encode them (the codec and its settings)."""

    samples: list[Sample]
    width: int
    height: int
    fps: float
    layout: str  # the samples' raw pixel format
    folder: Path
    codec: str
    preset: str | None
    threads: int = 0
    model_path: str | None = None
    encoder_args: str = ""
    score_roi: bool = False  # score vmaf_roi too (a ROI target)
    score_xpsnr: bool = False  # score XPSNR too (an XPSNR target)

    def encode_sample(self, s: Sample, crf: float, strength: float, k: int) -> tuple[Path, int]:
        out = self.folder / f"enc{k}.mp4"
        pix, depth = LAYOUTS[self.layout]
        eo = EncodeOptions(input=str(s.path), width=self.width, height=self.height, pixel_format=pix,
                           bitdepth=depth, output=str(out), fps=self.fps,
                           codec=self.codec, crf=crf, preset=self.preset, roi=strength > 0,
                           roi_strength=strength if strength > 0 else None, overwrite=True, no_audio=True,
                           threads=self.threads, model_path=self.model_path,
                           encoder_args=self.encoder_args)  # fmt: skip
        info = encode(eo)
        return out, int(info["video_bytes"])

    def score_sample(self, s: Sample, enc: Path) -> dict[str, list[float]]:
        return score_frames(str(s.path), str(enc), self.width, self.height, self.layout, self.threads,
                            self.model_path if self.score_roi else None, s.frames, self.score_roi,
                            self.score_xpsnr)  # fmt: skip

    def probe(self, crf: float, strength: float, on_sample: Any = None) -> Probe:
        """Every sample at ``crf`` (``strength`` > 0: a ROI encode at that strength); ``on_sample(k, frames,
        bytes, vmaf_frames)`` after each."""
        p = Probe()
        for k, s in enumerate(self.samples):
            enc, b = self.encode_sample(s, crf, strength, k)
            sc = self.score_sample(s, enc)
            p.vmaf += sc["vmaf"]
            p.vmaf_roi += sc["vmaf_roi"]
            for key in ("xpsnr_y", "xpsnr_u", "xpsnr_v"):
                if sc[key]:
                    p.xpsnr.setdefault(key, []).extend(sc[key])
            p.bytes += b
            p.frames_encoded += s.frames + s.tail
            if on_sample:
                on_sample(k, s.frames + s.tail, b, sc["vmaf"])
        return p


def score_frames(reference: str, distorted: str, width: int, height: int, layout: str, threads: int,
                 model_path: str | None, frames: int = 0, roi: bool = False,
                 xpsnr: bool = False) -> dict[str, list[float]]:  # fmt: skip
    """Per-frame ``vmaf`` (with ``roi``, ``vmaf_roi``; with ``xpsnr``, ``xpsnr_y``/``_u``/``_v``) of ``distorted``
    against a raw ``reference`` in ``layout``, as ``vmaf`` scores them."""
    from tinysal.features.task import ScoreOptions, score

    feat = (["mobilesal:roi_score=1"] if roi else []) + (["xpsnr"] if xpsnr else [])
    params = [f"mobilesal:model_path={model_path}"] if roi and model_path else []
    pix, depth = LAYOUTS[layout]
    so = ScoreOptions(reference=reference, distorted=distorted, width=width, height=height, pixel_format=pix,
                      bitdepth=depth, feature=feat, feature_params=params, threads=threads,
                      frame_cnt=frames)  # fmt: skip
    res = score(so).result
    keys = ("vmaf", "vmaf_roi", "xpsnr_y", "xpsnr_u", "xpsnr_v")
    return {k: [f["metrics"][k] for f in res["frames"] if k in f["metrics"]] for k in keys}


def pooled_xpsnr(scores: dict[str, list[float]], pool: str) -> float | None:
    """The XPSNR a target reads: the lowest of the pooled components (FFmpeg's "minimum"; Fraunhofer found the
    cross-component minimum closer to what viewers see than an average), or None when not scored."""
    from tinysal.features.output import pool as pool_frames

    comps = [pool_frames(v, pool) for k in ("xpsnr_y", "xpsnr_u", "xpsnr_v") if (v := scores.get(k))]
    return min(comps) if comps else None
