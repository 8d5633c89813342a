"""auto-encode per shot against the whole title (issue 37), on a title cut together from the shared clips.

Prints, all measured in this run:
1. shot detection: PySceneDetect's ContentDetector (what auto-encode uses) and FFmpeg's scdet on titles with known
   cuts (this title; 16 DAVIS sequences back to back when ../shared has them), found / missed / false and seconds;
2. the whole-title answer (crf-search then the encode) and the per-shot one at the same --min-vmaf: each shot's
   VMAF by a direct libvmaf run on OUTPUT, and the video kbit/s;
3. the whole-title CRF that makes its *worst* shot meet the target (found by encoding the title at each CRF down
   from the whole-title answer), and its bytes against per-shot's;
4. the same with --roi --min-vmaf-roi (vmaf_roi by tinysal vmaf on OUTPUT), against the whole-title ROI encode
   whose worst shot meets both targets;
5. wall: per-shot with one worker, with the local pool (--jobs 0: the cores), and on a local Ray;
6. --max-kbps at the whole-title answer's bitrate: the title's bitrate and its worst shot (direct libvmaf) against
   the whole-title encode at about the same bits (bits and scores only: not timed).

    python bench/bench_auto_encode.py [--target 93] [--skip-ray] [--skip-roi] [--only-budget] [--only-roi]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TINYSAL_SHARED", ROOT.parent / "shared"))
VIDEO = SHARED / "data" / "video"
DAVIS = SHARED / "data" / "davis2016" / "images"
CLIPS = ("foreman_cif_60f_h264.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4", "cockatoo.mp4", "test.webm")
SHOT = 50


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def concat(parts: list[Path], out: Path) -> None:
    lst = out.with_suffix(".txt")
    lst.write_text("".join(f"file '{p}'\n" for p in parts))
    run(ffmpeg(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(lst), "-c", "copy", str(out))


def make_title(work: Path) -> tuple[Path, list[int]]:
    """The shared clips' first SHOT frames each at 640x360 25 fps, lossless (FFV1), back to back."""
    parts = []
    for k, c in enumerate(CLIPS):
        p = work / f"seg{k}.mkv"
        run(ffmpeg(), "-v", "error", "-y", "-i", str(VIDEO / c), "-vf", "scale=640:360,fps=25,setsar=1,format=yuv420p",
            "-frames:v", str(SHOT), "-an", "-c:v", "ffv1", str(p))  # fmt: skip
        parts.append(p)
    title = work / "title.mkv"
    concat(parts, title)
    return title, [SHOT * k for k in range(1, len(CLIPS))]


def make_davis_title(work: Path, n: int = 40) -> tuple[Path, list[int]] | None:
    if not DAVIS.is_dir():
        return None
    parts = []
    for k, s in enumerate(sorted(DAVIS.iterdir())):
        p = work / f"davis{k}.mkv"
        run(ffmpeg(), "-v", "error", "-y", "-framerate", "25", "-i", str(s / "%05d.jpg"), "-frames:v", str(n),
            "-vf", "scale=854:480,setsar=1,format=yuv420p", "-c:v", "ffv1", str(p))  # fmt: skip
        parts.append(p)
    title = work / "davis.mkv"
    concat(parts, title)
    return title, [n * k for k in range(1, len(parts))]


def score_cuts(found: list[int], truth: list[int], tol: int = 2) -> str:
    hit = [t for t in truth if any(abs(f - t) <= tol for f in found)]
    false = [f for f in found if not any(abs(f - t) <= tol for t in truth)]
    return f"found {len(hit)}/{len(truth)}, false {len(false)}"


def content_detector(path: Path, min_frames: int) -> tuple[list[int], float]:
    """auto-encode's detector as auto-encode runs it (shots of at least ``min_frames``)."""
    from tinysal.encode.shots import SCENE_THRESHOLD, ShotDetector, shots_from_cuts
    from tinysal.video.readers import open_video

    t = time.perf_counter()
    r = open_video(str(path), None, None, "420", 8)
    det = ShotDetector(r.width, r.height, float(r.fps), min_frames, SCENE_THRESHOLD)
    n = 0
    for i, fr in enumerate(r.frames()):
        det.add(i, fr)
        n += 1
    return [a for a, _ in shots_from_cuts(det.cuts(), n, min_frames)[1:]], time.perf_counter() - t


