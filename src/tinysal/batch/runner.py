"""The batch runner: every job of a manifest in a process of its own, on a local pool or on Ray
(``engines``), with its record written as it finishes, a table of all jobs at the end, a progress bar and optional
NDJSON events.

Threads: every job is given ``threads`` (libvmaf's, the saliency model's, the encoder's), and the engine runs as
many jobs at once as it has cores for: locally ``cores // threads`` (or ``workers``), on Ray one task per job with
``num_cpus = threads``, so neither asks for more threads than there are cores. A worker that dies (killed, out of
memory, its Ray node lost) is retried up to ``retries`` times; a job that fails for a reason of its own is not (it
would fail again). Ctrl-C or SIGTERM stops the workers (their process groups: FFmpeg children too) and loses only
the jobs in flight.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from tinysal.batch import engines, records
from tinysal.batch.manifest import Job, load
from tinysal.batch.tasks import TASKS
from tinysal.errors import TinysalError
from tinysal.fileio import EventLog, refuse_dangling

#: the table's columns: the job, then the pooled figures of score jobs, then the encode summary
COLUMNS = ("id", "task", "status", "error", "seconds", "attempts", "frames", "vmaf_mean", "vmaf_min",
           "vmaf_harmonic_mean", "vmaf_roi_mean", "saliency_mean_mean", "output", "video_kbps",
           "total_kbps", "bytes", "crf", "bitrate",
           "roi_strength")  # fmt: skip


class Lock:
    """An exclusive lock on DIR/.lock (flock: the kernel releases it when the process ends, even by kill -9)."""

    def __init__(self, out_dir: Path, what: str = "batch") -> None:
        import fcntl

        self.f = open(out_dir / ".lock", "a+")  # noqa: SIM115 - held for the batch's lifetime
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.close()
            raise TinysalError(f"another {what} is running on {out_dir} (it holds {out_dir / '.lock'})") from None

    def release(self) -> None:
        self.f.close()


def _row(rec: dict[str, Any]) -> dict[str, Any]:
    row = {k: rec.get(k) for k in ("id", "task", "status", "error", "seconds", "attempts")}
    res, info = rec.get("result") or {}, rec.get("info") or {}
    task = TASKS.get(rec.get("task") or "")
    if task is not None and task.row is not None:
        row.update(task.row(res, info, rec.get("options") or {}))
    row["frames"] = info.get("frames_scored", info.get("frames"))
    for k in ("output", "video_kbps", "total_kbps", "bytes"):
        row[k] = info.get(k)
    return row


def _digits(v: Any) -> Any:
    """A float as 6 significant digits in the CSV (the records and summary.parquet keep every digit)."""
    return float(f"{v:.6g}") if isinstance(v, float) else v


def _write_table(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    from tinysal.fileio import atomic_open, csv_safe

    extra = sorted({k for r in rows for k in r if k not in COLUMNS},
                   key=lambda k: (k.rsplit("_p", 1)[0], float(k.rsplit("_p", 1)[1])))  # fmt: skip
    columns = (*COLUMNS, *extra)
    with atomic_open(out_dir / "summary.csv", "w") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: csv_safe(_digits(v)) for k, v in r.items()} for r in rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    table = pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows])
    tmp = out_dir / ".summary.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out_dir / "summary.parquet")


#: what the batch writes in its folder besides the records (DIR/jobs/<id>.json)
BATCH_FILES = ("summary.csv", "summary.parquet", ".lock")


def _prepare_dir(out: str | os.PathLike[str]) -> Path:
    out_dir = Path(out)
    refuse_dangling(out_dir, "--out")
    if out_dir.exists() and not out_dir.is_dir():
        raise TinysalError(f"--out {out_dir} exists and is not a folder")
    try:
        (out_dir / "jobs").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinysalError(f"cannot create {out_dir / 'jobs'}: {e.strerror}") from None
    if not os.access(out_dir / "jobs", os.W_OK):
        raise TinysalError(f"--out {out_dir} is not writable")
    return out_dir


def _make_output_folders(jobs: list[Job]) -> None:
    """The folders the jobs write into, made before any job runs (a row's ``out/x.mp4`` with no ``out/`` yet would
    fail every job at run time), or one line for a folder that cannot be made."""
    made: set[str] = set()
    for job in jobs:
        for p in job.outputs():
            parent = os.path.dirname(os.path.abspath(p))
            if parent in made:
                continue
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as e:
                raise TinysalError(f"{job.id}: cannot make the folder of {p}: {e.strerror}") from None
            if not os.access(parent, os.W_OK):
                raise TinysalError(f"{job.id}: the folder of {p} is not writable")
            made.add(parent)


def _threads(threads: int, workers: int, engine: str) -> int:
    """Each job's threads: as given; or, locally, the cores shared among ``workers`` (one each by default: on a
    catalogue, jobs side by side use the cores better than threads within one job); on Ray one."""
    for flag, v in (("--threads", threads), ("--workers", workers)):
        if v < 0:
            raise TinysalError(f"{flag} must be at least 0, got {v}")
    if threads:
        return threads
    cores = os.cpu_count() or 1
    return max(1, cores // workers) if engine == "local" and workers else 1


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
    address: str | None = None,
    threads: int = 0,
    what: str = "job",
) -> list[dict[str, Any]]:
    """Run (or resume) a batch; returns the table (one dict per job, ``COLUMNS``), also DIR/summary.csv.

    ``engine``: ``local`` or ``ray`` (``address``: None starts a local Ray, ``auto`` or ``[ray://]host:port`` joins
    a cluster). ``workers``: jobs at once (0: as many as the cores allow at ``threads`` each); ``threads``: each
    job's threads (0: see :func:`_threads`). ``what``: what the progress bar counts (``shot`` for auto-encode's
    shots)."""
    if retries < 0:
        raise TinysalError(f"--retries must be at least 0, got {retries}")
    if engine not in ("local", "ray"):
        raise TinysalError(f"--engine must be local or ray, got {engine!r}")
    job_threads = _threads(threads, workers, engine)
    jobs = _load(manifest, out_dir, events)
    out = _prepare_dir(out_dir)
    _make_output_folders(jobs)
    lock = Lock(out)
    ev = EventLog(events)
    try:
        eng = engines.make(engine, address)
        try:
            runner = _Runner(out, records.versions(), retries, ev, eng, job_threads)
            return _run_locked(jobs, runner, workers, force, progress, on_job, what)
        finally:
            eng.close()
    finally:
        ev.close()
        lock.release()


def _load(manifest: str | os.PathLike[str], out_dir: str | os.PathLike[str], events: str | None) -> list[Job]:
    """The manifest's jobs, checked with every path the batch itself writes."""
    own = {f"--out {name}": str(Path(out_dir) / name) for name in BATCH_FILES}
    if events and events != "-":
        own["--events"] = events
    return load(manifest, own, {"--out records folder": str(Path(out_dir) / "jobs")})


