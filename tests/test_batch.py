"""``tinysal batch``: a manifest checked whole before any work, jobs in processes of their own with atomic records,
a rerun that skips what is done, failures isolated, the table, the events, the lock (issue 24)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli, write_yuv_clip


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(3)]
    write_yuv_clip(tmp_path / "clip.yuv", frames)
    (tmp_path / "bad.mp4").write_text("not a video")
    (tmp_path / "enc").mkdir()
    rows = [
        {"id": "s1", "task": "score", "reference": "clip.yuv", "distorted": "clip.yuv", "width": 96, "height": 64,
         "feature": ["mobilesal"]},
        {"id": "e1", "task": "encode", "input": "clip.yuv", "output": "enc/e1.mp4", "width": 96, "height": 64,
         "crf": 30, "preset": "ultrafast"},
        {"id": "bad", "task": "score", "reference": "clip.yuv", "distorted": "bad.mp4", "no_prediction": True,
         "feature": ["mobilesal"]},
    ]  # fmt: skip
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def test_batch_runs_records_resumes_and_isolates_a_failure(catalogue: Path, tmp_path: Path) -> None:
    out, ev = tmp_path / "out", tmp_path / "ev.ndjson"
    p = run_cli("tinysal", "batch", str(catalogue), "--out", str(out), "--events", str(ev), "--workers", "2")
    assert_clean_error(p, "1 of 3 jobs failed")  # the bad job fails alone; the others finish
    recs = {r: json.loads((out / "jobs" / f"{r}.json").read_text()) for r in ("s1", "e1", "bad")}
    assert recs["s1"]["status"] == recs["e1"]["status"] == "done"
    assert recs["bad"]["status"] == "failed" and "bad.mp4" in recs["bad"]["error"]
    # the score record holds the libvmaf-layout result the vmaf command writes; inputs by size and mtime
    direct = run_cli("vmaf", "-r", str(tmp_path / "clip.yuv"), "-d", str(tmp_path / "clip.yuv"), "-w", "96", "-h",
                     "64", "--feature", "mobilesal", "-q", "--threads", "1")  # fmt: skip
    want = json.loads(direct.stdout)
    got = recs["s1"]["result"]
    assert got["pooled_metrics"]["vmaf"] == want["pooled_metrics"]["vmaf"]
    assert got["pooled_metrics"]["saliency_mean"] == pytest.approx(want["pooled_metrics"]["saliency_mean"], abs=1e-6)
    assert recs["s1"]["inputs"][str(tmp_path / "clip.yuv")]["size"] == os.path.getsize(tmp_path / "clip.yuv")
    assert (tmp_path / "enc" / "e1.mp4").stat().st_size == recs["e1"]["info"]["bytes"] > 0
    table = (out / "summary.csv").read_text().splitlines()
    assert table[0].startswith("id,task,status,error,seconds") and len(table) == 4
    assert table[1].startswith("s1,score,done,") and table[3].startswith("bad,score,failed,")
    try:  # the same table as Parquet when pyarrow is installed (the dev extra installs it)
        import pyarrow.parquet as pq

        pt = pq.read_table(out / "summary.parquet").to_pylist()
        assert [r["id"] for r in pt] == ["s1", "e1", "bad"] and pt[0]["vmaf_mean"] == got["pooled_metrics"]["vmaf"][
            "mean"]  # fmt: skip
    except ImportError:
        assert not (out / "summary.parquet").exists()
    events = [json.loads(x)["event"] for x in ev.read_text().splitlines()]
    assert events.count("job-start") == 3 and events.count("job-done") == 2 and events[-1] == "batch-done"
    # a rerun skips the finished jobs (their records untouched) and redoes the failed one
    before = {r: (out / "jobs" / f"{r}.json").stat().st_mtime_ns for r in recs}
    p = run_cli("tinysal", "batch", str(catalogue), "--out", str(out))
    assert p.returncode == 1, p.stderr
    after = {r: (out / "jobs" / f"{r}.json").stat().st_mtime_ns for r in recs}
    assert after["s1"] == before["s1"] and after["e1"] == before["e1"] and after["bad"] != before["bad"]
    # a record edited by hand is not trusted: that job is redone
    rec = json.loads((out / "jobs" / "s1.json").read_text())
    rec["status"], rec["result"] = "done", {"pooled_metrics": {"vmaf": {"mean": 100}}}
    (out / "jobs" / "s1.json").write_text(json.dumps(rec))
    run_cli("tinysal", "batch", str(catalogue), "--out", str(out))
    assert json.loads((out / "jobs" / "s1.json").read_text())["result"]["pooled_metrics"]["vmaf"] == want[
        "pooled_metrics"]["vmaf"]  # fmt: skip


def test_a_bad_manifest_names_every_bad_row_and_runs_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.yuv").write_bytes(bytes(96 * 64 * 3 // 2))
    (tmp_path / "in.mp4").write_bytes(b"")
    m = tmp_path / "m.csv"
    m.write_text(
        "id,task,reference,distorted,width,crf,output,input\n"
        "ok,score,a.yuv,a.yuv,96,,,\n"
        "ok,score,a.yuv,a.yuv,96,,,\n"  # duplicate id
        "t,transcode,a.yuv,a.yuv,,,,\n"  # unknown task
        "w,score,a.yuv,a.yuv,wide,,,\n"  # not a number
        "x,score,a.yuv,gone.yuv,96,,,\n"  # missing input
        "c,score,a.yuv,a.yuv,96,30,,\n"  # a column score does not take
        "e1,encode,,,96,30,o.mp4,a.yuv\n"
        "e2,encode,,,96,30,o.mp4,a.yuv\n"  # the same output twice
        "e3,encode,,,96,30,in.mp4,in.mp4\n"  # an output that is an input
    )
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "out"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    for needle in ("duplicate id 'ok'", "unknown task 'transcode'", "width: expected", "input not found",
                   "unknown column 'crf'", "writes", "e3: output", "an input: refusing", "nothing run"):  # fmt: skip
        assert needle in p.stderr, (needle, p.stderr)
    assert not (tmp_path / "out").exists()  # nothing was run or created


def test_a_second_batch_on_the_same_folder_is_refused(catalogue: Path, tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a") as held:  # another batch holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert_clean_error(run_cli("tinysal", "batch", str(catalogue), "--out", str(out)), "another batch")
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    assert_clean_error(run_cli("tinysal", "batch", str(catalogue), "--out", str(not_dir)), "not a folder")


def _long_batch(tmp_path: Path, seed: int, frames: int = 300, **popen: object) -> tuple[object, Path, int]:
    """A batch of one score job long enough to interrupt (300 frames: a few seconds), started; (process, out dir,
    its worker's pid, once the worker is running)."""
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(seed)
    write_yuv_clip(tmp_path / "long.yuv", [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(frames)])
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"id": "long", "task": "score", "reference": "long.yuv", "distorted": "long.yuv",
                             "width": 96, "height": 64, "feature": ["mobilesal"]}) + "\n")  # fmt: skip
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tinysal.cli.main", "batch", str(m), "--out", str(out), "-q"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    t0 = time.time()
    while time.time() - t0 < 60 and p.poll() is None:
        ps = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
        kids = [int(ln.split()[0]) for ln in ps.splitlines() if "tinysal.batch.worker" in ln
                and ln.split()[1] == str(p.pid)]  # fmt: skip
        if kids:
            time.sleep(1.0)  # mid-job
            return p, out, kids[0]
        time.sleep(0.1)
    raise AssertionError(f"no worker seen: {p.communicate(timeout=60)[1]}")


