"""``tinysal cost``: multiply-accumulates of one inference at the size the vmaf feature uses."""

from __future__ import annotations

import argparse

from tinysal.cli.args import frame_size, int_at_least
from tinysal.cli.common import precheck, report
from tinysal.errors import TinysalError

HELP = "multiply-accumulates of one inference at the size the vmaf feature uses"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("model",), ("out_json",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model")
    sp.add_argument(
        "--frame",
        type=frame_size,
        default=(1920, 1080),
        metavar="WxH",
        help="frame size before the inference resize (default 1920x1080)",
    )
    sp.add_argument("--short-side", type=int_at_least(0), default=256, help="inference short side (0 = native)")
    sp.add_argument("--out-json")


def run(args: argparse.Namespace) -> int:
    from tinysal.model.cost import inference_size, model_macs
    from tinysal.model.session import create_session

    precheck(args.out_json)
    multiple = create_session(args.model, threads=1).input_multiple
    fw, fh = args.frame
    w, h = inference_size(fw, fh, args.short_side, multiple)
    if w * h > 7680 * 4320:
        raise TinysalError(f"a {w}x{h} model input is beyond 8K UHD (7680x4320): lower --frame or --short-side")
    rep = model_macs(args.model, w, h)
    rep.update(frame=f"{fw}x{fh}", short_side=args.short_side, input_multiple=multiple)
    report(args.out_json, rep, args, [args.model])
    parts = ", ".join(f"{k} {v / 1e6:,.1f} M" for k, v in sorted(rep["by_op"].items()))
    print(f"{args.model}: {fw}x{fh} frame -> {w}x{h} input (short side {args.short_side or 'native'}, padded to "
          f"x{multiple}): {rep['macs'] / 1e9:.3f} GMACs ({parts})")  # fmt: skip
    return 0
