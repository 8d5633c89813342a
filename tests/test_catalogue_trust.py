"""Issue 35, the batch's half: a manifest checked whole and in linear time, every path the batch writes checked
against every job's, ids that every derived name can hold, formula cells neutralised, values checked before any
job runs, and what a new user trips on (an output folder that does not exist yet, a dangling --out link)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli, write_yuv_clip

FORMULAS = ("=2+3", "@SUM(1+1)", "+cmd|'calc'!A0", "-2+3")


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    write_yuv_clip(tmp_path / "clip.yuv", [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(2)])
    return tmp_path / "clip.yuv"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _score(jid: str, **kw: object) -> dict:
    return {"id": jid, "task": "score", "reference": "clip.yuv", "distorted": "clip.yuv", "width": 96, "height": 64,
            "feature": ["psnr"], "no_prediction": True, **kw}  # fmt: skip


def test_formula_ids_are_text_in_summary_csv(tmp_path: Path, clip: Path) -> None:
    (tmp_path / "bad.mp4").write_text("not a video")  # jobs that fail at once still get a row each
    rows = [{"id": f, "task": "score", "reference": "clip.yuv", "distorted": "bad.mp4", "feature": ["psnr"],
             "no_prediction": True} for f in FORMULAS]  # fmt: skip
    m = _jsonl(tmp_path / "m.jsonl", rows)
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "-q")
    assert p.returncode == 1, p.stderr
    text = (tmp_path / "out" / "summary.csv").read_text()
    cells = [r["id"] for r in csv.DictReader(text.splitlines())]
    assert cells == ["'" + f for f in FORMULAS]  # shown as text by a spreadsheet, the id still readable
    for line in text.splitlines()[1:]:
        assert not line.startswith(("=", "+", "-", "@")), line
    # the records keep the id as it is (they are JSON, read by programs)
    assert json.loads((tmp_path / "out" / "jobs" / "=2+3.json").read_text())["id"] == "=2+3"


def test_vmaf_csv_neutralises_a_formula_model_name(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "s.csv"
    p = run_cli("vmaf", "-r", str(clip), "-d", str(clip), "-w", "96", "-h", "64", "--model",
                "version=vmaf_v0.6.1:name=-1+1", "--csv", "-o", str(out), "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    header = next(csv.reader(out.open()))
    assert "'-1+1" in header and not any(c.startswith("-") for c in header)


def test_events_into_a_jobs_input_is_refused_and_the_input_kept(tmp_path: Path, clip: Path) -> None:
    before = clip.read_bytes()
    m = _jsonl(tmp_path / "m.jsonl", [_score("a")])
    for events in (clip, tmp_path / "m.jsonl", tmp_path / "out" / "summary.csv"):
        p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "--events", str(events))
        assert_clean_error(p, "--events")
    assert clip.read_bytes() == before and not (tmp_path / "out").exists()


def test_job_outputs_never_land_among_the_batch_files(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "out"
    rows = [_score("a", feature=["mobilesal"], saliency_out=str(out / "jobs" / "maps")),
            _score("b", plot=str(out / "summary.csv")),
            _score("c", feature=["mobilesal"], saliency_out=str(out))]  # fmt: skip
    p = run_cli("tinysal", "batch", str(_jsonl(tmp_path / "m.jsonl", rows)), "--out", str(out))
    assert_clean_error(p, "m.jsonl:1: a: saliency_out", "records folder", "m.jsonl:2: b: plot", "--out summary.csv",
                       "lies inside")  # fmt: skip
    assert "m.jsonl:3" in p.stderr and not out.exists()


def test_an_id_too_long_for_its_record_is_refused_before_any_work(tmp_path: Path, clip: Path) -> None:
    m = _jsonl(tmp_path / "m.jsonl", [_score("a"), _score("x" * 300), _score("ok\nid")])
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"))
    assert_clean_error(p, "m.jsonl:2: id is 300 bytes long", "m.jsonl:3: id must not hold control characters")
    assert not (tmp_path / "out").exists()
    # the longest id allowed runs and writes its record
    long_id = "é" * 100  # 200 bytes
    m = _jsonl(tmp_path / "m2.jsonl", [_score(long_id)])
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "-q")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "jobs" / f"{long_id}.json").is_file()


@pytest.mark.parametrize(("row", "needle"), [
    ({"id": "e", "task": "encode", "input": "clip.yuv", "output": "e.mp4", "width": 96, "height": 64, "crf": 99},
     "--crf for libx264 must be 0..51"),
    ({"id": "e", "task": "encode", "input": "clip.yuv", "output": "e.mp4", "width": 96, "height": 64,
      "preset": "warp9"}, "--preset for libx264 must be one of"),
    ({"id": "e", "task": "encode", "input": "clip.yuv", "output": "e.mp4", "width": 96, "height": 64,
      "frame_cnt": -3}, "--frame-cnt must be a whole number >= 0"),
    ({"id": "e", "task": "encode", "input": "clip.yuv", "output": "e.avi", "width": 96, "height": 64},
     "cannot write libx264 to 'e.avi'"),
    ({"id": "s", "task": "score", "reference": "clip.yuv", "distorted": "clip.yuv", "width": 96, "height": 64,
      "frame_cnt": -3}, "frame_cnt must be a whole number >= 0"),
    ({"id": "c", "task": "crf-search", "input": "clip.yuv", "width": 96, "height": 64, "min_vmaf": 93,
      "frame_cnt": -3}, "--frame-cnt must be a whole number >= 0"),
    ({"id": "c", "task": "crf-search", "input": "clip.yuv", "width": 96, "height": 64, "min_vmaf": 93,
      "preset": "warp9"}, "--preset for libx264 must be one of"),
])  # fmt: skip
def test_values_pass_the_options_checks_before_any_job_runs(tmp_path: Path, clip: Path, row: dict,
                                                            needle: str) -> None:  # fmt: skip
    m = _jsonl(tmp_path / "m.jsonl", [_score("first"), row])  # a good job first: it must not run either
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"))
    assert_clean_error(p, "m.jsonl:2: " + needle, "nothing run")
    assert not (tmp_path / "out").exists()


def test_jsonl_non_finite_numbers_and_every_bad_line(tmp_path: Path, clip: Path) -> None:
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps(_score("a")) + "\n"
                 + '{"id": "b", "task": "score", "reference": "clip.yuv", "distorted": "c.yuv", "frame_cnt": 1e400}\n'
                 + '{"id": "c", "task": "score", "reference": "clip.yuv", "distorted": "clip.yuv", "subsample": NaN}\n'
                 + "{not json\n" + "[1, 2]\n")  # fmt: skip
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"))
    assert_clean_error(p, "m.jsonl:2:", "m.jsonl:3:", "m.jsonl:4:", "m.jsonl:5:", "not a JSON object")
    assert "OverflowError" not in p.stderr and not (tmp_path / "out").exists()
    # a finite float where a whole number belongs, and inf spelled as text in a CSV cell
    m = tmp_path / "m.csv"
    m.write_text("id,task,reference,distorted,width,height,frame_cnt,no_prediction,feature\n"
                 "a,score,clip.yuv,clip.yuv,96,64,inf,true,psnr\n")  # fmt: skip
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"))
    assert_clean_error(p, "m.csv:2: frame_cnt: expected a whole number")


def test_a_spreadsheet_csv_with_a_bom_is_read_and_duplicate_columns_refused(tmp_path: Path, clip: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_bytes(b"\xef\xbb\xbfid,task,reference,distorted,width,height,feature,no_prediction\r\n"
                  b"a,score,clip.yuv,clip.yuv,96,64,psnr,true\r\n")  # fmt: skip
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "-q")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "out" / "jobs" / "a.json").read_text())["status"] == "done"
    m.write_text("id,task,reference,distorted,width,width\na,score,clip.yuv,clip.yuv,96,97\n")
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out2"))
    assert_clean_error(p, "column 'width' appears more than once")
    assert not (tmp_path / "out2").exists()


def test_output_folders_are_made_before_the_jobs_run(tmp_path: Path) -> None:
    """The README's batch example on a fresh clone: out/ does not exist yet (it failed every encode at run time)."""
    sample = run_cli("tinysal", "sample").stdout.strip()
    m = tmp_path / "jobs.csv"
    m.write_text("id,task,input,output,crf,frame_cnt,preset\n"
                 f"bbb-roi,encode,{sample},out/deep/bbb-roi.mp4,30,6,ultrafast\n")  # fmt: skip
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "runs" / "cat1"), "-q")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "deep" / "bbb-roi.mp4").stat().st_size > 0
    # a folder that cannot be made: one line before any work
    (tmp_path / "afile").write_text("x")
    m.write_text(f"id,task,input,output,crf\nx,encode,{sample},afile/x.mp4,30\n")
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "runs" / "cat2"))
    assert_clean_error(p, "x: cannot make the folder of")


