"""``tinysal validate-model``: allowlist, I/O contract, parity (with --checkpoint) and registry status of one
ONNX file."""

from __future__ import annotations

import argparse
import sys

from tinysal.cli.common import precheck, report
from tinysal.errors import CheckFailed

HELP = "allowlist + I/O contract + parity (with --checkpoint) + registry status of one ONNX file"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("model", "checkpoint", "registry"), ("out_json",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model")
    sp.add_argument("--checkpoint")
    sp.add_argument("--registry")
    sp.add_argument("--out-json")


def run(args: argparse.Namespace) -> int:
    from tinysal.model.validate import validate_model

    precheck(args.out_json)
    rep = validate_model(args.model, args.checkpoint, args.registry)
    report(args.out_json, rep, args, [args.model] + ([args.checkpoint] if args.checkpoint else []))
    status = rep["registry_status"]
    note = " (random weights: not for scoring)" if status == "smoke" else ""
    for p in rep["problems"]:
        print(f"FAIL {args.model}: {p}", file=sys.stderr)
    if "parity" in rep:
        print(f"parity max_abs_diff {rep['parity']['max_abs_diff']:.3e}")
    print(f"registry status: {status}{note}")
    if not rep["ok"]:
        raise CheckFailed(f"{args.model} failed validation")
    print(f"model OK: {args.model}")
    return 0
