"""Real VMAF: libvmaf run by the FFmpeg that the ``imageio-ffmpeg`` wheel ships (its ``libvmaf`` filter).

Nothing of VMAF is re-implemented here: FFmpeg decodes both inputs, libvmaf computes its features and the SVM
prediction, and its JSON log is read back. :class:`VmafJob` runs one such pass in a child process, so that it
overlaps with the saliency model on the other core; the distorted input is a file, or a raw stream written to
the child's stdin frame by frame (the saliency-masked copy of ``roi_score`` on the Python route: never a temp copy
on disk). On the one-decode route the masked copy is built in the child itself (:class:`RoiMerge`): it reads both
files and takes only the reference's saliency maps, at the model's size, on stdin.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tinysal.errors import TinysalError
from tinysal.video.ffmpeg import die_with_parent, ffmpeg_exe, stall_seconds
from tinysal.video.readers import ffmpeg_url

#: libvmaf's built-in models in the shipped FFmpeg (``--model version=NAME``)
#: (vmaf_b_v0.6.3, the bootstrap model, is not built into this FFmpeg: "could not load libvmaf model")
BUILTIN_MODELS = ("vmaf_v0.6.1", "vmaf_v0.6.1neg", "vmaf_4k_v0.6.1", "vmaf_4k_v0.6.1neg")
DEFAULT_MODEL = "version=vmaf_v0.6.1"
#: the time base frames are restamped on before libvmaf sees them (frame n gets timestamp n/PAIRING_RATE in both
#: inputs); any rate works, it only has to be the same for the two inputs
PAIRING_RATE = 25
#: libvmaf feature extractors that ``--feature NAME`` passes on to libvmaf
LIBVMAF_FEATURES = (
    "psnr",
    "psnr_hvs",
    "float_psnr",
    "float_ssim",
    "float_ms_ssim",
    "ssim",
    "ms_ssim",
    "cambi",
    "ciede",
    "motion",
    "float_motion",
    "adm",
    "float_adm",
    "vif",
    "float_vif",
)
#: the ``-pix_fmt`` FFmpeg names for raw planar YUV
RAW_PIX_FMTS = {
    ("420", 8): "yuv420p",
    ("422", 8): "yuv422p",
    ("444", 8): "yuv444p",
    ("420", 10): "yuv420p10le",
    ("422", 10): "yuv422p10le",
    ("444", 10): "yuv444p10le",
}
#: clears a stream's colour tags (no pixel changes), so that FFmpeg's negotiation never converts one input of a
#: comparing filter to the other's matrix or range (:meth:`VmafJob.graph`)
UNTAG = "setparams=range=unspecified:colorspace=unknown:color_primaries=unknown:color_trc=unknown"
#: hands the planes on as decoded: a full-range (yuvj) format becomes the plain yuv format of the same layout
#: without the range conversion swscale would otherwise apply (any other format passes through untouched)
AS_DECODED = "scale=in_range=pc:out_range=pc"
#: the weighted-PSNR stats file a :class:`RoiMerge` pass writes in its temp folder
PSNR_LOG = "psnr.txt"
#: FFmpeg's xpsnr filter's per-frame stats, read into the libvmaf log's frames as xpsnr_y/u/v (one decode)
XPSNR_LOG = "xpsnr.txt"
#: the value written for an infinite XPSNR (identical planes): JSON holds no infinity; far above any lossy score
XPSNR_CAP = 100.0
#: the features computed by FFmpeg filters in libvmaf's child, beside libvmaf's own
FILTER_FEATURES = ("xpsnr",)
#: small frames the one-decode route buffers between FFmpeg and the model (455x256 4:4:4: ~350 KB each)
TAP_QUEUE = 48
TAP_QUEUE_BYTES = 32 << 20  # and never more than this (a large short_side makes large frames)
_SAFE = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _check_model_file(path: str) -> None:
    """A libvmaf JSON model is an object with a ``model_dict``; anything else (libvmaf crashes on some) is refused
    before FFmpeg is started."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.loads(f.read(64 << 20))
    except (OSError, ValueError, RecursionError) as e:
        raise TinysalError(f"--model: {path} is not a readable JSON model: {str(e).splitlines()[0][:120]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("model_dict"), dict):
        raise TinysalError(f"--model: {path} is not a libvmaf JSON model (no model_dict object)")


@dataclass
class VmafModel:
    """One ``--model`` option: ``version=NAME`` (built in) or ``path=FILE`` (a libvmaf JSON model), optionally
    ``:name=N`` (the metric name; by default ``vmaf``, or the version / file stem when several models run)."""

    version: str = ""
    path: str = ""
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> VmafModel:
        m = cls()
        for part in text.split(":"):
            k, sep, v = part.partition("=")
            if not sep or not v:
                raise TinysalError(f"bad --model {text!r}: expected version=NAME or path=FILE[:name=N]")
            if k == "version":
                if v not in BUILTIN_MODELS:
                    raise TinysalError(f"--model: no built-in VMAF model {v!r}; built in: {', '.join(BUILTIN_MODELS)}")
                m.version = v
            elif k == "path":
                if not os.path.isfile(v):
                    raise TinysalError(f"--model: VMAF model file not found: {v}")
                _check_model_file(v)
                m.path = v
            elif k == "name":
                if not _SAFE.match(v):
                    raise TinysalError(f"--model: name {v!r} may use only letters, digits and _ . + -")
                m.name = v
            else:
                raise TinysalError(f"bad --model {text!r}: unknown key {k!r} (version, path, name)")
        if bool(m.version) == bool(m.path):
            raise TinysalError(f"bad --model {text!r}: give exactly one of version= or path=")
        return m

    def default_name(self) -> str:
        return self.version or Path(self.path).stem


def model_names(models: Sequence[VmafModel]) -> list[str]:
    """Metric names of the models' scores, as libvmaf's tool names them."""
    if len(models) == 1:
        return [models[0].name or "vmaf"]
    names = [m.name or m.default_name() for m in models]
    if len(set(names)) != len(names):
        raise TinysalError(f"two --model options give the same score name ({', '.join(names)}); add :name=...")
    return names


@dataclass
class VmafFeature:
    """A libvmaf feature extractor (``--feature psnr`` or ``--feature float_ssim:scale=1``)."""

    name: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, params: dict[str, str]) -> VmafFeature:
        if name not in LIBVMAF_FEATURES:
            raise TinysalError(f"unknown feature {name!r}; available: mobilesal, {', '.join(LIBVMAF_FEATURES)}")
        for k, v in params.items():
            if not (_SAFE.match(k) and _SAFE.match(v)):
                raise TinysalError(f"--feature {name}: parameter {k}={v} may use only letters, digits and _ . + -")
        return cls(name, dict(params))


