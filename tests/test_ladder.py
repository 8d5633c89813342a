"""``tinysal ladder`` (issue 26, part 2): every rung encoded and scored at the source's size, convex hulls for plain
and ROI encodes, the BD-rate between them, a plot; bad input one line and nothing written."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from tests.conftest import assert_clean_error, run_cli
from tests.conftest import run_cli as _run_cli
from tinysal.encode.ladder import LadderOptions, convex_hull, parse_crfs, parse_heights
from tinysal.errors import TinysalError


def test_crfs_and_heights_parse() -> None:
    assert parse_crfs("18:42:4") == [18, 22, 26, 30, 34, 38, 42]
    assert parse_crfs("20:30:4") == [20, 24, 28]
    assert parse_crfs("32,20,26") == [20, 26, 32]
    assert parse_heights("360,1080,720") == [1080, 720, 360]
    for bad in ("42:18:4", "18:42:0", "18:42", "a:b:c", "10,64"):  # (51..63: AV1 only, checked with the codec)
        with pytest.raises(TinysalError):
            parse_crfs(bad)
    for bad in ("1080,15", "720,720", "x", "8"):  # odd heights are refused against the source (check_source)
        with pytest.raises(TinysalError):
            parse_heights(bad)


def test_convex_hull_keeps_only_the_envelope() -> None:
    def pt(kbps: float, vmaf: float) -> dict:
        return {"video_kbps": kbps, "vmaf": vmaf}

    pts = [pt(100, 40), pt(200, 60), pt(400, 70), pt(300, 55), pt(800, 90), pt(1600, 91), pt(1700, 90.5)]
    hull = convex_hull(pts)
    assert [(p["video_kbps"], p["vmaf"]) for p in hull] == [(100, 40), (200, 60), (800, 90), (1600, 91)]
    # (400, 70) is under the chord 200 -> 800 in log-rate; (300, 55) and (1700, 90.5) are beaten outright
    for a, b, c in zip(hull, hull[1:], hull[2:]):  # concave in log-rate: slopes fall
        s1 = (b["vmaf"] - a["vmaf"]) / math.log10(b["video_kbps"] / a["video_kbps"])
        s2 = (c["vmaf"] - b["vmaf"]) / math.log10(c["video_kbps"] / b["video_kbps"])
        assert s1 > s2


def test_ladder_end_to_end(video_dir: Path, tmp_path: Path) -> None:
    clip = video_dir / "foreman_cif_60f_h264.mp4"
    out, png = tmp_path / "ladder.json", tmp_path / "ladder.png"
    p = run_cli("tinysal", "ladder", str(clip), "--heights", "288,144", "--crfs", "24:40:16", "--roi", "--frame_cnt",
                "8", "--preset", "veryfast", "--jobs", "2", "--threads", "1", "--out-json", str(out), "--plot",
                str(png))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "[8/8]" in p.stderr and "BD-rate on vmaf_roi" in p.stdout
    doc = json.loads(out.read_text())
    src = doc["source"]
    assert doc["scaler"] == "bicubic" and src["frames"] == 8 and (src["width"], src["height"]) == (352, 288)
    pts = doc["points"]
    assert len(pts) == 8 and {(p["height"], p["width"]) for p in pts} == {(288, 352), (144, 176)}
    assert all(p["frames"] == 8 and p["vmaf_roi"] is not None for p in pts)
    for kind in ("plain", "roi"):
        sel = [p for p in pts if (p["roi_strength"] > 0) == (kind == "roi")]
        for h in (288, 144):  # a higher CRF costs fewer bits and scores lower, at every height
            by_crf = sorted((p for p in sel if p["height"] == h), key=lambda p: p["crf"])
            assert by_crf[0]["video_kbps"] > by_crf[1]["video_kbps"] and by_crf[0]["vmaf"] > by_crf[1]["vmaf"]
        # scored at the source's size: the 144-line rung at CRF 24 loses to the 288-line one at CRF 24
        best = {p["height"]: p["vmaf"] for p in sel if p["crf"] == 24}
        assert best[288] > best[144]
        for metric in ("vmaf", "vmaf_roi"):
            hull = doc["hulls"][metric][kind]
            assert hull and all(a["video_kbps"] < b["video_kbps"] and a[metric] < b[metric]
                                for a, b in zip(hull, hull[1:]))  # fmt: skip
    assert all(isinstance(v, (float, str)) for v in doc["bd_rate"].values()) and set(doc["bd_rate"]) == {
        "vmaf", "vmaf_roi"}  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same plain rung alone, without ROI, at the same threads (x264's frame threads change its bitstream):
    # the same encode and score
    out1 = tmp_path / "one.json"
    p = run_cli("tinysal", "ladder", str(clip), "--heights", "144", "--crfs", "24", "--frame_cnt", "8", "--preset",
                "veryfast", "--threads", "1", "--out-json", str(out1), "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    (one,) = json.loads(out1.read_text())["points"]
    twin = next(p for p in pts if p["height"] == 144 and p["crf"] == 24 and not p["roi_strength"])
    assert (one["bytes"], one["vmaf"]) == (twin["bytes"], twin["vmaf"])
    assert json.loads(out1.read_text())["bd_rate"] == {}


def test_bad_input_is_one_line_and_writes_nothing(video_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    clip = str(video_dir / "foreman_cif_60f_h264.mp4")
    out, png = tmp_path / "l.json", tmp_path / "l.png"
    base = ["tinysal", "ladder", clip, "--out-json", str(out), "--plot", str(png), "--frame_cnt", "4"]
    for extra, needle in [
        (["--heights", "576,288"], "taller than the source"),
        (["--heights", "287"], "287 is odd"),
        (["--crfs", "40:20:4"], "FIRST <= LAST"),
        (["--crfs", "20,70"], "outside 0..63"),
        (["--crfs", "20,60"], "--crfs for libx264 must be 0..51"),  # the codec's own range (AV1's is 0..63)
        (["--scaler", "magic"], "--scaler must be"),
        (["--preset", "warp"], "--preset for libx264 must be one of"),
    ]:
        assert_clean_error(run_cli(*base, *extra), needle)
        assert not out.exists() and not png.exists()
    import av

    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx265"})
    with pytest.raises(TinysalError, match="no libx265 encoder"):
        LadderOptions(input=clip, codec="libx265").check()


def test_rungs_are_batch_jobs_and_a_work_dir_resumes(video_dir: Path, tmp_path: Path) -> None:
    import csv

    clip = str(video_dir / "foreman_cif_60f_h264.mp4")
    work, out = tmp_path / "work", tmp_path / "l.json"
    base = ["tinysal", "ladder", clip, "--heights", "144", "--crfs", "26,40", "--frame_cnt", "6", "--preset",
            "veryfast", "--threads", "1", "--work-dir", "work", "--out-json", str(out)]  # fmt: skip

    def run_cli(*args: str) -> subprocess.CompletedProcess:  # from tmp_path: --work-dir relative to it
        return _run_cli(*args, cwd=tmp_path)

    p = run_cli(*base)
    assert p.returncode == 0, p.stderr
    first = json.loads(out.read_text())["points"]
    rows = [json.loads(line) for line in (work / "rungs.jsonl").read_text().splitlines()]
    assert [(r["id"], r["task"], r["crf"]) for r in rows] == [("144p-crf26", "rung", 26), ("144p-crf40", "rung", 40)]
    recs = sorted((work / "batch" / "jobs").glob("*.json"))
    assert len(recs) == 2
    stamps = [r.stat().st_mtime_ns for r in recs]
    # a rerun: the sources are reused and both rungs' records stand (not redone), the same points
    p = run_cli(*base)
    assert p.returncode == 0, p.stderr
    assert "2 rungs already done" in p.stderr and "[1/2]" not in p.stderr
    assert [r.stat().st_mtime_ns for r in recs] == stamps
    assert json.loads(out.read_text())["points"] == first
    # one more CRF: only that rung runs
    # the finished ladders removed their raw sources (sources.json kept): the rerun cut them again, byte for byte
    assert not list((work / "sources").glob("*.yuv")) and (work / "sources" / "sources.json").is_file()
    # one more CRF: only that rung runs; --keep-sources keeps the sources
    p = run_cli(*[a if a != "26,40" else "26,33,40" for a in base], "--keep-sources")
    assert p.returncode == 0, p.stderr
    assert "[1/3]" in p.stderr and "[2/3]" not in p.stderr and "2 rungs already done" in p.stderr
    assert sorted(f.name for f in (work / "sources").glob("*.yuv")) == ["source-144.yuv", "source.yuv"]
    # the manifest is a batch manifest: tinysal batch runs the same jobs to the same scores
    p = run_cli("tinysal", "batch", str(work / "rungs.jsonl"), "--out", str(tmp_path / "b"), "--threads", "1",
                "--workers", "1", "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    table = {r["id"]: r for r in csv.DictReader((tmp_path / "b" / "summary.csv").open())}
    for pt in first:
        row = table[f"144p-crf{pt['crf']:g}"]
        assert row["status"] == "done" and int(row["bytes"]) == pt["bytes"]
        assert float(row["vmaf_mean"]) == pytest.approx(pt["vmaf"], rel=1e-5)  # 6 significant digits in the CSV
    # --keep-encodes: every rung's encode kept (in another work dir: rungs done without it have none to keep)
    p = run_cli(*[a if a != "work" else "work2" for a in base], "--keep-encodes", "kept")
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in (tmp_path / "kept").iterdir()) == ["144p-crf26.mp4", "144p-crf40.mp4"]
    import av

    with av.open(str(tmp_path / "kept" / "144p-crf26.mp4")) as c:
        assert c.streams.video[0].height == 144
    # a rung a user wrote wrong is refused with its reason before any job runs (issue 35: values are checked with
    # the manifest, not one by one after other jobs ran)
    bad = dict(rows[0], id="bad", crf=70)
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[1]) + "\n" + json.dumps(bad) + "\n")
    p = run_cli("tinysal", "batch", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "bb"), "-q")
    assert p.returncode == 2 and "bad.jsonl:2: crf 70 is outside 0..51" in p.stderr, p.stderr
    assert not (tmp_path / "bb").exists()
    # a second ladder on the same work dir while one runs is refused before it touches the sources
    import fcntl

    with open(work / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stamp = (work / "sources" / "source.yuv").stat().st_mtime_ns
        p = run_cli(*base, "--scaler", "bilinear")  # other sources: without the lock they would be rewritten
        assert_clean_error(p, "another ladder is running on")
        assert (work / "sources" / "source.yuv").stat().st_mtime_ns == stamp
    # a work dir that would hold the input's replacement is refused before any work
    assert_clean_error(run_cli("tinysal", "ladder", str(work / "sources" / "source.yuv"), "-w", "352", "-H", "288",
                               "--heights", "144", "--work-dir", str(work)), "holds the input")  # fmt: skip