def test_a_worker_killed_mid_job_is_retried_and_the_table_is_complete(tmp_path: Path) -> None:
    import signal

    p, out, worker = _long_batch(tmp_path, 1)
    os.kill(worker, signal.SIGKILL)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    rec = json.loads((out / "jobs" / "long.json").read_text())
    assert rec["status"] == "done" and rec["attempts"] == 2 and rec["info"]["frames_scored"] == 300
    assert (out / "summary.csv").read_text().splitlines()[1].startswith("long,score,done,")


def test_ctrl_c_stops_the_workers_and_writes_no_record_for_the_job_in_flight(tmp_path: Path) -> None:
    import signal
    import time

    from conftest import interruptible

    p, out, worker = _long_batch(tmp_path, 2, preexec_fn=interruptible)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert not (out / "jobs" / "long.json").exists()  # in flight: no record, so a rerun does it
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):  # the worker was stopped with the batch
        os.kill(worker, 0)
    p = run_cli("tinysal", "batch", str(tmp_path / "m.jsonl"), "--out", str(out), "-q")  # the rerun finishes it
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "jobs" / "long.json").read_text())["info"]["frames_scored"] == 300


def test_kill_9_of_the_batch_ends_its_workers_and_leaves_no_record(tmp_path: Path) -> None:
    import signal
    import time

    p, out, worker = _long_batch(tmp_path, 3, frames=2000)  # ~30 s of work: it must not finish by itself
    p.kill()  # kill -9: no cleanup of the batch's own runs; its workers die with it (PR_SET_PDEATHSIG)
    p.communicate(timeout=30)
    t0 = time.time()
    while time.time() - t0 < 5:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker ran on after kill -9 of its batch")
    assert not (out / "jobs" / "long.json").exists() and not list((out / "jobs").glob(".*"))


def test_a_redo_replaces_its_own_encode_never_a_file_it_did_not_write(catalogue: Path, tmp_path: Path) -> None:
    from tinysal.batch import run

    out, enc = tmp_path / "out", tmp_path / "enc" / "e1.mp4"
    run(catalogue, out, progress=False)
    first = json.loads((out / "jobs" / "e1.json").read_text())
    rows = {r["id"]: r for r in run(catalogue, out, progress=False, force=True)}  # --force: redo all, e1 included
    assert rows["e1"]["status"] == "done" and enc.stat().st_size == first["info"]["bytes"]
    enc.unlink()
    enc.write_bytes(b"somebody else's file")  # not what the batch wrote: kept, and the job says why it failed
    rows = {r["id"]: r for r in run(catalogue, out, progress=False, force=True)}
    assert rows["e1"]["status"] == "failed" and "exists" in rows["e1"]["error"]
    assert enc.read_bytes() == b"somebody else's file"


def test_an_input_that_vanishes_mid_run_fails_its_job_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinysal.batch import manifest, run, runner

    rng = np.random.default_rng(5)
    for name in ("a", "b"):
        write_yuv_clip(tmp_path / f"{name}.yuv", [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(2)])
    rows = [{"id": n, "task": "score", "reference": f"{n}.yuv", "distorted": f"{n}.yuv", "width": 96, "height": 64}
            for n in ("a", "b")]  # fmt: skip
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def load_then_delete(path: object, *args: object) -> list:  # the manifest passes its check; then b's input goes
        jobs = manifest.load(path, *args)  # away
        (tmp_path / "b.yuv").unlink()
        return jobs

    monkeypatch.setattr(runner, "load", load_then_delete)
    table = run(m, tmp_path / "out", progress=False)
    status = {r["id"]: (r["status"], r["error"]) for r in table}
    assert status["a"] == ("done", None)
    assert status["b"][0] == "failed" and "b.yuv" in status["b"][1] and "\n" not in status["b"][1]
