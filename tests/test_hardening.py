"""Hardening: outputs honour the umask; more hostile-input cases live beside the features they attack."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    out = tmp_path / "o.json"
    code = f"import os; os.umask({umask}); from tinysal.fileio import write_json; write_json({str(out)!r}, {{}})"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert stat.S_IMODE(os.stat(out).st_mode) == mode


def _clip(tmp_path: Path) -> Path:
    import numpy as np
    from conftest import write_yuv_clip

    rng = np.random.default_rng(0)
    return write_yuv_clip(tmp_path / "c.yuv", [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2)])


def _score(clip: Path, *extra: str) -> subprocess.CompletedProcess:
    from conftest import run_cli

    return run_cli("vmaf", "-r", str(clip), "-d", str(clip), "-w", "64", "-h", "48", "--feature", "mobilesal",
                   "--no_prediction", "-q", *extra)  # fmt: skip


@pytest.mark.parametrize(
    "header,needle",
    [
        (b"YUV4MPEG2 Wabc H48 F25:1 C420\n", "W'abc'"),
        (b"YUV4MPEG2 W64 H4x8 F25:1 C420\n", "H'4x8'"),
        (b"YUV4MPEG2 W64 H48 Fx:1 C420\n", "F'x'"),
        (b"YUV4MPEG2 W64 H48 F25 C420\n", "NUM:DEN"),
        (b"YUV4MPEG2 W64 H48 F25:1 A1:z C420\n", "A'z'"),
        (b"YUV4MPEG2 W99999999999 H48 F25:1 C420\n", "whole number"),
        (b"YUV4MPEG2 W-64 H48 C420\n", "whole number"),
    ],
)
def test_malformed_y4m_headers(tmp_path: Path, header: bytes, needle: str) -> None:
    from conftest import assert_clean_error, run_cli

    f = tmp_path / "bad.y4m"
    f.write_bytes(header + b"FRAME\n" + bytes(64 * 48 * 3 // 2))
    out = tmp_path / "o.json"
    p = run_cli("vmaf", "-r", str(f), "-d", str(f), "--feature", "mobilesal", "--no_prediction", "-o", str(out))
    assert_clean_error(p, needle, "bad.y4m")
    assert not out.exists()


def test_output_through_a_symlink_writes_the_target(tmp_path: Path) -> None:
    clip = _clip(tmp_path)
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert _score(clip, "-o", str(link)).returncode == 0
    assert link.is_symlink() and '"saliency_mean"' in target.read_text()


def test_output_to_dev_stdout_and_a_fifo(tmp_path: Path) -> None:
    clip = _clip(tmp_path)
    p = _score(clip, "-o", "/dev/stdout")
    assert p.returncode == 0 and '"frameNum": 1' in p.stdout
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    assert _score(clip, "-o", str(fifo)).returncode == 0
    assert '"saliency_mean"' in reader.communicate(timeout=30)[0]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # not replaced by a regular file


def test_full_disk_and_failing_stdout_are_one_line(tmp_path: Path) -> None:
    from conftest import assert_clean_error

    clip = _clip(tmp_path)
    if Path("/dev/full").exists():
        assert_clean_error(_score(clip, "-o", "/dev/full"), "no space")
        # stdout itself on a full device
        with open("/dev/full", "w") as full:
            p = subprocess.run([sys.executable, "-m", "tinysal.cli.vmaf", "-r", str(clip), "-d", str(clip), "-w", "64",
                                "-h", "48", "--feature", "mobilesal", "--no_prediction", "-q"],
                               stdout=full, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert p.returncode != 0 and "Traceback" not in p.stderr and "No space" in p.stderr
        assert "Exception ignored" not in p.stderr
    # stdout closed
    p = subprocess.run([sys.executable, "-m", "tinysal.cli.vmaf", "-r", str(clip), "-d", str(clip), "-w", "64", "-h",
                        "48", "--feature", "mobilesal", "--no_prediction", "-q"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, close_fds=True)  # fmt: skip
    assert p.returncode == 0


def test_pixel_format_name_and_bitdepth(tmp_path: Path) -> None:
    import numpy as np
    from conftest import assert_clean_error, run_cli, write_yuv_clip

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    c10 = write_yuv_clip(tmp_path / "c10.yuv", frames, bitdepth=10)
    base = ["vmaf", "-r", str(c10), "-d", str(c10), "-w", "64", "-h", "48", "--feature", "mobilesal",
            "--no_prediction", "-q"]  # fmt: skip
    assert_clean_error(run_cli(*base, "-p", "yuv420p10le", "-b", "8"), "is 10-bit but --bitdepth is 8")
    assert run_cli(*base, "-p", "yuv420p10le").returncode == 0  # the name implies 10-bit
    assert_clean_error(run_cli(*base, "-p", "yuv420p10be"), "big-endian")
    # 16-bit data read as 10-bit: samples above 1023
    big = tmp_path / "big.yuv"
    big.write_bytes(np.full(64 * 48 * 3 // 2 * 2, 4000, "<u2").tobytes())
    assert_clean_error(run_cli("vmaf", "-r", str(big), "-d", str(big), "-w", "64", "-h", "48", "-b", "10",
                               "--feature", "mobilesal", "--no_prediction"), "above 10-bit's 1023")  # fmt: skip


def _onnx_model(path: Path, kind: str) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((1, 3, 1, 1), np.nan if kind == "nan" else 0.1, np.float32)
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"])]
    if kind == "shape":
        nodes.append(helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]))
        nodes.append(helper.make_node("Sigmoid", ["p"], ["saliency_map"]))
    else:
        nodes.append(helper.make_node("Sigmoid", ["c"], ["saliency_map"]))
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("saliency_map", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, path)
    return path


@pytest.mark.parametrize("kind,needle", [("shape", "not [1,1,"), ("nan", "NaN")])
def test_models_are_probed_at_load(tmp_path: Path, kind: str, needle: str) -> None:
    from conftest import assert_clean_error, make_blob_dataset, run_cli

    model = _onnx_model(tmp_path / f"{kind}.onnx", kind)
    clip = _clip(tmp_path)
    out = tmp_path / "o.json"
    assert_clean_error(_score(clip, "--feature_params", f"mobilesal:model_path={model}", "-o", str(out)), needle)
    assert not out.exists()
    root = make_blob_dataset(tmp_path / "ds", n_groups=1, per_group=2)
    assert_clean_error(run_cli("tinysal", "eval", str(model), str(root)), needle)


def test_side_output_failing_after_the_score_keeps_the_score(tmp_path: Path) -> None:
    from conftest import assert_clean_error

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    clip = _clip(tmp_path)
    out = tmp_path / "s.json"
    maps = tmp_path / "maps"
    p = _score(clip, "-o", str(out), "--saliency-out", str(maps), "--contact-sheet", "/dev/full")
    assert_clean_error(p, "no space")
    assert '"saliency_mean"' in out.read_text()  # finished before the failing output: kept, complete
    assert sorted(f.name for f in maps.iterdir()) == ["000000.png", "000001.png"]
    assert not list(tmp_path.glob(".maps.~*"))


@pytest.mark.parametrize("sig,code", [("INT", 130), ("TERM", 143)])
def test_interrupted_run_leaves_no_partial_maps_or_temp_files(tmp_path: Path, sig: str, code: int) -> None:
    import signal
    import time

    import numpy as np
    from conftest import interruptible, write_yuv_clip

    rng = np.random.default_rng(0)
    clip = write_yuv_clip(tmp_path / "long.yuv", [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)] * 2)
    clip.write_bytes(clip.read_bytes() * 300)  # 600 frames
    maps, out = tmp_path / "maps", tmp_path / "s.json"
    proc = subprocess.Popen([sys.executable, "-m", "tinysal.cli.vmaf", "-r", str(clip), "-d", str(clip), "-w", "320",
                             "-h", "240", "--feature", "mobilesal", "--saliency-out", str(maps), "-o", str(out)],
                            stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and not any(len(list(d.iterdir())) > 3 for d in tmp_path.glob(".maps.~*")):
        time.sleep(0.05)
    proc.send_signal(getattr(signal, f"SIG{sig}"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert not maps.exists() and not out.exists()
    assert not list(tmp_path.glob(".*"))  # no partial folder, no temp file


def test_truncated_container_warns_with_the_count(tmp_path: Path, video_dir: Path) -> None:
    import json

    import imageio_ffmpeg

    mkv = tmp_path / "f.mkv"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i",
                    str(video_dir / "foreman_cif_60f_h264.mp4"), "-c", "copy", str(mkv)], check=True)  # fmt: skip
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    from conftest import run_cli

    out = tmp_path / "s.json"
    p = run_cli("vmaf", "-r", str(cut), "-d", str(cut), "--feature", "mobilesal", "--no_prediction", "-o", str(out))
    assert p.returncode == 0, p.stderr
    n = len(json.loads(out.read_text())["frames"])
    assert 0 < n < 60 and f"only {n} frames can be read of the 60" in p.stderr and "warning" in p.stderr


@pytest.fixture
def shared_tmp(tmp_path: Path) -> Path:
    """Permission tests run the commands as root *without capabilities* (setpriv --bounding-set=-all), which
    makes root subject to permission bits like any user; the venv under /root stays reachable, unlike with a
    switch to another uid."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run commands without privileges")
    return tmp_path


