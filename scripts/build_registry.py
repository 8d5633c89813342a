#!/usr/bin/env python3
"""Rebuild src/tinysal/models/registry.json from the sidecars beside it (one <id>.json per <id>.onnx).

Run after adding or retraining a model; then `tinysal validate-registry` must pass.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tinysal.fileio import sha256_file, write_json
from tinysal.model.arch import input_multiple

ORDER = {"production": 0, "candidate": 1, "superseded": 2, "smoke": 3}


def main() -> int:
    folder = Path(__file__).resolve().parent.parent / "src" / "tinysal" / "models"
    models = []
    for side_path in sorted(folder.glob("*.json")):
        if side_path.name == "registry.json":
            continue
        side = json.loads(side_path.read_text())
        onnx_file = folder / f"{side['id']}.onnx"
        if not onnx_file.is_file():
            print(f"missing {onnx_file}", file=sys.stderr)
            return 1
        entry = {
            "id": side["id"],
            "display_name": side.get("display_name", side["id"]),
            "feature": "mobilesal",
            "arch": side["arch"],
            "file": onnx_file.name,
            "sha256": sha256_file(onnx_file),
            "opset": side["onnx_opset"],
            "input_name": side["input_name"],
            "output_name": side["output_name"],
            "param_count": side["param_count"],
            "input_multiple": input_multiple(side["arch"]),
            "status": side["status"],
            "sidecar": side_path.name,
        }
        if side.get("card"):
            entry["card"] = side["card"]
        models.append(entry)
    models.sort(key=lambda m: (ORDER[m["status"]], m["id"]))
    write_json(folder / "registry.json", {"schema_version": 1, "models": models})
    print(f"wrote {folder / 'registry.json'} with {len(models)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
