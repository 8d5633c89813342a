"""``tinysal export``: export a checkpoint to ONNX (opset 17, dynamic H/W, deterministic bytes)."""

from __future__ import annotations

import argparse
import sys

from tinysal.errors import TinysalError

HELP = "export a checkpoint to ONNX (opset 17, dynamic H/W, deterministic bytes)"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("checkpoint",), ("output",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("checkpoint", nargs="?")
    sp.add_argument("--output", "-o", required=True)
    sp.add_argument(
        "--random-init",
        metavar="ARCH",
        choices=["saliency_student_v1", "saliency_student_v2"],
        help="export a randomly initialised model (a smoke model) instead of a checkpoint",
    )
    sp.add_argument("--seed", type=int, default=0, help="seed for --random-init")


def run(args: argparse.Namespace) -> int:
    from tinysal.model.export import export_checkpoint, export_random_init

    if bool(args.checkpoint) == bool(args.random_init):
        raise TinysalError("give either a CHECKPOINT or --random-init ARCH (a smoke model), not both or neither")
    if args.random_init:
        info = export_random_init(args.random_init, args.seed, args.output)
        print("note: randomly initialised weights: a smoke model for plumbing tests, not for scoring", file=sys.stderr)
    else:
        info = export_checkpoint(args.checkpoint, args.output)
    print(f"exported {info['arch']} ({info['param_count']} params) to {info['output']} sha256 {info['sha256']}")
    return 0
