"""``tinysal auto-encode``: encode a title to its quality targets; with ``per_shot``, shot by shot.

Without ``per_shot`` it is crf-search then the encode (``crf-search --encode``). With it:

1. **Shots.** One decode of the input: every frame goes to PySceneDetect's ``ContentDetector`` (encode.shots) and,
   raw in the codec's pixel format, into the work dir; the cuts found (shots shorter than ``min_shot_frames``
   merged into a neighbour) split that file into one raw source per shot.
2. **Jobs.** Each shot is a row (task ``shot``) of a manifest, ``WORK/shots.jsonl``, that the batch runner runs
   like any catalogue: locally or as Ray tasks, ``jobs`` at once, a record per shot under ``WORK/batch``, a worker
   that dies retried; killed and rerun with the same ``work_dir``, only the unfinished shots are redone.
3. **Join.** The shots' encodes are copied into OUTPUT at the input's frame times with its audio, subtitles and
   metadata (encode.shots.join), atomically; the document lists every shot and the totals.

With ``max_kbps`` (budget mode, needs ``per_shot``) each shot is first searched as above; then every shot's CRF is
lowered or raised together so that the title's predicted video bitrate fits the budget while the shots' qualities
stay as equal as the budget allows (see :func:`budget_crfs`), and the shots are encoded at those CRFs.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tinysal.batch.auto_options import DEFAULT_FPS, AutoEncodeOptions
from tinysal.encode.encoder import LAYOUTS
from tinysal.errors import CheckFailed, TinysalError
from tinysal.fileio import EventLog

TITLE = "title.json"


def _say(quiet: bool) -> Any:
    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    return say


def auto_encode(opts: AutoEncodeOptions, quiet: bool = False) -> dict[str, Any]:
    """Encode the title to its targets (whole, or shot by shot); its document, also written to ``out_json``. A
    shot that cannot reach the targets is encoded at its best reachable CRF and named by the :class:`CheckFailed`
    raised after OUTPUT is written (exit 1)."""
    opts.check()
    if not opts.per_shot:
        return _whole(opts, quiet)
    from tinysal.fileio import refuse_overlaps

    refuse_overlaps({"input": opts.input}, {"OUTPUT": opts.output, "--out-json": opts.out_json,
                                             "--events": opts.events if opts.events != "-" else None},
                    {"--work-dir": opts.work_dir})  # fmt: skip
    from tinysal.encode.encoder import output_path

    output_path(opts.output, opts.codec, opts.overwrite)  # refused now, not after the work
    return _per_shot(opts, quiet)


def _whole(opts: AutoEncodeOptions, quiet: bool) -> dict[str, Any]:
    from tinysal.encode.search import crf_search

    doc = crf_search(opts.search_options(encode=opts.output, events=opts.events), quiet=quiet)
    enc = doc["encode"]
    doc.update(mode="whole", output=enc["output"])
    doc["totals"] = {k: enc[k] for k in ("frames", "bytes", "video_bytes", "video_kbps", "total_kbps")}
    doc["shots"] = [{"start_frame": 0, "frames": enc["frames"], "crf": doc["crf"], "roi_strength": doc["roi_strength"],
                     "predicted": doc["predicted"], "measured": None}]  # fmt: skip
    if opts.out_json:
        from tinysal.fileio import write_json

        write_json(opts.out_json, doc)
    return doc


def _title_key(opts: AutoEncodeOptions, layout: str, total: int, min_frames: int) -> dict[str, Any]:
    """What the shot sources in a work dir were made from: this input (path, size, modification time), these
    frames, this pixel format and this detection."""
    from tinysal.batch import records

    return json.loads(json.dumps({
        "input": records.identity([str(Path(opts.input).resolve())]), "frames_wanted": total, "pix_fmt": layout,
        "min_shot_frames": min_frames, "scene_threshold": opts.scene_threshold}))  # fmt: skip


def _shot_sources(opts: AutoEncodeOptions, reader: Any, total: int, fps: float, layout: str, work: Path,
                  say: Any) -> dict[str, Any]:  # fmt: skip
    """The shots (start, frames, source file): reused when WORK/title.json says they were cut from this input with
    these settings and every file is there at its size; refused when it names another input; else made."""
    min_frames = max(1, round(opts.min_shot_seconds * fps))
    want = _title_key(opts, layout, total, min_frames)
    folder = work / "shots"
    try:
        have = json.loads((work / TITLE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        have = None
    if isinstance(have, dict) and have.get("input") and have["input"] != want["input"]:
        theirs = next(iter(have["input"]), "?")
        if theirs != next(iter(want["input"])):
            raise TinysalError(f"--work-dir {work} holds the shots of another title ({theirs}): give each title a "
                               "work dir of its own")  # fmt: skip
    if isinstance(have, dict) and all(have.get(k) == v for k, v in want.items()):
        try:
            shots = have["shots"]
            if all(Path(s["source"]).is_file() and Path(s["source"]).stat().st_size == s["size"] for s in shots):
                return have
        except (KeyError, TypeError, OSError):
            pass
    (work / TITLE).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    t = time.perf_counter()
    cuts, n = _detect_and_cut(reader, total, fps, layout, folder / "title.yuv", min_frames, opts.scene_threshold)
    shots = _split(folder, n, reader, layout, cuts, min_frames)
    say(f"auto-encode: {len(shots)} shot(s) in {n} frames (PySceneDetect ContentDetector, threshold "
        f"{opts.scene_threshold:g}, shots of at least {min_frames} frames; "
        f"{time.perf_counter() - t:.1f} s)")  # fmt: skip
    doc = {**want, "frames": n, "cuts": cuts, "shots": shots}
    from tinysal.fileio import write_json

    write_json(work / TITLE, doc)
    return doc


def _detect_and_cut(reader: Any, total: int, fps: float, layout: str, raw: Path, min_frames: int,
                    threshold: float) -> tuple[list[int], int]:  # fmt: skip
    """One decode: each frame to the detector and, raw, to ``raw``. (the cuts found, the frames read)"""
    from tinysal.encode.encoder import raw_in
    from tinysal.encode.shots import ShotDetector

    det = ShotDetector(reader.width, reader.height, fps, min_frames, threshold)
    n = 0
    with open(raw, "wb") as f:
        for i, fr in enumerate(reader.frames()):
            if i >= total:
                break
            det.add(i, fr)
            f.write(raw_in(fr, layout))
            n += 1
    if n == 0:
        raise TinysalError(f"{reader.path}: no frames could be read")
    return det.cuts(), n


def _split(folder: Path, n: int, reader: Any, layout: str, cuts: list[int], min_frames: int) -> list[dict[str, Any]]:
    """The title's raw file cut into one file per shot (byte ranges: no decode); the title's file removed."""
    from tinysal.encode.shots import shots_from_cuts
    from tinysal.video.readers import frame_bytes

    size = frame_bytes(reader.width, reader.height, *LAYOUTS[layout])
    raw = folder / "title.yuv"
    out = []
    with open(raw, "rb") as src:
        for k, (start, frames) in enumerate(shots_from_cuts(cuts, n, min_frames)):
            path = folder / f"shot{k:04d}.yuv"
            src.seek(start * size)
            with open(path, "wb") as dst:
                left = frames * size
                while left:
                    chunk = src.read(min(left, 64 << 20))
                    if not chunk:
                        raise TinysalError(f"{raw}: shorter than its {n} frames")
                    dst.write(chunk)
                    left -= len(chunk)
            out.append({"start_frame": start, "frames": frames, "source": str(path), "size": frames * size})
    raw.unlink()
    return out


def _shot_rows(opts: AutoEncodeOptions, title: dict[str, Any], reader: Any, fps: float, layout: str, work: Path,
               crfs: list[tuple[float, float]] | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``shot`` task's options of every shot, by job id (``crfs``: a set CRF and strength per shot)."""
    from tinysal.encode.shots import ShotOptions, title_tags
    from tinysal.video.readers import AvReader

    tags = title_tags(reader, str(reader.path) if isinstance(reader, AvReader) else None)

    rows = {}
    for k, s in enumerate(title["shots"]):
        jid = f"shot{k:04d}" + (f"-crf{crfs[k][0]:g}" + (f"-roi{crfs[k][1]:g}" if crfs[k][1] else "") if crfs else "")
        rows[jid] = ShotOptions(source=s["source"], width=reader.width, height=reader.height, pix_fmt=layout,
                                fps=fps, output=str(work / "encodes" / f"{jid}.mp4"), start_frame=s["start_frame"],
                                crf=crfs[k][0] if crfs else None, roi_strength=crfs[k][1] if crfs else 0.0,
                                model_path=opts.model_path, encoder_args=opts.encoder_args,
                                **opts.target_fields(), **tags)  # fmt: skip
    return rows


