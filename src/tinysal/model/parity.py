"""PyTorch (eval) vs ONNX Runtime CPU on fixed-seed random inputs at several sizes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

DEFAULT_SIZES = ((256, 256), (272, 480), (64, 96))
TOLERANCE = 1e-5


def parity(
    checkpoint: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES,
    seed: int = 0,
    tol: float = TOLERANCE,
) -> dict[str, Any]:
    """Max-abs-diff per size and overall; ``ok`` is whether every size is within ``tol``."""
    import torch

    from tinysal.model.nets import load_checkpoint
    from tinysal.model.session import create_session

    model, arch, _ = load_checkpoint(checkpoint)
    sess = create_session(onnx_path, threads=1)
    rng = np.random.default_rng(seed)
    per_size = []
    m = sess.input_multiple
    for h0, w0 in sizes:
        h, w = h0 + (-h0) % m, w0 + (-w0) % m  # each size rounded up to what the model takes (v3: 32)
        x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(x)
        diff = float(np.max(np.abs(ref - got)))
        per_size.append({"height": h, "width": w, "max_abs_diff": diff, "ok": diff <= tol})
    worst = max(s["max_abs_diff"] for s in per_size)
    return {"arch": arch, "tolerance": tol, "seed": seed, "sizes": per_size, "max_abs_diff": worst, "ok": worst <= tol}
