"""The trainer: dataset layouts, determinism, kill-and-resume, metrics JSON."""

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
from conftest import assert_clean_error, make_blob_dataset, run_cli

pytest.importorskip("torch")

TINY = [
    "--stages",
    "32:2,48:2",
    "--batch-size",
    "4",
    "--resize",
    "56",
    "--val-crop",
    "48",
    "--val-fraction",
    "0.25",
    "--lr",
    "0.003",
    "--seed",
    "7",
    "--quiet",
]
COMPARE = ("epoch", "crop", "train_loss", "val_loss", "val_iou", "lr")


def _trace(metrics: dict) -> list[tuple]:
    return [tuple(r[k] for k in COMPARE) for r in metrics["trace"]]


def test_layouts_and_pairing(tmp_path: Path) -> None:
    from tinysal.train.data import find_all_pairs, find_pairs, split_by_group

    g = make_blob_dataset(tmp_path / "generic", n_groups=3, per_group=2)
    d = make_blob_dataset(tmp_path / "duts", n_groups=2, per_group=3, layout="duts")
    pg, pd = find_pairs(g), find_pairs(d)
    assert len(pg) == 6 and {p.group for p in pg} == {"seq0", "seq1", "seq2"}
    assert len(pd) == 6 and all(p.mask.stem == p.image.stem for p in pd)
    both = find_all_pairs([g, d])
    assert len(both) == 12 and len({p.group for p in both}) == 3 + 6
    tr, va = split_by_group(pg, 0.3, seed=42)
    assert {p.group for p in tr}.isdisjoint({p.group for p in va}) and va


def test_missing_mask_and_empty_layout_errors(tmp_path: Path) -> None:
    root = make_blob_dataset(tmp_path / "ds", n_groups=1, per_group=2)
    next((root / "masks" / "seq0").glob("*.png")).unlink()
    out = tmp_path / "m.json"
    p = run_cli("tinysal", "train", str(root), *TINY, "--out-dir", str(tmp_path / "run"), "--metrics-out", str(out))
    assert_clean_error(p, "no mask for 1 image", str(root / "masks"))
    assert not out.exists()
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    assert_clean_error(
        run_cli("tinysal", "train", str(empty), "--out-dir", str(tmp_path / "r2")),
        "no image/mask pairs",
        str(empty / "images"),
    )
    assert_clean_error(run_cli("tinysal", "train", str(tmp_path / "nowhere")), "dataset root not found")
    odd = tmp_path / "odd"
    odd.mkdir()
    assert_clean_error(run_cli("tinysal", "train", str(odd)), "no dataset layout")


