"""The ``run_provenance`` block every JSON report embeds: who ran what, on which inputs, with which versions."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from tinysal.fileio import sha256_file


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    return str(v)


def run_provenance(
    args: Mapping[str, Any] | None = None,
    inputs: Iterable[str | os.PathLike[str]] = (),
    outputs: Iterable[str | os.PathLike[str]] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the provenance block. Input files are hashed (folders are listed without a hash)."""
    from tinysal._version import __version__

    inp = []
    for p in inputs:
        p = os.fspath(p)
        entry: dict[str, Any] = {"path": os.path.abspath(p)}
        if os.path.isfile(p):
            entry["sha256"] = sha256_file(p)
            entry["bytes"] = os.path.getsize(p)
        inp.append(entry)
    block: dict[str, Any] = {
        "tool": "tinysal",
        "tool_version": __version__,
        "argv": list(sys.argv),
        "args": _jsonable(dict(args or {})),
        "inputs": inp,
        "outputs": [os.path.abspath(os.fspath(p)) for p in outputs],
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "python": platform.python_version(),
            "numpy": _version("numpy"),
            "onnx": _version("onnx"),
            "onnxruntime": _version("onnxruntime"),
            "torch": _version("torch"),
        },
        "host": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }
    if extra:
        block.update(_jsonable(dict(extra)))
    return block
