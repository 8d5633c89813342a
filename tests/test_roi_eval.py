"""roi-eval: Bjøntegaard delta rate and the plain-vs-ROI A/B on real DAVIS frames with their masks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli


def test_bd_rate() -> None:
    from tinysal.encode.roi_eval import bd_rate, pchip
    from tinysal.errors import TinysalError

    r, q = [100, 200, 400, 800], [30.0, 33.0, 35.5, 37.0]
    assert bd_rate(r, q, r, q) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(r, q, [x / 2 for x in r], q) == pytest.approx(-50.0)
    assert bd_rate(r, q, [x * 1.1 for x in r], q) == pytest.approx(10.0)
    # better quality at the same rates -> fewer bits for the same quality
    assert bd_rate(r, q, r, [x + 1 for x in q]) < 0
    with pytest.raises(TinysalError, match="overlap"):
        bd_rate(r, q, r, [x + 7.2 for x in q])
    with pytest.raises(TinysalError, match="at least two"):
        bd_rate([1], [2], r, q)
    # PCHIP is monotone between monotone points (no overshoot, unlike a plain cubic)
    xs = np.linspace(30, 37, 200)
    ys = pchip(q, np.log10(r), xs)
    assert np.all(np.diff(ys) >= -1e-12) and ys[0] == pytest.approx(2.0) and ys[-1] == pytest.approx(np.log10(800))


def test_roi_eval_on_davis_oracle_moves_quality_into_the_object(davis: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    p = run_cli("tinysal", "roi-eval", str(davis), "--sequences", "blackswan", "--frames", "8", "--bitrates",
                "100k,200k,400k,800k", "--preset", "ultrafast", "--out-json", str(out), "--plot", str(png),
                "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())["sequences"]["blackswan"]
    assert set(d["runs"]) == {"plain", "model@3", "oracle@3"}  # 3: the libx264 default strength
    assert len(d["runs"]["plain"]) == 4
    for pts in d["runs"].values():
        assert all(0 < pt["video_kbps"] and 0 <= pt["vmaf"] <= 100 and pt["psnr_y_object"] > 15 for pt in pts)
        kbps = [pt["video_kbps"] for pt in pts]
        assert kbps == sorted(kbps)
    oracle = d["bd_rate_percent"]["oracle@3"]
    assert oracle["object_psnr"] < -10  # bits really move into the ground-truth object
    assert "BD-rate vs plain" in p.stdout and png.stat().st_size > 10_000


def test_roi_eval_bad_ground_truth(davis: Path, tmp_path: Path) -> None:
    root = tmp_path / "d"
    for sub in ("images", "masks"):
        (root / sub / "s").mkdir(parents=True)
    for k in range(3):
        shutil.copy(davis / "images" / "blackswan" / f"{k:05d}.jpg", root / "images" / "s")
    shutil.copy(davis / "masks" / "blackswan" / "00000.png", root / "masks" / "s")
    args = ["tinysal", "roi-eval", str(root), "--sequences", "s", "--bitrates", "100k,200k,400k,800k", "-q"]
    assert_clean_error(run_cli(*args), "no ground-truth mask", "00001")
    from PIL import Image

    for k in (1, 2):
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "s" / f"{k:05d}.png")
    assert_clean_error(run_cli(*args), "does not match its frame")
    assert_clean_error(run_cli(*args[:3], "--sequences", "nope", *args[5:]), "no sequence 'nope'")
    assert_clean_error(run_cli(*args[:5], "--bitrates", "100k,200k", "-q"), "at least 4 bitrates")