def _run_shots(opts: AutoEncodeOptions, rows: dict[str, Any], work: Path, name: str, ev: EventLog, say: Any,
               quiet: bool) -> list[dict[str, Any]]:  # fmt: skip
    """The shots as a batch (manifest WORK/NAME.jsonl, records WORK/NAME); every shot's document, in order."""
    from tinysal.batch import records
    from tinysal.batch.runner import run as run_batch
    from tinysal.batch.tasks import TASKS
    from tinysal.fileio import atomic_open

    (work / "encodes").mkdir(exist_ok=True)
    manifest = work / f"{name}.jsonl"
    with atomic_open(manifest, "w") as f:
        for jid, so in rows.items():
            row = {k: v for k, v in vars(so).items() if k not in TASKS["shot"].reserved}
            f.write(json.dumps({"id": jid, "task": "shot", **row}) + "\n")
    count = [0]

    def done(rec: dict[str, Any]) -> None:
        count[0] += 1
        d = rec.get("result") or {}
        if rec["status"] != "done":
            ev.emit("shot-failed", id=rec["id"], error=rec.get("error"))
            return
        m = d["measured"]
        ev.emit("shot-encode-done", id=rec["id"], start_frame=d["start_frame"], frames=d["frames"], crf=d["crf"],
                roi_strength=d["roi_strength"], reached=d["reached"], vmaf=m["vmaf"], vmaf_roi=m["vmaf_roi"],
                video_kbps=d["encode"]["video_kbps"])  # fmt: skip

    recs = run_batch(manifest, work / name, engine=opts.engine, workers=opts.jobs, retries=opts.retries,
                     progress=not quiet, on_job=done, address=opts.address, threads=opts.threads,
                     what="shot")  # fmt: skip
    if skipped := len(rows) - count[0]:
        say(f"auto-encode: {skipped} shot(s) already done in {work / name}: their records stand")
    failed = [r for r in recs if r["status"] != "done"]
    if failed:
        where = f" (records in {work / name}; a rerun with --work-dir redoes only those)" if opts.work_dir else ""
        raise TinysalError(f"{len(failed)} of {len(recs)} shots failed; {failed[0]['id']}: {failed[0]['error']}"
                           f"{where}")  # fmt: skip
    docs = []
    for jid in rows:
        rec = records.read(records.path_of(work / name, jid))
        if rec is None or rec.get("status") != "done":
            raise TinysalError(f"shot {jid}: its record in {work / name} is missing or unreadable")
        docs.append(rec["result"])
    return docs


