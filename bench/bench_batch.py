#!/usr/bin/env python3
"""Catalogue benchmark: 8 real score jobs (VMAF + saliency, pairs made from the shared clips, half of them at
1080p) run four ways, each a fresh process, on this machine, in this run:

1. a serial shell loop of ``vmaf`` processes (one after the other, each with the cores' libvmaf threads): the
   baseline a catalogue gets without a runner;
2. ``tinysal batch`` on the local pool (default: one job per core, one thread each);
3. ``tinysal batch --engine ray --address auto`` joining a running local Ray (``ray start --head``, started before
   and not timed: a cluster is up before its jobs) and, for the record, ``--engine ray`` that starts its own Ray;
4. a rerun of the finished local batch (every record matches: nothing to do).

Every engine's VMAF and saliency means are checked against the serial loop's, job by job (they must be equal).

    python bench/bench_batch.py [--frames 60] [--repeats 2] [--no-ray] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TINYSAL_SHARED", ROOT.parent / "shared"))
VIDEO = SHARED / "data" / "video"
#: (id, source clip, height or 0 for its own size, distorted CRF)
JOBS = [
    ("bikes-1080-crf30", "bikes.mp4", 1080, 30),
    ("bikes-1080-crf38", "bikes.mp4", 1080, 38),
    ("bbb-1080-crf34", "bigbuckbunny.mp4", 1080, 34),
    ("cockatoo-1080-crf34", "cockatoo.mp4", 1080, 34),
    ("carphone-crf30", "carphone_pristine.mp4", 0, 30),
    ("carphone-crf40", "carphone_pristine.mp4", 0, 40),
    ("foreman-crf36", "foreman_cif_60f_h264.mp4", 0, 36),
    ("cockatoo-crf40", "cockatoo.mp4", 0, 40),
]


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_pairs(d: Path, frames: int) -> list[dict]:
    """mp4 pairs: the reference is the clip (upscaled to 1080p, x264 CRF 10) and the distorted its x264 encode."""
    q = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"]
    rows = []
    for job_id, clip, height, crf in JOBS:
        ref = d / f"{clip.split('.')[0]}-{height or 'src'}.mp4"
        if not ref.exists():
            scale = ["-vf", f"scale=-2:{height}:flags=bicubic"] if height else []
            subprocess.run([*q, "-stream_loop", "-1", "-i", str(VIDEO / clip), "-frames:v", str(frames), *scale,
                            "-an", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-crf", "10", "-preset", "fast",
                            str(ref)], check=True)  # fmt: skip
        dist = d / f"{job_id}.mp4"
        subprocess.run([*q, "-i", str(ref), "-c:v", "libx264", "-crf", str(crf), "-preset", "fast", str(dist)],
                       check=True)  # fmt: skip
        rows.append({"id": job_id, "task": "score", "reference": ref.name, "distorted": dist.name,
                     "feature": ["mobilesal"]})  # fmt: skip
    return rows


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and every child it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def serial(d: Path, rows: list[dict]) -> tuple[float, float, dict]:
    wall = cpu = 0.0
    means = {}
    for r in rows:
        out = d / "serial" / f"{r['id']}.json"
        w, c = timed([sys.executable, "-m", "tinysal.cli.vmaf", "-r", str(d / r["reference"]), "-d",
                      str(d / r["distorted"]), "--feature", "mobilesal", "-q", "-o", str(out)])  # fmt: skip
        wall, cpu = wall + w, cpu + c
        pooled = json.loads(out.read_text())["pooled_metrics"]
        means[r["id"]] = (pooled["vmaf"]["mean"], round(pooled["saliency_mean"]["mean"], 6))
    return wall, cpu, means


def batch(d: Path, out: str, *extra: str) -> tuple[float, float, dict]:
    w, c = timed([sys.executable, "-m", "tinysal.cli.main", "batch", str(d / "jobs.jsonl"), "--out", str(d / out),
                  "-q", *extra])  # fmt: skip
    means = {}
    for r in (json.loads(x) for x in (d / "jobs.jsonl").read_text().splitlines()):
        rec = json.loads((d / out / "jobs" / f"{r['id']}.json").read_text())
        pooled = rec["result"]["pooled_metrics"]
        means[r["id"]] = (pooled["vmaf"]["mean"], round(pooled["saliency_mean"]["mean"], 6))
    return w, c, means


def best_of(repeats: int, fn, *args) -> tuple[float, float, dict]:
    runs = []
    for _ in range(repeats):
        runs.append(fn(*args))
    return min(runs, key=lambda r: r[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60, help="frames per clip")
    ap.add_argument("--repeats", type=int, default=2, help="runs per configuration; the fastest counts")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    if not VIDEO.is_dir():
        raise SystemExit(f"needs the shared clips in {VIDEO}")
    d = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        rows = make_pairs(d, a.frames)
        (d / "jobs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "serial").mkdir()
        print(f"{len(rows)} score jobs ({sum(j[2] == 1080 for j in JOBS)} at 1080p), {a.frames} frames each, "
              f"{os.cpu_count()} cores", flush=True)  # fmt: skip
        res: dict[str, dict] = {}

        def say(name: str, wall: float, cpu: float | None) -> None:
            res[name] = {"seconds": round(wall, 2), "cpu_seconds": None if cpu is None else round(cpu, 2)}
            what = f"{cpu:7.2f} s CPU" if cpu is not None else "  (CPU: Ray's tasks are the raylet's children)"
            print(f"{name:58s} {wall:7.2f} s wall  {what}", flush=True)

        s_wall, s_cpu, s_means = best_of(a.repeats, serial, d, rows)
        say("serial loop of vmaf processes", s_wall, s_cpu)

        def fresh_local() -> tuple[float, float, dict]:
            shutil.rmtree(d / "local", ignore_errors=True)
            return batch(d, "local")

        l_wall, l_cpu, l_means = best_of(a.repeats, fresh_local)
        say("tinysal batch (local pool)", l_wall, l_cpu)
        r_wall, r_cpu, _ = batch(d, "local")
        say("rerun of the finished batch", r_wall, r_cpu)
        checks = {"local": l_means == s_means}
        if not a.no_ray:
            ray_bin = str(Path(sys.executable).with_name("ray"))
            subprocess.run([ray_bin, "start", "--head", "--include-dashboard=false", "--disable-usage-stats"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            try:

                def fresh_ray(*extra: str) -> tuple[float, float, dict]:
                    shutil.rmtree(d / "ray", ignore_errors=True)
                    return batch(d, "ray", "--engine", "ray", *extra)

                y_wall, _, y_means = best_of(a.repeats, fresh_ray, "--address", "auto")
                say("tinysal batch --engine ray (joins a running Ray)", y_wall, None)
            finally:
                subprocess.run([ray_bin, "stop", "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            o_wall, _, _ = fresh_ray()
            say("tinysal batch --engine ray (starts its own Ray)", o_wall, None)
            checks["ray"] = y_means == s_means
        cores = os.cpu_count() or 1
        print(f"local pool vs serial loop: {s_wall / l_wall:.2f}x faster (target >= 1.7x on 2 cores)")
        print(f"  the serial loop keeps {s_cpu / s_wall:.2f} of {cores} cores busy (each vmaf runs libvmaf on all "
              f"cores beside its saliency thread); a pool cannot beat its CPU time over the cores: "
              f"ceiling {s_wall / (l_cpu / cores):.2f}x, reached {l_cpu / cores / l_wall:.0%}")  # fmt: skip
        if not a.no_ray:
            print(f"ray (running) / local pool wall time: {y_wall / l_wall:.2f}x (target <= 1.15x); "
                  f"starting its own Ray: {o_wall / l_wall:.2f}x")  # fmt: skip
        print(f"rerun / first run: {100 * r_wall / l_wall:.1f}% (target <= 5%)")
        print(f"per-job VMAF and saliency means equal to the serial loop's: {checks}")
        if not all(checks.values()):
            raise SystemExit("an engine's figures differ from the serial loop's")
        if a.json:
            Path(a.json).write_text(json.dumps({"runs": res, "frames": a.frames, "jobs": len(rows),
                                                "checks": checks}, indent=2))  # fmt: skip
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
