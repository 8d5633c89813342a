#!/usr/bin/env python3
"""ROI encode wall time against the plain encode of the same clip, same encoder, same settings (target <= 1.2x
at 720p): the ROI run adds saliency at the inference scale every ``roi_every`` frames, the block maps and the
``addroi`` filter graph.

    python bench/bench_roi.py [--frames 150] [--codecs libx264,libx265] [--bitrate 1500k] [--repeat 2]

Each encode is timed twice: in-process (``encode_video``, model load included) and as a user runs it, a fresh
``tinysal encode`` process (interpreter, imports and model load included), best of ``--repeat`` for both.

The clip is the bikes clip from ../shared/data/video looped and scaled to 1280x720, written once as Y4M into a
temp folder, so decoding costs nothing in either run. Runs alternate plain / ROI; the best of ``--repeat`` counts.
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
sys.path.insert(0, str(ROOT / "src"))

from tinysal.cli.main import _bitrate as parse_bitrate  # noqa: E402
from tinysal.encode.encoder import EncodeSettings, encode_video  # noqa: E402
from tinysal.video import open_video  # noqa: E402


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--codecs", default="libx264,libx265")
    ap.add_argument("--bitrate", default="1500k")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    d = Path(tempfile.mkdtemp(prefix="bench-roi-"))
    clip = d / "clip.y4m"
    subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i",
                    str(SHARED / "data" / "video" / "bikes.mp4"), "-frames:v", str(a.frames), "-vf",
                    f"scale={w}:{h}", "-pix_fmt", "yuv420p", str(clip)], check=True)  # fmt: skip
    print(f"clip: bikes looped, {w}x{h}, {a.frames} frames, Y4M; {a.preset}, {a.bitrate}bit/s, best of {a.repeat}")
    rows = []
    for codec in a.codecs.split(","):
        best: dict[bool, dict] = {}
        for _ in range(a.repeat):
            for roi in (False, True):
                s = EncodeSettings(codec=codec, bitrate=parse_bitrate(a.bitrate), preset=a.preset, roi=roi)
                out = d / f"{codec}-{int(roi)}.mp4"
                t0 = time.perf_counter()
                r = encode_video(open_video(clip), out, s, overwrite=True)
                r["wall"] = time.perf_counter() - t0
                if roi not in best or r["wall"] < best[roi]["wall"]:
                    best[roi] = r
        cli: dict[bool, float] = {}
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        for _ in range(a.repeat):
            for roi in (False, True):
                cmd = [sys.executable, "-m", "tinysal.cli.main", "encode", str(clip), str(d / "cli.mp4"), "--codec",
                       codec, "--bitrate", a.bitrate, "--preset", a.preset, "--overwrite", "-q"] + ["--roi"] * roi
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                cli[roi] = min(cli.get(roi, 1e9), time.perf_counter() - t0)
        plain, roi_r = best[False], best[True]
        ratio = roi_r["wall"] / plain["wall"]
        row = {
            "codec": codec,
            "plain_s": round(plain["wall"], 2),
            "roi_s": round(roi_r["wall"], 2),
            "ratio": round(ratio, 3),
            "plain_fps": round(plain["frames"] / plain["wall"], 1),
            "roi_fps": round(roi_r["frames"] / roi_r["wall"], 1),
            "saliency_s": round(roi_r["saliency_seconds"], 2),
            "roi_every": roi_r["roi_every"],
            "graph_rebuilds": roi_r["graph_rebuilds"],
            "cli_plain_s": round(cli[False], 2),
            "cli_roi_s": round(cli[True], 2),
            "cli_ratio": round(cli[True] / cli[False], 3),
            "plain_kbps": round(plain["video_kbps"]),
            "roi_kbps": round(roi_r["video_kbps"]),
        }
        rows.append(row)
        verdict = "met" if ratio <= 1.2 else "NOT met"
        print(f"{codec}: plain {row['plain_s']:.1f} s ({row['plain_fps']} fps), ROI {row['roi_s']:.1f} s "
              f"({row['roi_fps']} fps) -> ROI/plain = {ratio:.2f}x (target <= 1.2x: {verdict}); "
              f"saliency {row['saliency_s']:.1f} s on every {row['roi_every']}th frame, "
              f"{row['graph_rebuilds']} addroi graphs; {row['plain_kbps']} vs {row['roi_kbps']} kbit/s")  # fmt: skip
        print(f"{codec}, fresh `tinysal encode` processes: plain {cli[False]:.1f} s, --roi {cli[True]:.1f} s -> "
              f"{row['cli_ratio']:.2f}x")  # fmt: skip
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    if a.json:
        Path(a.json).write_text(json.dumps({"frames": a.frames, "size": a.size, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
