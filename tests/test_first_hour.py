"""What a user meets in the first hour (issue 38, item 6): one spelling of the saliency model option, help that says
what -h means, plot titles that name the clip, model and metric, crf-search naming the target it missed and what
ROI costs when it loses, and the ladder's default heights limited to the source's."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ROOT, SMOKE, assert_clean_error, run_cli

SAMPLE = ROOT / "src" / "tinysal" / "samples" / "bigbuckbunny_360p.mp4"


def test_the_saliency_model_is_spelled_one_way_old_spellings_kept(tmp_path: Path) -> None:
    base = ["-r", str(SAMPLE), "-d", str(SAMPLE), "--feature", "mobilesal", "--frame_cnt", "3", "--no_prediction",
            "--json", "-q"]  # fmt: skip
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run_cli("vmaf", *base, "--saliency-model", str(SMOKE), "-o", str(a)).returncode == 0
    assert run_cli("vmaf", *base, "--feature_params", f"mobilesal:model_path={SMOKE}", "-o", str(b)).returncode == 0
    sal = [json.loads(f.read_text())["pooled_metrics"]["saliency_mean"]["mean"] for f in (a, b)]
    default = tmp_path / "c.json"
    assert run_cli("vmaf", *base, "-o", str(default)).returncode == 0
    assert sal[0] == sal[1] != json.loads(default.read_text())["pooled_metrics"]["saliency_mean"]["mean"]
    p = run_cli("vmaf", "-r", str(SAMPLE), "-d", str(SAMPLE), "--saliency-model", str(SMOKE))
    assert_clean_error(p, "--saliency-model needs --feature mobilesal")
    # the subcommands: --saliency-model, and --model-path as before
    from tinysal.cli.main import build_parser

    for flag in ("--saliency-model", "--model-path"):
        args = build_parser().parse_args(["roi-maps", str(SAMPLE), "out", flag, "m.onnx"])
        assert args.model_path == "m.onnx"


def test_help_says_what_h_means() -> None:
    p = run_cli("vmaf", "--help")
    assert p.returncode == 0 and "-h is --height" in p.stdout
    p = run_cli("tinysal", "--help")
    assert "-h is --height there" in " ".join(p.stdout.split())
    p = run_cli("tinysal", "crf-search", "-h")
    assert p.returncode == 0 and "-H, as -h is help here" in " ".join(p.stdout.split())


def test_the_plot_title_names_the_clip_models_and_metrics(tmp_path: Path) -> None:
    from tinysal.features.task import ScoreOptions, _plot_title

    opts = ScoreOptions(reference="/x/ref.mp4", distorted="/y/dist.mp4", feature=["mobilesal"])
    result = {"pooled_metrics": {"vmaf": {}, "saliency_mean": {}},
              "run_provenance": {"saliency_model": {"id": "saliency_student_v3_long"}}}  # fmt: skip
    title = _plot_title(opts, result)
    assert title.startswith("vmaf, saliency_mean per frame: dist.mp4 against ref.mp4")
    assert "VMAF model vmaf_v0.6.1" in title and "saliency model saliency_student_v3_long" in title
    png = tmp_path / "p.png"
    p = run_cli("vmaf", "-r", str(SAMPLE), "-d", str(SAMPLE), "--frame_cnt", "3", "--plot", str(png), "-q")
    assert p.returncode == 0 and png.stat().st_size > 1000


def test_crf_search_names_the_missed_target_and_what_roi_costs(tmp_path: Path) -> None:
    fast = ["--samples", "1", "--sample-seconds", "1", "--preset", "ultrafast", "--frame_cnt", "30", "--threads", "1"]
    p = run_cli("tinysal", "crf-search", str(SAMPLE), "--min-vmaf", "20", "--min-vmaf-roi", "99.5", "--min-crf", "40",
                "--max-crf", "42", *fast)  # fmt: skip
    assert p.returncode == 1
    assert "short of vmaf_roi >= 99.5 (vmaf_roi" in p.stderr and "short of vmaf >=" not in p.stderr, p.stderr
    out = tmp_path / "r.json"
    p = run_cli("tinysal", "crf-search", str(SAMPLE), "--min-vmaf", "80", "--roi", *fast, "--out-json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    v = doc["roi_best_saving_percent"]
    runs = {r["roi_strength"]: r for r in doc["per_strength"] if r["crf"] is not None}
    best_roi = min(r["predicted"]["bytes"] for k, r in runs.items() if k > 0)
    assert v == round(100 * (1 - best_roi / runs[0.0]["predicted"]["bytes"]), 2)
    assert (f"ROI saves {v:.1f}%" if v > 0 else f"ROI costs {-v:+.1f}%") in p.stdout, p.stdout
    assert "saves 0.0%" not in p.stdout and "saves -" not in p.stdout


def test_the_ladder_default_heights_fit_the_source(tmp_path: Path) -> None:
    out = tmp_path / "l.json"
    p = run_cli("tinysal", "ladder", str(SAMPLE), "--crfs", "30", "--frame_cnt", "4", "--preset", "ultrafast",
                "--out-json", str(out), "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert sorted({pt["height"] for pt in json.loads(out.read_text())["points"]}) == [360]  # a 360-line source
    p = run_cli("tinysal", "ladder", str(SAMPLE), "--heights", "720", "--crfs", "30", "--frame_cnt", "4")
    assert_clean_error(p, "taller than the source")  # asked for: still refused


def test_roi_score_scales_a_rendition_of_another_size_as_vmaf_does(tmp_path: Path) -> None:
    import subprocess

    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    small, big = tmp_path / "small.mp4", tmp_path / "big.mkv"
    subprocess.run([ff, "-v", "error", "-i", str(SAMPLE), "-vf", "scale=320:180", "-frames:v", "20", "-c:v", "libx264",
                    "-crf", "30", str(small)], check=True)  # fmt: skip
    # the same rendition scaled up beforehand, losslessly, with the scaler VMAF uses (bicubic)
    subprocess.run([ff, "-v", "error", "-i", str(small), "-vf", "scale=640:360:flags=bicubic", "-c:v", "ffv1",
                    str(big)], check=True)  # fmt: skip
    docs = []
    for dist in (small, big):
        out = tmp_path / f"{dist.stem}.json"
        p = run_cli("vmaf", "-r", str(SAMPLE), "-d", str(dist), "--feature", "mobilesal:roi_score=1", "--frame_cnt",
                    "20", "--json", "-o", str(out), "-q")  # fmt: skip
        assert p.returncode == 0, p.stderr
        docs.append(json.loads(out.read_text()))
    scaled, direct = docs
    assert "masked_copy" in scaled["scaling"] and "640x360 (bicubic)" in scaled["scaling"]["masked_copy"]
    for m in ("vmaf", "vmaf_masked", "vmaf_roi"):
        assert abs(scaled["pooled_metrics"][m]["mean"] - direct["pooled_metrics"][m]["mean"]) < 0.05, m
