"""``tinysal ladder``: a per-title ladder (height x CRF), its convex hulls plain and ROI, and the BD-rate between."""

from __future__ import annotations

import argparse

from tinysal.cli.args import input_arguments, int_at_least, number
from tinysal.encode.codecs import CODECS

HELP = "encode every rung (height x CRF), score it at the source's size, hull plain vs ROI encodes, BD-rate"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("input",), ("out_json", "plot"), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    input_arguments(sp)
    sp.add_argument("--codec", default="libx264", choices=list(CODECS),
                    help="the encoder (the codec table: docs/codecs.md)")
    sp.add_argument("--heights", default=None, help="rung heights, at most the source's (default: 1080,720,540,360 "
                    "up to the source's height)")  # fmt: skip
    sp.add_argument("--crfs", default="18:42:4", help="FIRST:LAST:STEP or a list (default 18:42:4)")
    sp.add_argument("--roi", action="store_true", help="also ROI encodes (the codec's default strength): two hulls")
    sp.add_argument("--preset", default=None, help="the encoder's preset (default: the codec's, docs/codecs.md)")
    sp.add_argument("--encoder-args", default="", metavar="K=V[:K=V...]",
                    help="the encoder's own parameters for every rung (rate control, threads, keyframes: refused)")
    sp.add_argument("--scaler", default="bicubic", help="swscale scaler down to each rung and back up for scoring "
                    "(default bicubic)")  # fmt: skip
    sp.add_argument("--fps", type=number, help="frame rate of raw YUV input (default 25)")
    sp.add_argument("--jobs", type=int_at_least(1), default=1, help="rungs encoded and scored at once (batch "
                    "workers)")  # fmt: skip
    sp.add_argument("--engine", choices=["local", "ray"], default="local", help="where the rungs run as batch "
                    "jobs: local worker processes (default) or Ray tasks (--work-dir on shared storage)")  # fmt: skip
    sp.add_argument("--address", help="--engine ray: auto or [ray://]host:port of a running cluster (default: start "
                    "a local Ray)")  # fmt: skip
    sp.add_argument("--work-dir", help="keep the rung sources, the manifest (rungs.jsonl) and the job records here: "
                    "a rerun skips the rungs already done (default: a temporary folder, removed)")  # fmt: skip
    sp.add_argument("--threads", type=int_at_least(0), default=0, help="encoder and libvmaf threads per rung "
                    "(0 = all cores)")  # fmt: skip
    sp.add_argument("--keep-encodes", metavar="DIR", help="keep every rung's encode in DIR (<height>p-crf<N>.mp4)")
    sp.add_argument("--keep-sources", action="store_true", help="with --work-dir: keep the raw rung sources when the "
                    "ladder finishes (a rerun with more CRFs then reuses the finished rungs); default: removed")
    sp.add_argument("--out-json", help="every rung, both hulls, the BD-rates")
    sp.add_argument("--plot", help="PNG: the rungs and both hulls, bitrate against VMAF (and vmaf_roi)")


def run(args: argparse.Namespace) -> int:
    from tinysal.batch.ladder import ladder
    from tinysal.cli.common import options_from
    from tinysal.encode.ladder import LadderOptions

    doc = ladder(options_from(LadderOptions, args), quiet=args.quiet)
    hull = doc["hulls"]["vmaf"]["plain"]
    print(f"{len(doc['points'])} rungs; plain hull: " + ", ".join(f"{p['height']}p/crf {p['crf']:g}" for p in hull))
    for m, v in doc["bd_rate"].items():
        print(f"ROI against plain, BD-rate on {m}: " + (f"{v:+.2f}%" if isinstance(v, float) else f"none ({v})"))
    return 0
