"""``tinysal parity``: compare PyTorch and ONNX Runtime outputs on fixed-seed inputs."""

from __future__ import annotations

import argparse

from tinysal.cli.args import positive_float
from tinysal.cli.common import precheck, report
from tinysal.errors import CheckFailed

HELP = "compare PyTorch and ONNX Runtime outputs on fixed-seed inputs"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("checkpoint", "model"), ("out_json",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("checkpoint")
    sp.add_argument("model")
    sp.add_argument("--tolerance", type=positive_float, default=1e-5)
    sp.add_argument("--out-json")


def run(args: argparse.Namespace) -> int:
    from tinysal.model.parity import parity

    precheck(args.out_json)
    rep = parity(args.checkpoint, args.model, tol=args.tolerance)
    report(args.out_json, rep, args, [args.checkpoint, args.model])
    for s in rep["sizes"]:
        print(f"{s['height']}x{s['width']}: max_abs_diff {s['max_abs_diff']:.3e} {'ok' if s['ok'] else 'FAIL'}")
    if not rep["ok"]:
        raise CheckFailed(f"parity failed: max_abs_diff {rep['max_abs_diff']:.3e} > {args.tolerance:g}")
    print(f"parity OK: max_abs_diff {rep['max_abs_diff']:.3e} <= {args.tolerance:g}")
    return 0
