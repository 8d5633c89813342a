#!/usr/bin/env python3
"""VMAF + saliency benchmark: the cost of one combined ``vmaf --feature mobilesal`` run against its two parts run
alone, back to back (a direct FFmpeg libvmaf run and a saliency-only run), on a real 1080p pair; per-frame VMAF
against the direct run; peak RSS of the whole process tree; and the cost of ``roi_score``.

Every figure is measured in this run, on this machine.

    python bench/bench_vmaf.py [--frames 30] [--crf 35] [--repeats 2] [--json out.json]

The pair: the bikes clip from ../shared/data/video upscaled to 1920x1080 (reference, raw I420) and the same
through x264 at --crf (distorted, decoded back to raw I420).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TINYSAL_SHARED", ROOT.parent / "shared"))


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_pair(d: Path, frames: int, crf: int) -> tuple[Path, Path]:
    ref, enc, dist = d / "ref.yuv", d / "dist.mp4", d / "dist.yuv"
    q = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"]
    src = SHARED / "data" / "video" / "bikes.mp4"
    up = ["-vf", "scale=1920:1080:flags=bicubic", "-pix_fmt", "yuv420p", "-f", "rawvideo"]
    subprocess.run([*q, "-stream_loop", "-1", "-i", str(src), "-frames:v", str(frames), *up, str(ref)], check=True)
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "1920x1080"]
    subprocess.run([*q, *raw, "-i", str(ref), "-c:v", "libx264", "-crf", str(crf), "-preset", "medium", str(enc)],
                   check=True)  # fmt: skip
    subprocess.run([*q, "-i", str(enc), *raw[:4], str(dist)], check=True)
    return ref, dist


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (kB)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except (OSError, ValueError):
            pass
    return total


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB of the process tree, sampled every 10 ms)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        peak = max(peak, _tree_rss_kb(p.pid))
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.read().decode()[-2000:]}")
    return wall, peak / 1024


def best(cmd: list[str], repeats: int) -> tuple[float, float]:
    runs = [run(cmd) for _ in range(repeats)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--crf", type=int, default=35)
    ap.add_argument("--repeats", type=int, default=2, help="runs per configuration; the fastest counts")
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    if not (SHARED / "data" / "video" / "bikes.mp4").is_file():
        raise SystemExit(f"needs {SHARED}/data/video/bikes.mp4")
    d = Path(tempfile.mkdtemp(prefix="bench-vmaf-"))
    ref, dist = make_pair(d, a.frames, a.crf)
    n = a.frames
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "1920x1080"]
    log = d / "direct.json"
    direct_cmd = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *raw, "-i", str(dist), *raw,
                  "-i", str(ref), "-lavfi", f"[0:v][1:v]libvmaf=log_fmt=json:log_path={log}:n_threads=2",
                  "-f", "null", "-"]  # fmt: skip
    vmaf_cmd = [sys.executable, "-m", "tinysal.cli.vmaf", "-r", str(ref), "-d", str(dist), "-w", "1920", "-h",
                "1080", "-q"]  # fmt: skip
    out = d / "combined.json"
    cfg = {
        "direct libvmaf (FFmpeg, n_threads=2)": direct_cmd,
        "saliency only (vmaf --feature mobilesal --no_prediction)": vmaf_cmd
        + ["--feature", "mobilesal", "--no_prediction", "-o", str(d / "sal.json")],
        "combined (vmaf --feature mobilesal)": vmaf_cmd + ["--feature", "mobilesal", "-o", str(out)],
        "combined + roi_score (second libvmaf pass on the masked copy)": vmaf_cmd
        + ["--feature", "mobilesal:roi_score=1", "-o", str(d / "roi.json")],
    }
    res = {}
    for name, cmd in cfg.items():
        wall, rss = best(cmd, a.repeats)
        res[name] = {"seconds": round(wall, 3), "fps": round(n / wall, 2), "peak_rss_mb": round(rss, 1)}
        print(f"{name:68s} {wall:6.2f} s  {n / wall:6.1f} fps  peak RSS {rss:6.0f} MB", flush=True)
    names = list(cfg)
    alone = res[names[0]]["seconds"] + res[names[1]]["seconds"]
    ratio = res[names[2]]["seconds"] / alone
    print(f"combined / (libvmaf alone + saliency alone, back to back) = {ratio:.2f}x  (goal <= 1.1x, aim < 1.0x)")
    print(f"roi_score run / combined run = {res[names[3]]['seconds'] / res[names[2]]['seconds']:.2f}x")
    direct = [f["metrics"]["vmaf"] for f in json.loads(log.read_text())["frames"]]
    ours = [f["metrics"]["vmaf"] for f in json.loads(out.read_text())["frames"]]
    diff = max(abs(x - y) for x, y in zip(direct, ours)) if len(direct) == len(ours) else float("inf")
    print(f"per-frame vmaf, combined run vs direct libvmaf: max |diff| {diff:.6f} over {len(ours)} frames "
          f"(must be <= 0.01); pooled mean {sum(ours) / len(ours):.3f}")  # fmt: skip
    peak = max(r["peak_rss_mb"] for r in res.values())
    print(f"peak RSS of any run's process tree: {peak:.0f} MB (target <= 800 MB)")
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": res, "ratio_combined_vs_parts": ratio, "max_vmaf_diff": diff,
                                            "frames": n, "crf": a.crf}, indent=2))  # fmt: skip
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


if __name__ == "__main__":
    main()
