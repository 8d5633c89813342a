"""A batch manifest: CSV or JSONL, one job per row, checked whole before any work.

Each row has a unique ``id``, a ``task`` (``score``, ``encode``, ``crf-search``, ``rung``) and the task's options
under the names of the matching command's flags (the fields of ``ScoreOptions`` / ``EncodeOptions`` /
``CrfSearchOptions``; ``rung``, one rung of a ladder that ``tinysal ladder`` writes: the fields of ``RungOptions``).
CSV cells are text and are read by the field's type (numbers, ``true``/``false``, lists as ``;``-separated items or
a JSON list); JSONL values are taken as they are. Relative paths are relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinysal.encode.encoder import EncodeOptions
from tinysal.encode.ladder import RungOptions
from tinysal.encode.search import CrfSearchOptions
from tinysal.errors import TinysalError
from tinysal.features.task import ScoreOptions

#: task -> (options dataclass, the fields that name files read, the fields that name files or folders written)
TASKS: dict[str, tuple[type, tuple[str, ...], tuple[str, ...]]] = {
    "score": (ScoreOptions, ("reference", "distorted"), ("plot", "contact_sheet", "saliency_out")),
    "encode": (EncodeOptions, ("input", "roi_maps", "model_path"), ("output",)),
    "rung": (RungOptions, ("source", "rung_source", "model_path"), ()),
    "crf-search": (CrfSearchOptions, ("input", "model_path"), ("encode",)),
}
#: the field that names a task's encoded output, for a redo that may replace the batch's own earlier file
OUTPUT_FIELD = {"encode": "output", "crf-search": "encode"}
#: fields a batch sets itself: the score record holds the result (no --output), the pool sets the threads
RESERVED = {"score": ("output", "fmt", "threads"), "encode": ("threads",), "rung": ("threads",),
            "crf-search": ("threads", "out_json", "events")}  # the record holds the search's document
MAX_ROWS = 1_000_000


@dataclass
class Job:
    id: str
    task: str
    options: Any  # the task's options dataclass
    row: int  # line or row number in the manifest, for messages

    def inputs(self) -> list[str]:
        return [p for f in TASKS[self.task][1] if (p := getattr(self.options, f, None))]

    def outputs(self) -> list[str]:
        return [p for f in TASKS[self.task][2] if (p := getattr(self.options, f, None))]


def _scalar(value: Any, hint: Any, from_text: bool) -> Any:
    if hint is bool:
        if not from_text:
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            return value
        low = value.strip().lower()
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"expected true or false, got {value!r}")
        return low in ("true", "1", "yes")
    if hint in (int, float):
        if isinstance(value, bool) or (not from_text and not isinstance(value, (int, float))):
            raise ValueError(f"expected a number, got {value!r}")
        if hint is int and isinstance(value, float) and value != int(value):
            raise ValueError(f"expected a whole number, got {value!r}")
        try:
            return int(value.strip()) if hint is int and isinstance(value, str) else hint(value)
        except ValueError:
            raise ValueError(f"expected a {'whole ' if hint is int else ''}number, got {value!r}") from None
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def _coerce(value: Any, hint: Any, from_text: bool) -> Any:
    """A manifest value as the field's type; ``from_text``: a CSV cell (text)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return None if value is None else _coerce(value, args[0], from_text)
    if typing.get_origin(hint) is list:
        if from_text:
            value = json.loads(value) if value.startswith("[") else [v for v in value.split(";") if v]
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        return [_coerce(v, args[0], from_text) for v in value]
    return _scalar(value, hint, from_text)


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any], bool]]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            row = None
        if not isinstance(row, dict):
            raise TinysalError(f"{path}:{n}: not a JSON object")
        out.append((n, row, False))
    return out


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any], bool]]:
    out = []
    try:
        for n, row in enumerate(csv.DictReader(text.splitlines()), 2):
            if None in row:
                raise TinysalError(f"{path}:{n}: more cells than the header has columns")
            out.append((n, {k: v for k, v in row.items() if v not in ("", None)}, True))
    except csv.Error as e:
        raise TinysalError(f"{path}: not a readable CSV file ({e})") from None
    return out


