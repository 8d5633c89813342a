#!/usr/bin/env python3
"""VMAF + saliency benchmark (issue 25): what saliency costs beside libvmaf, measured against a direct FFmpeg
libvmaf run on the same pair, in the same run, each configuration a fresh process tree, best of ``--repeats``.

For each pair it runs: the direct libvmaf run (FFmpeg, ``n_threads=2``); ``vmaf --feature mobilesal`` on the
one-decode route (the libvmaf child also scales the distorted frames for the model) and, as the baseline, on the
Python route (``TINYSAL_ONE_DECODE=0``: every frame read, converted and resized in Python, containers decoded a
second time); saliency alone (``--no_prediction``) on both routes; and ``roi_score=1`` on both routes (one decode:
the masked copy and weighted PSNR built in the masked pass's FFmpeg child from the reference's small maps). CPU time
is that of the whole process tree (``RUSAGE_CHILDREN``), peak RSS is sampled over the tree. It also times the parts
of the saliency cost in this process (FFmpeg's tap, the colour conversion, the model) to say where the time goes.

    python bench/bench_vmaf.py [--frames 120] [--repeats 3] [--uhd | --uhd-only] [--json out.json]

(docs/benchmarks.md: --frames 300 --uhd.)

Pairs: the bikes clip from ../shared/data/video upscaled to 1920x1080 and encoded with x264 at CRF 10 (reference)
and again at CRF 35 (distorted), as an mp4 pair and decoded to a raw I420 pair; with ``--uhd`` a 3840x2160 mp4 pair
made the same way (60 frames scored; the combined run also at 30 and 300 frames for peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def make_pairs(d: Path, frames: int, uhd: bool) -> dict[str, dict]:
    q = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"]
    src = SHARED / "data" / "video" / "bikes.mp4"
    pairs = {}
    for name, (w, h), n in (("1080p", (1920, 1080), frames), *((("2160p", (3840, 2160), 300),) if uhd else ())):
        ref, dist_mp4, dist = d / f"ref{h}.yuv", d / f"dist{h}.mp4", d / f"dist{h}.yuv"
        ref_mp4 = d / f"ref{h}.mp4"
        up = ["-vf", f"scale={w}:{h}:flags=bicubic", "-pix_fmt", "yuv420p"]
        loop = [*q, "-stream_loop", "-1", "-i", str(src), "-frames:v", str(n), *up]
        x264 = ["-c:v", "libx264", "-preset", "veryfast"]
        subprocess.run([*loop, *x264, "-crf", "10", str(ref_mp4)], check=True)
        subprocess.run([*q, "-i", str(ref_mp4), *x264, "-crf", "35", str(dist_mp4)], check=True)
        pairs[f"{name} mp4"] = {"ref": ref_mp4, "dist": dist_mp4, "raw": [], "frames": n}
        if name == "1080p":
            subprocess.run([*q, "-i", str(ref_mp4), "-f", "rawvideo", str(ref)], check=True)
            subprocess.run([*q, "-i", str(dist_mp4), "-f", "rawvideo", str(dist)], check=True)
            pairs[f"{name} raw"] = {"ref": ref, "dist": dist, "frames": n,
                                    "raw": ["-w", str(w), "-h", str(h)]}  # fmt: skip
    return pairs


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


def run(cmd: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s of the whole process tree, peak RSS MB of the tree sampled every 10 ms)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, **(env or {})))
    peak = 0
    while p.poll() is None:
        peak = max(peak, _tree_rss_kb(p.pid))
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.read().decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peak / 1024


def best(cmd: list[str], repeats: int, env: dict | None = None) -> dict:
    runs = [run(cmd, env) for _ in range(repeats)]
    return {"wall": min(r[0] for r in runs), "cpu": min(r[1] for r in runs), "rss": max(r[2] for r in runs)}


def configs(pair: dict, d: Path) -> dict[str, tuple[list[str], dict]]:
    ref, dist, n = str(pair["ref"]), str(pair["dist"]), pair["frames"]
    log = d / "direct.json"
    geo = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{pair['raw'][1]}x{pair['raw'][3]}"] if pair["raw"] else []
    direct = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *geo, "-i", dist, *geo, "-i", ref,
              "-lavfi", f"[0:v]trim=end_frame={n}[d];[1:v]trim=end_frame={n}[r];"
              f"[d][r]libvmaf=log_fmt=json:log_path={log}:n_threads=2", "-f", "null", "-"]  # fmt: skip
    vmaf = [sys.executable, "-m", "tinysal.cli.vmaf", "-r", ref, "-d", dist, *pair["raw"], "--frame_cnt", str(n), "-q"]
    fast, slow = {"TINYSAL_ONE_DECODE": "1"}, {"TINYSAL_ONE_DECODE": "0"}
    sal = [*vmaf, "--feature", "mobilesal", "--no_prediction", "-o", str(d / "sal.json")]
    return {
        "direct libvmaf (FFmpeg, n_threads=2)": (direct, {}),
        "vmaf --feature mobilesal (one decode)": ([*vmaf, "--feature", "mobilesal", "-o", str(d / "c.json")], fast),
        "  combined, Python route (baseline)": ([*vmaf, "--feature", "mobilesal", "-o", str(d / "cs.json")], slow),
        "saliency only, --no_prediction (one decode)": (sal, fast),
        "  saliency only, Python route (baseline)": (sal, slow),
        "roi_score=1 (one decode)": ([*vmaf, "--feature", "mobilesal:roi_score=1", "-o", str(d / "roi.json")], fast),
        "  roi_score=1, Python route (baseline)": ([*vmaf, "--feature", "mobilesal:roi_score=1", "-o",
                                                    str(d / "roi_py.json")], slow),  # fmt: skip
    }


def parts(d: Path, pair: dict, n: int) -> dict[str, float]:
    """Where saliency's CPU goes, per frame: FFmpeg's tap alone, the colour conversion and the model (one thread)."""
    import numpy as np

    from tinysal.features.mobilesal import MobileSal
    from tinysal.features.vmaf import Tap
    from tinysal.model.inputs import target_size
    from tinysal.video.readers import YuvFrame

    w, h = (int(pair["raw"][1]), int(pair["raw"][3])) if pair["raw"] else (1920, 1080)
    tw, th = target_size(w, h, 256)
    tap = Tap(tw, th, 8)
    geo = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}"] if pair["raw"] else []
    decode = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", *geo, "-i", str(pair["dist"]), "-frames:v",
              str(n)]  # fmt: skip
    dec = best([*decode, "-f", "null", "-"], 2)["cpu"]
    tapped = best([*decode, "-vf", tap.chain(), "-f", "rawvideo", "-y", str(d / "tap.raw")], 2)["cpu"]
    m = MobileSal(threads=1)
    fr = YuvFrame(*(np.full((th, tw), 128, np.uint8) for _ in range(3)), 8, "444")
    x = m.preprocess(fr)
    m.infer(x, w, h)
    t0 = time.process_time()
    for _ in range(30):
        x = m.preprocess(fr)
    t1 = time.process_time()
    for _ in range(30):
        m.statistics(m.infer(x, w, h), w, h)
    t2 = time.process_time()
    return {"decode": dec / n * 1e3, "tap": (tapped - dec) / n * 1e3, "convert": (t1 - t0) / 30 * 1e3,
            "model": (t2 - t1) / 30 * 1e3}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration; the fastest counts")
    ap.add_argument("--uhd", action="store_true", help="also a 2160p pair (and its RSS at 30 vs 300 frames)")
    ap.add_argument("--uhd-only", action="store_true", help="only the 2160p pair")
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    if not (SHARED / "data" / "video" / "bikes.mp4").is_file():
        raise SystemExit(f"needs {SHARED}/data/video/bikes.mp4")
    d = Path(tempfile.mkdtemp(prefix="bench-vmaf-"))
    out: dict = {"frames": a.frames, "pairs": {}}
    try:
        for pname, pair in make_pairs(d, a.frames, a.uhd or a.uhd_only).items():
            if a.uhd_only and not pname.startswith("2160p"):
                continue
            n = a.frames if pname.startswith("1080p") else 60
            pair = dict(pair, frames=n)
            print(f"\n== {pname}, {n} frames (best of {a.repeats}; CPU of the whole process tree)", flush=True)
            res = {}
            for name, (cmd, env) in configs(pair, d).items():
                r = best(cmd, a.repeats, env)
                res[name] = r
                print(f"{name:48s} {r['wall']:6.2f} s wall {r['cpu']:6.2f} s CPU {n / r['wall']:6.1f} fps "
                      f"peak RSS {r['rss']:5.0f} MB", flush=True)  # fmt: skip
            names = list(res)
            base = res[names[0]]
            fast, slow, sal, sal_py, roi, roi_py = (res[k] for k in names[1:])
            rows = {
                "combined / direct, CPU (<= 1.15)": fast["cpu"] / base["cpu"],
                "combined / direct, wall (<= 1.15)": fast["wall"] / base["wall"],
                "  Python route: CPU": slow["cpu"] / base["cpu"],
                "  Python route: wall": slow["wall"] / base["wall"],
                "saliency-only fps / direct fps (>= 3)": base["wall"] / sal["wall"],
                "  Python route": base["wall"] / sal_py["wall"],
                "roi_score / direct, wall (<= 2.2)": roi["wall"] / base["wall"],
                "roi_score / direct, CPU": roi["cpu"] / base["cpu"],
                "  roi_score, Python route: wall": roi_py["wall"] / base["wall"],
                "  roi_score, Python route: CPU": roi_py["cpu"] / base["cpu"],
            }
            for k, v in rows.items():
                print(f"  {k:46s} {v:5.2f}x")
            direct = [f["metrics"]["vmaf"] for f in json.loads((d / "direct.json").read_text())["frames"]][:n]
            ours = [f["metrics"]["vmaf"] for f in json.loads((d / "c.json").read_text())["frames"]]
            same = direct == ours
            print(f"  per-frame vmaf identical to the direct run: {same} ({len(ours)} frames)")
            # the two roi_score routes: the same VMAF, the masked copy's within the tests' tolerance
            ra, rb = (json.loads((d / f).read_text())["frames"] for f in ("roi.json", "roi_py.json"))
            gap = {k: max(abs(x["metrics"][k] - y["metrics"][k]) for x, y in zip(ra, rb))
                   for k in ("vmaf", "vmaf_masked", "vmaf_roi", "psnr_y_saliency")}  # fmt: skip
            print("  roi_score, one decode vs Python route, worst per-frame difference: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in gap.items()))  # fmt: skip
            p = parts(d, pair, n)
            print("  saliency's parts, per frame (CPU ms): " + ", ".join(f"{k} {v:.2f}" for k, v in p.items())
                  + f"; direct libvmaf {base['cpu'] / n * 1e3:.1f} ms")  # fmt: skip
            out["pairs"][pname] = {"runs": res, "ratios": rows, "vmaf_identical": same, "parts_ms": p, "frames": n,
                                   "roi_routes_gap": gap}  # fmt: skip
            if pname.startswith("2160p"):
                for label, key in (("combined", "vmaf --feature mobilesal (one decode)"),
                                   ("roi_score", "roi_score=1 (one decode)")):  # fmt: skip
                    cmd, env = configs(pair, d)[key]
                    rss = {}
                    for k in (30, 300):
                        cmd_k = [*cmd[: cmd.index("--frame_cnt") + 1], str(k), *cmd[cmd.index("--frame_cnt") + 2 :]]
                        rss[k] = run(cmd_k, env)[2]
                    print(f"  peak RSS of the tree, {label} run: 30 frames {rss[30]:.0f} MB, "
                          f"300 frames {rss[300]:.0f} MB")  # fmt: skip
                    out["pairs"][pname][f"rss_30_300_{label}"] = rss
    finally:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
