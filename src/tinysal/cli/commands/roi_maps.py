"""``tinysal roi-maps``: per-block QP-offset maps from saliency, in the reference system's formats."""

from __future__ import annotations

import argparse

from tinysal.cli.args import input_arguments, int_at_least, number
from tinysal.cli.common import options_from, run_task

HELP = "per-block QP-offset maps from saliency, in the reference system's formats"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("input", "model_path"), (), ("outdir",))


def add_arguments(sp: argparse.ArgumentParser) -> None:
    input_arguments(sp)
    sp.add_argument("outdir")
    sp.add_argument("--encoder", choices=["x265", "svt-av1", "x264", "vvenc"], default="x265")
    sp.add_argument("--ctu", type=int_at_least(8), help="block size (default 64; 16 for x264)")
    sp.add_argument("--strength", type=number, default=6.0, help="offset = round(-strength*(2s-1)), +-12 (default 6)")
    sp.add_argument("--every", type=int_at_least(1), default=1, help="a map every N frames (default every frame)")


def run(args: argparse.Namespace) -> int:
    from tinysal.encode.roi import RoiMapsOptions, make_roi_maps

    info = run_task(make_roi_maps, options_from(RoiMapsOptions, args), "roi-maps", args.quiet)
    rows, cols = info["grid"]
    print(f"wrote {len(info['maps'])} {info['encoder']} maps ({cols}x{rows} blocks of {info['ctu']}) to {args.outdir}")
    return 0