def _per_shot(opts: AutoEncodeOptions, quiet: bool) -> dict[str, Any]:
    from tinysal.batch.runner import Lock
    from tinysal.encode.codecs import CODECS
    from tinysal.video.readers import AvReader

    say = _say(quiet)
    reader = opts.open_input()
    fps = float(opts.fps or getattr(reader, "fps", None) or DEFAULT_FPS)
    total = min(reader.frame_count, opts.frame_cnt) if opts.frame_cnt else reader.frame_count
    layout, note = CODECS[opts.codec].pix_fmt_for(reader.pix_fmt, reader.bitdepth)
    if note:
        say(f"auto-encode: {note}")
    from tinysal.fileio import run_work_dir

    work, keep = run_work_dir(opts.work_dir, "auto-encode")
    lock = Lock(work, "auto-encode") if keep else None
    ev = EventLog(opts.events)
    t0 = time.perf_counter()
    try:
        title = _shot_sources(opts, reader, total, fps, layout, work, say)
        ev.emit("shots-detected", cuts=title["cuts"], shots=len(title["shots"]), frames=title["frames"])
        docs = _run_shots(opts, _shot_rows(opts, title, reader, fps, layout, work), work, "batch", ev, say, quiet)
        budget = None
        if opts.max_kbps is not None:
            crfs, budget = budget_crfs(docs, fps, opts.max_kbps)
            say(f"auto-encode: --max-kbps {opts.max_kbps:g}: {budget['note']}")
            docs = _run_shots(opts, _shot_rows(opts, title, reader, fps, layout, work, crfs), work, "budget", ev,
                              say, quiet)  # fmt: skip
        from tinysal.encode.shots import ShotFile, join

        files = [ShotFile(d["encode"]["output"], d["start_frame"], d["frames"]) for d in docs]
        source = str(reader.path) if isinstance(reader, AvReader) else None  # a container: its other streams
        joined = join(files, reader, source, opts.output, opts.codec, opts.fps, opts.overwrite, not opts.no_audio)
        doc = _document(opts, title, docs, joined, budget, time.perf_counter() - t0, work if keep else None)
        ev.emit("auto-encode-done", output=joined["output"], **{k: doc["totals"][k] for k in ("vmaf", "video_kbps")})
    finally:
        ev.close()
        if lock is not None:
            lock.release()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    if opts.out_json:
        from tinysal.fileio import write_json

        write_json(opts.out_json, doc)
    short = [s for s in doc["shots"] if not s["reached"]]
    if short and opts.max_kbps is None:
        names = ", ".join(f"shot {doc['shots'].index(s)} (frames {s['start_frame']}-"
                          f"{s['start_frame'] + s['frames'] - 1}, best crf {s['crf']:g}: vmaf "
                          f"{s['measured']['vmaf']:.2f})" for s in short[:5])  # fmt: skip
        raise CheckFailed(f"wrote {doc['output']}, but {len(short)} of {len(doc['shots'])} shots cannot reach the "
                          f"targets: {names}")  # fmt: skip
    return doc


