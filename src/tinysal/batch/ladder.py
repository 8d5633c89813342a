"""``tinysal ladder`` on the batch runner: the rung sources are made once, every rung is a row of a manifest
(task ``rung``) that the batch runner runs like any catalogue (one process per job, locally or as Ray tasks, a
record per job), and the points come back from the records.

With ``--work-dir`` the sources, the manifest (``WORK/rungs.jsonl``) and the records (``WORK/batch``) are kept: a
rerun with the same input and rungs reuses the sources and skips every rung already done (an interrupted ladder
resumes), and ``tinysal batch WORK/rungs.jsonl --out WORK/batch`` runs the same jobs (on a Ray cluster, WORK must be
on storage every node sees). Without it everything lives in a temporary folder, removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tinysal.batch import records
from tinysal.batch.runner import Lock
from tinysal.batch.runner import run as run_batch
from tinysal.batch.tasks import TASKS
from tinysal.encode.ladder import (
    DEFAULT_FPS,
    LadderOptions,
    RungOptions,
    check_source,
    default_heights,
    roi_strengths,
    rung_width,
    summarise,
    write_sources,
)
from tinysal.errors import TinysalError

SOURCES = "sources.json"


def _work_dir(opts: LadderOptions) -> tuple[Path, bool]:
    """(the folder the ladder works in, whether it is kept)."""
    from tinysal.fileio import refuse_overlaps, run_work_dir

    work, keep = run_work_dir(opts.work_dir, "ladder")
    if not keep:
        return work, keep
    refuse_overlaps(
        {"input": opts.input},
        {"--out-json": opts.out_json, "--plot": opts.plot, "the ladder's manifest": str(work / "rungs.jsonl")},
        {"--work-dir's sources": str(work / "sources"), "--work-dir's records": str(work / "batch")},
    )
    return work, True


def _sources(opts: LadderOptions, reader: Any, total: int, heights: list[int], work: Path) -> tuple[int, dict, str]:
    """The rung sources in ``work/sources``: reused when ``sources.json`` says they were cut from this input (path,
    size, modification time), at these heights, frames, scaler and pixel format, and every file is there at its
    size; else made. Sources a finished ladder removed are cut again; when a file comes out byte for byte as it was
    (its sha256 in ``sources.json``), it gets its old modification time back, so the rungs' records (which name
    their inputs by size and modification time) stand. (frames, {height: file}, the pixel format)"""
    folder = work / "sources"
    folder.mkdir(exist_ok=True)
    layout = _layout(opts, reader)
    want = json.loads(json.dumps({"input": records.identity([str(Path(opts.input).resolve())]),
                                  "frames_wanted": total, "heights": heights, "scaler": opts.scaler,
                                  "pix_fmt": layout}))  # fmt: skip
    try:
        have = json.loads((folder / SOURCES).read_text(encoding="utf-8"))
        if not all(have.get(k) == v for k, v in want.items()):
            have = None
        else:
            files = {int(h): f for h, f in have["files"].items()}
            if all(Path(f).is_file() and Path(f).stat().st_size == have["sizes"][str(h)] for h, f in files.items()):
                return int(have["frames"]), files, layout
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        have = None
    (folder / SOURCES).unlink(missing_ok=True)
    n, files = write_sources(reader, total, heights, folder, opts.scaler, layout)
    digests = {h: _sha256(f) for h, f in files.items()}
    for h, f in files.items():
        if have and (have.get("sha256") or {}).get(str(h)) == digests[h]:  # the same bytes as before
            os.utime(f, ns=(os.stat(f).st_atime_ns, int(have["mtime_ns"][str(h)])))
    from tinysal.fileio import write_json

    write_json(folder / SOURCES, {**want, "frames": n, "files": {str(h): f for h, f in files.items()},
                                  "sizes": {str(h): Path(f).stat().st_size for h, f in files.items()},
                                  "sha256": {str(h): d for h, d in digests.items()},
                                  "mtime_ns": {str(h): Path(f).stat().st_mtime_ns
                                               for h, f in files.items()}})  # fmt: skip
    return n, files, layout


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _drop_sources(work: Path) -> None:
    """A finished ladder's raw rung sources removed (``sources.json`` kept: a rerun cuts them again, the same)."""
    for f in (work / "sources").glob("*.yuv"):
        f.unlink(missing_ok=True)


def _layout(opts: LadderOptions, reader: Any) -> str:
    """The raw pixel format rungs are cut and scored in: the one the codec encodes this source in."""
    from tinysal.encode.codecs import CODECS

    return CODECS[opts.codec].pix_fmt_for(reader.pix_fmt, reader.bitdepth)[0]


def _kept(opts: LadderOptions, rid: str) -> str | None:
    """Where a rung's encode is kept (``--keep-encodes DIR``): DIR/<rung id>.mp4, the folder made."""
    if not opts.keep_encodes:
        return None
    folder = Path(os.path.abspath(opts.keep_encodes))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinysalError(f"--keep-encodes {folder}: cannot create it: {e.strerror or e}") from None
    return str(folder / f"{rid}.mp4")


