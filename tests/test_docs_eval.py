"""The README's Python example runs as written; `tinysal eval` reports the SOD metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED, assert_clean_error, make_blob_dataset, run_cli


def test_readme_python_example_runs(video_dir: Path, tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("../shared/data/video", str(video_dir)).replace("../shared", str(SHARED))
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    nums = [float(x) for x in p.stdout.split()]
    assert len(nums) == 5
    sal_mean, vmaf_self, sal_mean5, sal0, sal_pooled = nums
    assert vmaf_self > 90  # a clip against itself
    assert all(0 <= v <= 1 for v in (sal_mean, sal_mean5, sal0, sal_pooled))
    doc = json.loads((tmp_path / "score.json").read_text())
    assert len(doc["frames"]) == 9


def test_readme_real_vmaf_commands_run_as_written(video_dir: Path, tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"score of a real pair.*?```sh\n(.*?)```", text, re.S).group(1)
    script = block.replace("../shared/data/video", str(video_dir)).replace("../shared", str(SHARED))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    p = subprocess.run(["bash", "-euc", script], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "score.json").read_text())
    assert len(doc["frames"]) == 60 and 30 < doc["pooled_metrics"]["vmaf"]["mean"] < 95
    assert "saliency_mean" in doc["pooled_metrics"] and (tmp_path / "score.png").stat().st_size > 10_000


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = next(ln for ln in ci.splitlines() if ln.startswith("python3 -m venv"))
    assert test_cmd in readme


def test_eval_reports_metrics(tmp_path: Path, smoke_model: Path) -> None:
    root = make_blob_dataset(tmp_path / "ds", n_groups=2, per_group=3)
    out = tmp_path / "eval.json"
    p = run_cli("tinysal", "eval", str(smoke_model), str(root), "--short-side", "64", "--out-json", str(out))
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())["datasets"][0]
    assert d["n_images"] == 6
    for k in ("iou", "mae", "max_f", "max_f_pr", "mean_f", "s_measure", "e_measure"):
        assert 0.0 <= d[k] <= 1.0, k
    assert d["max_f"] >= d["mean_f"]
    assert sum(b["n"] for b in d["by_size"].values()) == 6
    p = run_cli("tinysal", "eval", str(smoke_model), str(root), "--groups", "seq1", "--by-size")
    assert p.returncode == 0 and " 3 " in p.stdout and "fill" in p.stdout


def test_eval_by_object_size_shows_under_confidence() -> None:
    import numpy as np

    from tinysal.train.evaluate import _image_stats, by_size

    big = np.zeros((100, 100), bool)
    big[10:90, 10:90] = True  # 64% of the image
    small = np.zeros((100, 100), bool)
    small[40:50, 40:50] = True  # 1%
    timid = np.where(big, 0.4, 0.0).astype(np.float32)  # right shape, under-confident: lost at 0.5, kept at 0.3
    spilled = np.where(small, 1.0, 0.1).astype(np.float32)  # right object, a faint haze everywhere else
    stats = [_image_stats(timid, big, 0.0), _image_stats(spilled, small, 1.0)]
    b = by_size(stats)
    assert set(b) == {"large", "small"} and b["large"]["n"] == b["small"]["n"] == 1
    assert b["large"]["iou_03"] == 1.0 and b["large"]["fill"] == pytest.approx(0.4) and b["large"]["spill"] == 0.0
    assert b["small"]["fill"] == 1.0 and b["small"]["spill"] == pytest.approx(0.1)
    assert b["large"]["mae"] == pytest.approx(0.64 * 0.6, abs=1e-4)


def test_eval_production_beats_smoke_on_davis(davis: Path, smoke_model: Path) -> None:
    from tinysal.model.registry import default_model_path
    from tinysal.train.evaluate import evaluate

    groups = ["blackswan"]  # held out of training
    prod = evaluate(default_model_path(), [davis], 256, groups, progress=False)["datasets"][0]
    smoke = evaluate(smoke_model, [davis], 256, groups, progress=False)["datasets"][0]
    assert prod["max_f"] > smoke["max_f"] + 0.1 and prod["mae"] < smoke["mae"]


def test_eval_bad_input(tmp_path: Path, smoke_model: Path) -> None:
    assert_clean_error(run_cli("tinysal", "eval", str(smoke_model), str(tmp_path / "none")), "not found")
    root = make_blob_dataset(tmp_path / "ds", n_groups=1, per_group=2)
    assert_clean_error(run_cli("tinysal", "eval", str(smoke_model), str(root), "--groups", "zzz"), "none of the groups")


def test_readme_first_command_runs_on_the_bundled_sample(tmp_path: Path) -> None:
    """The first README command, after its install step, on a folder with nothing beside it."""
    import shlex
    import shutil

    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```sh\n(python3 -m venv .*?)\n```", readme, re.S).group(1)
    job = first.split("pip install -q -e . && ", 1)[1]
    assert "../shared" not in job and "tinysal sample" in job
    bindir = Path(sys.executable).parent
    assert shutil.which("tinysal", path=str(bindir)) and shutil.which("vmaf", path=str(bindir))
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    p = subprocess.run(["bash", "-c", "set -e; " + job], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "score.json").read_text())
    assert len(doc["frames"]) == 132
    assert 30 < doc["pooled_metrics"]["vmaf"]["mean"] < 95 and "saliency_mean" in doc["pooled_metrics"]
    assert (tmp_path / "score.png").read_bytes()[:4] == b"\x89PNG"
    clip = Path(subprocess.run(["tinysal", "sample"], env=env, capture_output=True, text=True).stdout.strip())
    assert clip.is_file() and clip.stat().st_size <= 1_000_000
    assert "Creative Commons Attribution 3.0" in (clip.parent / "ATTRIBUTION.md").read_text()
    assert shlex.split(job)  # a well-formed shell line
