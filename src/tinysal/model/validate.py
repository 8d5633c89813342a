"""Validation of the model registry and of single model files: schema, files and hashes, opset, allowlist, I/O
contract, parity against a checkpoint. Apart from the registry's data (``registry``) so that loading a session,
which consults the registry, never imports the validators (which run sessions)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tinysal.errors import TinysalError
from tinysal.fileio import read_json, sha256_file
from tinysal.model.arch import ARCHITECTURES, INPUT_NAME, OPSET, OUTPUT_NAME
from tinysal.model.registry import FEATURE, _schema_errors, find_by_sha, load_registry


def _check_file(entry: dict[str, Any], path: Path, checks: dict[str, Any], problems: list[str]) -> None:
    """The ONNX file itself: present, the registry's sha256, the op allowlist, I/O contract, opset, input multiple."""
    from tinysal.model.checks import check_ops, describe_failures, load_onnx
    from tinysal.model.session import model_input_multiple

    checks["file_exists"] = path.is_file()
    if not path.is_file():
        problems.append(f"file missing: {path}")
        return
    sha = sha256_file(path)
    checks["sha256_match"] = sha == entry["sha256"]
    if sha != entry["sha256"]:
        problems.append(f"sha256 mismatch: registry {entry['sha256'][:12]}…, file {sha[:12]}…")
    try:
        model = load_onnx(path)
        rep = check_ops(model)
        checks["op_allowlist"] = not rep["offending_ops"]
        checks["io_contract"] = not rep["io_problems"]
        checks["resize_attributes"] = all(r["ok"] for r in rep["resize_nodes"])
        checks["opset_match"] = rep["opset"] == entry["opset"] == OPSET
        checks["op_types"] = rep["op_types"]
        problems += describe_failures(rep)
        want = entry.get("input_multiple", ARCHITECTURES[entry["arch"]]["input_multiple"])
        got = model_input_multiple(model, str(path))
        checks["input_multiple_match"] = got == want
        if got != want:
            problems.append(f"input multiple: file metadata {got}, registry/architecture {want}")
        if not checks["opset_match"]:
            problems.append(f"opset: file {rep['opset']}, registry {entry['opset']}, expected {OPSET}")
    except TinysalError as e:
        checks["loads"] = False
        problems.append(str(e))


#: sidecar key -> registry key: the facts both state, which must agree
_SIDECAR_AGREES = (("id", "id"), ("arch", "arch"), ("status", "status"), ("param_count", "param_count"),
                   ("onnx_opset", "opset"), ("input_name", "input_name"), ("output_name", "output_name"))  # fmt: skip


def _check_sidecar(entry: dict[str, Any], folder: Path, checks: dict[str, Any], problems: list[str]) -> None:
    """The model card: valid against its schema, and agreeing with the registry entry."""
    try:
        side = read_json(folder / entry["sidecar"], "sidecar")
        errs = _schema_errors(side, "sidecar")
        problems += [f"sidecar {entry['sidecar']}: {e}" for e in errs]
        mismatch = [k for k, rk in _SIDECAR_AGREES if side.get(k) != entry.get(rk)]
        problems += [f"sidecar {entry['sidecar']}: {k} disagrees with the registry" for k in mismatch]
        smoke_side = bool(side.get("training", {}).get("smoke"))
        if smoke_side != (entry["status"] == "smoke"):
            problems.append("sidecar training.smoke disagrees with registry status")
        checks["sidecar"] = not errs and not mismatch
    except TinysalError as e:
        checks["sidecar"] = False
        problems.append(str(e))


def _validate_entry(entry: dict[str, Any], reg: dict[str, Any]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    problems: list[str] = []
    folder = Path(reg["_folder"])
    path = folder / entry["file"]
    _check_file(entry, path, checks, problems)
    checks["io_names"] = entry["input_name"] == INPUT_NAME and entry["output_name"] == OUTPUT_NAME
    if not checks["io_names"]:
        problems.append(
            f"registry I/O names {entry['input_name']!r}->{entry['output_name']!r}, expected "
            f"{INPUT_NAME!r}->{OUTPUT_NAME!r}"
        )
    expected_params = ARCHITECTURES[entry["arch"]]["params"]
    checks["param_count_match"] = entry["param_count"] == expected_params
    if entry["param_count"] != expected_params:
        problems.append(f"param_count {entry['param_count']} != {expected_params} for {entry['arch']}")
    _check_sidecar(entry, folder, checks, problems)
    smoke = entry["status"] == "smoke"
    verdict = "fail" if problems else ("pass (smoke: random weights, not for scoring)" if smoke else "pass")
    return {"id": entry["id"], "status": entry["status"], "file": str(path), "checks": checks,
            "problems": problems, "verdict": verdict}  # fmt: skip


def validate_registry(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Validate every entry; return a report with per-model verdicts and ``ok``."""
    reg = load_registry(path)
    models = [_validate_entry(e, reg) for e in reg["models"]]
    ids = [m["id"] for m in reg["models"]]
    global_problems = [f"duplicate id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    prod = [m["id"] for m in reg["models"] if m["status"] == "production" and m["feature"] == FEATURE]
    if len(prod) != 1:
        global_problems.append(f"{len(prod)} production models for {FEATURE!r} ({prod}), expected exactly 1")
    ok = not global_problems and all(m["verdict"] != "fail" for m in models)
    return {
        "registry": str(Path(reg["_folder"]) / "registry.json") if not path else os.fspath(path),
        "ok": ok,
        "production": prod,
        "problems": global_problems,
        "models": models,
    }


def validate_model(
    onnx_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    registry: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Allowlist + I/O contract + (parity with ``checkpoint``) + the file's registry status."""
    from tinysal.model.checks import check_ops, describe_failures

    rep = check_ops(onnx_path)
    problems = describe_failures(rep)
    out: dict[str, Any] = {"model": os.fspath(onnx_path), "sha256": sha256_file(onnx_path), "checks": rep}
    if checkpoint:
        from tinysal.model.parity import parity

        par = parity(checkpoint, onnx_path)
        out["parity"] = par
        if not par["ok"]:
            problems.append(f"parity max_abs_diff {par['max_abs_diff']:.3e} > {par['tolerance']:g}")
    entry = find_by_sha(out["sha256"], load_registry(registry))
    out["registry_status"] = entry["status"] if entry else "unregistered"
    out["registry_id"] = entry["id"] if entry else None
    out["problems"] = problems
    out["ok"] = not problems
    return out
