"""The batch runner: every job of a manifest in a process of its own, on a local pool, with its record written as
it finishes, a table of all jobs at the end, a progress bar and optional NDJSON events.

Threads: ``workers`` jobs run at once and each gets ``cores // workers`` threads (libvmaf's and the saliency
model's), so the pool never asks for more threads than the machine has. A worker that dies (killed, out of
memory) is retried up to ``retries`` times; a job that fails for a reason of its own is not (it would fail again).
Ctrl-C or SIGTERM stops the workers (their process groups: FFmpeg children too) and loses only the jobs in flight.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, Any

from tinysal.batch import records
from tinysal.batch.manifest import Job, load
from tinysal.errors import TinysalError

#: the table's columns: the job, then the pooled figures of score jobs, then the encode summary
COLUMNS = ("id", "task", "status", "error", "seconds", "attempts", "frames", "vmaf_mean", "vmaf_min",
           "vmaf_harmonic_mean", "vmaf_roi_mean", "saliency_mean_mean", "output", "kbps", "bytes")  # fmt: skip


class _Lock:
    """An exclusive lock on DIR/.lock (flock: the kernel releases it when the process ends, even by kill -9)."""

    def __init__(self, out_dir: Path) -> None:
        import fcntl

        self.f = open(out_dir / ".lock", "a+")  # noqa: SIM115 - held for the batch's lifetime
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.close()
            raise TinysalError(f"another batch is running on {out_dir} (it holds {out_dir / '.lock'})") from None

    def release(self) -> None:
        self.f.close()


class _Events:
    def __init__(self, target: str | None) -> None:
        self.f: IO[str] | None = None
        self.own = False
        if target == "-":
            self.f = sys.stdout
        elif target:
            self.f, self.own = open(target, "a", encoding="utf-8"), True  # noqa: SIM115
        self.lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        if self.f is None:
            return
        with self.lock:
            self.f.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, default=str) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.own and self.f is not None:
            self.f.close()


class _Workers:
    """The live worker processes, so that an interrupted batch stops every one (and its FFmpeg children)."""

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def run(self, job: Job) -> tuple[dict[str, Any] | None, str]:
        """(the worker's answer, or None if it died; what happened)."""
        import dataclasses

        payload = json.dumps({"task": job.task, "options": dataclasses.asdict(job.options)})
        with self.lock:
            if self.stopping:
                return None, "stopped"
            p = subprocess.Popen([sys.executable, "-m", "tinysal.batch.worker"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)  # fmt: skip
            self.procs.add(p)
        try:
            out, err = p.communicate(payload)
        finally:
            with self.lock:
                self.procs.discard(p)
        if p.returncode != 0:
            how = f"signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}"
            last = err.strip().splitlines()[-1:] if err.strip() else []
            return None, f"worker died ({how}){': ' + last[0][:200] if last else ''}"
        try:
            return json.loads(out), ""
        except ValueError:
            return None, "worker died (no answer)"

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for p in self.procs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)


def _row(rec: dict[str, Any]) -> dict[str, Any]:
    row = {k: rec.get(k) for k in ("id", "task", "status", "error", "seconds", "attempts")}
    res, info = rec.get("result") or {}, rec.get("info") or {}
    pooled = res.get("pooled_metrics", {}) if isinstance(res, dict) else {}
    for m in ("vmaf", "vmaf_roi", "saliency_mean"):
        for k in ("mean", "min", "harmonic_mean"):
            if f"{m}_{k}" in COLUMNS and k in pooled.get(m, {}):
                row[f"{m}_{k}"] = pooled[m][k]
    row["frames"] = info.get("frames_scored", info.get("frames"))
    for k in ("output", "kbps", "bytes"):
        row[k] = info.get(k)
    return row


def _write_table(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    from tinysal.fileio import atomic_open

    with atomic_open(out_dir / "summary.csv", "w") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    table = pa.Table.from_pylist([{k: r.get(k) for k in COLUMNS} for r in rows])
    tmp = out_dir / ".summary.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out_dir / "summary.parquet")


def _prepare_dir(out: str | os.PathLike[str]) -> Path:
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise TinysalError(f"--out {out_dir} exists and is not a folder")
    try:
        (out_dir / "jobs").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinysalError(f"cannot create {out_dir / 'jobs'}: {e.strerror}") from None
    if not os.access(out_dir / "jobs", os.W_OK):
        raise TinysalError(f"--out {out_dir} is not writable")
    return out_dir


def _pool_size(workers: int, n_jobs: int) -> tuple[int, int]:
    """(jobs at once, threads per job) so that their product never exceeds the cores."""
    cores = os.cpu_count() or 1
    if workers < 0:
        raise TinysalError(f"--workers must be at least 0, got {workers}")
    w = max(1, min(workers or cores, cores, max(n_jobs, 1)))
    return w, max(1, cores // w)


def run(
    manifest: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    engine: str = "local",
    workers: int = 0,
    retries: int = 1,
    force: bool = False,
    events: str | None = None,
    progress: bool = True,
    on_job: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) a batch; returns the table (one dict per job, ``COLUMNS``), also DIR/summary.csv."""
    if engine != "local":
        raise TinysalError(f"engine {engine!r} is not available yet; use --engine local")
    if retries < 0:
        raise TinysalError(f"--retries must be at least 0, got {retries}")
    jobs = load(manifest)
    out = _prepare_dir(out_dir)
    lock = _Lock(out)
    ev = _Events(events)
    try:
        return _run_locked(jobs, out, workers, retries, force, ev, progress, on_job)
    finally:
        ev.close()
        lock.release()


class _Runner:
    """Runs one job (with retries of a worker that died), writes its record and says so."""

    def __init__(self, out: Path, vers: dict[str, Any], retries: int, ev: _Events) -> None:
        self.out, self.vers, self.retries, self.ev = out, vers, retries, ev
        self.pool = _Workers()

    def __call__(self, job: Job) -> dict[str, Any]:
        self.ev.emit("job-start", id=job.id, task=job.task)
        t = time.perf_counter()
        ans, why, attempts = None, "", 0
        while ans is None and attempts <= self.retries and not self.pool.stopping:
            attempts += 1
            ans, why = self.pool.run(job)
        secs = time.perf_counter() - t
        if ans is None and self.pool.stopping:  # the batch was interrupted: this job was in flight, no record
            return {"id": job.id, "status": "interrupted"}
        if ans is None:
            rec = records.write(self.out, job, self.vers, "failed", None, why, secs, attempts)
        else:
            rec = records.write(self.out, job, self.vers, ans["status"], ans.get("result"), ans.get("error"), secs,
                                attempts, ans.get("info"))  # fmt: skip
        self.ev.emit("job-done" if rec["status"] == "done" else "job-failed", id=job.id, error=rec["error"],
                     seconds=rec["seconds"])  # fmt: skip
        return rec


def _split(jobs: list[Job], out: Path, vers: dict[str, Any], force: bool) -> tuple[dict[str, Any], list[Job]]:
    """(records of the jobs already done, the jobs to run)."""
    done, todo = {}, []
    for job in jobs:
        rec = None if force else records.is_done(out, job, vers)
        if rec is not None:
            done[job.id] = rec
        else:
            todo.append(job)
    return done, todo


def _run_locked(jobs: list[Job], out: Path, workers: int, retries: int, force: bool, ev: _Events, progress: bool,
                on_job: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:  # fmt: skip
    from tqdm import tqdm

    vers = records.versions()
    done, todo = _split(jobs, out, vers, force)
    n_workers, threads = _pool_size(workers, len(todo))
    for job in todo:
        if job.task == "score":
            job.options.threads = threads
    bar = tqdm(total=len(jobs), initial=len(done), desc="batch", unit="job", disable=not progress, leave=False)
    runner = _Runner(out, vers, retries, ev)
    t0 = time.time()
    ex = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="tinysal-batch")
    try:
        futs: set[Future[Any]] = {ex.submit(runner, j) for j in todo}
        while futs:
            fin, futs = wait(futs, return_when=FIRST_COMPLETED)
            for f in fin:
                rec = f.result()
                done[rec["id"]] = rec
                bar.update(1)
                if on_job:
                    on_job(rec)
    except BaseException:
        runner.pool.stop()  # first: the pool's threads return as soon as their workers are gone
        raise
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        bar.close()
    rows = [_row(done[j.id]) for j in jobs]
    _write_table(out, rows)
    failed = sum(r["status"] != "done" for r in rows)
    ev.emit("batch-done", jobs=len(rows), failed=failed, skipped=len(jobs) - len(todo), seconds=time.time() - t0)
    return rows
