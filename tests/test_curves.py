"""``tinysal plot-run``: training curves from a run's metrics or live trace JSON, and refusal of anything else."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli
from PIL import Image


def _trace(n: int, seed: int, stages: tuple[tuple[int, int], ...] = ((160, 3), (256, 2))) -> list[dict]:
    """A plausible per-epoch trace: losses falling, scores rising with noise, two sources."""
    rng = np.random.default_rng(seed)
    crops = [c for c, k in stages for _ in range(k)][:n]
    out = []
    for e in range(n):
        per = {s: {"images": 10, "iou": float(rng.uniform(0.3, 0.9)), "mae": float(rng.uniform(0.02, 0.3))}
               for s in ("DUTS-TR", "davis2016")}  # fmt: skip
        out.append({"epoch": e, "crop": crops[e], "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1),
                    "val_iou": float(np.mean([v["iou"] for v in per.values()])), "lr": 1e-3, "seconds": 1.0,
                    "images_per_s": 50.0, "val_per_source": per})  # fmt: skip
    return out


def _write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_plots_a_finished_and_a_running_run_side_by_side(tmp_path: Path) -> None:
    done = _trace(5, seed=1)
    best = max(done, key=lambda r: r["val_iou"])
    _write(tmp_path / "a" / "metrics.json", {"epochs": 5, "best_epoch": best["epoch"], "trace": done})
    running = _trace(3, seed=2)  # a run still going: only its trace.json exists
    _write(tmp_path / "b" / "trace.json", {"epochs": 5, "best_epoch": 1, "trace": running})
    png = tmp_path / "curves.png"
    p = run_cli("tinysal", "plot-run", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(png), "--title", "t")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == (f"a: 5/5 epochs, last validation score {done[-1]['val_iou']:.4f}, "
                        f"best epoch {best['epoch'] + 1} ({best['val_iou']:.4f})")  # fmt: skip
    assert lines[1] == f"b: 3/5 epochs, last validation score {running[-1]['val_iou']:.4f}, " \
        f"best epoch 2 ({running[1]['val_iou']:.4f})"
    im = Image.open(png)
    assert im.format == "PNG" and im.size == (1200, 750)
    # the curves are drawn: the first run's score line (matplotlib's C0 blue) and the second's (C1 orange)
    px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert (px == [31, 119, 180]).all(1).sum() > 300 and (px == [255, 127, 14]).all(1).sum() > 300


def test_a_run_folder_shows_its_newer_curves(tmp_path: Path) -> None:
    """A run started again in a finished run's folder: its live trace.json is newer than the old metrics.json."""
    run = tmp_path / "r"
    _write(run / "metrics.json", {"epochs": 5, "trace": _trace(5, seed=6)})
    os.utime(run / "metrics.json", (1_000_000_000, 1_000_000_000))
    _write(run / "trace.json", {"epochs": 5, "trace": _trace(2, seed=7)})
    p = run_cli("tinysal", "plot-run", str(run), "-o", str(tmp_path / "c.png"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("r: 2/5 epochs")
    os.utime(run / "trace.json", (900_000_000, 900_000_000))  # and the other way round
    p = run_cli("tinysal", "plot-run", str(run), "-o", str(tmp_path / "c.png"))
    assert p.stdout.startswith("r: 5/5 epochs")


def test_output_honours_the_umask(tmp_path: Path) -> None:
    _write(tmp_path / "m.json", {"trace": _trace(2, seed=3)})
    png = tmp_path / "c.png"
    old = os.umask(0o077)
    try:
        p = run_cli("tinysal", "plot-run", str(tmp_path / "m.json"), "-o", str(png))
    finally:
        os.umask(old)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    assert p.stdout.startswith("m: 2 epochs")  # no planned count, no best epoch: said as much as is known


def _bad_record(field: str, value: object) -> dict:
    tr = _trace(2, seed=4)
    tr[1][field] = value
    return {"trace": tr}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps([1, 2]), "no per-epoch 'trace'"),
        (json.dumps({"vmaf": 1}), "no per-epoch 'trace'"),
        (json.dumps({"trace": []}), "no finished epoch"),
        (json.dumps(_bad_record("val_iou", "high")), "trace record 1"),
        (json.dumps(_bad_record("epoch", True)), "trace record 1"),
        (json.dumps(_bad_record("val_per_source", {"x": {"iou": 0.5}})), "trace record 1"),
        (json.dumps({"trace": [None]}), "trace record 0"),
        (json.dumps(_bad_record("epoch", 10**400)), "trace record 1"),
        ('{"trace": [{"epoch": 0, "train_loss": NaN, "val_loss": 1, "val_iou": 0.5}]}', "trace record 0"),
    ],
)
def test_a_file_that_is_not_a_run_is_one_clear_line(tmp_path: Path, content: str, needle: str) -> None:
    src = tmp_path / "m.json"
    src.write_text(content)
    png = tmp_path / "c.png"
    p = run_cli("tinysal", "plot-run", str(src), "-o", str(png))
    assert_clean_error(p, needle, "m.json")
    assert not png.exists()


def test_missing_run_and_bad_labels(tmp_path: Path) -> None:
    png = tmp_path / "c.png"
    (tmp_path / "empty").mkdir()
    assert_clean_error(run_cli("tinysal", "plot-run", str(tmp_path / "empty"), "-o", str(png)), "no metrics.json")
    assert_clean_error(run_cli("tinysal", "plot-run", str(tmp_path / "nope.json"), "-o", str(png)), "not found")
    _write(tmp_path / "m.json", {"trace": _trace(2, seed=5)})
    p = run_cli("tinysal", "plot-run", str(tmp_path / "m.json"), "--labels", "a,b", "-o", str(png))
    assert_clean_error(p, "--labels needs one non-empty name per run (1)")
    p = run_cli("tinysal", "plot-run", str(tmp_path / "m.json"), "-o", str(tmp_path / "no" / "dir" / "c.png"))
    assert_clean_error(p)
    assert not png.exists()


def test_log_x_puts_the_epochs_on_a_log_axis(tmp_path: Path) -> None:
    """--log-x: every panel's epoch axis logarithmic (a score gaining the same per doubling is a line), and the CLI
    writes a different picture from the linear one."""
    from tinysal.train.curves import figure, load_run

    run = load_run(_write(tmp_path / "r" / "trace.json", {"epochs": 5, "trace": _trace(5, seed=3)}))
    assert {ax.get_xscale() for ax in figure([run], log_x=True).axes} == {"log"}
    assert {ax.get_xscale() for ax in figure([run]).axes} == {"linear"}
    lin, log = tmp_path / "lin.png", tmp_path / "log.png"
    for png, extra in ((lin, []), (log, ["--log-x"])):
        p = run_cli("tinysal", "plot-run", str(tmp_path / "r"), "-o", str(png), *extra)
        assert p.returncode == 0, p.stderr
    a, b = (np.asarray(Image.open(f).convert("L"), dtype=np.int16) for f in (lin, log))
    assert a.shape == b.shape and np.abs(a - b).mean() > 0.1
