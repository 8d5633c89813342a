"""A batch manifest: CSV or JSONL, one job per row, checked whole before any work.

Each row has a unique ``id``, a ``task`` (``score``, ``encode``, ``crf-search``, ``auto-encode``; ``rung`` and
``shot``, one rung of a ladder or one shot of a title, which ``tinysal ladder`` and ``auto-encode`` write) and the
task's options under the names of the matching command's flags (the fields of its options class: batch.tasks).
CSV cells are text and are read by the field's type (numbers, ``true``/``false``, lists as ``;``-separated items or
a JSON list); JSONL values are taken as they are. Relative paths are relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import stat
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinysal.batch.tasks import TASKS
from tinysal.errors import TinysalError

MAX_ROWS = 1_000_000


@dataclass
class Job:
    id: str
    task: str
    options: Any  # the task's options dataclass
    row: int  # line or row number in the manifest, for messages
    after: list[str] = dataclasses.field(default_factory=list)  # ids of the jobs whose outputs this one reads

    def inputs(self) -> list[str]:
        return [p for f in TASKS[self.task].reads if (p := getattr(self.options, f, None))]

    def outputs(self) -> list[str]:
        return [p for f in TASKS[self.task].writes if (p := getattr(self.options, f, None))]


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
        if hint is int and isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
            raise ValueError(f"expected a whole number, got {value!r}")
        try:
            out = int(value.strip()) if hint is int and isinstance(value, str) else hint(value)
        except (ValueError, OverflowError):
            raise ValueError(f"expected a {'whole ' if hint is int else ''}number, got {value!r}") from None
        if isinstance(out, float) and not math.isfinite(out):  # "inf", "nan", 1e400 in a CSV cell
            raise ValueError(f"expected a finite number, got {value!r}")
        return out
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


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):  # 1e400 parses as inf
        raise ValueError(f"{text} is not a finite number")
    return v


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


class BadRows(TinysalError):
    """Bad lines of a manifest's text, every one listed."""


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any], bool]]:
    out, bad = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_float=_finite, parse_constant=_no_constant)
            why = "" if isinstance(row, dict) else "not a JSON object"
        except json.JSONDecodeError as e:
            why = f"not a JSON object ({e.msg}, column {e.colno})"
        except (ValueError, RecursionError) as e:  # NaN, Infinity, 1e400, a 5,000-digit integer, "[[[[..."
            why = f"not a JSON object ({e})" if isinstance(e, ValueError) else "nested too deeply"
        if why:
            bad.append(f"{path.name}:{n}: {why}")
        else:
            out.append((n, row, False))
    if bad:
        raise BadRows("bad manifest, nothing run:\n" + "\n".join(bad))
    return out


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any], bool]]:
    out = []
    try:
        reader = csv.DictReader(text.splitlines())
        header = reader.fieldnames or []
        dup = sorted({c for c in header if header.count(c) > 1})
        if dup:
            raise TinysalError(f"{path}:1: column {dup[0]!r} appears more than once in the header")
        if any(not c.strip() for c in header):
            raise TinysalError(f"{path}:1: the header has an empty column name")
        for n, row in enumerate(reader, 2):
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
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark, which would prefix the first column
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TinysalError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TinysalError(f"cannot read manifest {path}: {e}") from None
    out = kind(path, text)
    if len(out) > MAX_ROWS:
        raise TinysalError(f"{path}: more than {MAX_ROWS} rows")
    return out


#: the longest id, in UTF-8 bytes: the job's record is DIR/jobs/<id>.json, written through a temp file named
#: .<id>.json.XXXXXXXX.tmp, and a file name holds at most 255 bytes on Linux file systems
MAX_ID_BYTES = 200


