"""``tinysal check-ops``: check an ONNX model against the op allowlist and the I/O contract."""

from __future__ import annotations

import argparse
import sys

from tinysal.cli.common import precheck, report

HELP = "check an ONNX model against the op allowlist and the I/O contract"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("model",), ("out_json",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model")
    sp.add_argument("--out-json")


def run(args: argparse.Namespace) -> int:
    from tinysal.model.checks import check_ops, describe_failures

    precheck(args.out_json)
    rep = check_ops(args.model)
    report(args.out_json, rep, args, [args.model])
    if not rep["ok"]:
        for line in describe_failures(rep):
            print(f"FAIL {args.model}: {line}", file=sys.stderr)
        return 1
    print(f"OK {args.model}: opset {rep['opset']}, ops {', '.join(rep['op_types'])}")
    return 0
