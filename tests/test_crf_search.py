"""``tinysal crf-search`` (issue 26): sampled encodes scored with libvmaf, an interpolating search for the highest
CRF meeting every target, the predicted size, events, ROI strengths, and one line for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli

FAST = ["--samples", "2", "--sample-seconds", "0.3", "--preset", "ultrafast"]


def test_pooling_matches_libvmaf_and_percentiles() -> None:
    from tinysal.encode.search import pooled

    v = [90.0, 80.0, 70.0, 95.0]
    assert pooled(v, "mean") == pytest.approx(83.75)
    assert pooled(v, "harmonic_mean") == pytest.approx(1 / np.mean(1 / (np.array(v) + 1)) - 1)
    assert pooled(v, "p50") == pytest.approx(np.percentile(v, 50)) and pooled(v, "p5") < 72


def test_samples_spread_over_the_clip_or_take_it_whole() -> None:
    from tinysal.encode.search import plan_samples

    plan = plan_samples(300, 25.0, 3, 2.0)  # 12 s, three 2-s samples: one in each third
    assert [k for _, k in plan] == [50] * 3 and [s for s, _ in plan] == [25, 125, 225]
    assert plan_samples(120, 25.0, 3, 2.0) == [(0, 120)]  # not longer than the samples together: all of it


def test_crf_search_finds_the_highest_crf_meeting_the_target(video_dir: Path, tmp_path: Path) -> None:
    clip = video_dir / "foreman_cif_60f_h264.mp4"
    out, ev, enc = tmp_path / "r.json", tmp_path / "ev.ndjson", tmp_path / "full.mp4"
    p = run_cli("tinysal", "crf-search", str(clip), "--min-vmaf", "90", *FAST, "--out-json", str(out), "--events",
                str(ev), "--encode", str(enc))  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    by_crf = {a["crf"]: a for a in doc["attempts"]}
    crf = doc["crf"]
    assert by_crf[crf]["passed"] and by_crf[crf]["vmaf"] >= 90 and doc["predicted"] == by_crf[crf]
    assert not by_crf[crf + 1]["passed"]  # the next CRF up was tried and misses: crf is the highest
    assert all(a["passed"] == (a["vmaf"] >= 90) for a in doc["attempts"])
    assert all(a["crf"] <= crf for a in doc["attempts"] if a["passed"])
    assert len(doc["attempts"]) <= 6  # interpolated, not a sweep of the 36 CRFs in 10..45
    assert doc["predicted"]["video_kbps"] > 0 and doc["predicted"]["size_percent"] > 0
    events = [json.loads(x)["event"] for x in ev.read_text().splitlines()]
    assert events.count("crf-search-attempt") == len(doc["attempts"]) and events[-1] == "crf-search-done"
    assert events.count("sample-encode-done") == 2 * len(doc["attempts"])
    # --encode: the whole clip at the answer, and its real VMAF is near the predicted one
    assert doc["encode"]["frames"] == 60 and enc.stat().st_size == doc["encode"]["bytes"]
    s = tmp_path / "s.json"
    assert run_cli("vmaf", "-r", str(clip), "-d", str(enc), "-q", "-o", str(s)).returncode == 0
    real = json.loads(s.read_text())["pooled_metrics"]["vmaf"]["mean"]
    assert abs(real - doc["predicted"]["vmaf"]) < 3, (real, doc["predicted"])


def test_roi_search_tries_each_strength_and_keeps_the_smallest(video_dir: Path, tmp_path: Path) -> None:
    clip = video_dir / "foreman_cif_60f_h264.mp4"
    out = tmp_path / "r.json"
    p = run_cli("tinysal", "crf-search", str(clip), "--min-vmaf", "85", "--min-vmaf-roi", "90", "--roi",
                "--samples", "1", "--sample-seconds", "0.3", "--preset", "ultrafast", "--out-json", str(out),
                "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    runs = doc["per_strength"]
    assert [r["roi_strength"] for r in runs] == [0.0, 3.0, 5.0]
    ok = [r for r in runs if r["crf"] is not None]
    assert doc["predicted"]["bytes"] == min(r["predicted"]["bytes"] for r in ok)
    assert all(r["predicted"]["vmaf"] >= 85 and r["predicted"]["vmaf_roi"] >= 90 for r in ok)
    plain = runs[0]["predicted"]["bytes"]
    assert doc["roi_saving_percent"] == pytest.approx(100 * (1 - doc["predicted"]["bytes"] / plain), abs=0.01)


def test_bad_input_is_one_line_and_writes_nothing(video_dir: Path, tmp_path: Path) -> None:
    clip = str(video_dir / "foreman_cif_60f_h264.mp4")
    out = tmp_path / "r.json"
    p = run_cli("tinysal", "crf-search", clip, "--min-vmaf", "99.9", "--min-crf", "44", "--max-crf", "45", *FAST,
                "--out-json", str(out))  # fmt: skip
    assert_clean_error(p, "no CRF in 44..45 reaches vmaf >= 99.9", "best reachable: crf 44")
    assert not out.exists()
    base = ["tinysal", "crf-search", clip, "--min-vmaf", "90", "--out-json", str(out)]
    for extra, needle in [
        (["--min-crf", "30", "--max-crf", "20"], "must be below --max-crf"),
        (["--pool", "p100"], "p1 to p99"),
        (["--pool", "median"], "--pool must be"),
        (["--sample-seconds", "5"], "shorter than one sample"),
        (["--min-crf", "60"], "--min-crf must be"),
        (["--encode", str(tmp_path / "x.webm")], "give a .mp4"),
        (["--encode", clip], "an input"),
    ]:
        assert_clean_error(run_cli(*base, *extra), needle)
        assert not out.exists()
    existing = tmp_path / "e.mp4"
    existing.write_bytes(b"keep")
    assert_clean_error(run_cli(*base, "--encode", str(existing)), "--overwrite")
    assert existing.read_bytes() == b"keep"


def test_crf_search_is_a_batch_task(video_dir: Path, tmp_path: Path) -> None:
    """A catalogue of searches: each title's answer in its record and the table, the same answer as the command,
    its --encode output written (and replaced by a redo of its own), an unreachable target failing alone."""
    import csv

    clip = str(video_dir / "foreman_cif_60f_h264.mp4")
    fast = {"samples": 2, "sample_seconds": 0.5, "preset": "ultrafast", "frame_cnt": 30}
    rows = [
        {"id": "t1", "task": "crf-search", "input": clip, "min_vmaf": 90, "encode": "t1.mp4", **fast},
        {"id": "never", "task": "crf-search", "input": clip, "min_vmaf": 99.9, "max_crf": 12, **fast},
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "--threads", "1", "-q")
    assert p.returncode != 0 and "never: failed: no CRF in 10..12 reaches vmaf >= 99.9" in p.stderr, p.stderr
    rec = json.loads((tmp_path / "out" / "jobs" / "t1.json").read_text())
    assert rec["status"] == "done" and rec["result"]["attempts"]
    assert (tmp_path / "t1.mp4").stat().st_size == rec["info"]["bytes"] == rec["result"]["encode"]["bytes"]
    table = {r["id"]: r for r in csv.DictReader((tmp_path / "out" / "summary.csv").open())}
    assert float(table["t1"]["crf"]) == rec["result"]["crf"] and table["never"]["status"] == "failed"
    # summary.csv: 6 significant digits of the record's figures
    assert float(table["t1"]["vmaf_mean"]) == pytest.approx(rec["result"]["predicted"]["vmaf"], rel=1e-5)
    assert rec["result"]["predicted"]["vmaf"] >= 90
    # the command on the same title at the same threads gives the same answer
    out = tmp_path / "cmd.json"
    p = run_cli("tinysal", "crf-search", clip, "--min-vmaf", "90", "--samples", "2", "--sample-seconds", "0.5",
                "--preset", "ultrafast", "--frame_cnt", "30", "--threads", "1", "--out-json", str(out),
                "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    cmd = json.loads(out.read_text())
    assert (cmd["crf"], cmd["predicted"]["vmaf"]) == (rec["result"]["crf"], rec["result"]["predicted"]["vmaf"])
    # --force redoes the search and may replace the encode the batch wrote itself
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "--threads", "1", "--force", "-q")
    assert json.loads((tmp_path / "out" / "jobs" / "t1.json").read_text())["status"] == "done"
    # out_json and events are the record's business in a batch: refused as columns
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**rows[0], "out_json": "x.json"}) + "\n")
    p = run_cli("tinysal", "batch", str(bad), "--out", str(tmp_path / "o2"))
    assert p.returncode != 0 and "unknown column 'out_json'" in p.stderr and not (tmp_path / "o2" / "jobs").exists()
