"""What the batch runner knows of each task, in one record per task: its options class (a row's columns are its
fields), the fields that name files it reads and writes, the field naming its encoded output (a redo may replace
the batch's own earlier file), the fields the batch sets itself, how a worker runs it and how its summary row
reads. A new task is one :class:`Task` in :data:`TASKS`; the manifest, the worker and the runner read nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinysal.batch.auto_options import AutoEncodeOptions
from tinysal.encode.encoder import EncodeOptions
from tinysal.encode.ladder import RungOptions
from tinysal.encode.search import CrfSearchOptions
from tinysal.encode.shots import ShotOptions
from tinysal.features.task import ScoreOptions

#: a worker's answer to a job: the record's ``result`` (the task's document), ``info`` (the small facts the summary
#: reads: output, bytes, kbit/s, frames) and ``notes``
Answer = dict[str, Any]


@dataclass(frozen=True)
class Task:
    name: str
    options: type  # the options dataclass: a row's columns are its fields (the command's flags)
    reads: tuple[str, ...]  # fields naming files read (checked to exist; never written by any job)
    writes: tuple[str, ...]  # fields naming files or folders written
    run: str  # "module:function" the worker calls with the options (by name: a task may run a batch itself)
    row: Callable[[Any, dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None  # (result, info, options)
    output_field: str | None = None  # the encoded output a redo may replace when the batch wrote it
    reserved: tuple[str, ...] = ("threads",)  # set by the batch (the pool sets the threads)
    dir_fields: tuple[str, ...] = ()  # written fields that name a folder replaced as a whole


def _run_score(opts: ScoreOptions) -> Answer:
    from tinysal.features.task import score

    res = score(opts)
    return {"result": res.result, "info": {k: v for k, v in res.info.items() if k != "notes"},
            "notes": res.info.get("notes", [])}  # fmt: skip


def _run_encode(opts: EncodeOptions) -> Answer:
    from tinysal.encode.encoder import encode

    info = encode(opts)
    return {"result": None, "info": info, "notes": info.pop("notes", [])}


def _run_rung(opts: RungOptions) -> Answer:
    from tinysal.encode.ladder import run_rung

    point = run_rung(opts)
    return {"result": point, "info": {k: point[k] for k in ("frames", "video_kbps", "total_kbps", "bytes")},
            "notes": []}  # fmt: skip


def _encode_info(doc: dict[str, Any], enc: dict[str, Any]) -> dict[str, Any]:
    return {"crf": doc.get("crf"), "roi_strength": doc.get("roi_strength"), "output": enc.get("output"),
            "bytes": enc.get("bytes"), "video_kbps": enc.get("video_kbps"), "total_kbps": enc.get("total_kbps"),
            "frames": enc.get("frames")}  # fmt: skip


def _run_crf_search(opts: CrfSearchOptions) -> Answer:
    from tinysal.encode.search import crf_search

    doc = crf_search(opts, quiet=True)
    return {"result": doc, "info": _encode_info(doc, doc.get("encode") or {}), "notes": []}


def _run_shot(opts: ShotOptions) -> Answer:
    from tinysal.encode.shots import run_shot

    doc = run_shot(opts)
    return {"result": doc, "info": _encode_info(doc, doc["encode"]), "notes": []}


def _score_row(res: Any, info: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    from tinysal.features.output import percentile_keys

    row: dict[str, Any] = {}
    pooled = res.get("pooled_metrics", {}) if isinstance(res, dict) else {}
    for m, keys in (("vmaf", ("mean", "min", "harmonic_mean")), ("vmaf_roi", ("mean",)), ("saliency_mean", ("mean",))):
        for k in keys:
            if k in pooled.get(m, {}):
                row[f"{m}_{k}"] = pooled[m][k]
        for k in percentile_keys(pooled.get(m, {})):  # --pool-percentiles: vmaf_p1, vmaf_p5, ... (columns added)
            row[f"{m}_{k}"] = pooled[m][k]
    return row


def _encode_row(res: Any, info: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:  # the rate asked for
    return {"crf": info.get("crf"), "bitrate": opts.get("bitrate") or None,
            "roi_strength": opts.get("roi_strength") if opts.get("roi") else None}  # fmt: skip


def _rung_row(res: Any, info: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:  # a rung: its mean scores
    return {"vmaf_mean": res.get("vmaf"), "vmaf_roi_mean": res.get("vmaf_roi")} if isinstance(res, dict) else {}


def _search_row(res: Any, info: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:  # the answer, as predicted
    if not isinstance(res, dict):
        return {}
    pred = res.get("predicted") or {}
    return {"crf": res.get("crf"), "roi_strength": res.get("roi_strength"), "vmaf_mean": pred.get("vmaf"),
            "vmaf_roi_mean": pred.get("vmaf_roi")}  # fmt: skip


def _measured_row(res: Any, info: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """A shot or a title encoded to its targets: the CRF and the scores measured on the encode itself."""
    if not isinstance(res, dict):
        return {}
    m = res.get("measured") or res.get("totals") or {}
    return {"crf": res.get("crf"), "roi_strength": res.get("roi_strength"), "vmaf_mean": m.get("vmaf"),
            "vmaf_min": m.get("vmaf_min"), "vmaf_roi_mean": m.get("vmaf_roi")}  # fmt: skip


_HERE = __name__
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("score", ScoreOptions, ("reference", "distorted"), ("plot", "contact_sheet", "saliency_out"),
             f"{_HERE}:_run_score", _score_row,
             reserved=("output", "fmt", "threads"),  # the record holds the result (no --output)
             dir_fields=("saliency_out",)),  # fmt: skip
        Task("encode", EncodeOptions, ("input", "roi_maps", "model_path"), ("output",), f"{_HERE}:_run_encode",
             _encode_row, output_field="output"),  # fmt: skip
        Task("rung", RungOptions, ("source", "rung_source", "model_path"), ("keep_encode",), f"{_HERE}:_run_rung",
             _rung_row),  # fmt: skip
        Task("crf-search", CrfSearchOptions, ("input", "model_path"), ("encode",), f"{_HERE}:_run_crf_search",
             _search_row, output_field="encode",
             reserved=("threads", "out_json", "events")),  # fmt: skip  # the record holds the search's document
        Task("shot", ShotOptions, ("source", "model_path"), ("output",), f"{_HERE}:_run_shot", _measured_row,
             output_field="output"),  # fmt: skip
        # one title shot by shot, its shots one after another in the job's worker (titles run side by side)
        Task("auto-encode", AutoEncodeOptions, ("input", "model_path"), ("output", "work_dir"),
             "tinysal.batch.auto_encode:run_task", _measured_row, output_field="output", dir_fields=("work_dir",),
             reserved=("threads", "out_json", "events", "jobs", "engine", "address")),  # fmt: skip
    )
}


def run(task: str, options: dict[str, Any]) -> Answer:
    """A job in the worker: the task's options from the row's values, its function called with them."""
    import importlib

    t = TASKS[task]
    module, fn = t.run.split(":")
    return getattr(importlib.import_module(module), fn)(t.options(**options))