def _document(opts: AutoEncodeOptions, title: dict[str, Any], docs: list[dict[str, Any]], joined: dict[str, Any],
              budget: dict[str, Any] | None, seconds: float, work: Path | None) -> dict[str, Any]:  # fmt: skip
    from tinysal.features.task import provenance

    n = sum(d["frames"] for d in docs)
    shots = []
    for d in docs:
        m = {k: v for k, v in d["measured"].items() if k != "frames"}
        shots.append({"start_frame": d["start_frame"], "frames": d["frames"], "crf": d["crf"],
                      "roi_strength": d["roi_strength"], "reached": d["reached"], "predicted": d["predicted"],
                      "measured": m, "video_kbps": d["encode"]["video_kbps"],
                      "video_bytes": d["encode"]["video_bytes"]})  # fmt: skip
    mean = sum(s["measured"]["vmaf"] * s["frames"] for s in shots) / n
    rois = [s["measured"]["vmaf_roi"] for s in shots if s["measured"]["vmaf_roi"] is not None]
    totals = {"frames": joined["frames"], "bytes": joined["bytes"], "video_bytes": joined["video_bytes"],
              "video_kbps": joined["video_kbps"], "total_kbps": joined["total_kbps"], "vmaf": mean,
              "vmaf_min": min(s["measured"]["vmaf_min"] for s in shots),
              "worst_shot_vmaf": min(s["measured"]["vmaf"] for s in shots),
              "vmaf_roi": (sum(s["measured"]["vmaf_roi"] * s["frames"] for s in shots) / n) if rois else None,
              "shots_below_target": sum(not s["reached"] for s in shots)}  # fmt: skip
    doc = {"mode": "per-shot", "input": opts.input, "output": joined["output"], "codec": opts.codec,
           "preset": opts.preset, "targets": {"min_vmaf": opts.min_vmaf, "min_vmaf_roi": opts.min_vmaf_roi,
                                              "min_xpsnr": opts.min_xpsnr, "pool": opts.pool,
                                              "max_kbps": opts.max_kbps},
           "detector": {"name": "PySceneDetect ContentDetector", "threshold": opts.scene_threshold,
                        "min_shot_frames": title["min_shot_frames"], "cuts": title["cuts"]},
           "shots": shots, "totals": totals, "kept": joined["kept"], "seconds": round(seconds, 2),
           "work_dir": str(work) if work else None}  # fmt: skip
    if budget is not None:
        doc["budget"] = budget
    doc["run_provenance"] = provenance(opts)
    return doc


