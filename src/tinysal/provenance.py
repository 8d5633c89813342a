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


#: inputs up to this size are hashed; a larger one (a title's video) is identified by size and modification time,
#: as the batch records do: hashing it would cost a full read, as much as decoding it
HASH_LIMIT = 64 << 20


def run_provenance(
    args: Mapping[str, Any] | None = None,
    inputs: Iterable[str | os.PathLike[str]] = (),
    outputs: Iterable[str | os.PathLike[str]] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the provenance block. Input files up to ``HASH_LIMIT`` are hashed, larger ones identified by size and
    mtime; folders are listed without either."""
    from tinysal._version import __version__

    inp = []
    for p in inputs:
        p = os.fspath(p)
        entry: dict[str, Any] = {"path": os.path.abspath(p)}
        if os.path.isfile(p):
            st = os.stat(p)
            entry["bytes"] = st.st_size
            if st.st_size <= HASH_LIMIT:
                entry["sha256"] = sha256_file(p)
            else:
                entry["mtime_ns"] = st.st_mtime_ns
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