def _esc(text: str) -> str:
    """Escape a value for a filter option inside a filtergraph: first the option level (``\\ ' :``), then the
    graph level (``\\ ' [ ] , ;``), as FFmpeg's filtergraph syntax documents."""
    for c in "\\':":
        text = text.replace(c, "\\" + c)
    for c in "\\'[],;":
        text = text.replace(c, "\\" + c)
    return text


@dataclass
class Source:
    """How FFmpeg reads one input: a file path (raw YUV needs its geometry) or ``-`` for raw frames on stdin."""

    path: str
    raw: tuple[int, int, str, int] | None = None  # (width, height, "420", bitdepth) for headerless YUV

    def args(self) -> list[str]:
        out = []
        if self.raw:
            w, h, pf, bd = self.raw
            out += ["-f", "rawvideo", "-pix_fmt", RAW_PIX_FMTS[(pf, bd)], "-s", f"{w}x{h}", "-r", "25"]
        return out + ["-i", "pipe:0" if self.path == "-" else ffmpeg_url(self.path)]


@dataclass(frozen=True)
class Tap:
    """The distorted frames as the saliency model takes them, cut out of the libvmaf child's decode: every
    ``subsample``-th frame scaled to ``width`` x ``height`` with each plane resampled (4:4:4, no change of matrix or
    range: the colour conversion stays in Python, on the small frames) and piped raw to stdout."""

    width: int
    height: int
    bitdepth: int
    subsample: int = 1
    scaler: str = "bilinear+accurate_rnd"  # the closest to Pillow's bilinear (docs/benchmarks.md)
    #: (width, height) of a box (``area``) reduction to 4:4:4 before the bilinear step: what Pillow's
    #: ``reducing_gap=2`` does on the Python route (each plane shrunk by an integer box first); None: one step
    prescale: tuple[int, int] | None = None
    #: the reference's frames too, scaled alike and stacked below the distorted's (``roi_score``: its mask is the
    #: reference's saliency)
    reference: bool = False

    @property
    def pix_fmt(self) -> str:
        return "yuv444p" if self.bitdepth == 8 else "yuv444p10le"

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3 * (1 if self.bitdepth == 8 else 2) * (2 if self.reference else 1)

    def chain(self) -> str:
        pick = f"select=not(mod(n\\,{self.subsample}))," if self.subsample > 1 else ""
        # the same range in and out: swscale only resamples the planes (the file's range tag would otherwise
        # make it convert a full-range source to limited)
        pre = ""
        if self.prescale:
            pw, ph = self.prescale
            pre = f"scale=w={pw}:h={ph}:flags=area:in_range=pc:out_range=pc,format={self.pix_fmt},"
        return (
            f"{pick}{pre}scale=w={self.width}:h={self.height}:flags={self.scaler}:in_range=pc:out_range=pc,"
            f"format={self.pix_fmt}"
        )


