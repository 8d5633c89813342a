"""The salient-object recipe (``--preset sod``): balanced multi-source sampling, random resized crops, composites,
the structure loss, EMA, per-source whole-image validation, bad training data and argument checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, make_blob_dataset, run_cli
from PIL import Image

torch = pytest.importorskip("torch")

SOD_TINY = [
    "--preset",
    "sod",
    "--stages",
    "32:1,48:1",
    "--epoch-samples",
    "24",
    "--batch-size",
    "4",
    "--resize",
    "56",
    "--val-crop",
    "48",
    "--val-fraction",
    "0.25",
    "--seed",
    "5",
    "--quiet",
]


def _backgrounds(folder: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / f"bg{k}.jpg")
    return folder


def test_balanced_sampling_weights_sources_then_groups() -> None:
    from tinysal.train.sampling import epoch_order

    # source A: one sequence of 100 frames; source B: 100 single-image groups. Weights 1:3.
    a = [list(range(100))]
    b = [[100 + k] for k in range(100)]
    idx = epoch_order(np.random.default_rng(0), 200, "balanced", 20000, [a, b], [1.0, 3.0])
    frac_a = float(np.mean(idx < 100))
    assert abs(frac_a - 0.25) < 0.02
    # within B every group is drawn about equally often
    counts = np.bincount(idx[idx >= 100] - 100, minlength=100)
    assert counts.min() > 0.5 * counts.mean() and counts.max() < 1.6 * counts.mean()
    # uniform sampling is a permutation of the training set
    perm = epoch_order(np.random.default_rng(0), 200, "uniform", 0, [a, b], [1.0, 3.0])
    assert sorted(perm.tolist()) == list(range(200))


def test_random_resized_crop_keeps_the_scene_and_composites_replace_background(tmp_path: Path) -> None:
    from tinysal.train.data import PairCache, find_pairs
    from tinysal.train.sampling import _rrc_window, make_train_batch

    rng = np.random.default_rng(0)
    for _ in range(200):
        y, x, ch, cw = _rrc_window(rng, 72, 96, (0.5, 1.0))
        assert 0 <= y and y + ch <= 72 and 0 <= x and x + cw <= 96
        assert ch * cw >= 0.5 * 72 * 96 * 0.7  # clipping to the image can shrink it a little, never to a fragment

    root = make_blob_dataset(tmp_path / "ds", n_groups=2, per_group=2)
    cache = PairCache.build(find_pairs(root), 72, tmp_path / "cache", progress=False)
    flat = [np.full((80, 100, 3), (0, 200, 0), np.uint8)]  # a plain green background
    imgs, masks = make_train_batch(
        cache, [0, 1, 2, 3], 48, np.random.default_rng(3), (1, 1), 0.0, [0], 0.0, "rrc", (0.9, 1.0), flat, 1.0
    )
    assert imgs.shape == (4, 48, 48, 3) and masks.shape == (4, 48, 48)
    for im, m in zip(imgs, masks):
        bg = m == 0
        assert bg.any() and (m == 255).any()
        assert np.all(im[bg] == (0, 200, 0))  # everything outside the object is the background photo
        assert np.all(im[m == 255][:, 0] >= 150)  # the object (bright ellipse) is kept


def test_colour_jitter_is_brightness_contrast_saturation() -> None:
    from tinysal.train.sampling import _colour_jitter

    def plain(img: np.ndarray, b: float, c: float, s: float) -> np.ndarray:
        f = img.astype(np.float32)
        grey = f.mean(axis=2, keepdims=True)
        f = (f - grey) * s + grey  # saturation about each pixel's grey
        f = (f - f.mean()) * c + f.mean()  # contrast about the image mean
        return np.clip(f * b, 0, 255).astype(np.uint8)  # brightness

    gen = np.random.default_rng(5)
    for k in range(20):
        img = gen.integers(0, 256, (24 + k, 31, 3), dtype=np.uint8)
        b, c, s = np.random.default_rng(k).uniform(0.7, 1.3, 3)
        assert np.array_equal(_colour_jitter(img, np.random.default_rng(k), 0.3), plain(img, b, c, s))
    flat = np.full((8, 8, 3), 100, np.uint8)  # no contrast or saturation to change: only brightness acts
    out = _colour_jitter(flat, np.random.default_rng(0), 0.3)
    b = np.random.default_rng(0).uniform(0.7, 1.3, 3)[0]
    assert np.all(out == np.uint8(100 * b)) and not np.array_equal(out, flat)


def test_structure_loss_rewards_confident_correct_maps() -> None:
    from tinysal.train.step import recipe_loss as _loss

    t = torch.zeros(2, 1, 40, 40)
    t[:, :, 10:30, 10:30] = 1
    good = (t * 2 - 1) * 6  # logits: confident and right
    soft = torch.zeros_like(t)  # 0.5 everywhere: the "much of any picture is salient" failure
    bad = -good
    lg, ls, lb = (float(_loss(torch, x, t, "structure")) for x in (good, soft, bad))
    assert lg < 0.05 < ls < lb
    # the boundary weight is the 31x31 box mean, computed separably
    F = torch.nn.functional
    box = F.avg_pool2d(t, 31, 1, 15)
    sep = F.avg_pool2d(F.avg_pool2d(t, (31, 1), 1, (15, 0)), (1, 31), 1, (0, 15))
    assert torch.allclose(box, sep, atol=1e-6)


def test_sod_preset_trains_on_several_sources_with_per_source_validation(tmp_path: Path) -> None:
    a = make_blob_dataset(tmp_path / "video", n_groups=4, per_group=4, seed=1)
    b = make_blob_dataset(tmp_path / "photos", n_groups=8, per_group=1, seed=2, layout="duts")
    bgs = _backgrounds(tmp_path / "bgs")
    out = tmp_path / "m.json"
    p = run_cli(
        "tinysal", "train", str(a), str(b), *SOD_TINY, "--backgrounds", str(bgs),
        "--source-weights", "video=1,photos=3", "--out-dir", str(tmp_path / "r"), "--metrics-out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    m = json.loads(out.read_text())
    assert set(m["sources"]) == {"video", "photos"}
    assert m["sources"]["photos"]["weight"] == pytest.approx(0.75)
    assert m["sources"]["video"]["groups"] == 3  # one of the four sequences is validation, whole
    # validation holds whole groups from every source, and is reported per source
    assert {g.split("/")[0] for g in m["val_groups"]} == {"video", "photos"}
    for r in m["trace"]:
        assert set(r["val_per_source"]) == {"video", "photos"}
        per = r["val_per_source"].values()
        assert r["val_iou"] == pytest.approx(np.mean([v["iou"] for v in per]), abs=1e-5)
    assert [r["crop"] for r in m["trace"]] == [32, 48]
    assert m["selected"]["rule"] == "best" and m["parity_max_abs_diff"] <= 1e-5
    cal = m["calibration"]  # the sod recipe ends with a calibration on the validation split, kept if it helps
    assert cal["a"] > 0 and m["selected"]["checkpoint"].endswith("calibrated.pt" if cal["kept"] else "best.pt")
    # the exported checkpoint holds the EMA weights, which differ from the raw optimiser weights
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=True)["state_dict"]
    raw = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert "ema" in raw and raw["ema_steps"] == 2 * (24 // 4)
    k = "enc1.0.weight"
    if m["best_epoch"] == 1:
        assert torch.equal(best[k], raw["ema"][k])
    assert not torch.equal(raw["ema"][k], raw["state_dict"][k])
    # the per-epoch trace.json (readable while a run goes on) holds the same curves, and plot-run draws them
    live = json.loads((tmp_path / "r" / "trace.json").read_text())
    assert live["trace"] == m["trace"] and live["best_epoch"] == m["best_epoch"] and live["epochs"] == 2
    assert live["val_groups"] == m["val_groups"] and len(m["val_groups"]) > 0
    png = tmp_path / "curves.png"
    p = run_cli("tinysal", "plot-run", str(tmp_path / "r"), str(out), "--labels", "dir,json", "-o", str(png))
    assert p.returncode == 0, p.stderr
    assert f"dir: 2/2 epochs, last validation score {m['trace'][-1]['val_iou']:.4f}" in p.stdout
    assert Image.open(png).format == "PNG"


def test_unknown_source_weight_and_missing_backgrounds_are_refused(tmp_path: Path) -> None:
    a = make_blob_dataset(tmp_path / "video", n_groups=2, per_group=2)
    p = run_cli("tinysal", "train", str(a), *SOD_TINY, "--source-weights", "nope=1", "--out-dir", str(tmp_path / "r"))
    assert_clean_error(p, "nope")
    p = run_cli("tinysal", "train", str(a), *SOD_TINY, "--out-dir", str(tmp_path / "r2"))
    assert_clean_error(p, "--backgrounds")
    assert not (tmp_path / "r2").exists()


def _corrupt(root: Path, kind: str, k: int = 1) -> Path:
    img = sorted((root / "images" / "seq1").glob("*.jpg"))[k]
    mask = root / "masks" / "seq1" / (img.stem + ".png")
    if kind == "truncated image":
        img.write_bytes(img.read_bytes()[:200])
    elif kind == "not an image":
        img.write_bytes(b"this is not a jpeg")
    elif kind == "mask size":
        Image.fromarray(np.full((10, 10), 255, np.uint8)).save(mask)
    elif kind == "empty mask":
        Image.fromarray(np.zeros((72, 96), np.uint8)).save(mask)
    elif kind == "no mask":
        mask.unlink()
    return img if kind in ("truncated image", "not an image", "no mask") else mask


BAD_DATA = [
    ("truncated image", "cannot read image"),
    ("not an image", "cannot read image"),
    ("mask size", "mask is 10x10"),
    ("empty mask", "empty mask"),
    ("no mask", "no mask for 1 image"),
]
SMALL_RUN = ["--stages", "32:1", "--batch-size", "4", "--resize", "40", "--val-crop", "32", "--val-fraction", "0.34",
             "--quiet", "--no-export"]  # fmt: skip


@pytest.mark.parametrize("kind,needle", BAD_DATA)
def test_bad_training_data_names_the_file(tmp_path: Path, kind: str, needle: str) -> None:
    root = make_blob_dataset(tmp_path / "ds", n_groups=3, per_group=3)
    bad = _corrupt(root, kind)
    p = run_cli("tinysal", "train", str(root), *SMALL_RUN, "--out-dir", str(tmp_path / "r"), "--metrics-out",
                str(tmp_path / "m.json"))  # fmt: skip
    assert_clean_error(p, needle, bad.name)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "r" / "last.pt").exists()


def test_skip_bad_trains_on_the_rest(tmp_path: Path) -> None:
    """Every kind of bad pair at once (one image each), skipped with --skip-bad, the rest trained on."""
    root = make_blob_dataset(tmp_path / "ds", n_groups=3, per_group=8)
    for k, (kind, _) in enumerate(BAD_DATA):
        _corrupt(root, kind, k)
    p = run_cli("tinysal", "train", str(root), *SMALL_RUN, "--skip-bad", "--out-dir", str(tmp_path / "r2"),
                "--metrics-out", str(tmp_path / "m2.json"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "skipped" in p.stderr and "Traceback" not in p.stderr
    m = json.loads((tmp_path / "m2.json").read_text())
    assert m["skipped_bad_pairs"] == 4  # read, found bad and skipped (the image without a mask is not a pair)
    assert m["train_pairs"] + m["val_pairs"] == 3 * 8 - 1 - 4


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinysal.errors import TinysalError
    from tinysal.train import data as D

    root = make_blob_dataset(tmp_path / "ds", n_groups=1, per_group=1)
    monkeypatch.setattr(D, "MAX_IMAGE_PIXELS", 1000)  # the blob images are 96x72 = 6912 pixels
    with pytest.raises(TinysalError, match="larger than 1,000 pixels"):
        D.load_pair(D.find_pairs(root)[0])


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "x"], "whole number"),
        (["--lr", "nan"], "finite"),
        (["--lr", "-1"], "positive"),
        (["--epochs", "-1"], "at least 1"),
        (["--scale-range", "1"], "LO,HI"),
        (["--scale-range", "2,1"], "LO <= HI"),
        (["--stages", "33:1"], "multiples of 8"),
        (["--stages", "abc"], "CROP:EPOCHS"),
        (["--composite", "2"], "[0, 1]"),
        (["--source-weights", "a"], "NAME=WEIGHT"),
        (["--ema", "inf"], "finite"),
    ],
)
def test_bad_training_arguments_fail_before_any_work(tmp_path: Path, args: list[str], needle: str) -> None:
    root = make_blob_dataset(tmp_path / "ds", n_groups=2, per_group=1)
    p = run_cli("tinysal", "train", str(root), *args, "--out-dir", str(tmp_path / "r"))
    assert_clean_error(p, needle)
    assert "usage:" not in p.stderr  # one line, not argparse's usage block
    assert not (tmp_path / "r").exists()


def test_corrupt_state_on_resume_is_one_clear_line(tmp_path: Path) -> None:
    root = make_blob_dataset(tmp_path / "ds", n_groups=2, per_group=2)
    run = tmp_path / "r"
    run.mkdir()
    (run / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    p = run_cli("tinysal", "train", str(root), "--stages", "32:1", "--resize", "40", "--val-crop", "32",
                "--batch-size", "2", "--out-dir", str(run), "--resume", "--quiet")  # fmt: skip
    assert_clean_error(p, "cannot resume", "last.pt")
    assert "warning" not in p.stderr.lower()


def test_calibration_folds_a_logit_scale_into_the_head(tmp_path: Path) -> None:
    from tinysal.model.nets import create_model, load_checkpoint
    from tinysal.train.calibrate import fold_into_head

    # the fold is exact for both head layouts (v3 resizes after its head: linear, so it commutes)
    for arch in ("saliency_student_v2", "saliency_student_v3"):
        torch.manual_seed(0)
        m = create_model(arch).eval()
        x = torch.randn(1, 3, 64, 96)
        with torch.no_grad():
            z = m.logits(x)
            fold_into_head(m, 1.7, -0.3)
            assert torch.allclose(m.logits(x), 1.7 * z - 0.3, atol=1e-4)
    # a real (tiny) training run, calibrated on its own validation split
    root = make_blob_dataset(tmp_path / "ds", n_groups=4, per_group=3)
    out = tmp_path / "m.json"
    p = run_cli("tinysal", "train", str(root), "--stages", "32:3", "--batch-size", "4", "--resize", "48",
                "--val-crop", "32", "--val-fraction", "0.25", "--quiet", "--no-export", "--out-dir",
                str(tmp_path / "r"), "--metrics-out", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    cal = tmp_path / "cal.pt"
    p = run_cli("tinysal", "calibrate", str(tmp_path / "r" / "best.pt"), str(root), "--metrics", str(out),
                "-o", str(cal), "--out-json", str(tmp_path / "c.json"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "c.json").read_text())
    assert rep["a"] > 0 and "folded into the head" in p.stdout
    before, _, _ = load_checkpoint(tmp_path / "r" / "best.pt")
    after, _, meta = load_checkpoint(cal)
    assert meta["calibration"] == {"a": rep["a"], "b": rep["b"], "from": str(tmp_path / "r" / "best.pt")}
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert torch.allclose(after.logits(x), rep["a"] * before.logits(x) + rep["b"], atol=1e-4)
    # BCE-optimal on the validation pixels: the balanced validation MAE does not get worse
    assert rep["pooled"]["mae_after"] <= rep["pooled"]["mae_before"] + 1e-3
    assert set(rep["per_source"]) == {"ds"}
    # a run still going has no metrics JSON yet: its live trace.json names the same validation split
    p = run_cli("tinysal", "calibrate", str(tmp_path / "r" / "best.pt"), str(root), "--metrics",
                str(tmp_path / "r" / "trace.json"), "-o", str(tmp_path / "cal2.pt"), "--out-json",
                str(tmp_path / "c2.json"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    rep2 = json.loads((tmp_path / "c2.json").read_text())
    assert (rep2["a"], rep2["b"], rep2["pooled"]) == (rep["a"], rep["b"], rep["pooled"])
    # a trace written before traces named their validation groups: one line that says what to pass instead
    old = json.loads((tmp_path / "r" / "trace.json").read_text())
    del old["val_groups"]
    (tmp_path / "old-trace.json").write_text(json.dumps(old))
    p = run_cli("tinysal", "calibrate", str(tmp_path / "r" / "best.pt"), str(root), "--metrics",
                str(tmp_path / "old-trace.json"), "-o", str(tmp_path / "cal3.pt"))  # fmt: skip
    assert_clean_error(p, "pass the run's metrics JSON")
    assert not (tmp_path / "cal3.pt").exists()


def test_resuming_a_finished_run_finishes_it_again_identically(tmp_path: Path) -> None:
    """--resume on a run whose epochs are all done goes straight to selection, calibration and export, with the
    EMA weights (not a fresh model) as the final checkpoint."""
    root = make_blob_dataset(tmp_path / "ds", n_groups=3, per_group=3)
    bgs = _backgrounds(tmp_path / "bgs")
    args = ["tinysal", "train", str(root), *SOD_TINY, "--backgrounds", str(bgs), "--out-dir", str(tmp_path / "r")]
    assert run_cli(*args, "--metrics-out", str(tmp_path / "a.json")).returncode == 0
    first = torch.load(tmp_path / "r" / "final.pt", weights_only=True)["state_dict"]
    p = run_cli(*args, "--resume", "--metrics-out", str(tmp_path / "b.json"))
    assert p.returncode == 0, p.stderr
    again = torch.load(tmp_path / "r" / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], again[k]) for k in first)
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ab")
    assert a["trace"] == b["trace"] and a["calibration"]["a"] == pytest.approx(b["calibration"]["a"])
