"""The one codec table: every fact tinysal uses about an encoder, in one entry per codec, read by ``encode``,
``crf-search``, ``ladder``, ``roi-eval`` and the batch. A new codec is a new entry.

Most entries are encoders that PyAV's FFmpeg build holds (``encode`` runs them in-process); ``libaom-av1`` and
``libvvenc`` are in the bundled FFmpeg *program* (imageio-ffmpeg) only, and their entries say ``program=True``:
``encode`` pipes the frames to that program (docs/codecs.md).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

from tinysal.errors import TinysalError


@dataclass(frozen=True)
class Codec:
    name: str  # FFmpeg's encoder name, the --codec value
    family: str  # the bitstream: h264, hevc, av1
    crf_range: tuple[int, int]  # the encoder's CRF scale
    crf_default: float  # encode's CRF when none is given
    search_range: tuple[int, int]  # crf-search's default --min-crf/--max-crf
    first_crf: float  # crf-search's first attempt
    presets: tuple[str, ...]  # accepted --preset values, slowest first
    default_preset: str  # what users use (the reason in ``preset_note``)
    preset_note: str
    pix_fmts: tuple[str, ...]  # pixel formats the encoder takes (with the profile that carries them)
    containers: tuple[str, ...]  # output extensions that hold the bitstream
    #: how saliency reaches the encoder: "qp-offsets" (addroi side data, per-block QP), "prefilter" (the input is
    #: blended towards a blurred copy where saliency is low; for encoders that take no QP map) or "" (none)
    saliency: str
    #: default --roi-strength: the strongest of the roi-eval sweep (docs/benchmarks.md) within its bar; None when
    #: no strength is (then --roi needs an explicit --roi-strength)
    roi_strength: float | None
    params_option: str  # the FFmpeg option that passes the encoder's own parameters (--encoder-args)
    speed: str  # speed class, for users choosing
    #: encoder parameters tinysal sets itself (rate control, threads, ROI, keyframes): --encoder-args may not
    reserved: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)  # options every encode sets (see ``options``)
    preset_option: str = "preset"  # the FFmpeg option the preset goes to (libaom: cpu-used)
    quality_option: str = "crf"  # the FFmpeg option the CRF goes to (libvvenc: qp, its constant-quality scale)
    #: parameters that make every encode's stream headers the same whatever its CRF, so encodes of a title's shots
    #: join into one stream without re-encoding (x264's PPS holds the initial QP; x265's info SEI, the CRF)
    join_params: str = ""
    #: the finest CRF step the encoder takes (x264 and x265 take fractional CRFs; the others whole numbers)
    crf_step: float = 1.0
    #: True: the encoder is in the bundled FFmpeg program (imageio-ffmpeg) but not in PyAV's library: frames are
    #: piped to that program (constant frame rate; audio and subtitles copied by it)
    program: bool = False

    def check_preset(self, preset: str) -> None:
        if str(preset) not in self.presets:
            shown = (f"{self.presets[0]}..{self.presets[-1]}" if self.presets[0].lstrip("-").isdigit()
                     else ", ".join(self.presets))  # fmt: skip
            raise TinysalError(f"--preset for {self.name} must be one of {shown}, got {preset!r}")

    def check_crf(self, crf: float, flag: str = "--crf") -> None:
        lo, hi = self.crf_range
        if not lo <= crf <= hi:
            raise TinysalError(f"{flag} for {self.name} must be {lo}..{hi}, got {crf:g}")

    def pix_fmt_for(self, pix_fmt: str, bitdepth: int) -> tuple[str, str | None]:
        """(the pixel format to encode a ``pix_fmt``/``bitdepth`` source in, a note when it had to change)."""
        from tinysal.features.vmaf import RAW_PIX_FMTS

        want = RAW_PIX_FMTS[(pix_fmt, bitdepth)]
        if want in self.pix_fmts:
            return want, None
        same_depth = "yuv420p10le" if bitdepth == 10 else "yuv420p"
        deep = same_depth if same_depth in self.pix_fmts else self.pix_fmts[0]
        changes = [f"chroma {pix_fmt} -> 420"] if pix_fmt != "420" else []
        to_bits = 10 if deep.endswith("10le") else 8
        changes.append(f"{bitdepth}-bit kept" if to_bits == bitdepth else f"{bitdepth} -> {to_bits}-bit")
        return deep, f"{self.name} does not carry {want}: encoded as {deep} ({', '.join(changes)})"

    def options(self, preset: str, crf: float | None, bitrate: int, threads: int, params: str) -> dict[str, str]:
        """The encoder's FFmpeg options for one encode (``params``: the user's --encoder-args, checked)."""
        opts = {self.preset_option: str(preset), **self.extra}
        if not bitrate:
            opts[self.quality_option] = f"{crf:g}"
        own = []
        if self.name == "libx265":
            # x265's threads are its pools; with one, one frame at a time as well (frame threads share the pool)
            own.append("log-level=error")
            if threads:
                own.append(f"pools={threads}" + (":frame-threads=1" if threads == 1 else ""))
        elif self.name == "libsvtav1":
            if threads:
                own.append(f"lp={threads}")  # SVT-AV1's level of parallelism (~ cores it uses)
        elif threads:
            opts["threads"] = str(threads)
        if self.name == "libaom-av1":
            opts["row-mt"] = "1"  # rows in parallel: libaom's own default leaves cores idle
            if not bitrate:
                opts["b"] = "0"  # constant quality: libaom's CRF needs the bitrate cap off
        if self.name == "libx264":
            # libx264 applies ROI through adaptive quantisation and skips it when AQ is off (x264's ultrafast preset
            # turns it off): keep AQ on in every encode, plain or ROI, so the two stay comparable
            opts["aq-mode"] = "1" if preset == "ultrafast" else "-1"
        joined = ":".join([p for p in (params,) if p] + own)
        if joined:
            opts[self.params_option] = joined
        return opts

    def check_params(self, params: str) -> dict[str, str]:
        """``--encoder-args`` (``k=v:k2=v2``, the syntax of -x264-params and the others): parsed, with the
        parameters tinysal sets itself refused in one line rather than silently overridden."""
        out: dict[str, str] = {}
        if not params:
            return out
        for item in params.split(":"):
            k, sep, v = item.partition("=")
            k = k.strip()
            if not k or not sep or not v.strip():
                raise TinysalError(f"--encoder-args {params!r}: expected key=value[:key=value...] as "
                                   f"-{self.params_option} takes them")  # fmt: skip
            if k.lower() in self.reserved:
                raise TinysalError(f"--encoder-args: {k} is set by tinysal ({_why(k)}); use its own flag")
            out[k] = v
        return out


def _why(key: str) -> str:
    k = key.lower()
    if k in ("crf", "qp", "bitrate", "vbv-maxrate", "vbv-bufsize", "pass", "rc", "tbr", "mbr", "rc-lookahead"):
        return "rate control: --crf, --bitrate"
    if k in ("threads", "pools", "frame-threads", "lp", "pin", "numa-pools"):
        return "threads: --threads"
    if k in ("aq-mode",):
        return "ROI needs adaptive quantisation on"
    if k in ("keyint", "min-keyint", "keyint_min", "scenecut", "irefresh-type", "sc"):
        return "keyframes"
    return "output"


_X264_PRESETS = ("veryslow", "slower", "slow", "medium", "fast", "faster", "veryfast", "superfast", "ultrafast")
_RATE = ("crf", "qp", "bitrate", "vbv-maxrate", "vbv-bufsize", "pass", "stats")
#: 4:2:0, 4:2:2 and 4:4:4 at 8 and 10 bits (x264's high profiles, x265's main/main10/422/444, libaom)
_ALL_YUV = ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le")
#: what x264 and x265 share: the CRF scale and search, presets, layouts, containers, the saliency route (per-block
#: QP offsets) and fractional CRFs; each entry adds its own
_H26X: dict[str, Any] = {
    "crf_range": (0, 51), "crf_default": 23, "search_range": (10, 45), "presets": _X264_PRESETS,
    "default_preset": "medium", "pix_fmts": _ALL_YUV, "containers": (".mp4", ".mkv", ".mov", ".m4v", ".ts"),
    "saliency": "qp-offsets", "crf_step": 0.25,
}  # fmt: skip

CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec(
            name="libx264", family="h264", first_crf=26, roi_strength=3.0, **_H26X,
            preset_note="x264's own default; ab-av1 and most pipelines keep it",
            params_option="x264-params", speed="fast", join_params="stitchable=1",
            reserved=(*_RATE, "threads", "aq-mode", "keyint", "min-keyint", "scenecut"),
        ),
        Codec(
            name="libx265", family="hevc", first_crf=28, roi_strength=2.0, **_H26X,
            preset_note="x265's own default",
            params_option="x265-params", speed="slow", join_params="info=0",
            reserved=(*_RATE, "pools", "frame-threads", "numa-pools", "keyint", "min-keyint", "scenecut",
                      "log-level"),
        ),
        Codec(
            name="libsvtav1", family="av1", crf_range=(0, 63), crf_default=35, search_range=(10, 55), first_crf=35,
            presets=tuple(str(p) for p in range(-2, 14)), default_preset="8",
            preset_note="ab-av1's default (8): SVT-AV1's own default 10 is meant for automation, and 4-6 cost "
                        "several times the time for a few percent",
            pix_fmts=("yuv420p", "yuv420p10le"),
            # the pre-filter route: no strength meets roi-eval's bar (object BD-rate <= -15% at a VMAF cost <= +5%)
            # on held-out DAVIS, so there is no default; --roi needs --roi-strength (docs/benchmarks.md)
            containers=(".mkv", ".mp4", ".webm"), saliency="prefilter", roi_strength=None,
            params_option="svtav1-params", speed="medium at presets 8+, slow below 6",
            reserved=("crf", "qp", "rc", "tbr", "mbr", "lp", "pin", "keyint", "irefresh-type", "scd", "passes"),
        ),
        Codec(
            name="libaom-av1", family="av1", crf_range=(0, 63), crf_default=32, search_range=(10, 55), first_crf=32,
            presets=tuple(str(p) for p in range(0, 9)), default_preset="6",
            preset_note="cpu-used 6: what ab-av1 and most AV1 pipelines use with libaom; its own default 1 is "
                        "several times slower for ~2% smaller files",
            pix_fmts=_ALL_YUV,
            containers=(".mkv", ".mp4", ".webm"), saliency="prefilter", roi_strength=None,
            params_option="aom-params", speed="slow", preset_option="cpu-used", program=True,
            reserved=("end-usage", "cq-level", "target-bitrate", "threads", "row-mt", "kf-max-dist", "kf-min-dist",
                      "passes", "pass"),
        ),
        Codec(
            name="libvvenc", family="vvc", crf_range=(0, 63), crf_default=32, search_range=(10, 55), first_crf=32,
            presets=("slower", "slow", "medium", "fast", "faster"), default_preset="fast",
            preset_note="VVenC's fast: its medium costs ~3x the time for a few percent",
            pix_fmts=("yuv420p10le",), containers=(".mkv", ".mp4"), saliency="prefilter", roi_strength=None,
            params_option="vvenc-params", speed="slow", program=True, quality_option="qp",
            reserved=("qp", "threads", "period", "rc", "passes", "pass", "targetbitrate"),
        ),
    )
}


@functools.cache
def program_encoders() -> frozenset[str]:
    """The video encoders of the bundled FFmpeg program (imageio-ffmpeg), read once."""
    import subprocess

    import imageio_ffmpeg

    try:
        out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True,
                             text=True, timeout=30).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(ln.split()[1] for ln in out.splitlines() if ln.startswith(" V") and len(ln.split()) > 1)


def codec(name: str) -> Codec:
    """The table's entry for ``--codec``, or one line naming the codecs there are (and those this build lacks)."""
    import av

    c = CODECS.get(name)
    if c is None:
        raise TinysalError(f"--codec must be one of {', '.join(CODECS)}, got {name!r}")
    if c.program and name not in program_encoders():
        raise TinysalError(f"the bundled FFmpeg program has no {name} encoder")
    if not c.program and name not in av.codecs_available:
        raise TinysalError(f"this FFmpeg build (PyAV) has no {name} encoder")
    return c


def quiet_encoders() -> None:
    """SVT-AV1 prints its configuration to stderr from C; errors only (``SVT_LOG`` is its level, 1 = errors)."""
    os.environ.setdefault("SVT_LOG", "1")


def describe() -> list[dict[str, Any]]:
    """The table as rows (docs, ``--help`` texts)."""
    return [{"codec": c.name, "family": c.family, "crf": f"{c.crf_range[0]}..{c.crf_range[1]}",
             "default preset": c.default_preset, "pixel formats": ", ".join(c.pix_fmts),
             "containers": ", ".join(c.containers), "saliency": c.saliency or "none yet",
             "ROI strength": c.roi_strength} for c in CODECS.values()]  # fmt: skip