def check_id(jid: Any) -> str:
    """A job id that every name the batch derives from it can hold (its record file and that file's temp name)."""
    if not isinstance(jid, str) or not jid:
        raise ValueError(f"id must be a non-empty name, got {jid!r}")
    if any(c in jid for c in "/\\\0") or jid.startswith("."):
        raise ValueError(f"id must be a name without slashes that does not start with '.', got {jid!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in jid):
        raise ValueError(f"id must not hold control characters, got {jid!r}")
    if len(jid.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise ValueError(f"id is {len(jid.encode('utf-8', 'surrogatepass'))} bytes long; at most {MAX_ID_BYTES} "
                         "(it names the job's record file)")  # fmt: skip
    return jid


@functools.cache
def _fields(task: str) -> tuple[dict[str, Any], frozenset[str]]:
    """(type hints, the columns a row may set) of a task's options: worked out once, not once per row."""
    t = TASKS[task]
    return typing.get_type_hints(t.options), frozenset(f.name for f in dataclasses.fields(t.options)) - set(t.reserved)


def _job(base: Path, n: int, row: dict[str, Any], from_text: bool) -> Job:
    jid, task = check_id(row.get("id")), row.get("task")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    cls, reads, writes = TASKS[task].options, TASKS[task].reads, TASKS[task].writes
    hints, names = _fields(task)
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
        if k in reads + writes and isinstance(kw[k], str) and not os.path.isabs(kw[k]):
            kw[k] = os.path.join(base, kw[k])
    try:
        opts = cls(**kw)
    except TypeError:
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name not in kw]  # fmt: skip
        raise ValueError(f"missing {', '.join(missing)}") from None
    return Job(jid, task, opts, n)


Ident = tuple[str, "tuple[int, int] | None"]


class PathIndex:
    """Each distinct path resolved once: its real path (folders' real paths cached, so a catalogue's 100,000 files
    in a few folders cost one ``realpath`` per folder) and its (device, inode) when it exists (one ``lstat``; a
    symlink is followed). Two names are one file when either matches (symlinks resolve to one real path; hard links
    share an inode), as :func:`tinysal.fileio.refuse_overlaps` decides for one command. The same ``stat`` says which
    paths are character devices, FIFOs or sockets (``/dev/stdout``, a named pipe): writing there replaces nothing."""

    def __init__(self) -> None:
        self.paths: dict[str, Ident] = {}
        self.dirs: dict[str, str] = {}
        self.special: set[str] = set()

    def is_special(self, path: str) -> bool:
        self(path)
        return path in self.special

    def __call__(self, path: str) -> Ident:
        hit = self.paths.get(path)
        if hit is not None:
            return hit
        parent, name = os.path.split(path)
        if name in ("", ".", ".."):
            real = os.path.realpath(path)
        else:
            rp = self.dirs.get(parent)
            if rp is None:
                rp = self.dirs[parent] = os.path.realpath(parent or ".")
            real = os.path.join(rp, name)
        try:
            st = os.lstat(real)
            if stat.S_ISLNK(st.st_mode):  # the kernel follows the link (/dev/stdout -> /proc/self/fd/1 -> a pipe)
                st = os.stat(real)
                real = os.path.realpath(real)
            ident: Ident = (real, (st.st_dev, st.st_ino))
            if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                self.special.add(path)
        except OSError:
            ident = (real, None)
        self.paths[path] = ident
        return ident


def _ancestors(real: str) -> Any:
    while True:
        up = os.path.dirname(real)
        if up == real:
            return
        yield up
        real = up


Entry = tuple["Job | None", str, str, str]  # (job or None for the batch's own, field, path, kind)


def _entries(manifest: str, jobs: list[Job], batch_files: dict[str, str], batch_dirs: dict[str, str],
             index: PathIndex) -> list[Entry]:  # fmt: skip
    """Every path of the batch: the manifest and the jobs' inputs first, then every output (files and folders);
    not ``-`` (standard output) nor a device, FIFO or socket."""
    ins: list[Entry] = [(None, "manifest", manifest, "input")]
    outs: list[Entry] = [(None, k, p, "output") for k, p in batch_files.items()]
    outs += [(None, k, p, "folder") for k, p in batch_dirs.items()]
    for job in jobs:
        t = TASKS[job.task]
        ins += [(job, f, p, "input") for f in t.reads if (p := getattr(job.options, f, None))]
        outs += [(job, f, p, "folder" if f in t.dir_fields else "output") for f in t.writes
                 if (p := getattr(job.options, f, None))]  # fmt: skip
    return [e for e in ins + outs if e[2] != "-" and not index.is_special(e[2])]


def _overlaps(manifest: str, jobs: list[Job], index: PathIndex, batch_files: dict[str, str],
              batch_dirs: dict[str, str]) -> list[str]:  # fmt: skip
    """One line per job whose output is an input of the same job or of the batch, lies in a folder written whole,
    or is another job's output (or one of the batch's own files: its records folder, summary, events). An output
    that other jobs read makes them wait for it (``Job.after``): encode -> score in one manifest. Linear: one
    index of every input and output by real path and by inode, each path's folders looked up in a set."""
    name = os.path.basename(manifest)
    by_real: dict[str, tuple[str, str, str]] = {}  # real path -> (who, "input" | "output", the file's key)
    by_ino: dict[tuple[int, int], tuple[str, str, str]] = {}
    readers: dict[str, list[Job | None]] = {}  # a file's key -> the jobs (None: the batch) that read it
    folders: dict[str, str] = {}
    problems: list[str] = []
    entries = _entries(manifest, jobs, batch_files, batch_dirs, index)

    def where(job: Job | None, label: str) -> str:
        return f"{name}:{job.row}: {job.id}: {label}" if job else f"batch {label}"

    for job, label, p, kind in entries:
        real, ino = index(p)
        prev = by_real.get(real) or (by_ino.get(ino) if ino is not None else None)
        role = "input" if kind == "input" else "output"
        if kind == "folder":
            folders[real] = where(job, label)
        if prev is None or (role == "input" and prev[1] == "input"):  # inputs may be shared
            entry = prev or (f"{job.id if job else 'batch'} {label} {p}", role, real)
            by_real.setdefault(real, entry)
            if ino is not None:
                by_ino.setdefault(ino, entry)
            if role == "input":
                readers.setdefault(entry[2], []).append(job)
            continue
        feeds = readers.get(prev[2], []) if prev[1] == "input" and kind == "output" else []
        if job is not None and _feed(job, feeds):  # read by other jobs only: theirs to wait for
            by_real[real] = (f"{job.id} {label} {p}", "output", prev[2])
            if ino is not None:
                by_ino[ino] = by_real[real]
        elif prev[1] == "input":
            problems.append(f"{where(job, label)} {p} is the same file as {prev[0]}, an input: refusing to overwrite "
                            "it")  # fmt: skip
        else:
            problems.append(f"{where(job, label)} writes {p}, as {prev[0]} does: give each output its own path")
    return problems + _inside_folders(entries, folders, index, where)


def _inside_folders(entries: list[Entry], folders: dict[str, str], index: PathIndex, where: Any) -> list[str]:
    problems = []
    for job, label, p, _ in entries if folders else []:
        up = next((u for u in _ancestors(index(p)[0]) if u in folders), None)
        if up is not None:
            problems.append(f"{where(job, label)} {p} lies inside {folders[up]}, a folder the batch writes as a "
                            "whole: give it a path outside that folder")  # fmt: skip
    return problems


def _feed(job: Job, readers: list[Job | None]) -> bool:
    """``job``'s output is read by ``readers``: when they are other jobs (not the batch, not itself), each runs
    after it (encode -> score in one manifest); True. Else False: an input would be overwritten."""
    if not readers or any(r is None or r is job for r in readers):
        return False
    for r in readers:
        if r is not None and job.id not in r.after:
            r.after.append(job.id)
    return True


def _cycles(name: str, jobs: list[Job]) -> list[str]:
    """One line naming jobs that wait on each other round a circle (each reads another's output): none of them
    could ever start. Kahn's order: what is left once every startable job is taken is in or behind a circle."""
    left = {j.id: len(j.after) for j in jobs}
    users: dict[str, list[str]] = {}
    for j in jobs:
        for a in j.after:
            users.setdefault(a, []).append(j.id)
    ready = [i for i, n in left.items() if n == 0]
    while ready:
        for u in users.get(ready.pop(), []):
            left[u] -= 1
            if left[u] == 0:
                ready.append(u)
    stuck = [j for j in jobs if left[j.id] > 0]
    if not stuck:
        return []
    return [f"{name}: jobs read each other's outputs round a circle, none could start: "
            + ", ".join(f"{j.id} (row {j.row}, after {', '.join(j.after)})" for j in stuck[:5])]  # fmt: skip


def _check_options(job: Job) -> None:
    """The task's own checks of its values (ranges, names, combinations), without touching any file: what would
    fail the job at run time fails the manifest now."""
    o = dataclasses.replace(job.options)  # the checks normalise some fields; the job keeps what the row said
    try:
        o.check(files=False)
    except TinysalError as e:
        raise ValueError(str(e)) from None


def load(path: str | Path, batch_files: dict[str, str] | None = None,
         batch_dirs: dict[str, str] | None = None) -> list[Job]:  # fmt: skip
    """Every job of the manifest, or one ``TinysalError`` listing every bad row (one line each).

    ``batch_files`` / ``batch_dirs``: what the batch itself writes (``--events``, the summary, the records folder),
    checked against every job's inputs and outputs like the jobs' own outputs. Linear in the rows: each distinct
    path is resolved and ``stat``-ed once."""
    path = Path(path)
    base = path.resolve().parent
    jobs, problems, seen = [], [], {}
    index = PathIndex()
    try:
        rows = _rows(path)
    except BadRows as e:
        raise TinysalError(str(e)) from None
    for n, row, from_text in rows:
        try:
            job = _job(base, n, row, from_text)
            _check_options(job)
        except ValueError as e:
            problems.append(f"{path.name}:{n}: {e}")
            continue
        if job.id in seen:
            problems.append(f"{path.name}:{n}: duplicate id {job.id!r} (also row {seen[job.id]})")
            continue
        seen[job.id] = n
        jobs.append(job)
    problems += _overlaps(str(path), jobs, index, batch_files or {}, batch_dirs or {})
    made = {index(p)[0] for job in jobs for p in job.outputs()}
    for job in jobs:
        for p in job.inputs():
            if index(p)[1] is None and index(p)[0] not in made:
                problems.append(f"{path.name}:{job.row}: {job.id}: input not found: {p}")
    problems += _cycles(path.name, jobs)
    if not jobs and not problems:
        problems.append(f"{path.name}: no jobs")
    if problems:
        more = f"\n{len(problems)} problems" if len(problems) > 1 else ""
        raise TinysalError("bad manifest, nothing run:\n" + "\n".join(problems) + more)
    return jobs
