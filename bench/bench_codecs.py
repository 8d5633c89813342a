#!/usr/bin/env python3
"""Encode speed of every codec in the codec table: codec x preset x 8/10-bit, plain and with saliency (x264/x265:
QP offsets; SVT-AV1: the pre-filter at sigma 0.5), on the bundled sample (Big Buck Bunny, 640x360, 132 frames) or
a clip given, each encode in this process one after the other, on all cores. The baseline, measured in the same
run, is plain libx264 at its default preset on the 8-bit source: every row also says its time against it.

    python bench/bench_codecs.py [--clip FILE] [--frames 132] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: (codec, presets timed, ROI strength for the saliency rows)
PLAN = [("libx264", ("medium", "veryfast"), 3.0), ("libx265", ("medium", "veryfast"), 2.0),
        ("libsvtav1", ("12", "10", "8"), 0.5)]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", help="default: the bundled sample")
    ap.add_argument("--frames", type=int, default=132)
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    import imageio_ffmpeg

    from tinysal.encode.encoder import EncodeOptions, encode

    clip = a.clip or subprocess.run(["tinysal", "sample"], capture_output=True, text=True, check=True).stdout.strip()
    d = Path(tempfile.mkdtemp(prefix="bench-codecs-"))
    src = {"8": d / "s8.y4m", "10": d / "s10.y4m"}
    for depth, pix in (("8", "yuv420p"), ("10", "yuv420p10le")):
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", clip, "-frames:v", str(a.frames),
                        "-pix_fmt", pix, "-strict", "-1", str(src[depth])], check=True)  # fmt: skip
    print(f"{a.frames} frames of {Path(clip).name}, {os.cpu_count()} cores; each encode once, one after the other")
    rows = []
    base = None
    for codec, presets, strength in PLAN:
        for preset in presets:
            for depth in ("8", "10"):
                for roi in (False, True):
                    out = d / "o.mkv"
                    t = time.perf_counter()
                    info = encode(EncodeOptions(input=str(src[depth]), output=str(out), codec=codec, preset=preset,
                                                roi=roi, roi_strength=strength if roi else None, overwrite=True,
                                                no_audio=True))  # fmt: skip
                    secs = time.perf_counter() - t
                    base = base or secs
                    row = {"codec": codec, "preset": preset, "bits": int(depth), "saliency": roi,
                           "fps": round(info["frames"] / secs, 2), "seconds": round(secs, 2),
                           "vs_x264_default": round(secs / base, 2), "video_kbps": round(info["video_kbps"], 1),
                           "pix_fmt": info["pix_fmt"]}  # fmt: skip
                    rows.append(row)
                    print(f"{codec:10s} {preset:>9s} {depth:>2s}-bit {'saliency' if roi else 'plain':8s} "
                          f"{row['fps']:7.2f} fps  {row['vs_x264_default']:5.2f}x  {row['video_kbps']:8.1f} kbit/s "
                          f"{row['pix_fmt']}", flush=True)  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps({"frames": a.frames, "clip": str(clip), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