def _write_manifest(work: Path, rungs: dict[str, RungOptions]) -> Path:
    """The rungs as the batch's manifest, WORK/rungs.jsonl."""
    from tinysal.fileio import atomic_open

    manifest = work / "rungs.jsonl"
    with atomic_open(manifest, "w") as f:
        for rid, ro in rungs.items():
            row = {k: v for k, v in vars(ro).items() if k not in TASKS["rung"].reserved}
            f.write(json.dumps({"id": rid, "task": "rung", **row}) + "\n")
    return manifest


def _points(work: Path, rungs: dict[str, RungOptions]) -> list[dict[str, Any]]:
    """Every rung's point, from its record."""
    points = []
    for rid in rungs:
        rec = records.read(records.path_of(work / "batch", rid))
        if rec is None or rec.get("status") != "done":
            raise TinysalError(f"rung {rid}: its record in {work / 'batch'} is missing or unreadable")
        points.append(rec["result"])
    return points


def _heights(opts: LadderOptions, reader: Any, heights: list[int]) -> list[int]:
    """The rung heights: as given (checked against the source), or the defaults that fit the source."""
    if opts.heights is None:
        heights = default_heights(reader.height)
    check_source(opts, reader, heights)
    return heights


def rung_id(h: int, crf: float, strength: float) -> str:
    return f"{h}p-crf{crf:g}" + (f"-roi{strength:g}" if strength else "")


def ladder(opts: LadderOptions, quiet: bool = False) -> dict[str, Any]:
    """Run (or resume) the ladder; the document (``points``, ``hulls``, ``bd_rate``), also written to ``out_json``
    and drawn to ``plot``."""
    heights, crfs = opts.check()
    reader = opts.open_input()
    heights = _heights(opts, reader, heights)
    W, H = reader.width, reader.height
    fps = float(opts.fps or getattr(reader, "fps", None) or DEFAULT_FPS)
    total = min(reader.frame_count, opts.frame_cnt) if opts.frame_cnt else reader.frame_count

    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    work, keep = _work_dir(opts)
    lock = Lock(work, "ladder") if keep else None  # its sources are rewritten before the batch's own lock is taken
    t0 = time.perf_counter()
    try:
        n, files, layout = _sources(opts, reader, total, heights, work)
        rungs = {rung_id(h, c, s): RungOptions(source=files[H], rung_source=files[h], width=W, height=H,
                                               rung_width=rung_width(W, H, h), rung_height=h, crf=c,
                                               roi_strength=s, codec=opts.codec, preset=opts.preset,
                                               scaler=opts.scaler, fps=fps, roi=opts.roi,
                                               model_path=opts.model_path,
                                               pix_fmt=layout,
                                               encoder_args=opts.encoder_args,
                                               keep_encode=_kept(opts, rung_id(h, c, s)))  # fmt: skip
                 for h in heights for c in crfs for s in roi_strengths(opts)}  # fmt: skip
        manifest = _write_manifest(work, rungs)
        say(f"ladder: {len(rungs)} rungs ({len(heights)} heights x {len(crfs)} CRFs x "
            f"{'plain + ROI' if opts.roi else 'plain'}) of {n} frames at {W}x{H}, {opts.jobs} at a time "
            f"({opts.engine})" + (f"; manifest and records in {work}" if keep else ""))  # fmt: skip
        count = [0]

        def done(rec: dict[str, Any]) -> None:
            count[0] += 1
            p = rec.get("result") or {}
            if rec["status"] != "done":
                say(f"[{count[0]}] {rec['id']}: failed: {rec.get('error')}")
                return
            roi = f" vmaf_roi {p['vmaf_roi']:.2f}" if p.get("vmaf_roi") is not None else ""
            kind = f"roi {p['roi_strength']:g}" if p["roi_strength"] else "plain"
            say(f"[{count[0]}/{len(rungs)}] {p['height']}p crf {p['crf']:g} {kind}: {p['video_kbps']:.0f} kbit/s "
                f"vmaf {p['vmaf']:.2f}{roi}")  # fmt: skip

        rows = run_batch(manifest, work / "batch", engine=opts.engine, workers=opts.jobs, progress=False,
                         on_job=done, address=opts.address, threads=opts.threads)  # fmt: skip
        if skipped := len(rungs) - count[0]:
            say(f"ladder: {skipped} rungs already done in {work / 'batch'}: their records stand")
        failed = [r for r in rows if r["status"] != "done"]
        if failed:
            where = f" (records in {work / 'batch'}; a rerun with --work-dir redoes only those)" if keep else ""
            raise TinysalError(f"{len(failed)} of {len(rows)} rungs failed; {failed[0]['id']}: "
                               f"{failed[0]['error']}{where}")  # fmt: skip
        points = _points(work, rungs)
        if keep and not opts.keep_sources:  # finished: the raw sources go (a rerun cuts them again)
            _drop_sources(work)
    finally:
        if lock is not None:
            lock.release()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    source = {"width": W, "height": H, "frames": n, "fps": fps}
    return summarise(opts, source, heights, crfs, points, time.perf_counter() - t0)


__all__ = ["ladder", "rung_id"]