@dataclass(frozen=True)
class RoiMerge:
    """``roi_score``'s masked copy and weighted PSNR built inside the masked pass's FFmpeg child, from the two files
    it decodes and the reference's saliency map piped at the model's size (one decode: no full-size plane in Python).

    Each map frame on stdin is ``gray16le`` (the map times 65535), ``map_width`` x 2 ``map_height``: on top the map
    ``s`` for the alpha, below it the PSNR's weights (the map again, or ones for a map of zeros). The alpha is the
    Python route's, ``clip((up(s) - threshold) / fade, 0, 1)`` with ``up`` the bilinear resize to the frame (for
    chroma, to the chroma planes' size): swscale resizes the 16-bit map (swscale's float path is ~0.08 off at
    edges; 16-bit is within 0.005 of Pillow's resize), ``lut`` applies the ramp; ``maskedmerge`` gives
    ``ref + alpha (dist - ref)``, rounded as the Python route rounds it. ``lut`` caps 16-bit values at 65280
    (255 << 8): that is 255 of 255 at 8 bits, but 1020 of 1023 at 10 bits (a full-alpha pixel keeps 0.3% of the
    reference: under half a code value wherever the two differ by less than 170).

    The weighted luma PSNR, ``sum(w e^2) / sum(w)`` with ``w = up(s)``: ``maskedmerge`` on 16-bit luma with the mask
    ``sqrt(w)`` gives ``ref + sqrt(w) (dist - ref)``, whose ``psnr`` MSE against the reference is ``mean(w e^2)`` in
    16-bit units (the mask is ``sqrt(w) * 65280``: ``lut`` caps its output there, a constant factor taken out in
    :meth:`weighted_mse`); ``sum(w)`` is the map's exact mean, known in Python."""

    width: int
    height: int
    pix_fmt: str  # "420" | "422" | "444"
    bitdepth: int
    map_width: int
    map_height: int
    threshold: float = 0.3
    fade: float = 0.1

    #: lut's largest output on 16-bit gray (255 << 8), the full scale of the sqrt(w) mask
    LUT_MAX = 65280

    @property
    def map_bytes(self) -> int:
        return self.map_width * self.map_height * 2 * 2

    def input_args(self) -> list[str]:
        return ["-f", "rawvideo", "-pix_fmt", "gray16le", "-s", f"{self.map_width}x{2 * self.map_height}",
                "-r", str(PAIRING_RATE), "-i", "pipe:0"]  # fmt: skip

    def chains(self, maps: str, dist: str, ref: str, out: str, psnr_log: str) -> list[str]:
        """Filter chains from the labels of the restamped map, distorted and reference streams to ``[out]`` (the
        masked copy) and ``[pn]`` (the weighted PSNR's stream, to a null sink; its MSE per frame in ``psnr_log``)."""
        W, H, mw, mh = self.width, self.height, self.map_width, self.map_height
        cw, ch = {"420": (-(-W // 2), -(-H // 2)), "422": (-(-W // 2), H), "444": (W, H)}[self.pix_fmt]
        gray = "gray" if self.bitdepth == 8 else "gray10le"
        fmt = RAW_PIX_FMTS[(self.pix_fmt, self.bitdepth)]

        ramp = f"clip((val/65535-{self.threshold!r})/{self.fade!r}\\,0\\,1)*{self.LUT_MAX}"

        def alpha(src: str, w: int, h: int, dst: str) -> str:
            # format=gray16le before lut: lut takes 8-bit too, and negotiation would otherwise pick it
            return f"[{src}]scale=w={w}:h={h}:flags=bilinear,format=gray16le,lut=c0={ramp},format={gray}[{dst}]"

        chains = [f"[{maps}]split=2[zt][st]", f"[zt]crop={mw}:{mh}:0:0,split=2[zy][zc]", alpha("zy", W, H, "ay")]
        if self.pix_fmt == "444":
            chains += ["[zc]nullsink", "[ay]split=3[a0][a1][a2]"]
        else:
            chains += ["[ay]null[a0]", alpha("zc", cw, ch, "ac"), "[ac]split=2[a1][a2]"]
        chains += [
            f"[a0][a1][a2]mergeplanes=map0s=0:map0p=0:map1s=1:map1p=0:map2s=2:map2p=0:format={fmt},{UNTAG}[mask]",
            f"[{dist}]split=2[dm][dp]",
            f"[{ref}]split=3[rm][rp][rq]",
            f"[rm][dm][mask]maskedmerge[{out}]",
            f"[st]crop={mw}:{mh}:0:{mh},scale=w={W}:h={H}:flags=bilinear,format=gray16le,"
            f"lut=c0=sqrt(val/65535)*{self.LUT_MAX},{UNTAG}[sw]",
            "[rp]extractplanes=y,format=gray16le[ry]",
            "[dp]extractplanes=y,format=gray16le[dy]",
            "[rq]extractplanes=y,format=gray16le[rz]",
            "[ry][dy][sw]maskedmerge[wd]",
            f"[wd][rz]psnr=stats_file={_esc(psnr_log)}[pn]",
        ]
        return chains

    def weighted_mse(self, mse16: float) -> float:
        """mean(w e^2) in the clip's code values from the psnr filter's 16-bit MSE of the sqrt(w)-merged luma."""
        unit = 65535.0 / ((1 << self.bitdepth) - 1)  # swscale widens code values to 16 bits by this factor
        return mse16 / (unit * unit) / (self.LUT_MAX / 65535.0) ** 2


def read_xpsnr_log(path: str) -> dict[int, dict[str, float]]:
    """{frame index from 0: {"xpsnr_y": dB, "xpsnr_u": ..., "xpsnr_v": ...}} from FFmpeg's xpsnr stats file
    (``n:    1  XPSNR y: 36.3701  XPSNR u: 44.0359  XPSNR v: 42.8551``; ``inf`` for identical planes, written as
    :data:`XPSNR_CAP`)."""
    out: dict[int, dict[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*n:\s*(\d+)\s+(.*)", line)
            if not m:
                continue
            vals = {f"xpsnr_{c.lower()}": (XPSNR_CAP if v == "inf" else min(XPSNR_CAP, float(v)))
                    for c, v in re.findall(r"XPSNR\s+(\w):\s*(inf|[-0-9.]+)", m.group(2))}  # fmt: skip
            out[int(m.group(1)) - 1] = vals
    return out


def read_psnr_log(path: str) -> dict[int, float]:
    """{frame index: MSE} from the ``psnr`` filter's stats file (``n:1 mse_avg:...``, n counted from 1)."""
    out: dict[int, float] = {}
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            n, mse = re.search(r"\bn:(\d+)", line), re.search(r"\bmse_avg:([0-9.eE+-]+|inf|nan)", line)
            if n and mse:
                out[int(n.group(1)) - 1] = float(mse.group(1))
    return out


class VmafGraph:
    """What one FFmpeg child computes, as data: the inputs, the frames, libvmaf's models and features, and the
    routes' extras (a scale, the saliency tap, the masked merge, XPSNR). :meth:`graph` and :meth:`command` are pure
    (no process, no file), so every route's filtergraph can be checked without running it; :class:`VmafJob` runs
    it."""

    def __init__(
        self,
        distorted: Source,
        reference: Source | None,
        frames: int,
        skip_dist: int = 0,
        skip_ref: int = 0,
        models: Sequence[VmafModel] = (),
        features: Sequence[VmafFeature] = (),
        threads: int = 0,
        subsample: int = 1,
        scale: tuple[int, int, str] | None = None,
        tap: Tap | None = None,
        merge: RoiMerge | None = None,
        xpsnr: bool = False,
    ) -> None:
        self.distorted, self.reference = distorted, reference
        #: FFmpeg's xpsnr on the same frames as libvmaf (the same decode), merged into its log's frames
        self.xpsnr = xpsnr and reference is not None and merge is None
        #: libvmaf scores the saliency-masked copy built here from the two files and maps on stdin (one decode)
        self.merge = merge
        self.scale = scale  # (width, height, swscale flags): the distorted scaled to the reference's size
        #: the distorted frames also scaled to the saliency model's input grid and piped to stdout (one decode)
        self.tap = tap
        self.frames, self.skip_dist, self.skip_ref = frames, skip_dist, skip_ref
        self.models = list(models) or [VmafModel.parse(DEFAULT_MODEL)]
        self.names = model_names(self.models)
        self.features = list(features)
        self.threads, self.subsample = threads, subsample

    def model_links(self, model_dir: str) -> list[tuple[str, str]]:
        """(model file, link in ``model_dir``) for each model given by path: the graph names the link, a plain name,
        so no path ever needs filtergraph escaping; the child's runner makes the links."""
        return [(os.path.abspath(m.path), os.path.join(model_dir, f"model{k}.json"))
                for k, m in enumerate(self.models) if m.path]  # fmt: skip

    def _libvmaf_options(self, log_path: str, model_dir: str) -> str:
        models = []
        for k, (m, name) in enumerate(zip(self.models, self.names)):
            spec = f"path={os.path.join(model_dir, f'model{k}.json')}" if m.path else f"version={m.version}"
            models.append(f"{spec}:name={name}")
        opts = [
            "log_fmt=json",
            f"log_path={_esc(log_path)}",
            "model=" + "|".join(_esc(s) for s in models),
            f"n_threads={self.threads}",
            f"n_subsample={self.subsample}",
            "shortest=1",
        ]
        if self.features:
            feats = [":".join([f"name={f.name}", *(f"{k}={v}" for k, v in f.params.items())]) for f in self.features]
            opts.append("feature=" + "|".join(_esc(s) for s in feats))
        return "libvmaf=" + ":".join(opts)

    def graph(self, log_path: str, model_dir: str) -> str:
        """The filtergraph: each input trimmed to the frames scored and restamped; libvmaf on the pair (unless
        there is no reference); with a tap, a copy of the distorted frames scaled to the model's grid ([tap])."""

        def trim(i: int, skip: int) -> str:
            # libvmaf pairs its inputs by timestamp; the two files' rates and start times may differ (raw YUV has
            # none), so each frame's timestamp becomes its index on one common time base: frames pair by index,
            # as libvmaf's own tool pairs them, whatever the containers say
            # and its colour tags are cleared: FFmpeg negotiates colour properties between a filter's inputs, and
            # two inputs whose tags differ (a BT.709-tagged file beside raw frames on stdin, or beside an untagged
            # encode) made it convert one through RGB to the other's matrix before libvmaf saw it (VMAF 1.1 low for
            # a BT.709 reference beside a BT.601-tagged distorted, vmaf_masked 0.6-0.8 low on any tagged reference);
            # libvmaf compares the planes as decoded, as its own tool does
            # and a full-range file (yuvj420p: libvmaf takes no yuvj format) goes to the yuv format of its layout
            # with its code values as they are: swscale would otherwise squeeze it to limited range first (VMAF
            # 2.3 high on a full-range pair, issue 35); on any other format this scale does nothing
            return (f"[{i}:v]trim=start_frame={skip}:end_frame={skip + self.frames},settb=1/{PAIRING_RATE},setpts=N,"
                    f"{AS_DECODED},{UNTAG}")  # fmt: skip

        scale = f"scale=w={self.scale[0]}:h={self.scale[1]}:flags={self.scale[2]}" if self.scale else ""
        if self.merge is not None:  # the masked copy, built from the two files and the maps (input 2, stdin)
            chains = [f"{trim(0, self.skip_dist)}{',' + scale if scale else ''}[d]",
                      f"{trim(1, self.skip_ref)},split=2[r][r1]",
                      f"[2:v]settb=1/{PAIRING_RATE},setpts=N,{UNTAG}[maps]",
                      *self.merge.chains("maps", "d", "r1", "m", os.path.join(model_dir, PSNR_LOG)),
                      f"[m][r]{self._libvmaf_options(log_path, model_dir)}[vmaf]"]  # fmt: skip
            return ";".join(chains)
        if self.reference is None:  # the tap alone (saliency without libvmaf)
            assert self.tap is not None
            return f"{trim(0, self.skip_dist)},{self.tap.chain()}[tap]"
        if self.tap is None:  # a distorted of another size is scaled after the trim: only the frames scored
            chains = [f"{trim(0, self.skip_dist)}{',' + scale if scale else ''}[d]", f"{trim(1, self.skip_ref)}[r]"]
        elif not self.tap.reference:  # one decode: the trimmed frames go to libvmaf and, scaled, to the tap
            chains = [f"{trim(0, self.skip_dist)},split=2[d0][t0]", f"[t0]{self.tap.chain()}[tap]",
                      f"[d0]{scale or 'null'}[d]", f"{trim(1, self.skip_ref)}[r]"]  # fmt: skip
        else:  # and the reference's frames as well, stacked below the distorted's in each tap frame
            chains = [f"{trim(0, self.skip_dist)},split=2[d0][t0]", f"[t0]{self.tap.chain()}[td]",
                      f"[d0]{scale or 'null'}[d]",
                      f"{trim(1, self.skip_ref)},split=2[r][t1]", f"[t1]{self.tap.chain()}[tr]",
                      "[td][tr]vstack=inputs=2[tap]"]  # fmt: skip
        if self.xpsnr:  # the same frames libvmaf gets, to FFmpeg's xpsnr (distorted first, as libvmaf takes them)
            chains += ["[d]split=2[dv][dx]", "[r]split=2[rv][rx]",
                       f"[dx][rx]xpsnr=stats_file={_esc(os.path.join(model_dir, XPSNR_LOG))}[xp]",
                       f"[dv][rv]{self._libvmaf_options(log_path, model_dir)}[vmaf]"]  # fmt: skip
            return ";".join(chains)
        chains.append(f"[d][r]{self._libvmaf_options(log_path, model_dir)}[vmaf]")
        return ";".join(chains)

    def command(self, log_path: str, model_dir: str) -> list[str]:
        graph = self.graph(log_path, model_dir)
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostats", "-y"]
        if not self._reads_stdin:
            cmd.append("-nostdin")
        progress = ["-progress", os.path.join(model_dir, "progress.txt"), "-stats_period", "0.5"]
        inputs = self.distorted.args() + (self.reference.args() if self.reference else [])
        outputs = ["-map", "[vmaf]", "-f", "null", "-"] if self.reference is not None else []
        if self.xpsnr:
            outputs += ["-map", "[xp]", "-f", "null", "-"]
        if self.merge is not None:
            inputs += self.merge.input_args()
            outputs += ["-map", "[pn]", "-f", "null", "-"]
        if self.tap is not None:
            outputs += ["-map", "[tap]", "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"]
        return cmd + progress + inputs + ["-filter_complex", graph] + outputs

    @property
    def _reads_stdin(self) -> bool:
        return self.distorted.path == "-" or self.merge is not None



class VmafJob(VmafGraph):
    """One libvmaf pass over ``frames`` frames of (distorted, reference), skips applied, in an FFmpeg child: the
    :class:`VmafGraph` run.

    ``start()`` launches it; ``stdin`` is open when the distorted source is ``-``; ``wait()`` returns libvmaf's
    parsed JSON log or raises a one-line :class:`TinysalError`. Use as a context manager: leaving it early kills
    the child and removes its temp folder.
    """

    def __init__(self, *graph: Any, label: str = "VMAF", **options: Any) -> None:
        """``graph``/``options``: :class:`VmafGraph`'s; ``label`` names the pass in its errors."""
        super().__init__(*graph, **options)
        self.label = label
        #: {frame: mean(w e^2)} of the weighted luma PSNR, read when the child is done (``merge`` only)
        self.weighted_mse: dict[int, float] = {}
        #: {frame: mean of the weights at frame size}, the weighted PSNR's denominator, filled by the caller
        #: (``merge``; 1 where a map of zeros made every weight 1)
        self.weights: dict[int, float] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmp: str | None = None
        self.stdin: IO[bytes] | None = None
        self._limit = stall_seconds()
        self._last_seen, self._since = -1, None

    def start(self) -> VmafJob:
        from tinysal.fileio import work_dir

        self.tmp = str(work_dir("vmaf"))
        self.log_path = os.path.join(self.tmp, "vmaf.json")
        self.err_path = os.path.join(self.tmp, "stderr.txt")
        for target, link in self.model_links(self.tmp):
            os.symlink(target, link)
        cmd = self.command(self.log_path, self.tmp)
        with open(self.err_path, "wb") as err:
            try:
                self.proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE if self._reads_stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE if self.tap is not None else subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,  # a Ctrl-C reaches us, and we stop the child ourselves
                    # and if we are killed (kill -9: no cleanup runs), the kernel kills the child
                    preexec_fn=functools.partial(die_with_parent, os.getpid())
                    if threading.current_thread() is threading.main_thread()
                    else None,
                )
            except OSError as e:
                self.close()
                raise TinysalError(f"cannot run FFmpeg ({cmd[0]}): {e.strerror}") from None
        self.stdin = self.proc.stdin
        return self

    def _stderr_tail(self) -> str:
        try:
            lines = [ln.strip() for ln in Path(self.err_path).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else "no message"

    def frames_done(self) -> int:
        """Frames FFmpeg has passed through libvmaf so far (from its -progress file; 0 before the first report)."""
        try:
            with open(os.path.join(self.tmp or "", "progress.txt"), "rb") as f:
                f.seek(max(0, os.path.getsize(f.name) - 4096))
                tail = f.read().decode("ascii", "replace")
        except OSError:
            return 0
        found = re.findall(r"^frame=(\d+)", tail, re.M)
        return int(found[-1]) if found else 0

    def poll(self, interval: float) -> bool:
        """Wait up to ``interval`` seconds; True once the child has exited."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=interval)
            return True
        except subprocess.TimeoutExpired:
            self._watch()
            return False

    def write(self, data: bytes | memoryview) -> None:
        """Feed the child's stdin: raw distorted frames (``-`` source), or the maps of a :class:`RoiMerge`."""
        assert self.stdin is not None
        try:
            self.stdin.write(data)
        except BrokenPipeError:
            if self.proc is not None and self.proc.wait() != 0:  # it died: say how (signal, exit code, its message)
                self._raise_failed()
            raise TinysalError(f"{self.label}: FFmpeg stopped reading its input: {self._stderr_tail()}") from None

    def tap_frames(self) -> Iterator[bytearray]:
        """The tap's frames, in order, as raw bytes (:class:`Tap`); stops at the child's end of output. A child that
        failed is reported here, in one line, not as a short clip.

        A thread drains the pipe into a queue of up to ``TAP_QUEUE`` frames (and 32 MB): FFmpeg's filter graph feeds
        libvmaf and the tap from one decode, so a tap left unread for a moment would stall libvmaf too."""
        assert self.tap is not None
        q: queue.Queue[Any] = queue.Queue(maxsize=max(2, min(TAP_QUEUE, TAP_QUEUE_BYTES // self.tap.frame_bytes)))
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def pump() -> None:
            try:
                for buf in self._read_tap():
                    if not put(buf):
                        return
                put(None)
            except BaseException as e:  # handed to the consumer, raised there
                put(e)

        threading.Thread(target=pump, name="tinysal-tap", daemon=True).start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    def _read_tap(self) -> Iterator[bytearray]:
        assert self.proc is not None and self.proc.stdout is not None and self.tap is not None
        size, fd = self.tap.frame_bytes, self.proc.stdout.fileno()
        while True:
            buf = bytearray(size)
            view, got = memoryview(buf), 0
            while got < size:
                # waiting for data is watched like waiting for the exit: a wedged child is stopped, not waited on
                if not select.select([fd], [], [], min(1.0, self._limit))[0]:
                    self._watch()
                    continue
                n = os.readv(fd, [view[got:]])
                if n == 0:
                    break
                got += n
            if got < size:
                break
            self._last_seen = -1  # data flowed: the stall clock starts again from here
            yield buf
        if self._wait_watched() != 0:
            self._raise_failed()

    def _raise_failed(self) -> None:
        assert self.proc is not None
        rc = self.proc.returncode
        how = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        what = "libvmaf" if self.reference is not None else "decoding"
        raise TinysalError(f"{self.label}: FFmpeg {what} failed ({how}): {self._stderr_tail()}")

    def wait(self) -> dict[str, Any]:
        """libvmaf's parsed log (an empty dict for a tap without libvmaf) once the child has exited cleanly."""
        assert self.proc is not None
        if self.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.stdin.close()
            self.stdin = None
        if self.proc.stdout is not None:  # a tap nobody read to its end: do not let the child block on it
            self.proc.stdout.close()
        if self._wait_watched() != 0:
            self._raise_failed()
        if self.reference is None:
            return {}
        try:
            with open(self.log_path, encoding="utf-8") as f:
                log = json.load(f)
            frames = log["frames"]
        except (OSError, ValueError, KeyError, TypeError):
            raise TinysalError(f"{self.label}: FFmpeg libvmaf wrote no readable log ({self._stderr_tail()})") from None
        if not frames:
            raise TinysalError(f"{self.label}: libvmaf scored no frames")
        if self.xpsnr:
            self._merge_xpsnr(frames)
        if self.merge is not None:
            try:
                mse = read_psnr_log(os.path.join(self.tmp or "", PSNR_LOG))
            except OSError:
                raise TinysalError(f"{self.label}: FFmpeg wrote no weighted-PSNR log ({self._stderr_tail()})") from None
            self.weighted_mse = {i: self.merge.weighted_mse(v) for i, v in mse.items()}
        return log

    def _merge_xpsnr(self, frames: list[dict[str, Any]]) -> None:
        """The xpsnr filter's per-frame values into libvmaf's frames (its ``n`` counts from 1; libvmaf's
        ``frameNum`` from 0, every ``subsample``-th frame)."""
        try:
            stats = read_xpsnr_log(os.path.join(self.tmp or "", XPSNR_LOG))
        except OSError:
            raise TinysalError(f"{self.label}: FFmpeg wrote no XPSNR log ({self._stderr_tail()})") from None
        for fr in frames:
            fr["metrics"].update(stats.get(int(fr["frameNum"]), {}))

    def _watch(self) -> None:
        """Stop the child if its frame count has stood still for ``stall_seconds()``: a wedged FFmpeg would
        otherwise hold the command forever."""
        assert self.proc is not None
        seen, now = self.frames_done(), time.monotonic()
        if seen != self._last_seen or self._since is None:
            self._last_seen, self._since = seen, now
        elif now - self._since > self._limit:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise TinysalError(f"{self.label}: FFmpeg made no progress for {self._limit:g} s (wedged?): stopped it")

    def _wait_watched(self) -> int:
        assert self.proc is not None
        while True:
            try:
                return self.proc.wait(timeout=min(1.0, self._limit))
            except subprocess.TimeoutExpired:
                self._watch()

    def close(self) -> None:
        """Stop the child if it still runs; remove the temp folder."""
        if self.stdin is not None:
            with contextlib.suppress(OSError):
                self.stdin.close()
            self.stdin = None
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> VmafJob:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_scores(log: dict[str, Any]) -> dict[str, dict[int, float]]:
    """metric -> {frameNum: value} from a libvmaf JSON log."""
    out: dict[str, dict[int, float]] = {}
    for fr in log["frames"]:
        i = int(fr["frameNum"])
        for k, v in fr["metrics"].items():
            out.setdefault(k, {})[i] = float(v)
    return out