def budget_crfs(docs: list[dict[str, Any]], fps: float, max_kbps: float) -> tuple[list[tuple[float, float]],
                                                                                  dict[str, Any]]:  # fmt: skip
    """Each shot's CRF under a title bitrate: from each shot's searched attempts (CRF -> predicted kbit/s and VMAF),
    the CRFs whose total predicted bits fit ``max_kbps`` with the worst shot's VMAF as high as it can be.

    A greedy water-filling on the shots' rate-quality points (the dynamic optimizer's equal-slope idea on the
    measured curves): start every shot at its highest searched CRF (fewest bits) and, while the budget allows,
    move the currently worst shot to its next lower searched CRF. Bits are the searched attempts' predictions."""
    curves = []
    for d in docs:
        mine = [a for a in d["attempts"] if a["roi_strength"] == d["roi_strength"]]  # one strength: one curve
        pts = sorted({a["crf"]: a for a in mine}.values(), key=lambda a: -a["crf"])
        if not pts:
            pts = [{"crf": d["crf"], "roi_strength": d["roi_strength"], "vmaf": d["measured"]["vmaf"],
                    "video_kbps": d["encode"]["video_kbps"]}]  # fmt: skip
        curves.append(pts)
    total_frames = sum(d["frames"] for d in docs)
    seconds = total_frames / fps

    def kbps(choice: list[int]) -> float:
        bits = sum(c[k]["video_kbps"] * d["frames"] / fps for c, k, d in zip(curves, choice, docs))
        return bits / seconds

    choice = [0] * len(curves)
    fits = kbps(choice) <= max_kbps
    while fits:
        movable = [i for i, c in enumerate(curves) if choice[i] + 1 < len(c)]
        if not movable:
            break
        worst = min(movable, key=lambda i: curves[i][choice[i]]["vmaf"])
        trial = choice.copy()
        trial[worst] += 1
        if kbps(trial) > max_kbps:
            break
        choice = trial
    picks = [c[k] for c, k in zip(curves, choice)]
    note = (f"predicted {kbps(choice):.0f} kbit/s, worst shot vmaf {min(p['vmaf'] for p in picks):.2f}" if fits else
            f"even every shot's highest searched CRF predicts {kbps(choice):.0f} kbit/s: encoded at those")  # fmt: skip
    return [(p["crf"], p["roi_strength"]) for p in picks], {"max_kbps": max_kbps, "fits": fits,
                                                            "predicted_kbps": kbps(choice), "note": note}  # fmt: skip


def run_task(opts: AutoEncodeOptions) -> dict[str, Any]:
    """The batch task ``auto-encode``: one title, its shots one after another in this worker (the catalogue's
    titles are what run side by side)."""
    doc = auto_encode(opts, quiet=True)
    t = doc["totals"]
    info = {"output": doc["output"], "bytes": t["bytes"], "video_kbps": t["video_kbps"],
            "total_kbps": t["total_kbps"], "frames": t["frames"], "crf": doc.get("crf")}  # fmt: skip
    return {"result": doc, "info": info, "notes": []}