def scdet(path: Path, min_frames: int, fps: float = 25.0) -> tuple[list[int], float]:
    """FFmpeg's scdet at its default threshold, its cuts merged to the same minimum shot length."""
    from tinysal.encode.shots import shots_from_cuts

    t = time.perf_counter()
    p = subprocess.run([ffmpeg(), "-hide_banner", "-nostats", "-i", str(path), "-vf", "scdet", "-an", "-f", "null",
                        "-"], capture_output=True, text=True)  # fmt: skip
    times = [float(m) for m in re.findall(r"lavfi\.scd\.time: ([0-9.]+)", p.stderr)]
    n = int(re.findall(r"frame=\s*(\d+)", p.stderr)[-1]) if re.findall(r"frame=\s*(\d+)", p.stderr) else 10**9
    cuts = [round(x * fps) for x in times]
    return [a for a, _ in shots_from_cuts(cuts, n, min_frames)[1:]], time.perf_counter() - t


def direct_vmaf(dist: Path, ref: Path) -> list[float]:
    log = dist.with_suffix(".vmaf.json")
    run(ffmpeg(), "-v", "error", "-i", str(dist), "-i", str(ref), "-lavfi",
        f"[0:v]setpts=PTS-STARTPTS[d];[1:v]setpts=PTS-STARTPTS[r];[d][r]libvmaf=log_fmt=json:log_path={log}:n_threads=2",
        "-f", "null", "-")  # fmt: skip
    return [f["metrics"]["vmaf"] for f in json.loads(log.read_text())["frames"]]


def roi_vmaf(dist: Path, ref: Path) -> list[float]:
    out = dist.with_suffix(".roi.json")
    run(sys.executable, "-m", "tinysal.cli.vmaf", "-r", str(ref), "-d", str(dist), "--feature", "mobilesal:roi_score=1",
        "--json", "-o", str(out))  # fmt: skip
    return [f["metrics"]["vmaf_roi"] for f in json.loads(out.read_text())["frames"]]


def per_shot(values: list[float], bounds: list[int], total: int) -> list[float]:
    edges = [0, *bounds, total]
    return [sum(values[a:b]) / (b - a) for a, b in zip(edges, edges[1:])]


def tinysal(*args: str) -> tuple[dict, float]:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tinysal.cli.main", "auto-encode", *args, "-q"], capture_output=True,
                       text=True)  # fmt: skip
    wall = time.perf_counter() - t
    if p.returncode not in (0, 1):
        raise SystemExit(f"auto-encode failed: {p.stderr.strip()}")
    return json.loads(Path(args[args.index("--out-json") + 1]).read_text()), wall


