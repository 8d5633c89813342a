"""The README's exit-code table, for every command: 0 done; 1 the command ran to the end and the answer is "no"
(a check failed, a target cannot be reached, jobs failed); 2 it could not run (bad usage, bad input), one line and
no traceback; 130 Ctrl-C; 143 SIGTERM/SIGHUP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMOKE, assert_clean_error, run_cli

MISSING = "/nonexistent/nope"
#: every command with arguments that name a missing file (the input it reads first)
BAD_INPUT = {
    "export": ["--output", "x.onnx", MISSING],
    "check-ops": [MISSING],
    "cost": [MISSING],
    "parity": [MISSING, MISSING],
    "train": [MISSING],
    "plot-run": ["--output", "x.png", MISSING],
    "calibrate": ["--metrics", MISSING, "--output", "x.pt", MISSING, MISSING],
    "roi-maps": [MISSING, "maps"],
    "encode": [MISSING, "x.mp4"],
    "roi-eval": [MISSING, "--sequences", "a"],
    "crf-search": [MISSING, "--min-vmaf", "90"],
    "auto-encode": [MISSING, "o.mp4", "--min-vmaf", "90", "--per-shot"],
    "report": [MISSING],
    "ladder": [MISSING],
    "validate-registry": ["--registry", MISSING],
    "validate-model": [MISSING],
    "eval": [MISSING, MISSING],
    "score": ["-r", MISSING, "-d", MISSING],
    "batch": [MISSING + ".csv", "--out", "o"],
}


def test_every_command_is_in_the_table() -> None:
    from tinysal.cli.main import COMMANDS

    assert set(BAD_INPUT) | {"sample"} == set(COMMANDS)


@pytest.mark.parametrize("cmd", sorted(BAD_INPUT))
def test_bad_usage_and_bad_input_exit_2_in_one_line(cmd: str, tmp_path: Path) -> None:
    p = run_cli("tinysal", cmd, *BAD_INPUT[cmd], "--no-such-flag", cwd=tmp_path)
    assert_clean_error(p, "--no-such-flag")
    assert p.returncode == 2
    p = run_cli("tinysal", cmd, *BAD_INPUT[cmd], cwd=tmp_path)
    assert_clean_error(p)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "nope" in p.stderr, p.stderr  # it names what is missing
    assert sorted(x.name for x in tmp_path.iterdir()) == []  # and writes nothing


def test_sample_and_vmaf_entry_point(tmp_path: Path) -> None:
    assert run_cli("tinysal", "sample").returncode == 0
    assert run_cli("tinysal", "sample", "--bogus").returncode == 2
    p = run_cli("vmaf", "-r", MISSING, "-d", MISSING)
    assert p.returncode == 2 and "nope" in p.stderr


def test_a_failed_check_exits_1(tmp_path: Path) -> None:
    """validate-model on a model outside the registry, check-ops on a model that breaks the contract, a batch with
    a failed job, a crf-search whose target no CRF reaches: each ran to the end; the answer is no."""
    bad = tmp_path / "bad.onnx"
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), bad)
    assert run_cli("tinysal", "check-ops", str(bad)).returncode == 1
    assert run_cli("tinysal", "validate-model", str(bad)).returncode == 1
    (tmp_path / "v.mp4").write_text("not a video")
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"id": "a", "task": "score", "reference": "v.mp4", "distorted": "v.mp4",
                             "no_prediction": True, "feature": ["psnr"]}) + "\n")  # fmt: skip
    assert run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "o"), "-q").returncode == 1
    sample = run_cli("tinysal", "sample").stdout.strip()
    p = run_cli("tinysal", "crf-search", sample, "--min-vmaf", "100", "--samples", "1", "--sample-seconds", "0.5",
                "--frame_cnt", "24", "--preset", "ultrafast", "--min-crf", "40", "--max-crf", "51",
                "--out-json", str(tmp_path / "cs.json"))  # fmt: skip
    assert p.returncode == 1 and "no CRF in 40..51 reaches vmaf >= 100" in p.stderr, p.stderr
    assert not (tmp_path / "cs.json").exists()
    assert SMOKE.is_file()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 143)])
def test_signals_exit_130_and_143(tmp_path: Path, sig: int, code: int) -> None:
    sample = run_cli("tinysal", "sample").stdout.strip()
    out = tmp_path / "o.mp4"
    p = subprocess.Popen([sys.executable, "-m", "tinysal.cli.main", "encode", sample, str(out), "--preset",
                          "veryslow", "-q"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    t = time.time()
    while not any(tmp_path.glob(".o.mp4*")) and time.time() - t < 60:
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "Traceback" not in err and not out.exists() and not list(tmp_path.iterdir())
