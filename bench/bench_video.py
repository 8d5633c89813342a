#!/usr/bin/env python3
"""mobilesal video benchmark: speed of the default (training-scale) path vs the native-resolution path, pipeline
overhead over bare model time, peak RSS against clip length, and accuracy of both paths on DAVIS frames.

Every figure is measured in this run, on this machine; ratios compare paths measured side by side.

    python bench/bench_video.py [--frames 60] [--native-frames 4] [--threads 0] [--json out.json]

Needs ../shared/data (a real clip to upscale to 1080p, and DAVIS for accuracy).
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

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TINYSAL_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT / "tests"))


def make_1080p_clip(path: Path, n: int) -> Path:
    """Upscale a real 1280x720 clip (Big Buck Bunny excerpt) to 1920x1080 I420; loop it if n is larger."""
    from conftest import write_yuv_clip

    from tinysal.features.visual import frame_rgb
    from tinysal.video.readers import open_video

    src = open_video(SHARED / "data" / "video" / "bigbuckbunny.mp4")
    frames = []
    for fr in src.frames():
        frames.append(np.asarray(Image.fromarray(frame_rgb(fr)).resize((1920, 1080), Image.BICUBIC)))
        if len(frames) >= min(n, 48):
            break
    with open(path, "wb"):
        pass
    chunk = Path(str(path) + ".chunk")
    write_yuv_clip(chunk, frames)
    data = chunk.read_bytes()
    fb = 1920 * 1080 * 3 // 2
    with open(path, "wb") as f:
        written = 0
        while written < n:
            take = min(n - written, len(frames))
            f.write(data[: take * fb])
            written += take
    chunk.unlink()
    return path


def time_path(clip: Path, short_side: int, frames: int, threads: int, model_path: str | None = None) -> dict:
    """End-to-end fps through score_files, and bare model time per frame in the same execution mode (the same
    number of frames in flight on the same session), so the difference is the pipeline's own cost."""
    from concurrent.futures import ThreadPoolExecutor

    from tinysal.features.scoring import VmafContext, score_files
    from tinysal.video.readers import open_video

    ctx = VmafContext(threads=threads)
    params: dict = {"short_side": short_side}
    if model_path:
        params["model_path"] = model_path
    feat = ctx.use_feature("mobilesal", params)
    first = next(iter(open_video(clip, 1920, 1080).frames()))
    # warm-up outside the timed run, in the same mode (ONNX Runtime sizes its buffers for each concurrent run)
    score_files(ctx, None, clip, 1920, 1080, "420", 8, frame_cnt=2 * ctx.threads)
    t0 = time.perf_counter()
    info = score_files(ctx, None, clip, 1920, 1080, "420", 8, frame_cnt=frames)
    wall = time.perf_counter() - t0
    x = feat.preprocess(first)
    reps = max(ctx.threads * 2, min(frames, 30))
    with ThreadPoolExecutor(ctx.threads) as pool:
        t1 = time.perf_counter()
        list(pool.map(lambda _: feat.session.run(x), range(reps)))
        model_s = (time.perf_counter() - t1) / reps
    per_frame = wall / info["frames_scored"]
    return {
        "short_side": short_side,
        "input": list(x.shape[2:]),
        "frames": info["frames_scored"],
        "frames_in_parallel": ctx.threads,
        "fps": info["frames_scored"] / wall,
        "ms_per_frame": per_frame * 1e3,
        "model_ms": model_s * 1e3,
        "overhead_pct": (per_frame - model_s) / model_s * 100,
    }


def peak_rss_mb(clip: Path, frames: int, threads: int) -> float:
    """Peak RSS of a `vmaf` CLI run, from the child's own /proc VmHWM (which, unlike ru_maxrss, does not include
    the pre-exec image of this already large benchmark process)."""
    out = Path(tempfile.mkdtemp()) / "s.json"
    cmd = [
        sys.executable,
        "-m",
        "tinysal.cli.vmaf",
        "-r",
        str(clip),
        "-d",
        str(clip),
        "-w",
        "1920",
        "-h",
        "1080",
        "--frame_cnt",
        str(frames),
        "--threads",
        str(threads),
        "--feature",
        "mobilesal",
        "--no_prediction",  # the saliency path alone; bench_vmaf.py and bench_soak.py measure it with libvmaf
        "-q",
        "-o",
        str(out),
    ]
    p = subprocess.Popen(cmd)
    peak_kb = 0
    while p.poll() is None:
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    if p.returncode != 0:
        raise SystemExit(f"vmaf failed: {cmd}")
    return peak_kb / 1024