def _as_nobody(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VMAF_MOBILESAL_MODEL_PATH"}
    return subprocess.run(["setpriv", "--bounding-set=-all", "--", sys.executable, "-m", *args],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


def test_non_root_permissions(shared_tmp: Path) -> None:
    from conftest import assert_clean_error

    clip = _clip(shared_tmp)
    base = ["tinysal.cli.vmaf", "-r", str(clip), "-d", str(clip), "-w", "64", "-h", "48", "--feature", "mobilesal",
            "--no_prediction", "-q"]  # fmt: skip
    p = _as_nobody(*base, "-o", "/dev/stdout")  # the libvmaf idiom works without privileges
    assert p.returncode == 0 and '"saliency_mean"' in p.stdout, p.stderr
    locked = shared_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    assert_clean_error(_as_nobody(*base, "-o", str(locked / "s.json")), "not writable")
    secret = shared_tmp / "secret.yuv"
    secret.write_bytes(clip.read_bytes())
    secret.chmod(0o000)
    p = _as_nobody("tinysal.cli.vmaf", "-r", str(secret), "-d", str(secret), "-w", "64", "-h", "48", "--feature",
                   "mobilesal", "--no_prediction", "-o", str(shared_tmp / "s.json"))  # fmt: skip
    assert_clean_error(p, "permission denied", "secret.yuv")
    assert not (shared_tmp / "s.json").exists()
    # a side output into a folder that may not be written: refused before any work, nothing written
    p = _as_nobody(*base, "-o", str(shared_tmp / "ok.json"), "--plot", str(locked / "p.png"))
    assert_clean_error(p, "not writable")
    assert not (shared_tmp / "ok.json").exists()
    locked.chmod(0o755)


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--threads", "5000"], "--threads"),
        (["--threads", "-1"], "--threads"),
        (["--feature_params", "mobilesal:short_side=100000"], "short_side must be"),
        (["--feature_params", "mobilesal:threads=9999"], "threads must be"),
        (["--feature_params", "mobilesal:extra_stats=banana"], "expected 1 or 0"),
        (["--feature_params", "mobilesal:roi_fade=0"], "roi_fade > 0"),
        (["--feature_params", "mobilesal:roi_threshold=abc"], "must be a number"),
        (["--frame_skip_ref", "-3"], "must be at least 0"),
        (["--subsample", "0"], "must be at least 1"),
    ],
)
def test_resource_bombs_and_bad_values_are_refused_up_front(tmp_path: Path, extra: list[str], needle: str) -> None:
    from conftest import assert_clean_error

    clip = _clip(tmp_path)
    out = tmp_path / "s.json"
    p = _score(clip, "-o", str(out), *extra)
    assert_clean_error(p, needle)
    assert "usage:" not in p.stderr and not out.exists()
