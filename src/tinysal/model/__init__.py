"""The model: architecture numbers (``arch``), the PyTorch networks (``nets``, torch only), ONNX export, the op
allowlist and I/O contract checks, PyTorch↔ONNX Runtime parity, the inference session and the model registry.

Importing this package does not import torch; ``create_model`` and the checkpoint helpers load ``nets`` (and torch)
when first used.
"""

from __future__ import annotations

from typing import Any

_NETS = ("create_model", "load_checkpoint", "save_checkpoint", "count_params")


def __getattr__(name: str) -> Any:
    if name in _NETS:
        from tinysal.model import nets

        return getattr(nets, name)
    raise AttributeError(name)