def davis_accuracy(seqs: list[str], short_sides: list[int], per_seq: int) -> dict:
    """IoU@0.5 of the map against DAVIS masks, frames passed through I420 like real video."""
    from conftest import write_yuv_clip

    from tinysal.features.mobilesal import MobileSal
    from tinysal.train.trainer import iou_per_image
    from tinysal.video.readers import RawYuvReader

    res = {}
    tmp = Path(tempfile.mkdtemp())
    feats = {s: MobileSal(short_side=s) for s in short_sides}
    ious = {s: [] for s in short_sides}
    for seq in seqs:
        imgs = sorted((SHARED / "data/davis2016/images" / seq).glob("*.jpg"))[:per_seq]
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in imgs]
        masks = [
            np.asarray(Image.open(str(p).replace("/images/", "/masks/").replace(".jpg", ".png")).convert("L"))
            for p in imgs
        ]
        h, w = frames[0].shape[:2]
        clip = write_yuv_clip(tmp / f"{seq}.yuv", frames)
        for k, fr in enumerate(RawYuvReader(clip, w, h).frames()):
            for s, feat in feats.items():
                _, m = feat.compute(fr)
                full = feat.frame_map(m, w, h)
                ious[s].append(float(iou_per_image(full[None], (masks[k][None] > 127).astype(np.float32))[0]))
    for s in short_sides:
        res[str(s)] = {"iou": float(np.mean(ious[s])), "n": len(ious[s])}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--native-frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--davis-frames", type=int, default=12, help="frames per held-out sequence for accuracy")
    ap.add_argument("--json")
    ap.add_argument("--v3-model", help="a saliency_student_v3 ONNX to time (default: the registry's)")
    a = ap.parse_args()
    if not (SHARED / "data" / "video" / "bigbuckbunny.mp4").is_file():
        print("bench needs ../shared/data/video/bigbuckbunny.mp4", file=sys.stderr)
        return 2
    from tinysal.model.registry import default_model_path

    print(f"model: {default_model_path().name}; cores: {os.cpu_count()}; threads: {a.threads or 'all'}")
    tmp = Path(tempfile.mkdtemp())
    long_n = max(a.frames, 120)
    clip = make_1080p_clip(tmp / "bbb_1920x1080.yuv", long_n)
    print(f"clip: Big Buck Bunny excerpt upscaled to 1920x1080 I420, {long_n} frames")

    d = time_path(clip, 256, a.frames, a.threads)
    d1 = time_path(clip, 256, a.frames, 1)
    n = time_path(clip, 0, a.native_frames, a.threads)
    print(
        f"default (short side 256, input {d['input'][1]}x{d['input'][0]}, {d['frames_in_parallel']} frames in "
        f"parallel): {d['fps']:.1f} fps, {d['ms_per_frame']:.1f} ms/frame, bare model {d['model_ms']:.1f} ms/frame, "
        f"overhead {d['overhead_pct']:.1f}%"
    )
    print(
        f"  same, one frame at a time on all cores (--threads 1): {d1['fps']:.1f} fps, bare model "
        f"{d1['model_ms']:.1f} ms/frame, overhead {d1['overhead_pct']:.1f}%"
    )
    print(
        f"native  (input {n['input'][1]}x{n['input'][0]}): {n['fps']:.2f} fps, {n['ms_per_frame']:.0f} ms/frame, "
        f"bare model {n['model_ms']:.0f} ms, overhead {n['overhead_pct']:.1f}%"
    )
    speedup = d["fps"] / n["fps"]
    print(f"speed-up default vs native: {speedup:.1f}x   (targets: >= 25 fps default, >= 30x native, overhead <= 15%)")

    from tinysal.model.registry import registry_model_path

    v2 = time_path(clip, 256, a.frames, a.threads, str(registry_model_path("saliency_student_v2")))
    v3 = time_path(clip, 256, a.frames, a.threads, a.v3_model or str(registry_model_path("saliency_student_v3")))
    print(
        f"v2 (input {v2['input'][1]}x{v2['input'][0]}): {v2['fps']:.1f} fps, bare model {v2['model_ms']:.1f} "
        f"ms/frame; v3 (input {v3['input'][1]}x{v3['input'][0]}): {v3['fps']:.1f} fps, bare model "
        f"{v3['model_ms']:.1f} ms/frame -> v3 = {v3['fps'] / v2['fps']:.2f}x the fps of v2 (target >= 2x)"
    )

    short_n, long_n2 = 30, long_n
    rss_short = peak_rss_mb(clip, short_n, a.threads)
    rss_long = peak_rss_mb(clip, long_n2, a.threads)
    print(
        f"peak RSS (vmaf CLI, default path): {short_n} frames {rss_short:.0f} MB, {long_n2} frames {rss_long:.0f} MB "
        f"(ratio {rss_long / rss_short:.2f}; target flat and <= 600 MB)"
    )

    acc = {}
    if (SHARED / "data" / "davis2016").is_dir():
        from tinysal.model.registry import load_registry, production_model

        reg = load_registry()
        side = json.loads((Path(reg["_folder"]) / production_model(reg)["sidecar"]).read_text())
        held = side.get("training", {}).get("test_groups") or ["blackswan", "car-roundabout", "dance-twirl", "libby"]
        acc = davis_accuracy(held, [256, 0], a.davis_frames)
        print(
            f"accuracy on held-out DAVIS sequences {held} via I420, IoU@0.5: default {acc['256']['iou']:.3f}, "
            f"native {acc['0']['iou']:.3f} (n={acc['256']['n']})"
        )
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "default": d,
                    "default_one_frame_at_a_time": d1,
                    "v2": v2,
                    "v3": v3,
                    "native": n,
                    "speedup": speedup,
                    "rss_mb": {str(short_n): rss_short, str(long_n2): rss_long},
                    "accuracy": acc,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
