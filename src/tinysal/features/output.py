"""libvmaf-layout output: JSON (default), XML and CSV, written atomically.

Numbers are printed with six decimals as libvmaf does; ``fps`` is processing speed, as in libvmaf.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from tinysal.errors import TinysalError
from tinysal.fileio import atomic_open

POOL_METHODS = ("min", "max", "mean", "harmonic_mean")


def percentile_key(q: float) -> str:
    """The pooled key of a percentile: ``p1``, ``p5``, ``p0.5``."""
    return f"p{q:g}"


def percentile_keys(d: dict[str, Any]) -> list[str]:
    """A pooled block's percentile keys (``p1``, ``p5`` ... ascending): what --pool-percentiles added."""
    return sorted((k for k in d if k not in POOL_METHODS and k.startswith("p")), key=lambda k: float(k[1:]))


def pooled_keys(d: dict[str, float]) -> list[str]:
    """A pooled block's keys in order: libvmaf's four, then the percentiles."""
    return [m for m in POOL_METHODS if m in d] + percentile_keys(d)


def pool(values: Sequence[float], method: str) -> float:
    """The one pooling function (the writers, crf-search's --pool): libvmaf's ``min``, ``max``, ``mean``,
    ``harmonic_mean`` (``n / sum(1 / (x + 1)) - 1`` as in libvmaf), or a percentile ``pN`` (linear interpolation
    between frames, numpy's default: ``p5`` is the "5% low")."""
    if not values:
        raise ValueError("no values to pool")
    if method.startswith("p") and method not in POOL_METHODS:
        import numpy as np

        try:
            q = float(method[1:])
        except ValueError:
            q = math.nan
        if not 0 < q < 100:
            raise ValueError(f"unknown pool method {method!r}: a percentile is p0 < N < p100")
        return float(np.percentile(np.asarray(values, dtype=np.float64), q))
    if method == "min":
        return float(min(values))
    if method == "max":
        return float(max(values))
    if method == "mean":
        n = len(values)
        try:  # divide first: no overflow for values near the largest float
            return float(math.fsum(v / n for v in values))
        except (ValueError, OverflowError):  # inf and -inf together
            return float("nan")
    if method == "harmonic_mean":
        if any(v + 1.0 == 0 for v in values):
            return float("nan")  # 1 / (x + 1) is undefined at x = -1
        try:
            total = math.fsum(1.0 / (v + 1.0) for v in values)
        except (ValueError, OverflowError):
            return float("nan")
        return float(len(values) / total - 1.0) if total else float("nan")
    raise ValueError(f"unknown pool method {method!r}; use one of {POOL_METHODS}")


_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _xml_name(name: str) -> str:
    """libvmaf's XML puts metric names in attribute names: refuse one that is not a valid XML name."""
    if not _XML_NAME.match(name):
        raise TinysalError(f"metric name {name!r} cannot be written as XML (use --json or --csv)")
    return name


def _csv_cell(text: str) -> str:
    from tinysal.fileio import csv_safe

    text = csv_safe(text)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def _num(v: float) -> str:
    return "null" if not math.isfinite(v) else f"{v:.6f}"


def render_json(result: dict[str, Any]) -> str:
    frames = result["frames"]
    fps = result["fps"]
    lines = [
        "{",
        f'  "version": {json.dumps(result["version"])},',
        f'  "fps": {"null" if not math.isfinite(fps) else f"{fps:.2f}"},',
    ]
    fr = []
    for f in frames:
        ms = ",\n".join(f"        {json.dumps(k)}: {_num(v)}" for k, v in f["metrics"].items())
        fr.append(f'    {{\n      "frameNum": {f["frameNum"]},\n      "metrics": {{\n{ms}\n      }}\n    }}')
    lines.append('  "frames": [' + ("\n" + ",\n".join(fr) + "\n" if fr else "") + "  ],")
    pooled = []
    for name, d in result["pooled_metrics"].items():
        body = ",\n".join(f'      "{m}": {_num(d[m])}' for m in pooled_keys(d))
        pooled.append(f"    {json.dumps(name)}: {{\n{body}\n    }}")
    lines.append('  "pooled_metrics": {' + ("\n" + ",\n".join(pooled) + "\n" if pooled else "") + "  },")
    agg = ",\n".join(f"    {json.dumps(k)}: {_num(v)}" for k, v in result.get("aggregate_metrics", {}).items())
    tail = []
    if result.get("scaling"):  # the distorted was scaled to the reference's size: its size and the scaler
        tail.append(f'  "scaling": {json.dumps(result["scaling"])}')
    if result.get("run_provenance"):  # who ran what on which inputs (after libvmaf's own keys: parsers skip it)
        tail.append('  "run_provenance": ' + json.dumps(result["run_provenance"], indent=2).replace("\n", "\n  "))
    lines.append('  "aggregate_metrics": {' + ("\n" + agg if agg else "") + "\n  }" + ("," if tail else ""))
    if tail:
        lines.append(",\n".join(tail))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _scaling_attrs(result: dict[str, Any]) -> str:
    sc = result.get("scaling")
    if not sc:
        return ""
    return f" distortedSize={quoteattr(sc['distorted'])} scaler={quoteattr(sc['scaler'])}"


def render_xml(result: dict[str, Any]) -> str:
    out = [
        f"<VMAF version={quoteattr(result['version'])}>",
        f'  <params qualityWidth="{result["width"]}" qualityHeight="{result["height"]}"{_scaling_attrs(result)} />',
        f'  <fyi fps="{result["fps"]:.2f}" />',
        "  <frames>",
    ]
    for f in result["frames"]:
        attrs = " ".join(f'{_xml_name(k)}="{v:.6f}"' for k, v in f["metrics"].items())
        out.append(f'    <frame frameNum="{f["frameNum"]}" {attrs} />')
    out += ["  </frames>", "  <pooled_metrics>"]
    for name, d in result["pooled_metrics"].items():
        attrs = " ".join(f'{m}="{d[m]:.6f}"' for m in pooled_keys(d))
        out.append(f"    <metric name={quoteattr(name)} {attrs} />")
    out += [
        "  </pooled_metrics>",
        "  <aggregate_metrics "
        + " ".join(f'{_xml_name(k)}="{v:.6f}"' for k, v in result.get("aggregate_metrics", {}).items())
        + "/>",
        "</VMAF>",
    ]
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join(out) + "\n"


def render_csv(result: dict[str, Any]) -> str:
    names = list(result["pooled_metrics"])
    rows = ["Frame," + "".join(f"{_csv_cell(n)}," for n in names)]
    for f in result["frames"]:
        rows.append(f"{f['frameNum']}," + "".join(f"{f['metrics'][n]:.6f}," for n in names))
    return "\n".join(rows) + "\n"


RENDERERS = {"json": render_json, "xml": render_xml, "csv": render_csv}


def write_result(path: str | os.PathLike[str], result: dict[str, Any], fmt: str = "json") -> None:
    """Render and write atomically (temp file + rename)."""
    text = RENDERERS[fmt](result)
    with atomic_open(path, "w") as f:
        f.write(text)
