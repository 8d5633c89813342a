"""Static checks on an ONNX file: safe loading, the op allowlist, the I/O contract, Resize attributes.

Nothing here imports torch. ``load_onnx`` is the one path by which every tool reads an ONNX model.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from tinysal.errors import TinysalError
from tinysal.model.arch import INPUT_NAME, OUTPUT_NAME

RESIZE_EXPECTED = {"mode": "linear", "coordinate_transformation_mode": "half_pixel", "antialias": 0}


def allowed_ops() -> frozenset[str]:
    """The allowlist shipped in the package (``tinysal/policy/allowed_ops.txt``)."""
    text = resources.files("tinysal").joinpath("policy/allowed_ops.txt").read_text()
    return frozenset(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))


def _check_external_locations(model: Any, folder: Path) -> None:
    """Refuse external-data references that escape the model's folder (``../``, absolute paths)."""
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    base = folder.resolve()
    for t in _get_all_tensors(model):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        p = Path(loc)
        if not loc or p.is_absolute() or loc.startswith(("/", "\\")) or ".." in p.parts or ":" in loc:
            raise TinysalError(
                f"refusing external data location {loc!r} for tensor {t.name!r}: must be a plain "
                "relative path inside the model's folder"
            )
        target = (base / p).resolve()
        if base not in target.parents:
            raise TinysalError(f"refusing external data location {loc!r}: resolves outside {base}")
        if not target.is_file():
            raise TinysalError(f"external data file missing for tensor {t.name!r}: {target}")


def load_onnx(path: str | os.PathLike[str]) -> Any:
    """Load an ONNX model with clear errors; external data is checked before anything is read from it."""
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.exists():
        raise TinysalError(f"model file not found: {p}")
    if not p.is_file():
        raise TinysalError(f"model path is not a file: {p}")
    try:
        model = onnx.load(os.fspath(p), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as e:
        raise TinysalError(f"not a valid ONNX file (truncated or another format?): {p}: {type(e).__name__}") from None
    if model.ir_version <= 0 or not model.graph.node or not model.opset_import:
        raise TinysalError(f"not a valid ONNX file (no graph, IR version or opset): {p}")
    _check_external_locations(model, p.parent)
    try:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, os.fspath(p.parent))
        onnx.checker.check_model(model)
    except Exception as e:  # onnx raises ValidationError and others with long messages
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TinysalError(f"ONNX model fails the ONNX checker: {p}: {msg}") from None
    return model


def _walk_nodes(graph: Any, prefix: str = ""):
    import onnx

    for node in graph.node:
        yield prefix, node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _walk_nodes(attr.g, f"{prefix}{node.name or node.op_type}/")
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _walk_nodes(g, f"{prefix}{node.name or node.op_type}/")


def _dims(value_info: Any) -> list[Any]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


def check_io(model: Any) -> list[str]:
    """Problems with the I/O contract: ``input`` float32 [1,3,H,W] -> ``saliency_map`` float32 [1,1,H,W]."""
    import onnx

    problems = []
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    outputs = list(model.graph.output)
    for kind, vals, name, chans in (("input", inputs, INPUT_NAME, 3), ("output", outputs, OUTPUT_NAME, 1)):
        names = [v.name for v in vals]
        if names != [name]:
            problems.append(f"{kind} names are {names}, expected [{name!r}]")
            continue
        v = vals[0]
        if v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"{kind} {name!r} is not float32")
        dims = _dims(v)
        if len(dims) != 4:
            problems.append(f"{kind} {name!r} has rank {len(dims)}, expected 4")
            continue
        if dims[0] not in (1, "?") and not isinstance(dims[0], str):
            problems.append(f"{kind} {name!r} batch dimension is {dims[0]}, expected 1")
        if dims[1] != chans:
            problems.append(f"{kind} {name!r} has {dims[1]} channels, expected {chans}")
    return problems


def check_ops(path_or_model: Any) -> dict[str, Any]:
    """Run every static check; return a report dict with ``ok`` and the findings (never raises on findings)."""
    model = load_onnx(path_or_model) if isinstance(path_or_model, (str, os.PathLike)) else path_or_model
    allow = allowed_ops()
    offending, resize, op_types = [], [], set()
    for prefix, node in _walk_nodes(model.graph):
        op_types.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}")
        name = prefix + (node.name or "<unnamed>")
        if node.domain not in ("", "ai.onnx") or node.op_type not in allow:
            offending.append({"node": name, "op_type": node.op_type, "domain": node.domain or "ai.onnx"})
        if node.op_type == "Resize":
            import onnx

            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
            got = {
                k: attrs.get(k, "nearest" if k == "mode" else "half_pixel" if k.startswith("coord") else 0)
                for k in RESIZE_EXPECTED
            }
            bad = {k: v for k, v in got.items() if v != RESIZE_EXPECTED[k]}
            resize.append({"node": name, "attributes": got, "ok": not bad})
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    io_problems = check_io(model)
    ok = not offending and not io_problems and all(r["ok"] for r in resize)
    return {
        "ok": ok,
        "opset": opset,
        "op_types": sorted(op_types),
        "offending_ops": offending,
        "io_problems": io_problems,
        "resize_nodes": resize,
    }


def describe_failures(report: dict[str, Any]) -> list[str]:
    """One human line per finding in a ``check_ops`` report; a disallowed op is one line however many nodes use it
    (the first node named, and the count)."""
    by_op: dict[str, list[str]] = {}
    for o in report["offending_ops"]:
        by_op.setdefault(f"{o['domain']}::{o['op_type']}", []).append(o["node"])
    lines = [f"disallowed op {op} at node {nodes[0]}" + (f" (and {len(nodes) - 1} more)" if len(nodes) > 1 else "")
             for op, nodes in by_op.items()]  # fmt: skip
    lines += [f"I/O contract: {p}" for p in report["io_problems"]]
    lines += [
        f"Resize node {r['node']} has {r['attributes']}, expected {RESIZE_EXPECTED}"
        for r in report["resize_nodes"]
        if not r["ok"]
    ]
    return lines
