"""``tinysal roi-eval``: A/B of plain vs ROI encodes on sequences with ground-truth masks (BD-rate)."""

from __future__ import annotations

import argparse
import sys

from tinysal.cli.args import bitrate, int_at_least, number
from tinysal.cli.common import precheck, report
from tinysal.encode.codecs import CODECS

HELP = "A/B of plain vs ROI encodes on sequences with ground-truth masks (BD-rate)"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("root",), ("out_json", "plot"), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("root", help="DAVIS-layout folder: images/<seq>/*.jpg and masks/<seq>/*.png")
    sp.add_argument("--sequences", required=True, help="comma-separated sequence names")
    sp.add_argument("--codec", default="libx264", choices=list(CODECS),
                    help="the encoder (the codec table: docs/codecs.md)")
    sp.add_argument(
        "--bitrates",
        type=lambda t: [bitrate(x) for x in t.split(",")],
        default=[bitrate(x) for x in ("250k", "500k", "1000k", "2000k")],
        help="comma-separated target bitrates, at least 4 (default 250k,500k,1000k,2000k)",
    )
    sp.add_argument(
        "--strengths",
        type=lambda t: [number(x) for x in t.split(",")],
        default=None,
        help="ROI strengths to sweep (default: the codec's encode default)",
    )
    sp.add_argument(
        "--model",
        action="append",
        metavar="NAME=PATH.onnx",
        help="saliency model(s) to compare (default: the production model)",
    )
    sp.add_argument("--no-oracle", action="store_true", help="skip the ground-truth-mask oracle")
    sp.add_argument("--preset", default=None, help="the encoder's preset (default: the codec's, docs/codecs.md)")
    sp.add_argument("--frames", type=int_at_least(0), default=0, help="first N frames per sequence (0 = all)")
    sp.add_argument("--out-json")
    sp.add_argument("--plot", help="PNG of the rate-quality curves")
    sp.add_argument("--quiet", "-q", action="store_true")


def run(args: argparse.Namespace) -> int:
    from tinysal.encode.roi_eval import RoiEvalOptions, plot_rd, roi_eval

    opts = RoiEvalOptions(args.root, [s for s in args.sequences.split(",") if s], args.bitrates, args.codec,
                          args.strengths or [], args.model or [], args.no_oracle, args.preset, args.frames)  # fmt: skip
    precheck(args.out_json)
    if args.plot:
        precheck(args.plot)
    opts.check()
    quiet = args.quiet

    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    res = roi_eval(opts, say)
    report(args.out_json, res, args, [args.root])
    if args.plot:
        plot_rd(res, args.plot)
    for seq, d in res["sequences"].items():
        for label, bd in d["bd_rate_percent"].items():
            cells = ", ".join(f"{k} {v:+.1f}%" if isinstance(v, float) else f"{k} {v}" for k, v in bd.items())
            print(f"{seq} {label}: BD-rate vs plain: {cells}")
    return 0