def check(manifest: str | os.PathLike[str], out_dir: str | os.PathLike[str], events: str | None = None,
          force: bool = False) -> tuple[int, int]:  # fmt: skip
    """Check a manifest as :func:`run` does before any work, and run nothing: (jobs, jobs a run would skip as done).
    Raises the same one ``TinysalError`` listing every bad row."""
    jobs = _load(manifest, out_dir, events)
    out = Path(out_dir)
    if force or not (out / "jobs").is_dir():
        return len(jobs), 0
    done, _ = _split(jobs, out, records.versions(), force)
    return len(jobs), len(done)


def _wrote_before(out: Path, job: Job) -> bool:
    """True when this job's earlier record (done, untouched) says the batch wrote the output that is there now: a
    redo may replace it. Any other file at the output path is the user's, and is kept unless the row says
    overwrite."""
    rec = records.read(records.path_of(out, job.id))
    if rec is None or rec.get("status") != "done" or not isinstance(rec.get("info"), dict):
        return False
    field = TASKS[job.task].output_field
    mine, target = rec["info"].get("output"), getattr(job.options, field) if field else None
    try:
        same = bool(mine and target) and os.path.samefile(mine, target)
        return same and os.path.getsize(mine) == rec["info"].get("bytes")
    except OSError:
        return False


class _Runner:
    """Runs one job (with retries of a worker that died), writes its record and says so."""

    def __init__(self, out: Path, vers: dict[str, Any], retries: int, ev: EventLog, engine: Any, threads: int) -> None:
        self.out, self.vers, self.retries, self.ev = out, vers, retries, ev
        self.engine, self.threads = engine, threads

    def __call__(self, job: Job) -> dict[str, Any]:
        import dataclasses

        self.ev.emit("job-start", id=job.id, task=job.task)
        opts = dataclasses.asdict(job.options)
        if TASKS[job.task].output_field and _wrote_before(self.out, job):
            opts["overwrite"] = True  # its own earlier output (options or inputs changed since, or --force)
        payload = json.dumps({"task": job.task, "options": opts})
        t = time.perf_counter()
        ans, why, attempts = None, "", 0
        while ans is None and attempts <= self.retries and not self.engine.stopping:
            attempts += 1
            ans, why = self.engine.run(payload, self.threads)
        secs = time.perf_counter() - t
        if ans is None and self.engine.stopping:  # the batch was interrupted: this job was in flight, no record
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
    """(records of the jobs already done, the jobs to run). A job that reads the output of a job to run is run
    again too: its input is about to change."""
    done, todo = {}, []
    for job in jobs:
        rec = None if force else records.is_done(out, job, vers)
        if rec is not None:
            done[job.id] = rec
        else:
            todo.append(job)
    redo = {j.id for j in todo}
    changed = bool(redo)
    while changed:
        changed = False
        for job in jobs:
            if job.id in done and any(a in redo for a in job.after):
                del done[job.id]
                todo.append(job)
                redo.add(job.id)
                changed = True
    order = {j.id: k for k, j in enumerate(jobs)}
    return done, sorted(todo, key=lambda j: order[j.id])


