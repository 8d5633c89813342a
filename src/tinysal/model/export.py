"""ONNX export: opset 17, ``input`` [1,3,H,W] -> ``saliency_map`` [1,1,H,W], dynamic H/W, deterministic bytes."""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

from tinysal.model.arch import INPUT_NAME, OPSET, OUTPUT_NAME


def export_model_bytes(model: Any, arch: str | None = None) -> bytes:
    """Serialise an eval-mode model to ONNX bytes (TorchScript exporter, constant folding on). With ``arch``, the
    architecture's input multiple is recorded in the metadata (``tinysal.input_multiple``) for every caller's
    padding path."""
    import onnx
    import torch

    model = model.eval().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, 3, 256, 256)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
            export_params=True,
            dynamic_axes={INPUT_NAME: {2: "height", 3: "width"}, OUTPUT_NAME: {2: "height", 3: "width"}},
        )
    m = onnx.load_from_string(buf.getvalue())
    m.producer_name = "tinysal"
    from tinysal._version import __version__

    m.producer_version = __version__
    m.doc_string = ""
    if arch is not None:
        from tinysal.model.arch import INPUT_MULTIPLE_KEY, input_multiple

        entry = m.metadata_props.add()
        entry.key, entry.value = INPUT_MULTIPLE_KEY, str(input_multiple(arch))
    # Bilinear x2 from the TorchScript exporter: keep the documented attribute set explicit.
    for node in m.graph.node:
        if node.op_type == "Resize":
            for a in node.attribute:
                if a.name == "coordinate_transformation_mode" and a.s == b"pytorch_half_pixel":
                    a.s = b"half_pixel"  # identical for outputs larger than 1 pixel, which x2 always gives
    onnx.checker.check_model(m)
    return m.SerializeToString(deterministic=True)


def _write(model: Any, arch: str, output: str | os.PathLike[str], meta: dict[str, Any]) -> dict[str, Any]:
    from tinysal.fileio import sha256_file, write_bytes
    from tinysal.model.nets import count_params

    write_bytes(output, export_model_bytes(model, arch))
    return {
        "arch": arch,
        "output": os.fspath(output),
        "sha256": sha256_file(output),
        "opset": OPSET,
        "param_count": count_params(model),
        "meta": meta,
    }


def export_checkpoint(checkpoint: str | os.PathLike[str], output: str | os.PathLike[str]) -> dict[str, Any]:
    """Export a tinysal checkpoint to ``output`` atomically; return facts about the file."""
    from tinysal.fileio import check_writable_target
    from tinysal.model.nets import load_checkpoint

    check_writable_target(output)
    model, arch, meta = load_checkpoint(checkpoint)
    return _write(model, arch, output, meta)


def export_random_init(arch: str, seed: int, output: str | os.PathLike[str]) -> dict[str, Any]:
    """Export a randomly initialised model (fixed seed): a *smoke* model for plumbing tests."""
    import torch

    from tinysal.fileio import check_writable_target
    from tinysal.model.nets import create_model

    check_writable_target(output)
    torch.manual_seed(seed)
    return _write(create_model(arch).eval(), arch, output, {"smoke": True, "seed": seed})
