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

``--manifest-rows N`` (no shared clips needed) measures instead the check a catalogue gets before any work: a
manifest of N encode rows over N real (empty) input files, checked by ``tinysal batch --check`` in a fresh process
(valid), and by ``tinysal batch`` with one bad last row (its output is the first row's input: refused, nothing
run), each with its wall time and peak memory, beside the floor measured in the same run: a fresh Python that only
``os.stat``-s every input once (no check can do less), and the same manifest size under the O(n^2) check this
replaced is the issue's record (400 rows 9.9 s, 2,000 rows 129 s).

    python bench/bench_batch.py [--frames 60] [--repeats 2] [--no-ray] [--json out.json]
    python bench/bench_batch.py --manifest-rows 100000 [--json out.json]
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


def peak(cmd: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stderr's last line) of one fresh process (its own rusage: os.wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode not in ok:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    # communicate() has reaped it; the memory figure comes from a second run under wait4, timed the same
    q = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, ru = os.wait4(q.pid, 0)
    lines = (out + err).strip().splitlines()
    return wall, ru.ru_maxrss / 1024, (lines[-1] if lines else "")


def manifest_bench(n: int, json_out: str | None) -> None:
    d = Path(tempfile.mkdtemp(prefix="bench-manifest-"))
    try:
        (d / "src").mkdir()
        (d / "enc").mkdir()
        rows = []
        for i in range(n):
            (d / "src" / f"t{i:06d}.mp4").touch()
            rows.append({"id": f"t{i:06d}", "task": "encode", "input": f"src/t{i:06d}.mp4",
                         "output": f"enc/t{i:06d}.mp4", "crf": 30, "preset": "medium"})  # fmt: skip
        good = d / "good.jsonl"
        good.write_text("".join(json.dumps(r) + "\n" for r in rows))
        bad = d / "bad.jsonl"  # the last row writes over the first row's input
        bad.write_text(good.read_text() + json.dumps({**rows[-1], "id": "last", "output": "src/t000000.mp4"}) + "\n")
        print(f"manifest of {n:,} encode rows, {os.cpu_count()} cores", flush=True)
        floor_code = ("import os,sys\nfor i in range(int(sys.argv[1])): os.stat(f'{sys.argv[2]}/src/t{i:06d}.mp4')")
        fw, fm, _ = peak([sys.executable, "-c", floor_code, str(n), str(d)])
        cli = [sys.executable, "-m", "tinysal.cli.main", "batch"]
        gw, gm, gline = peak([*cli, str(good), "--out", str(d / "out"), "--check"])
        bw, bm, bline = peak([*cli, str(bad), "--out", str(d / "out2")], ok=(2,))
        res = {"rows": n, "floor_stat_only": {"seconds": round(fw, 2), "peak_mb": round(fm)},
               "valid_checked": {"seconds": round(gw, 2), "peak_mb": round(gm), "said": gline},
               "bad_last_row_refused": {"seconds": round(bw, 2), "peak_mb": round(bm), "said": bline}}  # fmt: skip
        for k in ("floor_stat_only", "valid_checked", "bad_last_row_refused"):
            print(f"{k:24s} {res[k]['seconds']:7.2f} s  {res[k]['peak_mb']:6d} MB peak  {res[k].get('said', '')}")
        print(f"target: <= 30 s for 100,000 rows on 2 cores; check / stat floor: {gw / fw:.1f}x")
        if (d / "out2").exists():
            raise SystemExit("the refused manifest left its --out folder behind")
        if json_out:
            Path(json_out).write_text(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60, help="frames per clip")
    ap.add_argument("--repeats", type=int, default=2, help="runs per configuration; the fastest counts")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--manifest-rows", type=int, default=0, help="only time the manifest check of this many rows")
    a = ap.parse_args()
    if a.manifest_rows:
        manifest_bench(a.manifest_rows, a.json)
        return
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
