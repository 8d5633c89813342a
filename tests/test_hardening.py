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
            p = subprocess.run([sys.executable, "-m", "tinysal.vmaf_cli", "-r", str(clip), "-d", str(clip), "-w", "64",
                                "-h", "48", "--feature", "mobilesal", "--no_prediction", "-q"],
                               stdout=full, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert p.returncode != 0 and "Traceback" not in p.stderr and "No space" in p.stderr
        assert "Exception ignored" not in p.stderr
    # stdout closed
    p = subprocess.run([sys.executable, "-m", "tinysal.vmaf_cli", "-r", str(clip), "-d", str(clip), "-w", "64", "-h",
                        "48", "--feature", "mobilesal", "--no_prediction", "-q"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, close_fds=True)  # fmt: skip
    assert p.returncode == 0
