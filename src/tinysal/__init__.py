"""tinysal: a tiny salient-object-detection model and the tools around it.

Inference (``tinysal.score_video``, the ``vmaf`` command, the validators) needs only numpy and ONNX Runtime;
PyTorch is needed only to train and export (``pip install tinysal[train]``).
"""

from __future__ import annotations

from tinysal._version import __version__

__all__ = ["__version__", "TinysalError", "VmafContext", "score_video"]

from tinysal.errors import TinysalError


def __getattr__(name: str):  # lazy: keep `import tinysal` cheap and torch-free
    if name in ("VmafContext", "score_video"):
        from tinysal.features import scoring

        return getattr(scoring, name)
    raise AttributeError(name)
