"""``tinysal encode``: encode with libx264/libx265; --roi puts the bits where the saliency is."""

from __future__ import annotations

import argparse

from tinysal.cli.args import bitrate, input_arguments, int_at_least, number
from tinysal.cli.common import options_from, run_task
from tinysal.encode.codecs import CODECS

HELP = "encode with libx264/libx265; --roi puts the bits where the saliency is"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("input", "model_path", "roi_maps"), ("output",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    input_arguments(sp)
    sp.add_argument("output")
    sp.add_argument("--codec", default="libx264", choices=list(CODECS),
                    help="the encoder (the codec table: docs/codecs.md)")
    sp.add_argument("--bitrate", type=bitrate, help="target bitrate, e.g. 800k (default: --crf 23)")
    sp.add_argument("--crf", type=number)
    sp.add_argument("--preset", default=None, help="the encoder's preset (default: the codec's, docs/codecs.md)")
    sp.add_argument("--encoder-args", default="", metavar="K=V[:K=V...]",
                    help="the encoder's own parameters, passed as -x264-params / -x265-params / -svtav1-params "
                    "(rate control, threads, keyframes and ROI are tinysal's flags: refused here)")
    sp.add_argument("--roi", action="store_true", help="regions of interest from the saliency of the frames")
    sp.add_argument("--roi-strength", type=number, default=None,
                    help="QP offset at full/no saliency (default: 3 for libx264, 2 for libx265, chosen by the roi-eval "
                    "sweep)")  # fmt: skip
    sp.add_argument(
        "--roi-every", type=int_at_least(0), default=0, help="frames per saliency update (default ~1/3 s; at most 1 s)"
    )
    sp.add_argument("--roi-maps", help="folder of x264 maps from `roi-maps --encoder x264` instead of the model")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    sp.add_argument("--no-audio", action="store_true", help="drop the input's audio (kept by default)")
    sp.add_argument("--threads", type=int_at_least(0), default=0,
                    help="encoder threads (x264 threads, x265 pools; default 0: the encoder's own, all cores)")
    sp.add_argument("--fps", type=number, help="frame rate of raw YUV input (default 25; other inputs carry theirs)")
    sp.add_argument("--range", dest="color_range", choices=["limited", "full"],
                    help="range of raw YUV input (or a Y4M without XCOLORRANGE); the output is tagged with it")


def run(args: argparse.Namespace) -> int:
    from tinysal.encode.encoder import EncodeOptions, encode

    info = run_task(encode, options_from(EncodeOptions, args), "encode", args.quiet)
    roi = f", ROI every {info['roi_every']} frames" if info["roi"] else ""
    k = info["kept"]
    if k["audio"] or k["subtitles"]:
        to = {"aac": "AAC", "libopus": "Opus"}.get(k.get("audio_codec", "aac"), k.get("audio_codec"))
        roi += f", {len(k['audio'])} audio ({len(k['reencoded_audio'])} re-encoded to {to}) and {len(k['subtitles'])} "
        roi += "subtitle streams kept"
    print(f"wrote {info['output']}: {info['frames']} frames, {info['video_kbps']:.1f} kbit/s video "
          f"({info['total_kbps']:.1f} in all), {info['seconds']:.1f} s{roi}")
    return 0
