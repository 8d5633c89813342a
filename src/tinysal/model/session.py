"""The one model-loading path for inference: path -> checked ONNX -> ONNX Runtime session (created once)."""

from __future__ import annotations

import os

import numpy as np

from tinysal.errors import TinysalError
from tinysal.model.arch import INPUT_NAME, OUTPUT_NAME


class ModelSession:
    """A checked ONNX Runtime session for a saliency model (rembg-style: create once, reuse per frame)."""

    def __init__(self, path: str | os.PathLike[str], threads: int = 0) -> None:
        import onnxruntime as ort

        self.path = os.fspath(path)
        bundled = bundled_entry(self.path)
        if bundled is not None:
            # byte-identical (sha256) to a model shipped in the package registry, which passed the ONNX checker and
            # the op allowlist when the registry was built (and the test suite re-checks every entry): skip the
            # `onnx` import and parse, ~0.8 s of every command's start-up here; the probe run below still runs
            data = bundled["bytes"]
            self.input_multiple = int(bundled["entry"]["input_multiple"])
        else:
            from tinysal.model.checks import check_ops, describe_failures, load_onnx

            model = load_onnx(self.path)
            report = check_ops(model)
            if not report["ok"]:
                raise TinysalError(f"model {self.path} fails its checks: " + "; ".join(describe_failures(report)))
            self.input_multiple = model_input_multiple(model, self.path)
            data = model.SerializeToString()
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(0, int(threads))
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # Idle ORT worker threads sleep instead of spinning, leaving the core to frame reading and conversion
        # (measured ~6% more fps at 1080p on 2 cores with one frame at a time on both threads; the default
        # frame-parallel scoring runs single-threaded sessions, where this has no effect).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise TinysalError(f"ONNX Runtime cannot load {self.path}: {str(e).splitlines()[0]}") from None
        self._probe()

    def _probe(self) -> None:
        """One small run at load: the output must be [1, 1, H, W] for a [1, 3, H, W] input, finite, in [0, 1]."""
        m = self.input_multiple
        h, w = 2 * m, 3 * m
        x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
        try:
            y = np.asarray(self._sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0])
        except Exception as e:
            raise TinysalError(f"model {self.path} fails a {h}x{w} probe run: {str(e).splitlines()[0]}") from None
        if y.shape != (1, 1, h, w):
            raise TinysalError(f"model {self.path}: a [1,3,{h},{w}] input gives output {list(y.shape)}, "
                               f"not [1,1,{h},{w}]")  # fmt: skip
        if not np.all(np.isfinite(y)):
            raise TinysalError(f"model {self.path} produces NaN or infinite values")
        if float(y.min()) < -1e-6 or float(y.max()) > 1 + 1e-6:
            raise TinysalError(f"model {self.path} produces values outside [0, 1]")

    def run(self, x: np.ndarray) -> np.ndarray:
        """[N,3,H,W] float32 (H, W multiples of ``input_multiple``) -> [N,1,H,W] float32."""
        return self._sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def model_input_multiple(model: object, path: str = "") -> int:
    """The multiple a model's input H and W must be: its ``tinysal.input_multiple`` metadata, else 8."""
    from tinysal.model.arch import INPUT_MULTIPLE_KEY, STRIDE

    for p in getattr(model, "metadata_props", []):
        if p.key == INPUT_MULTIPLE_KEY:
            if not (p.value.isdigit() and 1 <= int(p.value) <= 256):
                raise TinysalError(f"model {path}: metadata {INPUT_MULTIPLE_KEY}={p.value!r} is not 1..256")
            return int(p.value)
    return STRIDE


def bundled_entry(path: str) -> dict[str, object] | None:
    """``{"entry": registry entry, "bytes": file bytes}`` when ``path`` is a regular file whose sha256 is that of
    a model in the packaged registry (with its input multiple recorded), else None. Small files only (< 64 MB)."""
    import hashlib

    from tinysal.model.registry import find_by_sha, load_registry

    try:
        if not os.path.isfile(path) or os.path.getsize(path) > 64 << 20:
            return None
        with open(path, "rb") as f:
            data = f.read()
        entry = find_by_sha(hashlib.sha256(data).hexdigest(), load_registry())
    except (OSError, TinysalError):
        return None
    if entry is None or "input_multiple" not in entry:
        return None
    return {"entry": entry, "bytes": data}


def create_session(path: str | os.PathLike[str], threads: int = 0) -> ModelSession:
    """Load, check and open a model for inference."""
    return ModelSession(path, threads)
