"""What a model costs per inference: multiply-accumulates of its convolutions and matrix products at a given input
size, counted from the real tensor shapes (one ONNX Runtime run with every counted node's output exposed), so
padding, strides, dilations, groups and resizes are exactly what the exported graph does.

Convention (the usual one for "MACs"): a convolution costs output elements x (input channels / groups) x kernel
area; a transposed convolution input elements x (output channels / groups) x kernel area; a MatMul/Gemm M x N x K.
Elementwise ops, pooling, resizes and activations are not counted (they are listed as ``other_ops``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.model.arch import INPUT_NAME

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def inference_size(width: int, height: int, short_side: int, multiple: int) -> tuple[int, int]:
    """The model input (W, H) the ``vmaf`` feature uses for a ``width`` x ``height`` frame: short side scaled to
    ``short_side`` (0 = native), then padded up to ``multiple``."""
    from tinysal.model.inputs import target_size

    w, h = target_size(width, height, short_side)
    return w + (-w) % multiple, h + (-h) % multiple


def model_macs(path: str | os.PathLike[str], width: int, height: int) -> dict[str, Any]:
    """MACs of one inference of the ONNX model at ``path`` on a [1, 3, height, width] input (W and H must already
    be multiples of the model's input multiple)."""
    import onnx
    import onnxruntime as ort

    from tinysal.model.checks import load_onnx

    model = load_onnx(path)
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    counted = [n for n in model.graph.node if n.op_type in COUNTED]
    names = [n.output[0] for n in counted] + [n.input[0] for n in counted]
    known = {o.name for o in model.graph.output}
    wanted = [n for n in dict.fromkeys(names) if n not in known and n not in inits and n != INPUT_NAME]
    model.graph.output.extend([onnx.ValueInfoProto(name=n) for n in wanted])
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node as exported
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        outs = [o.name for o in sess.get_outputs()]
        x = np.zeros((1, 3, height, width), np.float32)
        shapes = {n: np.shape(v) for n, v in zip(outs, sess.run(outs, {INPUT_NAME: x}))}
    except Exception as e:
        raise TinysalError(f"model {path}: cannot run at {width}x{height}: {str(e).splitlines()[0]}") from None
    shapes[INPUT_NAME] = x.shape

    def shape(name: str) -> tuple[int, ...]:
        return tuple(inits[name]) if name in inits else tuple(shapes[name])

    by_op: dict[str, int] = {}
    for n in counted:
        out_shape, in_shape, w_shape = shape(n.output[0]), shape(n.input[0]), shape(n.input[1])
        if n.op_type == "Conv":  # W: [Cout, Cin/group, kh, kw]: the weight shape carries the grouping
            macs = math.prod(out_shape) * math.prod(w_shape[1:])
        elif n.op_type == "ConvTranspose":  # W: [Cin, Cout/group, kh, kw]
            macs = math.prod(in_shape) * math.prod(w_shape[1:])
        elif n.op_type == "Gemm":
            trans_a = any(a.name == "transA" and a.i for a in n.attribute)
            k = in_shape[0] if trans_a else in_shape[-1]
            macs = math.prod(out_shape) * k
        else:  # MatMul
            macs = math.prod(out_shape) * in_shape[-1]
        by_op[n.op_type] = by_op.get(n.op_type, 0) + int(macs)
    other = sorted({n.op_type for n in model.graph.node if n.op_type not in COUNTED})
    return {"width": width, "height": height, "macs": sum(by_op.values()), "by_op": by_op, "other_ops": other}


__all__ = ["inference_size", "model_macs"]
