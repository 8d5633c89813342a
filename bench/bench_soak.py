#!/usr/bin/env python3
"""Soak: a long 1080p clip scored end to end (VMAF + saliency) while the memory of the whole process tree is
sampled; peak RSS must stay flat in clip length (target <= 600 MB for 3,000 frames).

    python bench/bench_soak.py [--frames 3000] [--no-vmaf] [--json out.json]

The clip is the bikes clip from ../shared/data/video looped and upscaled to 1920x1080, encoded once with x264
(ultrafast, CRF 23) into a temp folder: a raw 3,000-frame 1080p file would need 9 GB of disk.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vmaf import _tree_rss_kb, ffmpeg  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--no-vmaf", action="store_true", help="saliency only (--no_prediction)")
    ap.add_argument("--json")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    clip = d / "soak.mp4"
    t0 = time.perf_counter()
    subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i",
                    str(SHARED / "data" / "video" / "bikes.mp4"), "-frames:v", str(a.frames), "-vf",
                    "scale=1920:1080", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-crf",
                    "23", str(clip)], check=True)  # fmt: skip
    print(f"made {a.frames}-frame 1080p clip ({clip.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    cmd = [sys.executable, "-m", "tinysal.cli.vmaf", "-r", str(clip), "-d", str(clip), "--feature", "mobilesal",
           "-q", "-o", str(d / "s.json")] + (["--no_prediction"] if a.no_vmaf else [])  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    samples: list[tuple[float, float]] = []
    while p.poll() is None:
        samples.append((time.perf_counter() - t0, _tree_rss_kb(p.pid) / 1024))
        time.sleep(0.25)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(p.stderr.read().decode()[-2000:])
    n = len(json.loads((d / "s.json").read_text())["frames"])
    peak = max(r for _, r in samples)

    def at(frac: float) -> float:
        t = frac * wall
        return max((r for s, r in samples if s <= t), default=0.0)

    print(f"scored {n} frames in {wall:.0f} s ({n / wall:.1f} fps), VMAF {'off' if a.no_vmaf else 'on'}")
    print(f"peak RSS of the process tree: {peak:.0f} MB (target <= 600 MB); running peak at 10/50/90/100% of the "
          f"run: {at(0.1):.0f} / {at(0.5):.0f} / {at(0.9):.0f} / {peak:.0f} MB")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps({"frames": n, "seconds": wall, "peak_rss_mb": peak,
                                            "running_peak_mb": [at(0.1), at(0.5), at(0.9)]}, indent=2))  # fmt: skip
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


if __name__ == "__main__":
    main()