class _Order:
    """Which jobs may start: those whose producers (``Job.after``) are done, found from the producer that just
    finished (its readers), never by scanning every waiting job. A producer that fails fails its readers, and
    theirs, with one line naming it, without running them."""

    def __init__(self, todo: list[Job], done: dict[str, Any]) -> None:
        self.ok = {i for i, r in done.items() if r.get("status") == "done"}
        self.waiting = {j.id: j for j in todo}
        self.users: dict[str, list[str]] = {}
        for j in todo:
            for a in j.after:
                self.users.setdefault(a, []).append(j.id)

    def first(self) -> list[Job]:
        """The jobs that can start at once (no producer, or producers done before this run)."""
        out = [j for j in self.waiting.values() if all(a in self.ok for a in j.after)]
        for j in out:
            del self.waiting[j.id]
        return out

    def finished(self, rec: dict[str, Any]) -> tuple[list[Job], list[tuple[Job, str]]]:
        """After ``rec``: (its readers that can start now, the readers that can never run, each with its line)."""
        if rec.get("status") == "done":
            self.ok.add(rec["id"])
            ready = [self.waiting.pop(u) for u in self.users.get(rec["id"], [])
                     if u in self.waiting and all(a in self.ok for a in self.waiting[u].after)]  # fmt: skip
            return ready, []
        if rec.get("status") == "interrupted":  # the batch is stopping: its readers stay unrun, with no record
            return [], []
        out, stack = [], [(rec["id"], rec["id"])]
        while stack:
            failed, root = stack.pop()
            for u in self.users.get(failed, []):
                if u in self.waiting:
                    job = self.waiting.pop(u)
                    why = f"not run: it reads the output of {failed}, which failed" if failed == root else (
                        f"not run: it reads the output of {failed}, which was not run ({root} failed)")  # fmt: skip
                    out.append((job, why))
                    stack.append((u, root))
        return [], out


def _run_locked(jobs: list[Job], runner: _Runner, workers: int, force: bool, progress: bool,
                on_job: Callable[[dict[str, Any]], None] | None,
                what: str = "job") -> list[dict[str, Any]]:  # fmt: skip
    from tqdm import tqdm

    out, engine, threads, ev = runner.out, runner.engine, runner.threads, runner.ev
    done, todo = _split(jobs, out, runner.vers, force)
    for job in todo:
        job.options.threads = threads
    n_slots = max(1, min(engine.slots(threads, workers), max(len(todo), 1)))
    desc = "batch" if what == "job" else f"{what}s"  # what the bar counts: jobs, or a title's shots
    bar = tqdm(total=len(jobs), initial=len(done), desc=f"{desc} ({engine.name})", unit=what, disable=not progress,
               leave=False)  # fmt: skip
    t0 = time.time()
    ev.emit("batch-start", jobs=len(jobs), to_run=len(todo), engine=engine.name, slots=n_slots, threads=threads)
    ex = ThreadPoolExecutor(max_workers=n_slots, thread_name_prefix="tinysal-batch")
    order = _Order(todo, done)

    def take(rec: dict[str, Any]) -> None:
        done[rec["id"]] = rec
        bar.update(1)
        if on_job:
            on_job(rec)

    try:
        futs: set[Future[Any]] = {ex.submit(runner, j) for j in order.first()}
        while futs:
            fin, futs = wait(futs, return_when=FIRST_COMPLETED)
            for f in fin:
                rec = f.result()
                take(rec)
                ready, blocked = order.finished(rec)
                for job, why in blocked:  # its readers, and theirs: a record each, not run
                    take(records.write(out, job, runner.vers, "failed", None, why, 0.0, 0))
                futs |= {ex.submit(runner, j) for j in ready}
    except BaseException:
        engine.stop()  # first: the pool's threads return as soon as their workers are gone
        raise
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        bar.close()
    rows = [_row(done.get(j.id) or {"id": j.id, "task": j.task, "status": "interrupted"}) for j in jobs]
    _write_table(out, rows)
    failed = sum(r["status"] != "done" for r in rows)
    ev.emit("batch-done", jobs=len(rows), failed=failed, skipped=len(jobs) - len(todo), seconds=time.time() - t0)
    return rows