def test_out_as_a_dangling_symlink_says_so(tmp_path: Path, clip: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    p = run_cli("tinysal", "batch", str(_jsonl(tmp_path / "m.jsonl", [_score("a")])), "--out", str(tmp_path / "link"))
    assert_clean_error(p, "is a symlink to", "which does not exist")
    assert "File exists" not in p.stderr


def test_the_manifest_check_resolves_each_folder_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linear, not O(n^2): 3,000 rows in three folders cost a handful of realpath calls (one per distinct folder and
    one per symlink), and one lstat per distinct path; the old check compared every job with every job."""
    from tinysal.batch import manifest

    for d in ("src", "enc"):
        (tmp_path / d).mkdir()
    n = 3000
    for i in range(n):
        (tmp_path / "src" / f"t{i}.y4m").write_bytes(b"")
    m = tmp_path / "m.jsonl"
    _jsonl(m, [{"id": f"t{i}", "task": "encode", "input": f"src/t{i}.y4m", "output": f"enc/t{i}.mp4"}
               for i in range(n)])  # fmt: skip
    calls = {"realpath": 0, "lstat": 0}
    real_realpath, real_lstat = os.path.realpath, os.lstat

    def count(name: str, fn: object) -> object:
        def wrapped(*a: object, **k: object) -> object:
            calls[name] += 1
            return fn(*a, **k)  # type: ignore[operator]

        return wrapped

    monkeypatch.setattr(manifest.os.path, "realpath", count("realpath", real_realpath))
    monkeypatch.setattr(manifest.os, "lstat", count("lstat", real_lstat))
    jobs = manifest.load(m, {"--events": str(tmp_path / "ev.ndjson")}, {"records": str(tmp_path / "out" / "jobs")})
    assert len(jobs) == n
    assert calls["realpath"] <= 10, calls
    assert calls["lstat"] <= 2 * n + 100, calls  # realpath itself lstats each component of the few folders
    # and a clash at the last row is still found
    with m.open("a") as f:
        f.write(json.dumps({"id": "last", "task": "encode", "input": "src/t0.y4m", "output": "src/t1.y4m.mp4"}) + "\n")
        f.write(json.dumps({"id": "clash", "task": "encode", "input": "src/t2.y4m", "output": "enc/t5.mp4"}) + "\n")
    with pytest.raises(manifest.TinysalError, match=r"clash: output writes .*t5\.mp4, as t5 output"):
        manifest.load(m)


def test_check_runs_nothing_and_counts_what_would_run(tmp_path: Path, clip: Path) -> None:
    m = _jsonl(tmp_path / "m.jsonl", [_score("a"), _score("b")])
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "--check")
    assert p.returncode == 0 and "manifest ok: 2 jobs, 2 to run, 0 already done" in p.stdout, p.stderr
    assert not (tmp_path / "out").exists()
    assert run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "-q").returncode == 0
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "--check")
    assert "2 jobs, 0 to run, 2 already done" in p.stdout
    bad = _jsonl(tmp_path / "bad.jsonl", [_score("a"), _score("b", frame_cnt=-1)])
    assert_clean_error(run_cli("tinysal", "batch", str(bad), "--out", str(tmp_path / "o2"), "--check"),
                       "bad.jsonl:2: frame_cnt")  # fmt: skip


def _wait_for(pred: object, seconds: float = 60) -> None:
    import time

    t = time.time()
    while not pred():  # type: ignore[operator]
        if time.time() - t > seconds:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_kill_9_leftovers_are_reaped_by_the_next_run(tmp_path: Path) -> None:
    """crf-search killed with SIGKILL (no cleanup runs) leaves its samples in the temp folder, and an encode killed
    so leaves its temp file beside the output: both are named by their owner, and the next run that makes temporary
    work there removes them (its own owner is alive, so a running search is never touched)."""
    import signal
    import subprocess
    import sys

    sample = run_cli("tinysal", "sample").stdout.strip()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    p = subprocess.Popen([sys.executable, "-m", "tinysal.cli.main", "crf-search", sample, "--min-vmaf", "90",
                          "--samples", "1", "--sample-seconds", "2", "--preset", "veryslow"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for(lambda: any(tmp.glob("tinysal-crf-search.~*/*")))
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    left = list(tmp.glob("tinysal-crf-search.~*"))
    assert left and f"~{p.pid}-" in left[0].name  # named by its owner
    # a foreign folder and a live owner's are kept
    (tmp / "tinysal-mine").mkdir()
    live = tmp / f"tinysal-vmaf.~{os.getpid()}-1~abc"
    live.mkdir()
    from tinysal.fileio import _start_ticks

    live_ok = tmp / f"tinysal-vmaf.~{os.getpid()}-{_start_ticks(os.getpid())}~abc"
    live_ok.mkdir()
    q = run_cli("vmaf", "-r", sample, "-d", sample, "--frame_cnt", "2", "-q", "-o", str(tmp_path / "s.json"),
                env=env)  # fmt: skip
    assert q.returncode == 0, q.stderr
    assert not any(tmp.glob("tinysal-crf-search.~*"))
    assert (tmp / "tinysal-mine").is_dir() and live_ok.is_dir()
    assert not live.exists()  # this pid, but another start time: a reused pid, its owner gone
    # an encode killed mid-run: its temp file beside the output is reaped by the next encode there
    out = tmp_path / "o.mp4"
    p = subprocess.Popen([sys.executable, "-m", "tinysal.cli.main", "encode", sample, str(out), "--preset",
                          "veryslow", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for(lambda: any(f.stat().st_size > 0 for f in tmp_path.glob(".o.mp4.~*")))
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert any(tmp_path.glob(".o.mp4.~*")) and not out.exists()
    q = run_cli("tinysal", "encode", sample, str(out), "--frame_cnt", "3", "--preset", "ultrafast", "-q")
    assert q.returncode == 0, q.stderr
    assert not any(tmp_path.glob(".o.mp4.~*")) and out.stat().st_size > 0


def test_ladder_heights_say_the_real_problem(tmp_path: Path) -> None:
    sample = run_cli("tinysal", "sample").stdout.strip()  # 640x360
    p = run_cli("tinysal", "ladder", sample, "--heights", "361", "--crfs", "30,34")
    assert_clean_error(p, "a 361-line rung is taller than the source (640x360)")
    p = run_cli("tinysal", "ladder", sample, "--heights", "301", "--crfs", "30,34")
    assert_clean_error(p, "301 is odd")


def test_bitrates_are_named_video_and_total_everywhere(tmp_path: Path) -> None:
    """The same encode: encode's summary, the batch's table and record agree on video_kbps (the video stream) and
    total_kbps (the file, with its audio); the ladder's rungs and crf-search's figures are video, named so."""
    import subprocess

    import imageio_ffmpeg

    sample = run_cli("tinysal", "sample").stdout.strip()
    src = tmp_path / "src.mkv"  # with loud 5.1 audio, as the title had
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", sample, "-f", "lavfi", "-i",
                    "anoisesrc=d=2:c=white:a=0.5", "-frames:v", "48", "-t", "2", "-ac", "6", "-c:a", "flac",
                    "-c:v", "libx264", "-crf", "10", str(src)], check=True)  # fmt: skip
    m = tmp_path / "m.csv"
    m.write_text(f"id,task,input,output,crf,preset\nt,encode,{src},out/t.mp4,34,ultrafast\n")
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "b"), "-q")
    assert p.returncode == 0, p.stderr
    row = next(csv.DictReader((tmp_path / "b" / "summary.csv").open()))
    info = json.loads((tmp_path / "b" / "jobs" / "t.json").read_text())["info"]
    video, total = float(row["video_kbps"]), float(row["total_kbps"])
    # summary.csv holds 6 significant digits of the record's figures
    assert video == pytest.approx(info["video_kbps"], rel=1e-5) and total == pytest.approx(info["total_kbps"], rel=1e-5)
    assert total > 1.2 * video  # the audio is in the total only
    import av

    with av.open(str(tmp_path / "out" / "t.mp4")) as c:
        vbytes = sum(pk.size for pk in c.demux(video=0) if pk.size)
        dur = 48 / float(c.streams.video[0].average_rate)
    assert video == pytest.approx(vbytes * 8 / dur / 1000, rel=0.01)
    # crf-search's size_percent is of the input's video stream (the audio left out)
    doc_path = tmp_path / "cs.json"
    p = run_cli("tinysal", "crf-search", str(src), "--min-vmaf", "20", "--samples", "1", "--sample-seconds", "1",
                "--preset", "ultrafast", "--out-json", str(doc_path), "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(doc_path.read_text())
    with av.open(str(src)) as c:
        in_video = sum(pk.size for pk in c.demux(video=0) if pk.size)
    pred = doc["predicted"]
    assert pred["size_percent"] == pytest.approx(100 * pred["bytes"] / in_video, rel=0.01)
    assert doc["run_provenance"]["tool"] == "tinysal" and doc["run_provenance"]["inputs"][0]["path"] == str(src)


def test_folder_arguments_that_are_dangling_symlinks_say_so(tmp_path: Path, blob_dataset: Path) -> None:
    """--out / --work-dir / --out-dir / --saliency-out / roi-maps' folder as a symlink to nothing: one line naming
    the link, before any work (it said 'File exists' or 'Not a directory: .maps....tmp', after the work)."""
    sample = run_cli("tinysal", "sample").stdout.strip()
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    link = str(tmp_path / "link")
    for args in (["tinysal", "ladder", sample, "--heights", "180", "--crfs", "30,34", "--work-dir", link],
                 ["tinysal", "train", str(blob_dataset), "--out-dir", link, "--preset", "cpu"],
                 ["vmaf", "-r", sample, "-d", sample, "--no_prediction", "--feature", "mobilesal", "--saliency-out",
                  link, "-o", str(tmp_path / "s.json")],
                 ["tinysal", "roi-maps", sample, link]):  # fmt: skip
        p = run_cli(*args)
        assert_clean_error(p, "is a symlink to", "which does not exist")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["blobs", "link"]  # nothing written, no temp left


def test_percentile_pooling_in_every_layout_and_the_summary(tmp_path: Path, clip: Path) -> None:
    """--pool-percentiles 1,5 adds p1 and p5 (the '1% lows') after libvmaf's four pooled keys, equal to numpy's
    percentile of the per-frame scores, in JSON and XML; a batch's summary.csv gets vmaf_p1/vmaf_p5 columns; and
    crf-search's --pool pN is the same function."""
    import xml.etree.ElementTree as ET

    from tinysal.encode.search import pooled
    from tinysal.features.output import pool

    sample = run_cli("tinysal", "sample").stdout.strip()
    out = tmp_path / "s.json"
    p = run_cli("vmaf", "-r", sample, "-d", sample, "--frame_cnt", "12", "--subsample", "1", "-q",
                "--pool-percentiles", "5,1", "--feature", "psnr", "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    vm = [f["metrics"]["vmaf"] for f in doc["frames"]]
    assert list(doc["pooled_metrics"]["vmaf"]) == ["min", "max", "mean", "harmonic_mean", "p1", "p5"]
    for q in (1, 5):
        assert doc["pooled_metrics"]["vmaf"][f"p{q}"] == pytest.approx(float(np.percentile(vm, q)), abs=1e-6)
    assert pooled(vm, "p5") == pool(vm, "p5")
    xml = tmp_path / "s.xml"
    assert run_cli("vmaf", "-r", sample, "-d", sample, "--frame_cnt", "4", "-q", "--pool-percentiles", "1",
                   "--xml", "-o", str(xml)).returncode == 0  # fmt: skip
    metric = next(m for m in ET.parse(xml).getroot().iter("metric") if m.get("name") == "vmaf")
    assert "p1" in metric.attrib and "harmonic_mean" in metric.attrib
    m = _jsonl(tmp_path / "m.jsonl", [_score("a", feature=["psnr"], no_prediction=False, pool_percentiles=[1, 5])])
    assert run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "b"), "-q").returncode == 0
    row = next(csv.DictReader((tmp_path / "b" / "summary.csv").open()))
    assert float(row["vmaf_p1"]) <= float(row["vmaf_p5"]) <= float(row["vmaf_mean"])
    assert_clean_error(run_cli("vmaf", "-r", sample, "-d", sample, "--pool-percentiles", "100"), "between 0 and 100")