def test_training_is_deterministic_and_exports(tmp_path: Path) -> None:
    root = make_blob_dataset(tmp_path / "ds")
    runs = []
    for k in range(2):  # the second run exports its last epoch instead: the same training, another pick
        out = tmp_path / f"m{k}.json"
        p = run_cli(
            "tinysal",
            "train",
            str(root),
            *TINY,
            *(["--select", "last"] if k else []),
            "--out-dir",
            str(tmp_path / f"run{k}"),
            "--metrics-out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        )
        assert p.returncode == 0, p.stderr
        runs.append(json.loads(out.read_text()))
    a, b = runs
    assert _trace(a) == _trace(b)
    assert [r["crop"] for r in a["trace"]] == [32, 32, 48, 48]
    assert a["param_count"] == 123_721
    assert a["parity_max_abs_diff"] <= 1e-5 and a["op_check"] is True
    prov = a["run_provenance"]
    assert prov["datasets"][0]["pairs"] == 16 and len(prov["datasets"][0]["content_sha256"]) == 64
    assert prov["args"]["seed"] == 7 and prov["versions"]["torch"]
    for r in a["trace"]:
        assert {"epoch", "train_loss", "val_loss", "val_iou", "lr", "seconds", "images_per_s"} <= set(r)
    assert a["trace"][-1]["train_loss"] < a["trace"][0]["train_loss"]
    # the reference rule exports the best-IoU checkpoint, and it validates against its export
    assert a["selected"]["rule"] == "best" and a["selected"]["epoch"] == a["best_epoch"]
    onnx_path = tmp_path / "run0" / "saliency_student_v2.onnx"
    p = run_cli("tinysal", "validate-model", str(onnx_path), "--checkpoint", str(tmp_path / "run0" / "best.pt"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "run0" / "final.pt").is_file()
    # --select last exports the final epoch, and its export matches that checkpoint
    assert b["selected"] == {"rule": "last", "checkpoint": str(tmp_path / "run1" / "final.pt"), "epoch": 3,
                             "val_iou": b["trace"][-1]["val_iou"]}  # fmt: skip
    p = run_cli("tinysal", "parity", str(tmp_path / "run1" / "final.pt"), b["onnx"])
    assert p.returncode == 0, p.stderr


def _train_small(tmp_path: Path, *extra: str) -> dict:
    """Train the TINY recipe on a small blob set with extra options; return its metrics JSON."""
    root = make_blob_dataset(tmp_path / "ds", n_groups=2, per_group=4)
    out = tmp_path / "m.json"
    p = run_cli(
        "tinysal", "train", str(root), *TINY, *extra, "--out-dir", str(tmp_path / "r"), "--metrics-out", str(out)
    )
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    root = make_blob_dataset(tmp_path / "ds", n_groups=4, per_group=6)
    args = [
        "--stages",
        "32:6",
        "--batch-size",
        "4",
        "--resize",
        "48",
        "--val-crop",
        "32",
        "--val-fraction",
        "0.25",
        "--seed",
        "3",
        "--quiet",
        "--no-export",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    ref_out = tmp_path / "ref.json"
    p = run_cli("tinysal", "train", str(root), *args, "--out-dir", str(tmp_path / "ref"), "--metrics-out", str(ref_out))
    assert p.returncode == 0, p.stderr

    run_dir = tmp_path / "killed"
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinysal.cli.main", "train", str(root), *args, "--out-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    state = run_dir / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and state.stat().st_size > 0:
            import torch

            try:
                done = int(torch.load(state, weights_only=True)["epoch"]) + 1
            except Exception:  # caught mid-replace: try again
                done = 0
            if done >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    # without --resume the trainer refuses to overwrite the interrupted run, and --resume with other settings
    # refuses to continue it
    assert_clean_error(run_cli("tinysal", "train", str(root), *args, "--out-dir", str(run_dir)), "--resume")
    p = run_cli("tinysal", "train", str(root), *args, "--lr", "0.5", "--out-dir", str(run_dir), "--resume")
    assert_clean_error(p, "different configuration")
    out = tmp_path / "resumed.json"
    p = run_cli("tinysal", "train", str(root), *args, "--out-dir", str(run_dir), "--resume", "--metrics-out", str(out))
    assert p.returncode == 0, p.stderr
    assert _trace(json.loads(out.read_text())) == _trace(json.loads(ref_out.read_text()))


def test_cache_is_built_once_and_memory_mapped(tmp_path: Path) -> None:
    from dataclasses import replace

    import numpy as np

    from tinysal.train.data import PairCache, find_pairs, load_pair

    root = make_blob_dataset(tmp_path / "ds", n_groups=2, per_group=2)
    pairs = find_pairs(root)
    c1 = PairCache.build(pairs, 40, tmp_path / "cache", progress=False)
    stamp = (c1.folder / "images.u8").stat().st_mtime_ns
    c2 = PairCache.build(pairs, 40, tmp_path / "cache", progress=False)
    assert c2.folder == c1.folder and (c2.folder / "images.u8").stat().st_mtime_ns == stamp
    assert isinstance(c2.images, np.memmap)
    # the same files named by a relative path (another working directory) reuse the cache
    rel = [replace(p, image=Path(os.path.relpath(p.image)), mask=Path(os.path.relpath(p.mask))) for p in pairs]
    assert str(rel[0].image) != str(pairs[0].image)
    assert PairCache.build(rel, 40, tmp_path / "cache", progress=False).folder == c1.folder
    assert len(list((tmp_path / "cache").iterdir())) == 1
    img, mask = c2.get(1)
    ref_img, ref_mask = load_pair(pairs[1], 40)
    assert np.array_equal(img, ref_img) and np.array_equal(mask, ref_mask)
    assert min(mask.shape) == 40 and set(np.unique(mask)) <= {0, 255}


def test_iou_per_image() -> None:
    import numpy as np

    from tinysal.train.validation import iou_per_image

    gt = np.zeros((3, 4, 4), np.float32)
    gt[:, :2] = 1
    pred = np.zeros((3, 4, 4), np.float32)
    pred[0, :2] = 0.9  # perfect
    pred[1, :1] = 0.9  # half
    gt[2] = 0  # empty gt, empty prediction -> 1
    assert np.allclose(iou_per_image(pred, gt), [1.0, 0.5, 1.0])


def test_eta_uses_measured_epochs_and_scales_unseen_crops_by_pixels() -> None:
    from tinysal.train.trainer import eta_seconds

    assert eta_seconds([], [160, 256]) == 0.0  # nothing timed yet: no guess
    # a measured crop costs the mean of its epochs; an unseen one the nearest measured, scaled by pixels
    assert eta_seconds([(160, 70.0), (160, 90.0)], [160, 160, 320]) == pytest.approx(80 + 80 + 80 * 4)
    # once the new stage has a timed epoch, its own figure replaces the pixel estimate (here: cheaper than 2.56x)
    assert eta_seconds([(160, 80.0), (256, 150.0)], [256, 256]) == pytest.approx(300.0)
    # equidistant crops: the smaller one is the basis, deterministically
    assert eta_seconds([(128, 10.0), (256, 40.0)], [192]) == pytest.approx(10 * (192 / 128) ** 2)


def test_bf16_autocast_trains(tmp_path: Path) -> None:
    m = _train_small(tmp_path, "--amp", "bf16")
    assert m["run_provenance"]["args"]["amp"] == "bf16"
    assert all(r["train_loss"] == r["train_loss"] and r["train_loss"] < 5 for r in m["trace"])  # finite, sane
    assert m["parity_max_abs_diff"] <= 1e-5  # the export is float32 whatever the training precision


def _poisoned_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_batches: set[int]) -> dict:
    """Train in-process with the given batch numbers (counted over the run) turned into NaN images."""
    import numpy as np

    from tinysal.train import sampling, trainer
    from tinysal.train.config import TrainConfig

    real = sampling.make_train_batch
    calls = {"n": 0}

    def poisoned(*a, **k):
        imgs, masks = real(*a, **k)
        calls["n"] += 1
        if calls["n"] in bad_batches:
            imgs = np.full(np.shape(imgs), np.nan, np.float32)
        return imgs, masks

    monkeypatch.setattr(sampling, "make_train_batch", poisoned)
    root = make_blob_dataset(tmp_path / "ds", n_groups=2, per_group=4)
    cfg = TrainConfig(
        roots=[str(root)], out_dir=str(tmp_path / "r"), preset="cpu", stages=[[32, 2]], batch_size=2, resize=56,
        val_crop=48, val_fraction=0.25, seed=7, export=False,
    )  # fmt: skip
    return trainer.train(cfg, progress=False)


def test_a_non_finite_batch_is_skipped_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    m = _poisoned_run(tmp_path, monkeypatch, {2})
    assert [r.get("skipped_steps", 0) for r in m["trace"]] == [1, 0]
    assert m["trace"][0]["skipped_because"] == {"loss": 1, "gradient": 0}
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in m["trace"])
    state = torch.load(tmp_path / "r" / "last.pt", weights_only=True)["state_dict"]
    assert all(bool(torch.isfinite(v).all()) for v in state.values())  # weights and BatchNorm statistics


def test_many_non_finite_batches_in_a_row_stop_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinysal.errors import TinysalError

    with pytest.raises(TinysalError, match="diverged at epoch 1 .*non-finite loss or gradient.*last.pt"):
        _poisoned_run(tmp_path, monkeypatch, set(range(1, 1000)))


def test_init_fine_tunes_from_a_runs_checkpoint(tmp_path: Path) -> None:
    """--init starts from a checkpoint's weights (not a random draw): the first epoch's validation is already
    the checkpoint's level; a checkpoint of another architecture, a missing one, or one inside --out-dir (whose
    best.pt the run rewrites) is refused before any work. A run without --init keeps its old fingerprint."""
    from tinysal.train.config import TrainConfig

    base = _train_small(tmp_path / "a")
    start = tmp_path / "start.pt"
    start.write_bytes((tmp_path / "a" / "r" / "best.pt").read_bytes())
    tuned = _train_small(tmp_path / "b", "--init", str(start), "--stages", "48:1")
    scratch = _train_small(tmp_path / "c", "--stages", "48:1")
    assert tuned["trace"][0]["val_iou"] > scratch["trace"][0]["val_iou"]
    assert abs(tuned["trace"][0]["val_iou"] - base["best_val_iou"]) < abs(scratch["trace"][0]["val_iou"] -
                                                                          base["best_val_iou"])  # fmt: skip
    root = make_blob_dataset(tmp_path / "ds", n_groups=2, per_group=1)
    for init, needle in ((str(tmp_path / "nope.pt"), "no such checkpoint"),
                         (str(tmp_path / "a" / "r" / "best.pt"), "rewrites")):  # fmt: skip
        out = tmp_path / "a" / "r" if needle == "rewrites" else tmp_path / "x"
        p = run_cli("tinysal", "train", str(root), *TINY, "--init", init, "--out-dir", str(out))
        assert_clean_error(p, needle)
    p = run_cli("tinysal", "train", str(root), *TINY, "--arch", "saliency_student_v1", "--init", str(start),
                "--out-dir", str(tmp_path / "y"))  # fmt: skip
    assert_clean_error(p, "not saliency_student_v1")
    assert "init" not in TrainConfig().fingerprint() and TrainConfig(init="x").fingerprint()["init"] == "x"


def test_structure_mae_loss_is_structure_plus_the_maps_mae() -> None:
    import torch

    from tinysal.train.step import recipe_loss

    t = torch.zeros(2, 1, 40, 40)
    t[:, :, 10:30, 10:30] = 1
    for logits in ((t * 2 - 1) * 6, torch.zeros_like(t), torch.randn(2, 1, 40, 40)):
        mae = float((torch.sigmoid(logits) - t).abs().mean())
        assert float(recipe_loss(torch, logits, t, "structure_mae")) == pytest.approx(
            float(recipe_loss(torch, logits, t, "structure")) + mae, abs=1e-6)
