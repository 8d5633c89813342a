"""Job records: ``DIR/jobs/<id>.json``, written atomically, and the rule that says a job is done.

A record holds the job's options, its inputs' identity, the tool and model versions, its status, error and
result. Inputs are identified by size and modification time, not sha256: a catalogue's sources are large (hashing
one costs a full read, as much as decoding it), and size + mtime is what make and rsync trust to see a change.
A rerun skips a job whose record says done for the same options, inputs and versions; a record that was edited
(its ``digest`` no longer matches its content), is unreadable, or says failed is redone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tinysal.batch.manifest import Job


def identity(paths: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in paths:
        try:
            st = os.stat(p)
            out[p] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        except OSError:
            out[p] = None
    return out


def versions() -> dict[str, Any]:
    from tinysal import __version__
    from tinysal.errors import TinysalError
    from tinysal.model.registry import production_model

    try:
        model = production_model()
        prod = {"id": model["id"], "sha256": model.get("sha256")}
    except TinysalError:  # a broken registry is reported by the job that needs it
        prod = None
    env = os.environ.get("VMAF_MOBILESAL_MODEL_PATH")
    return {"tinysal": __version__, "production_model": prod, "VMAF_MOBILESAL_MODEL_PATH": env,
            "model_path_env": identity([env]) if env else None}  # fmt: skip


def _digest(rec: dict[str, Any]) -> str:
    body = {k: v for k, v in rec.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


#: options that change how a job runs, not what it produces (the pool sets them): not part of a job's identity
NOT_IDENTITY = ("threads",)


def key(job: Job, vers: dict[str, Any]) -> dict[str, Any]:
    """What must match for a finished record to stand for this job."""
    opts = {k: v for k, v in dataclasses.asdict(job.options).items() if k not in NOT_IDENTITY}
    return {"task": job.task, "options": opts, "inputs": identity(job.inputs()), "versions": vers}


def path_of(out_dir: Path, job_id: str) -> Path:
    return out_dir / "jobs" / f"{job_id}.json"


def read(path: Path) -> dict[str, Any] | None:
    """A record, or None when it is missing, unreadable or was edited by hand."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(rec, dict) or rec.get("digest") != _digest(rec):
        return None
    return rec


def is_done(out_dir: Path, job: Job, vers: dict[str, Any]) -> dict[str, Any] | None:
    rec = read(path_of(out_dir, job.id))
    if rec is None or rec.get("status") != "done":
        return None
    want = json.loads(json.dumps(key(job, vers)))
    if any(rec.get(k) != v for k, v in want.items()):
        return None
    return rec


def write(out_dir: Path, job: Job, vers: dict[str, Any], status: str, result: Any, error: str | None,
          seconds: float, attempts: int, info: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    from tinysal.fileio import write_json

    rec = {"id": job.id, **json.loads(json.dumps(key(job, vers))), "status": status, "error": error,
           "seconds": round(seconds, 3), "attempts": attempts, "info": info, "result": result}  # fmt: skip
    rec["digest"] = _digest(rec)
    write_json(path_of(out_dir, job.id), rec)
    return rec
