"""``tinysal auto-encode``: encode a title to its quality targets, whole or shot by shot (``--per-shot``)."""

from __future__ import annotations

import argparse

from tinysal.cli.args import input_arguments, int_at_least, number
from tinysal.encode.codecs import CODECS

HELP = ("encode to a VMAF (and vmaf_roi) target: crf-search then the encode; --per-shot: each shot (scene) searched "
        "and encoded on its own, in parallel, joined into one file")  # fmt: skip
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("input",), ("output", "out_json", "events"), ("work_dir",))


def add_arguments(sp: argparse.ArgumentParser) -> None:
    input_arguments(sp)
    sp.add_argument("output", help="the encoded file (.mp4, .mkv, ...: the codec table's containers)")
    sp.add_argument("--codec", default="libx264", choices=list(CODECS),
                    help="the encoder (the codec table: docs/codecs.md)")
    sp.add_argument("--min-vmaf", type=number, required=True, help="the pooled VMAF to keep (e.g. 93), per shot "
                    "with --per-shot")
    sp.add_argument("--min-vmaf-roi", type=number,
                    help="also keep the saliency-weighted VMAF (vmaf_roi) at this (per shot with --per-shot)")
    sp.add_argument("--min-xpsnr", type=number, help="also keep XPSNR (FFmpeg's xpsnr: the lowest of its pooled "
                    "Y/U/V values, dB) at this")
    sp.add_argument("--roi", action="store_true", help="search ROI encodes too (x264/x265): the smallest wins")
    sp.add_argument("--per-shot", action="store_true",
                    help="detect the shots (PySceneDetect) and give each its own CRF; shots run as batch jobs")
    sp.add_argument("--min-shot-seconds", type=number, default=1.0,
                    help="--per-shot: shorter shots are merged into a neighbour (default 1 s)")
    sp.add_argument("--scene-threshold", type=number, default=27.0,
                    help="--per-shot: ContentDetector's threshold; lower finds more cuts (default 27)")
    sp.add_argument("--max-kbps", type=number,
                    help="--per-shot: a video bitrate budget for the title; each shot's CRF chosen so the title "
                    "fits it with its worst shot as good as it can be")
    sp.add_argument("--pool", default="mean", help="mean, harmonic_mean or pN (N-th percentile of frames, e.g. p5)")
    sp.add_argument("--samples", type=int_at_least(1), default=3, help="segments sampled per title or shot "
                    "(default 3; a shot shorter than them is searched whole)")
    sp.add_argument("--sample-seconds", type=number, default=2.0, help="length of each sample (default 2 s)")
    sp.add_argument("--min-crf", type=number, help="lowest CRF tried (default: the codec's)")
    sp.add_argument("--max-crf", type=number, help="highest CRF tried (default: the codec's)")
    sp.add_argument("--preset", default=None, help="the encoder's preset (default: the codec's, docs/codecs.md)")
    sp.add_argument("--encoder-args", default="", metavar="K=V[:K=V...]",
                    help="the encoder's own parameters (rate control, threads, keyframes: tinysal's flags)")
    sp.add_argument("--fps", type=number, help="frame rate of raw YUV input (default 25)")
    sp.add_argument("--jobs", type=int_at_least(0), default=0,
                    help="--per-shot: shots at once (default 0: as many as the cores allow)")
    sp.add_argument("--engine", choices=["local", "ray"], default="local", help="--per-shot: where shots run")
    sp.add_argument("--address", help="--engine ray: auto or [ray://]host:port of a running cluster")
    sp.add_argument("--retries", type=int_at_least(0), default=1, help="--per-shot: reruns of a shot whose worker "
                    "died (default 1)")
    sp.add_argument("--work-dir", help="--per-shot: keep shot sources, encodes and records here; a rerun resumes "
                    "(only unfinished shots are redone)")
    sp.add_argument("--out-json", help="the result: every shot (CRF, predicted and measured VMAF, kbit/s), totals")
    sp.add_argument("--events", help="NDJSON events (shots-detected, shot-encode-done, ...) to a file or -")
    sp.add_argument("--overwrite", action="store_true", help="OUTPUT may replace an existing file")
    sp.add_argument("--no-audio", action="store_true", help="drop the input's audio")
    sp.add_argument("--threads", type=int_at_least(0), default=0, help="encoder and libvmaf threads per job "
                    "(0: the cores shared among the jobs)")


def run(args: argparse.Namespace) -> int:
    from tinysal.batch.auto_encode import auto_encode
    from tinysal.batch.auto_options import AutoEncodeOptions
    from tinysal.cli.common import options_from

    doc = auto_encode(options_from(AutoEncodeOptions, args), quiet=args.quiet)
    t = doc["totals"]
    if doc["mode"] == "whole":
        print(f"crf {doc['crf']:g}: wrote {doc['output']}: {t['video_kbps']:.1f} kbit/s video "
              f"({t['total_kbps']:.1f} in all)")  # fmt: skip
        return 0
    for i, s in enumerate(doc["shots"]):
        m = s["measured"]
        roi = f" vmaf_roi {m['vmaf_roi']:.2f}" if m["vmaf_roi"] is not None else ""
        tag = f" roi {s['roi_strength']:g}" if s["roi_strength"] else ""
        print(f"shot {i}: frames {s['start_frame']}-{s['start_frame'] + s['frames'] - 1}: crf {s['crf']:g}{tag}, "
              f"vmaf {m['vmaf']:.2f}{roi}, {s['video_kbps']:.0f} kbit/s")  # fmt: skip
    print(f"wrote {doc['output']}: {len(doc['shots'])} shots, {t['video_kbps']:.1f} kbit/s video "
          f"({t['total_kbps']:.1f} in all), vmaf {t['vmaf']:.2f} (worst shot {t['worst_shot_vmaf']:.2f})")  # fmt: skip
    return 0