def _rows(path: Path) -> list[tuple[int, dict[str, Any], bool]]:
    """(row number, row, values are text) of a CSV or JSONL manifest."""
    kind = {".jsonl": _jsonl_rows, ".ndjson": _jsonl_rows, ".csv": _csv_rows}.get(path.suffix.lower())
    if kind is None:
        raise TinysalError(f"{path}: a manifest is a .csv or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TinysalError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TinysalError(f"cannot read manifest {path}: {e}") from None
    out = kind(path, text)
    if len(out) > MAX_ROWS:
        raise TinysalError(f"{path}: more than {MAX_ROWS} rows")
    return out


def _job(base: Path, n: int, row: dict[str, Any], from_text: bool) -> Job:
    jid, task = row.get("id"), row.get("task")
    if not isinstance(jid, str) or not jid or any(c in jid for c in "/\\\0") or jid.startswith("."):
        raise ValueError(f"id must be a non-empty name without slashes, got {jid!r}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    cls, reads, writes = TASKS[task]
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - set(RESERVED[task])
    kw: dict[str, Any] = {}
    for k, v in row.items():
        if k in ("id", "task"):
            continue
        if k not in names:
            raise ValueError(f"unknown column {k!r} for task {task}")
        try:
            kw[k] = _coerce(v, hints[k], from_text)
        except (ValueError, json.JSONDecodeError) as e:
            raise ValueError(f"{k}: {e}") from None
        if k in reads + writes and isinstance(kw[k], str) and not Path(kw[k]).is_absolute():
            kw[k] = str(base / kw[k])
    try:
        opts = cls(**kw)
    except TypeError:
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name not in kw]  # fmt: skip
        raise ValueError(f"missing {', '.join(missing)}") from None
    return Job(jid, task, opts, n)


#: output fields that name a folder the task replaces as a whole
DIR_FIELDS = ("saliency_out",)


def _overlaps(name: str, jobs: list[Job]) -> list[str]:
    """One line per job whose output is an input of any job, a folder holding one, or another job's output."""
    from tinysal.fileio import refuse_overlaps

    inputs = {f"{j.id}: {f}": getattr(j.options, f) for j in jobs for f in TASKS[j.task][1]}
    problems, writers = [], {}
    for job in jobs:
        outs = {f"{job.id}: {f}": getattr(job.options, f) for f in TASKS[job.task][2] if f not in DIR_FIELDS}
        dirs = {f"{job.id}: {f}": getattr(job.options, f) for f in DIR_FIELDS if hasattr(job.options, f)}
        try:
            refuse_overlaps(inputs, outs, dirs)
        except TinysalError as e:
            problems.append(f"{name}:{job.row}: {e}")
        for p in job.outputs():
            key = str(Path(p).resolve())
            if key in writers:
                problems.append(f"{name}:{job.row}: {job.id} writes {p}, as {writers[key]} does")
            writers[key] = job.id
    return problems


def load(path: str | Path) -> list[Job]:
    """Every job of the manifest, or one ``TinysalError`` listing every bad row (one line each)."""
    path = Path(path)
    base = path.resolve().parent
    jobs, problems, seen = [], [], {}
    for n, row, from_text in _rows(path):
        try:
            job = _job(base, n, row, from_text)
        except ValueError as e:
            problems.append(f"{path.name}:{n}: {e}")
            continue
        if job.id in seen:
            problems.append(f"{path.name}:{n}: duplicate id {job.id!r} (also row {seen[job.id]})")
            continue
        seen[job.id] = n
        for p in job.inputs():
            if not Path(p).exists():
                problems.append(f"{path.name}:{n}: {job.id}: input not found: {p}")
        jobs.append(job)
    problems += _overlaps(path.name, jobs)
    if not jobs and not problems:
        problems.append(f"{path.name}: no jobs")
    if problems:
        raise TinysalError("bad manifest, nothing run:\n" + "\n".join(problems))
    return jobs