def fmt(xs: list[float]) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in xs) + "]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=float, default=93.0)
    ap.add_argument("--roi-target", type=float, default=96.0)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-roi", action="store_true")
    ap.add_argument("--only-budget", action="store_true", help="only section 6")
    ap.add_argument("--only-roi", action="store_true", help="only section 4")
    a = ap.parse_args()
    if not VIDEO.is_dir():
        print(f"needs the shared clips ({VIDEO})")
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-auto-encode-"))
    try:
        title, cuts = make_title(work)
        total = SHOT * len(CLIPS)
        print(f"title: {len(CLIPS)} shots of {SHOT} frames ({', '.join(CLIPS)}), 640x360, cuts at {cuts}; "
              f"{os.cpu_count()} cores")  # fmt: skip
        if a.only_budget:
            budget(a, title, cuts, total, work)
            return 0
        if a.only_roi:
            roi_section(a, title, cuts, total, work)
            return 0
        print("\n1. shot detection (within 2 frames of a known cut; shots of at least 25 frames, auto-encode's default "
              "1 s, for both)")  # fmt: skip
        sets = [("this title", title, cuts), ("bikes.mp4 (cuts both detectors agree on)", VIDEO / "bikes.mp4",
                                               [30, 76, 137, 187, 242])]  # fmt: skip
        d = make_davis_title(work)
        if d:
            sets.append(("16 DAVIS sequences x 40 frames", *d))
        for name, path, truth in sets:
            cd, t1 = content_detector(path, 25)
            sc, t2 = scdet(path, 25)
            print(f"  {name}: ContentDetector {score_cuts(cd, truth)} ({t1:.2f} s); scdet {score_cuts(sc, truth)} "
                  f"({t2:.2f} s)")  # fmt: skip

        print(f"\n2. --min-vmaf {a.target:g}: whole title against per shot (VMAF per shot by a direct libvmaf run on "
              "OUTPUT)")  # fmt: skip
        whole, w_wall = tinysal(str(title), str(work / "whole.mp4"), "--min-vmaf", str(a.target), "--out-json",
                                str(work / "whole.json"))  # fmt: skip
        wv = per_shot(direct_vmaf(work / "whole.mp4", title), cuts, total)
        print(f"  whole title: crf {whole['crf']:g}, {whole['totals']['video_kbps']:.0f} kbit/s, shots {fmt(wv)}, "
              f"below target: {sum(v < a.target for v in wv)} ({w_wall:.0f} s)")  # fmt: skip
        shot, s_wall = tinysal(str(title), str(work / "shot.mp4"), "--min-vmaf", str(a.target), "--per-shot",
                               "--jobs", "1", "--out-json", str(work / "shot.json"))  # fmt: skip
        sv = per_shot(direct_vmaf(work / "shot.mp4", title), cuts, total)
        print(f"  per shot: crfs {[s['crf'] for s in shot['shots']]}, {shot['totals']['video_kbps']:.0f} kbit/s, "
              f"shots {fmt(sv)}, below target: {sum(v < a.target for v in sv)}, worst |shot - target| "
              f"{max(abs(v - a.target) for v in sv):.2f} ({s_wall:.0f} s, one worker)")  # fmt: skip

        print("\n3. the whole-title CRF whose worst shot meets the target, against per shot")
        from tinysal.encode.encoder import EncodeOptions, encode

        crf = whole["crf"]
        while crf > 10:
            out = work / f"w{crf:g}.mp4"
            info = encode(EncodeOptions(input=str(title), output=str(out), crf=crf, overwrite=True))
            v = per_shot(direct_vmaf(out, title), cuts, total)
            if min(v) >= a.target:
                ratio = shot["totals"]["video_bytes"] / info["video_bytes"]
                print(f"  whole title at crf {crf:g}: {info['video_kbps']:.0f} kbit/s, worst shot {min(v):.2f}; per "
                      f"shot {shot['totals']['video_kbps']:.0f} kbit/s: {100 * (ratio - 1):+.1f}% bytes")  # fmt: skip
                break
            crf -= 1

        if not a.skip_roi:
            roi_section(a, title, cuts, total, work)

        print("\n5. wall of per shot (same title and target)")
        _, pool = tinysal(str(title), str(work / "pool.mp4"), "--min-vmaf", str(a.target), "--per-shot", "--jobs", "0",
                          "--out-json", str(work / "pool.json"))  # fmt: skip
        print(f"  one worker {s_wall:.1f} s; local pool (--jobs 0) {pool:.1f} s: {s_wall / pool:.2f}x")
        if not a.skip_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                print("  ray: not installed")
            else:
                _, rw = tinysal(str(title), str(work / "ray.mp4"), "--min-vmaf", str(a.target), "--per-shot",
                                "--engine", "ray", "--out-json", str(work / "ray.json"))  # fmt: skip
                print(f"  local Ray {rw:.1f} s ({rw / pool:.2f}x the local pool's wall, Ray's start included)")
        budget(a, title, cuts, total, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def roi_section(a: argparse.Namespace, title: Path, cuts: list[int], total: int, work: Path) -> None:
    """Section 4: --roi --min-vmaf-roi, per shot against the whole title (vmaf_roi per shot by tinysal vmaf on
    OUTPUT), and against the whole-title ROI encode whose worst shot meets the vmaf_roi target."""
    from tinysal.encode.encoder import EncodeOptions, encode

    args = ["--min-vmaf", str(a.target), "--min-vmaf-roi", str(a.roi_target), "--roi"]
    print(f"\n4. {' '.join(args)} (vmaf_roi per shot by tinysal vmaf on OUTPUT)")
    wr, _ = tinysal(str(title), str(work / "whole_roi.mp4"), *args, "--out-json", str(work / "whole_roi.json"))
    wrv = per_shot(roi_vmaf(work / "whole_roi.mp4", title), cuts, total)
    print(f"  whole title: crf {wr['crf']:g} roi {wr['roi_strength']:g}, {wr['totals']['video_kbps']:.0f} kbit/s, "
          f"vmaf_roi per shot {fmt(wrv)}, below: {sum(v < a.roi_target for v in wrv)}")  # fmt: skip
    sr, _ = tinysal(str(title), str(work / "shot_roi.mp4"), *args, "--per-shot", "--out-json",
                    str(work / "shot_roi.json"))  # fmt: skip
    srv = per_shot(roi_vmaf(work / "shot_roi.mp4", title), cuts, total)
    print(f"  per shot: crf/roi {[(s['crf'], s['roi_strength']) for s in sr['shots']]}, "
          f"{sr['totals']['video_kbps']:.0f} kbit/s, vmaf_roi per shot {fmt(srv)}, below by more than 0.5: "
          f"{sum(v < a.roi_target - 0.5 for v in srv)}")  # fmt: skip
    crf, strength = wr["crf"], wr["roi_strength"]
    while crf > 10:
        out = work / f"wr{crf:g}.mp4"
        info = encode(EncodeOptions(input=str(title), output=str(out), crf=crf, roi=strength > 0,
                                    roi_strength=strength or None, overwrite=True))  # fmt: skip
        v = per_shot(roi_vmaf(out, title), cuts, total)
        vm = per_shot(direct_vmaf(out, title), cuts, total)
        if min(v) >= a.roi_target and min(vm) >= a.target:
            ratio = sr["totals"]["video_bytes"] / info["video_bytes"]
            print(f"  whole title at crf {crf:g} roi {strength:g}: {info['video_kbps']:.0f} kbit/s, worst shot "
                  f"vmaf_roi {min(v):.2f}, vmaf {min(vm):.2f}; per shot: {100 * (ratio - 1):+.1f}% bytes")  # fmt: skip
            break
        crf -= 1


def budget(a: argparse.Namespace, title: Path, cuts: list[int], total: int, work: Path) -> None:
    """Section 6: the bitrate of the whole-title answer shared between the shots by --max-kbps."""
    whole, _ = tinysal(str(title), str(work / "b_whole.mp4"), "--min-vmaf", str(a.target), "--out-json",
                       str(work / "b_whole.json"))  # fmt: skip
    kbps = whole["totals"]["video_kbps"]
    wv = per_shot(direct_vmaf(work / "b_whole.mp4", title), cuts, total)
    shot, _ = tinysal(str(title), str(work / "b_shot.mp4"), "--min-vmaf", str(a.target), "--per-shot",
                      "--max-kbps", f"{kbps:.1f}", "--out-json", str(work / "b_shot.json"))  # fmt: skip
    sv = per_shot(direct_vmaf(work / "b_shot.mp4", title), cuts, total)
    print(f"\n6. --max-kbps {kbps:.1f} (the whole-title answer's video bitrate), worst shot by a direct libvmaf run")
    print(f"  whole title at crf {whole['crf']:g}: {kbps:.0f} kbit/s, shots {fmt(wv)}, worst {min(wv):.2f}")
    print(f"  per shot under the budget: crfs {[s['crf'] for s in shot['shots']]}, "
          f"{shot['totals']['video_kbps']:.0f} kbit/s (predicted {shot['budget']['predicted_kbps']:.0f}), shots "
          f"{fmt(sv)}, worst {min(sv):.2f} ({min(sv) - min(wv):+.2f})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
