"""The model registry (``tinysal/models/registry.json``), its sidecars, and the validators over them."""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tinysal.errors import TinysalError
from tinysal.fileio import read_json

FEATURE = "mobilesal"


def packaged_registry_path() -> Path:
    """Path of the registry that ships in the wheel."""
    return Path(str(resources.files("tinysal").joinpath("models/registry.json")))


@cache
def schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped in ``tinysal/schemas``."""
    return json.loads(resources.files("tinysal").joinpath(f"schemas/{name}.schema.json").read_text())


def _schema_errors(obj: Any, name: str) -> list[str]:
    import jsonschema

    v = jsonschema.Draft202012Validator(schema(name))
    out = []
    for e in sorted(v.iter_errors(obj), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in e.path) or "<root>"
        out.append(f"{where}: {e.message}")
    return out


def load_registry(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read and schema-check a registry file (the packaged one by default)."""
    p = Path(path) if path else packaged_registry_path()
    reg = read_json(p, "registry")
    errs = _schema_errors(reg, "registry")
    if errs:
        raise TinysalError(
            f"registry {p} fails its schema: {errs[0]}" + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else "")
        )
    reg["_folder"] = str(p.parent)
    return reg


def production_model(reg: dict[str, Any] | None = None, feature: str = FEATURE) -> dict[str, Any]:
    """The single production entry for ``feature``."""
    reg = reg or load_registry()
    prod = [m for m in reg["models"] if m["status"] == "production" and m["feature"] == feature]
    if len(prod) != 1:
        raise TinysalError(f"registry has {len(prod)} production models for {feature!r}, expected exactly 1")
    return prod[0]


def model_path(entry: dict[str, Any], reg: dict[str, Any]) -> Path:
    return Path(reg["_folder"]) / entry["file"]


def default_model_path(feature: str = FEATURE) -> Path:
    """The ONNX file of the registry's production model for ``feature``."""
    reg = load_registry()
    return model_path(production_model(reg, feature), reg)


def registry_model_path(model_id: str, feature: str = FEATURE) -> Path:
    """The ONNX file of the packaged registry's model ``model_id`` (e.g. ``saliency_student_v3``)."""
    reg = load_registry()
    entry = next((m for m in reg["models"] if m["id"] == model_id and m["feature"] == feature), None)
    if entry is None:
        known = ", ".join(f"{m['id']} ({m['status']})" for m in reg["models"] if m["feature"] == feature)
        raise TinysalError(f"no model {model_id!r} in the registry; known: {known}")
    return model_path(entry, reg)


def find_by_sha(sha: str, reg: dict[str, Any] | None = None) -> dict[str, Any] | None:
    reg = reg or load_registry()
    return next((m for m in reg["models"] if m["sha256"] == sha), None)


def model_identity(path: str | os.PathLike[str] | None = None, feature: str = FEATURE) -> dict[str, Any]:
    """What a report records of the saliency model a run used: its registry id (None for a file outside the
    registry), status, path and sha256. ``path`` None: ``$VMAF_MOBILESAL_MODEL_PATH``, else the production model,
    as the commands choose."""
    from tinysal.fileio import sha256_file

    reg = load_registry()
    chosen = path or os.environ.get("VMAF_MOBILESAL_MODEL_PATH") or model_path(production_model(reg, feature), reg)
    try:
        sha = sha256_file(chosen)
    except OSError:
        return {"id": None, "path": os.path.abspath(os.fspath(chosen)), "sha256": None}
    entry = find_by_sha(sha, reg)
    return {"id": entry["id"] if entry else None, "status": entry["status"] if entry else None,
            "path": os.path.abspath(os.fspath(chosen)), "sha256": sha}  # fmt: skip
