"""Real VMAF in the ``vmaf`` command: libvmaf (FFmpeg's filter) numbers, models, libvmaf features,
saliency-weighted VMAF (roi_score), and the failures of the FFmpeg child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, interruptible, run_cli, write_yuv_clip

FFMPEG = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, video_dir: Path) -> tuple[Path, Path]:
    """A real pair: 12 frames of foreman (CIF) as raw I420, and the same through x264 at CRF 38."""
    d = tmp_path_factory.mktemp("pair")
    ref = d / "ref.yuv"
    _ffmpeg("-i", str(video_dir / "foreman_cif_60f_h264.mp4"), "-frames:v", "12", "-f", "rawvideo", "-pix_fmt",
            "yuv420p", str(ref))  # fmt: skip
    enc = d / "dist.mp4"
    _ffmpeg("-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "352x288", "-i", str(ref), "-c:v", "libx264", "-crf",
            "38", "-preset", "veryfast", str(enc))  # fmt: skip
    dist = d / "dist.yuv"
    _ffmpeg("-i", str(enc), "-f", "rawvideo", "-pix_fmt", "yuv420p", str(dist))
    return ref, dist


def _head(clip: Path, n: int, tmp: Path, frame: int = 352 * 288 * 3 // 2) -> Path:
    """The first n frames of a raw clip, as a file of its own."""
    out = tmp / f"{clip.stem}-{n}.yuv"
    out.write_bytes(clip.read_bytes()[: n * frame])
    return out


def _direct(dist: Path, ref: Path, tmp: Path, opts: str = "", fmt: str = "yuv420p", size: str = "352x288") -> dict:
    """Per-frame scores of a direct FFmpeg libvmaf run (the yardstick). libvmaf's motion score of a clip's last
    frame depends on where the clip ends, so compare runs over the same frames (see _head)."""
    log = tmp / "direct.json"
    raw = ["-f", "rawvideo", "-pix_fmt", fmt, "-s", size]
    _ffmpeg(*raw, "-i", str(dist), *raw, "-i", str(ref), "-lavfi",
            f"[0:v][1:v]libvmaf=log_fmt=json:log_path={log}{opts}", "-f", "null", "-")  # fmt: skip
    return json.loads(log.read_text())


def _vmaf(ref: Path, dist: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("vmaf", "-r", str(ref), "-d", str(dist), "-w", "352", "-h", "288", "-p", "420", "-b", "8",
                   "-o", str(out), "-q", *extra, env=env)  # fmt: skip


def _frames(out: Path, metric: str) -> list[float]:
    return [f["metrics"][metric] for f in json.loads(out.read_text())["frames"]]


def test_vmaf_by_default_equals_a_direct_libvmaf_run(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, dist = pair
    out = tmp_path / "s.json"
    p = _vmaf(ref, dist, out)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    direct = _direct(dist, ref, tmp_path)
    ours = [f["metrics"]["vmaf"] for f in doc["frames"]]
    theirs = [f["metrics"]["vmaf"] for f in direct["frames"]]
    assert len(ours) == 12 and np.max(np.abs(np.subtract(ours, theirs))) <= 0.01
    assert 20 < np.mean(ours) < 95  # a real, imperfect encode
    # libvmaf's feature scores ride along under libvmaf's names; pooled as libvmaf pools
    assert {"integer_adm2", "integer_motion2", "integer_vif_scale0"} <= set(doc["frames"][0]["metrics"])
    assert doc["pooled_metrics"]["vmaf"]["mean"] == pytest.approx(direct["pooled_metrics"]["vmaf"]["mean"], abs=0.01)
    assert "saliency_mean" not in doc["frames"][0]["metrics"]  # only with --feature mobilesal


def test_vmaf_and_saliency_in_one_run_all_layouts(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, dist = pair
    for fmt in ("json", "xml", "csv"):
        out = tmp_path / f"s.{fmt}"
        p = _vmaf(ref, dist, out, f"--{fmt}", "--feature", "mobilesal", "--frame_cnt", "4")
        assert p.returncode == 0, p.stderr
        text = out.read_text()
        assert "vmaf" in text and "saliency_mean" in text
    doc = json.loads((tmp_path / "s.json").read_text())
    m = doc["frames"][3]["metrics"]
    assert list(m)[-1] == "saliency_mean" and 0 <= m["saliency_mean"] <= 1 and 0 <= m["vmaf"] <= 100
    assert len(doc["frames"]) == 4


def test_models_features_and_no_prediction(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, dist = pair
    out = tmp_path / "neg.json"
    assert _vmaf(ref, dist, out, "--model", "version=vmaf_v0.6.1neg", "--frame_cnt", "3").returncode == 0
    direct = _direct(_head(dist, 3, tmp_path), _head(ref, 3, tmp_path), tmp_path, ":model=version=vmaf_v0.6.1neg")
    assert np.allclose(_frames(out, "vmaf"), [f["metrics"]["vmaf"] for f in direct["frames"]], atol=0.01)
    two = tmp_path / "two.json"
    p = _vmaf(ref, dist, two, "--model", "version=vmaf_v0.6.1", "--model", "version=vmaf_v0.6.1neg",
              "--frame_cnt", "3")  # fmt: skip
    assert p.returncode == 0, p.stderr
    m = json.loads(two.read_text())["frames"][0]["metrics"]
    assert {"vmaf_v0.6.1", "vmaf_v0.6.1neg"} <= set(m) and m["vmaf_v0.6.1"] != m["vmaf_v0.6.1neg"]
    feats = tmp_path / "feats.json"
    p = _vmaf(ref, dist, feats, "--no_prediction", "--feature", "psnr", "--feature", "float_ssim", "--frame_cnt", "3")
    assert p.returncode == 0, p.stderr
    m = json.loads(feats.read_text())["frames"][0]["metrics"]
    assert "vmaf" not in m and 0 < m["float_ssim"] <= 1 and 20 < m["psnr_y"] < 60
    assert_clean_error(_vmaf(ref, dist, tmp_path / "x.json", "--no_prediction"), "nothing to compute")


@pytest.mark.parametrize(
    "model,needle",
    [
        ("version=vmaf_v9", "no built-in VMAF model"),
        ("path=/nonexistent/model.json", "model file not found"),
        ("banana", "version=NAME or path=FILE"),
        ("version=vmaf_v0.6.1:colour=red", "unknown key"),
    ],
)
def test_bad_model_is_one_clear_line(pair: tuple[Path, Path], tmp_path: Path, model: str, needle: str) -> None:
    ref, dist = pair
    out = tmp_path / "s.json"
    assert_clean_error(_vmaf(ref, dist, out, "--model", model), needle)
    assert not out.exists()


def test_roi_score_formula_at_the_extremes(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, dist = pair
    # threshold above any saliency: alpha = 0 everywhere, the masked copy is the reference itself
    none = tmp_path / "none.json"
    p = _vmaf(ref, dist, none, "--feature", "mobilesal:roi_score=1:roi_threshold=2", "--frame_cnt", "4")
    assert p.returncode == 0, p.stderr
    ref4 = _head(ref, 4, tmp_path)
    self_vmaf = [f["metrics"]["vmaf"] for f in _direct(ref4, ref4, tmp_path)["frames"]]
    assert np.allclose(_frames(none, "vmaf_masked"), self_vmaf, atol=0.01)
    # threshold below any saliency: alpha = 1 everywhere, the masked copy is the distorted clip
    full = tmp_path / "full.json"
    p = _vmaf(ref, dist, full, "--feature", "mobilesal:roi_score=1:roi_threshold=-2:roi_weight=0.25",
              "--frame_cnt", "4")  # fmt: skip
    assert p.returncode == 0, p.stderr
    vm, mk, roi = (np.array(_frames(full, k)) for k in ("vmaf", "vmaf_masked", "vmaf_roi"))
    # FFmpeg's maskedmerge at full weight gives b + ((255(o - b) + 128) >> 8): the distorted value, except one code
    # value off where |dist - ref| >= 129 (sharp edges at a low rate); 0.0003 VMAF on such a frame of the bundled
    # sample's CRF 38 encode (foreman has none): the masked copy is the distorted clip within that
    assert np.allclose(mk, vm, atol=0.01)
    assert np.allclose(roi, 0.75 * vm + 0.25 * mk, atol=1e-5)
    doc = json.loads(full.read_text())
    assert {"vmaf_masked", "vmaf_roi", "psnr_y_saliency"} <= set(doc["pooled_metrics"])


def test_roi_score_with_the_model_lies_between(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, dist = pair
    out = tmp_path / "roi.json"
    p = _vmaf(ref, dist, out, "--feature", "mobilesal:roi_score=1", "--frame_cnt", "4")
    assert p.returncode == 0, p.stderr
    vm, mk, roi = (np.array(_frames(out, k)) for k in ("vmaf", "vmaf_masked", "vmaf_roi"))
    # part of the frame is replaced by the reference: quality can only go up
    assert np.all(mk >= vm - 0.5) and np.allclose(roi, 0.5 * vm + 0.5 * mk, atol=1e-5)


def test_weighted_psnr() -> None:
    from tinysal.features.mobilesal import weighted_psnr_y

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (32, 48)).astype(np.uint8)
    dis = ref.copy()
    dis[:, :24] = np.clip(ref[:, :24].astype(int) + 10, 0, 255)  # error only on the left half
    mse_left = float(((dis[:, :24].astype(float) - ref[:, :24]) ** 2).mean())
    flat = weighted_psnr_y(ref, dis, np.ones((32, 48), np.float32), 8)
    mse_all = float(((dis.astype(float) - ref) ** 2).mean())
    assert flat == pytest.approx(10 * np.log10(255**2 / mse_all))
    right = np.zeros((32, 48), np.float32)
    right[:, 24:] = 1
    assert weighted_psnr_y(ref, dis, right, 8) == 60.0  # no error where the weight is: libvmaf's cap
    left = 1 - right
    assert weighted_psnr_y(ref, dis, left, 8) == pytest.approx(10 * np.log10(255**2 / mse_left))


def test_ten_bit_input(tmp_path: Path, davis_clip: tuple) -> None:
    _, w, h, _ = davis_clip
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    ref = write_yuv_clip(tmp_path / "r10.yuv", frames, bitdepth=10)
    noisy = [np.clip(f.astype(int) + rng.integers(-12, 13, f.shape), 0, 255).astype(np.uint8) for f in frames]
    dist = write_yuv_clip(tmp_path / "d10.yuv", noisy, bitdepth=10)
    out = tmp_path / "s.json"
    p = run_cli("vmaf", "-r", str(ref), "-d", str(dist), "-w", "128", "-h", "96", "-b", "10", "-o", str(out), "-q",
                "--feature", "mobilesal")  # fmt: skip
    assert p.returncode == 0, p.stderr
    direct = _direct(dist, ref, tmp_path, fmt="yuv420p10le", size="128x96")
    assert np.allclose(_frames(out, "vmaf"), [f["metrics"]["vmaf"] for f in direct["frames"]], atol=0.01)


def test_mismatched_pairs(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, dist = pair
    short = tmp_path / "short.yuv"
    short.write_bytes(dist.read_bytes()[: 5 * 352 * 288 * 3 // 2])
    out = tmp_path / "s.json"
    p = _vmaf(ref, short, out, "--feature", "mobilesal")
    assert p.returncode == 0, p.stderr
    assert "common 5 frames" in p.stderr and "warning" in p.stderr
    assert len(_frames(out, "vmaf")) == 5 and len(_frames(out, "saliency_mean")) == 5
    small = write_yuv_clip(tmp_path / "small.yuv", [np.zeros((96, 128, 3), np.uint8)] * 2)
    p = run_cli("vmaf", "-r", str(ref), "-d", str(small), "-o", str(out), "-w", "352", "-h", "288")
    assert p.returncode != 0  # 128x96 bytes are not whole 352x288 frames
    y4m = tmp_path / "small.y4m"
    _ffmpeg("-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "128x96", "-i", str(small), str(y4m))
    mp4 = tmp_path / "ref.y4m"
    _ffmpeg("-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "352x288", "-i", str(ref), str(mp4))
    out2 = tmp_path / "s2.json"
    # another size is scaled by default (test_a_smaller_distorted_is_scaled_as_ffmpeg_would); --no-scale refuses
    p = run_cli("vmaf", "-r", str(mp4), "-d", str(y4m), "-o", str(out2), "--no-scale")
    assert_clean_error(p, "352x288", "128x96")
    assert not out2.exists()


def _fake_ffmpeg(tmp_path: Path, body: str) -> dict:
    exe = tmp_path / "ffmpeg"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return {"TINYSAL_FFMPEG": str(exe)}


@pytest.mark.parametrize(
    "body,needle",
    [
        ("echo 'Error: libvmaf exploded' >&2; exit 1", "libvmaf exploded"),
        ("kill -9 $$", "killed by signal 9"),
        ("exit 0", "no readable log"),
    ],
)
def test_ffmpeg_failing_leaves_nothing(pair: tuple[Path, Path], tmp_path: Path, body: str, needle: str) -> None:
    ref, dist = pair
    out = tmp_path / "s.json"
    out.write_text("previous result\n")
    env = _fake_ffmpeg(tmp_path, body)
    env["TMPDIR"] = str(tmp_path)
    p = _vmaf(ref, dist, out, "--feature", "mobilesal", env=env)
    assert_clean_error(p, needle)
    assert out.read_text() == "previous result\n"  # an existing output is left intact
    assert not list(tmp_path.glob("tinysal-vmaf*")) and not list(tmp_path.glob(".s.json.*"))


@pytest.mark.parametrize("body,needle", [("echo 'Error: masked pass exploded' >&2; exit 1", "masked pass exploded"),
                                         ("kill -9 $$", "killed by signal 9")])  # fmt: skip
def test_roi_scores_masked_child_failing_is_one_line(pair: tuple[Path, Path], tmp_path: Path, body: str,
                                                      needle: str) -> None:  # fmt: skip
    """On the one-decode route the masked pass is an FFmpeg child of its own that reads the maps on stdin: when it
    alone fails (the plain pass runs the real FFmpeg), the run is one line naming the pass, with no output."""
    ref, dist = pair
    out = tmp_path / "s.json"
    exe = tmp_path / "ffmpeg"
    exe.write_text(f'#!/bin/sh\ncase "$*" in *maskedmerge*) {body};; esac\nexec "{FFMPEG}" "$@"\n')
    exe.chmod(0o755)
    env = {"TINYSAL_FFMPEG": str(exe), "TMPDIR": str(tmp_path), "TINYSAL_ONE_DECODE": "1"}
    p = _vmaf(ref, dist, out, "--feature", "mobilesal:roi_score=1", "--frame_cnt", "6", env=env)
    assert_clean_error(p, needle, "saliency-masked copy")
    assert not out.exists() and not list(tmp_path.glob("tinysal-vmaf*"))


def test_sigint_mid_run_stops_ffmpeg_and_writes_nothing(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, dist = pair
    long_ref, long_dist = tmp_path / "lr.yuv", tmp_path / "ld.yuv"
    long_ref.write_bytes(ref.read_bytes() * 60)  # 720 frames: still running when the signal comes
    long_dist.write_bytes(dist.read_bytes() * 60)
    out = tmp_path / "s.json"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinysal.cli.vmaf", "-r", str(long_ref), "-d", str(long_dist), "-w", "352", "-h",
         "288", "--feature", "mobilesal", "-o", str(out)],
        stderr=subprocess.PIPE, text=True, env=env, preexec_fn=interruptible,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob("tinysal-vmaf*")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not out.exists() and not list(tmp_path.glob("tinysal-vmaf*"))
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(long_ref) not in ps  # no FFmpeg child left running


def test_python_api_returns_the_same_numbers(pair: tuple[Path, Path], tmp_path: Path) -> None:
    import tinysal
    from tinysal.features.scoring import VmafContext, score_files

    ref, dist = pair
    out = tmp_path / "cli.json"
    assert _vmaf(ref, dist, out, "--feature", "mobilesal", "--frame_cnt", "3").returncode == 0
    ctx = VmafContext()
    ctx.use_feature("mobilesal")
    ctx.use_vmaf(["version=vmaf_v0.6.1"])
    score_files(ctx, ref, dist, 352, 288, "420", 8, frame_cnt=3)
    assert [ctx.score_at_index("vmaf", i) for i in range(3)] == pytest.approx(_frames(out, "vmaf"), abs=1e-6)
    assert ctx.score_pooled("saliency_mean") == pytest.approx(np.mean(_frames(out, "saliency_mean")), abs=1e-6)
    res = tinysal.score_video(dist, reference=ref, width=352, height=288, frame_cnt=3)
    assert [f["metrics"]["vmaf"] for f in res["frames"]] == pytest.approx(_frames(out, "vmaf"), abs=1e-6)


def test_plot_shows_vmaf_and_saliency(pair: tuple[Path, Path], tmp_path: Path) -> None:
    from PIL import Image

    ref, dist = pair
    png = tmp_path / "plot.png"
    p = _vmaf(ref, dist, tmp_path / "s.json", "--feature", "mobilesal:roi_score=1", "--frame_cnt", "4",
              "--plot", str(png))  # fmt: skip
    assert p.returncode == 0, p.stderr
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (900, 360)
        px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    # matplotlib's C0 (vmaf) and C3 (saliency_mean) lines are drawn
    for colour in ((31, 119, 180), (214, 39, 40)):
        assert np.any(np.all(np.abs(px.astype(int) - colour) < 8, axis=1)), colour


def test_vmaf_job_reports_progress(pair: tuple[Path, Path]) -> None:
    from tinysal.features.vmaf import Source, VmafJob

    ref, dist = pair
    raw = (352, 288, "420", 8)
    with VmafJob(Source(str(dist), raw), Source(str(ref), raw), 12) as job:
        log = job.wait()
        assert job.frames_done() == 12 == len(log["frames"])
    seen: list[tuple[int, int]] = []
    from tinysal.features.scoring import VmafContext, score_files

    ctx = VmafContext()
    ctx.use_vmaf()
    score_files(ctx, ref, dist, 352, 288, "420", 8, progress=lambda i, n: seen.append((i, n)))
    assert seen[-1] == (12, 12) and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))


def test_libvmaf_threads_split_between_the_two_roi_score_passes(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """With roi_score, two libvmaf processes run side by side and share the threads (same speed, less memory)."""
    import imageio_ffmpeg

    ref, dist = pair
    log = tmp_path / "args.txt"
    env = _fake_ffmpeg(tmp_path, f'echo "$@" >> {log}; exec {imageio_ffmpeg.get_ffmpeg_exe()} "$@"')
    p = _vmaf(ref, dist, tmp_path / "a.json", "--feature", "mobilesal:roi_score=1", "--frame_cnt", "2",
              "--threads", "4", env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    runs = [ln for ln in log.read_text().splitlines() if "libvmaf=" in ln]
    assert len(runs) == 2 and all("n_threads=2:" in r for r in runs)
    log.unlink()
    p = _vmaf(ref, dist, tmp_path / "b.json", "--feature", "mobilesal", "--frame_cnt", "2", "--threads", "4", env=env)
    assert p.returncode == 0, p.stderr
    runs = [ln for ln in log.read_text().splitlines() if "libvmaf=" in ln]
    assert len(runs) == 1 and "n_threads=4:" in runs[0]


def test_frames_pair_by_index_whatever_the_rates(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """libvmaf pairs its inputs by timestamp; ours must pair by index. The same pictures as raw YUV (no rate),
    12 fps Y4M, 29.97 fps MP4 and 50 fps MKV must score as a direct libvmaf run on the two raw files does."""
    ref, dist = pair
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "352x288"]
    ref12 = tmp_path / "ref12.y4m"
    _ffmpeg(*raw, "-r", "12", "-i", str(ref), "-f", "yuv4mpegpipe", str(ref12))
    dist30 = tmp_path / "dist30.mp4"  # lossless, so its frames are the raw distorted frames
    _ffmpeg(*raw, "-r", "30000/1001", "-i", str(dist), "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast",
            str(dist30))  # fmt: skip
    dist50 = tmp_path / "dist50.mkv"
    _ffmpeg(*raw, "-r", "50", "-i", str(dist), "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", str(dist50))
    direct = [f["metrics"]["vmaf"] for f in _direct(dist, ref, tmp_path)["frames"]]
    for r, d in [(ref, dist30), (ref12, dist), (ref12, dist30), (dist50, ref12), (ref12, dist50)]:
        out = tmp_path / "s.json"
        p = _vmaf(r, d, out)
        assert p.returncode == 0, p.stderr
        ours = _frames(out, "vmaf")
        if d == ref12:  # the pair the other way round: a different, but still frame-by-frame, score
            back = [f["metrics"]["vmaf"] for f in _direct(ref, dist, tmp_path)["frames"]]
            assert len(ours) == 12 and np.max(np.abs(np.subtract(ours, back))) <= 0.01, (r, d)
        else:
            assert len(ours) == 12 and np.max(np.abs(np.subtract(ours, direct))) <= 0.01, (r, d)
    # identical pictures in containers of different rates score ~100, also the saliency-masked pass
    out = tmp_path / "same.json"
    p = _vmaf(ref12, ref, out, "--feature", "mobilesal:roi_score=1")
    assert p.returncode == 0, p.stderr
    pooled = json.loads(out.read_text())["pooled_metrics"]
    assert pooled["vmaf"]["min"] > 97 and pooled["vmaf_masked"]["min"] > 97, pooled


def test_roi_score_on_two_containers(video_dir: Path, tmp_path: Path) -> None:
    """The README's `-r ref.mp4 -d dist.mp4 --feature mobilesal:roi_score=1` on the shared foreman clip (it failed
    when the masked copy, piped at an assumed 25 fps, was paired by timestamp with a 29.97 fps reference)."""
    clip = video_dir / "foreman_cif_60f_h264.mp4"
    out = tmp_path / "s.json"
    p = run_cli("vmaf", "-r", str(clip), "-d", str(clip), "--feature", "mobilesal:roi_score=1", "--frame_cnt", "20",
                "-q", "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert len(doc["frames"]) == 20
    assert doc["pooled_metrics"]["vmaf_masked"]["min"] > 97 and doc["pooled_metrics"]["vmaf_roi"]["min"] > 97


@pytest.mark.parametrize("one_decode", ["1", "0"])
def test_colour_tags_that_differ_convert_no_input(pair: tuple[Path, Path], tmp_path: Path, one_decode: str) -> None:
    """A BT.709-tagged reference beside a BT.601-tagged encode (or beside the masked copy on stdin, which has no
    tags): FFmpeg negotiates colour properties between libvmaf's inputs and converted one through RGB to the
    other's matrix (VMAF 0.3-0.4 low here, vmaf_masked 0.6-0.8 on FFV1 clips). Scores are of the planes as decoded,
    as libvmaf's own tool reads them: equal to a direct run on the raw planes, on both routes."""
    ref, dist = (_head(c, 4, tmp_path) for c in pair)
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "352x288"]
    # lossless copies of the same planes, tagged (setparams: an output -colorspace would convert the planes)
    ref_mkv, dist_mkv = tmp_path / "ref709.mkv", tmp_path / "dist601.mkv"
    _ffmpeg(*raw, "-i", str(ref), "-vf", "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709",
            "-c:v", "ffv1", str(ref_mkv))  # fmt: skip
    _ffmpeg(*raw, "-i", str(dist), "-vf", "setparams=colorspace=bt470bg:color_primaries=bt470bg:color_trc=smpte170m",
            "-c:v", "ffv1", str(dist_mkv))  # fmt: skip
    env = {"TINYSAL_ONE_DECODE": one_decode}
    out = tmp_path / "s.json"
    p = run_cli("vmaf", "-r", str(ref_mkv), "-d", str(dist_mkv), "-o", str(out), "-q", env=env)
    assert p.returncode == 0, p.stderr
    assert _frames(out, "vmaf") == [f["metrics"]["vmaf"] for f in _direct(dist, ref, tmp_path)["frames"]]
    # alpha 0 everywhere: the masked copy is the reference, and scores as the reference against itself
    p = run_cli("vmaf", "-r", str(ref_mkv), "-d", str(dist_mkv), "--feature", "mobilesal:roi_score=1:roi_threshold=2",
                "-o", str(out), "-q", env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    itself = [f["metrics"]["vmaf"] for f in _direct(ref, ref, tmp_path)["frames"]]
    assert np.allclose(_frames(out, "vmaf_masked"), itself, atol=1e-6)


def test_kill_9_of_vmaf_takes_its_ffmpeg_child_along(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """No cleanup code runs on SIGKILL; the FFmpeg child (in its own session) must still not outlive vmaf."""
    ref, dist = pair
    long_ref, long_dist = tmp_path / "kr.yuv", tmp_path / "kd.yuv"
    long_ref.write_bytes(ref.read_bytes() * 150)
    long_dist.write_bytes(dist.read_bytes() * 150)
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinysal.cli.vmaf", "-r", str(long_ref), "-d", str(long_dist), "-w", "352", "-h",
         "288", "-o", str(tmp_path / "s.json")],
        stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    child = "file:" + str(long_ref)  # FFmpeg's argument, not vmaf's

    def running() -> bool:
        return child in subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout

    deadline = time.time() + 60
    while time.time() < deadline and not running():
        time.sleep(0.05)
    assert running(), "the FFmpeg child never started"
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.time() + 5  # the whole run takes far longer: a child still scoring would be seen
    while time.time() < deadline and running():
        time.sleep(0.1)
    assert not running()


def test_a_wedged_ffmpeg_is_stopped_with_one_line(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, dist = pair
    out = tmp_path / "s.json"
    env = _fake_ffmpeg(tmp_path, "sleep 600")  # never scores a frame, never exits
    env.update(TMPDIR=str(tmp_path), TINYSAL_FFMPEG_STALL_SECONDS="2")
    t0 = time.time()
    p = _vmaf(ref, dist, out, env=env)
    assert_clean_error(p, "no progress for 2 s")
    assert time.time() - t0 < 60 and not out.exists() and not list(tmp_path.glob("tinysal-vmaf*"))


def test_a_smaller_distorted_is_scaled_as_ffmpeg_would(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """A 176x144 distorted against the 352x288 reference: libvmaf on the distorted scaled with the named scaler,
    frame for frame what a direct FFmpeg scale + libvmaf gives; the output says it was scaled and how."""
    ref, dist = pair
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "352x288"]
    small = tmp_path / "small.mp4"
    _ffmpeg(*raw, "-i", str(dist), "-vf", "scale=176:144", "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast",
            str(small))  # fmt: skip
    log = tmp_path / "direct.json"
    for scaler in ("bicubic", "lanczos"):
        _ffmpeg("-i", str(small), *raw, "-i", str(ref), "-lavfi",
                f"[0:v]scale=w=352:h=288:flags={scaler}[d];[d][1:v]libvmaf=log_fmt=json:log_path={log}", "-f", "null",
                "-")  # fmt: skip
        direct = [f["metrics"]["vmaf"] for f in json.loads(log.read_text())["frames"]]
        out = tmp_path / f"{scaler}.json"
        p = run_cli("vmaf", "-r", str(ref), "-d", str(small), "-w", "352", "-h", "288", "--scaler", scaler, "-q", "-o",
                    str(out), "--feature", "mobilesal")  # fmt: skip
        assert p.returncode == 0 and "scaled to 352x288" in p.stderr, p.stderr
        doc = json.loads(out.read_text())
        assert _frames(out, "vmaf") == direct and len(direct) == 12
        assert doc["scaling"] == {"distorted": "176x144", "scaled_to": "352x288", "scaler": scaler}
        assert "saliency_mean" in doc["pooled_metrics"]
    xml = run_cli("vmaf", "-r", str(ref), "-d", str(small), "-w", "352", "-h", "288", "-q", "--xml").stdout
    assert '<params qualityWidth="352" qualityHeight="288" distortedSize="176x144" scaler="bicubic" />' in xml
    base = ["vmaf", "-r", str(ref), "-d", str(small), "-w", "352", "-h", "288", "-q"]
    assert_clean_error(run_cli(*base, "--no-scale"), "but distorted is 176x144 (scaling is off)")
    # roi_score scales it too (issue 38); where only full-size Python pixels would do (psnr_saliency without
    # roi_score, or saliency maps written out), it is still one line
    assert run_cli(*base, "--feature", "mobilesal:roi_score=1").returncode == 0
    assert_clean_error(run_cli(*base, "--feature", "mobilesal:psnr_saliency=1"), "pixel by pixel")


def test_a_converted_rate_is_refused_a_relabelled_one_scored(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, _ = pair
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "352x288"]
    r25, r30, tag30 = tmp_path / "r25.mp4", tmp_path / "r30.mp4", tmp_path / "tag30.mp4"
    lossless = ["-c:v", "libx264", "-qp", "0", "-preset", "ultrafast"]
    _ffmpeg(*raw, "-r", "25", "-i", str(ref), *lossless, str(r25))
    _ffmpeg("-i", str(r25), "-r", "30", *lossless, str(r30))  # converted: frames repeated over the same duration
    _ffmpeg(*raw, "-r", "30", "-i", str(ref), *lossless, str(tag30))  # the same 12 pictures, labelled 30 fps
    p = run_cli("vmaf", "-r", str(r25), "-d", str(r30), "-q")
    assert_clean_error(p, "reference is 25 fps (12 frames) but distorted is 30 fps", "convert the distorted")
    out = tmp_path / "s.json"
    p = run_cli("vmaf", "-r", str(r25), "-d", str(tag30), "-q", "-o", str(out))
    assert p.returncode == 0 and "same frame count: scored frame by frame" in p.stderr, p.stderr
    assert min(_frames(out, "vmaf")) > 97


def test_dist_delay_pairs_a_late_distorted(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """A distorted that starts 3 frames late (3 other frames, then the reference's): with --dist-delay 3 each frame
    meets its own, as with --frame_skip_dist 3; without it every frame meets another."""
    ref, dist = pair
    frame = 352 * 288 * 3 // 2
    late = tmp_path / "late.yuv"
    late.write_bytes(dist.read_bytes()[-3 * frame:] + ref.read_bytes())
    scores = {}
    for name, extra in (("none", []), ("delay", ["--dist-delay", "3"]), ("skip", ["--frame_skip_dist", "3"])):
        out = tmp_path / f"{name}.json"
        assert _vmaf(ref, late, out, *extra).returncode == 0
        scores[name] = _frames(out, "vmaf")
    assert scores["delay"] == scores["skip"] and len(scores["delay"]) == 12 and min(scores["delay"]) > 97
    assert np.mean(scores["none"]) < np.mean(scores["delay"]) - 10
