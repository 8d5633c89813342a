"""``tinysal validate-registry``: validate the model registry (schema, files, sha256, opset, allowlist, I/O, one
production model)."""

from __future__ import annotations

import argparse
import sys

from tinysal.cli.common import precheck, report
from tinysal.errors import CheckFailed

HELP = "validate the model registry: schema, files, sha256, opset, allowlist, I/O, one production model"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("registry",), ("out_json",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--registry", help="registry.json to check (default: the one shipped in the package)")
    sp.add_argument("--out-json")


def run(args: argparse.Namespace) -> int:
    from tinysal.model.validate import validate_registry

    precheck(args.out_json)
    rep = validate_registry(args.registry)
    report(args.out_json, rep, args, [rep["registry"]] + [m["file"] for m in rep["models"]])
    for m in rep["models"]:
        print(f"{m['id']:<32} {m['status']:<11} {m['verdict']}")
        for p in m["problems"]:
            print(f"    - {p}", file=sys.stderr)
    for p in rep["problems"]:
        print(f"registry: {p}", file=sys.stderr)
    if not rep["ok"]:
        raise CheckFailed(f"registry {rep['registry']} failed validation")
    print(f"registry OK: production model {rep['production'][0]}")
    return 0
