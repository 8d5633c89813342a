"""Encode -> score in one manifest (issue 38, item 5): a row may read another row's output; the runner orders them,
a failed job's readers fail with one line naming it, a rerun keeps the order and redoes the readers of a redone
job, and a circle is refused before any work."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from tests.conftest import ROOT, assert_clean_error, run_cli

SAMPLE = ROOT / "src" / "tinysal" / "samples" / "bigbuckbunny_360p.mp4"


def _manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _table(out: Path) -> dict[str, dict[str, str]]:
    return {r["id"]: r for r in csv.DictReader((out / "summary.csv").open())}


def _rows(tmp: Path, source: Path) -> list[dict]:
    # the score row comes first: the order is the runner's, not the manifest's
    return [
        {"id": "score", "task": "score", "reference": str(source), "distorted": "enc/a.mp4", "frame_cnt": 12},
        {"id": "enc", "task": "encode", "input": str(source), "output": "enc/a.mp4", "crf": 30, "frame_cnt": 12,
         "preset": "ultrafast"},
    ]


def test_encode_then_score_in_one_manifest(tmp_path: Path) -> None:
    m = _manifest(tmp_path / "m.jsonl", _rows(tmp_path, SAMPLE))
    ev = tmp_path / "ev.ndjson"
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "--workers", "2", "--events", str(ev),
                "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    t = _table(tmp_path / "out")
    assert t["enc"]["status"] == t["score"]["status"] == "done"
    assert float(t["enc"]["crf"]) == 30 and t["enc"]["bitrate"] == ""
    vmaf = t["score"]["vmaf_mean"]
    assert 50 < float(vmaf) < 100 and len(vmaf.replace(".", "").lstrip("0")) <= 6  # 6 significant digits
    starts = [json.loads(line) for line in ev.read_text().splitlines()]
    order = [e["id"] for e in starts if e["event"] in ("job-start", "job-done")]
    assert order.index("score") > order.index("enc") + 1  # the score started after the encode was done


def test_a_failed_producer_fails_its_readers_in_one_line_each(tmp_path: Path) -> None:
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("hello")
    rows = _rows(tmp_path, bad)
    rows[0]["reference"] = str(SAMPLE)
    rows.append({"id": "score2", "task": "score", "reference": str(SAMPLE), "distorted": "enc/b.mp4"})
    rows.append({"id": "enc2", "task": "encode", "input": "enc/a.mp4", "output": "enc/b.mp4", "crf": 30})
    m = _manifest(tmp_path / "m.jsonl", rows)
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"), "-q")
    assert p.returncode == 1
    t = _table(tmp_path / "out")
    assert t["enc"]["status"] == "failed"
    assert t["score"]["error"] == "not run: it reads the output of enc, which failed"
    assert t["enc2"]["error"] == "not run: it reads the output of enc, which failed"
    assert t["score2"]["error"] == "not run: it reads the output of enc2, which was not run (enc failed)"


def test_a_rerun_redoes_the_readers_of_a_redone_job(tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    src.write_bytes(SAMPLE.read_bytes())
    m = _manifest(tmp_path / "m.jsonl", _rows(tmp_path, src))
    out = tmp_path / "out"
    assert run_cli("tinysal", "batch", str(m), "--out", str(out), "-q").returncode == 0
    first = {k: json.loads((out / "jobs" / f"{k}.json").read_text())["seconds"] for k in ("enc", "score")}
    p = run_cli("tinysal", "batch", str(m), "--out", str(out), "--events", str(tmp_path / "e1"), "-q")
    assert p.returncode == 0 and "job-start" not in (tmp_path / "e1").read_text()  # all done: nothing run
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the encode's input changed
    p = run_cli("tinysal", "batch", str(m), "--out", str(out), "--events", str(tmp_path / "e2"), "-q")
    assert p.returncode == 0, p.stderr
    ran = [json.loads(x)["id"] for x in (tmp_path / "e2").read_text().splitlines() if '"job-start"' in x]
    assert ran == ["enc", "score"]  # the score reads the new encode, in that order
    assert first  # both had records before


def test_a_circle_is_refused_before_any_work(tmp_path: Path) -> None:
    rows = [{"id": "a", "task": "encode", "input": "b.mp4", "output": "a.mp4", "crf": 30},
            {"id": "b", "task": "encode", "input": "a.mp4", "output": "b.mp4", "crf": 30}]  # fmt: skip
    m = _manifest(tmp_path / "m.jsonl", rows)
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"))
    assert_clean_error(p, "round a circle", "a (row 1, after b)")
    assert p.returncode == 2 and not (tmp_path / "out").exists()


def test_a_job_may_not_overwrite_its_own_input_nor_the_batchs(tmp_path: Path) -> None:
    rows = [{"id": "a", "task": "encode", "input": str(SAMPLE), "output": str(SAMPLE), "crf": 30}]
    p = run_cli("tinysal", "batch", str(_manifest(tmp_path / "m.jsonl", rows)), "--out", str(tmp_path / "out"))
    assert_clean_error(p, "refusing to overwrite")
