"""``tinysal batch --engine ray``: the same jobs as the local pool, one Ray task each, with the same figures; a Ray
worker killed mid-job is retried; a bad row fails alone; a rerun resumes; an address that does not answer is one
line (issue 24). One local Ray for the whole test session; a machine without Ray skips these."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli, write_yuv_clip

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

from tinysal.batch import run  # noqa: E402


@pytest.fixture(scope="session")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _catalogue(tmp_path: Path, frames: int = 4) -> Path:
    rng = np.random.default_rng(3)
    write_yuv_clip(tmp_path / "a.yuv", [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(frames)])
    write_yuv_clip(tmp_path / "b.yuv", [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(frames)])
    (tmp_path / "bad.mp4").write_text("not a video")
    (tmp_path / "enc").mkdir(exist_ok=True)
    common = {"width": 96, "height": 64}
    rows = [
        {"id": "ab", "task": "score", "reference": "a.yuv", "distorted": "b.yuv", "feature": ["mobilesal"], **common},
        {"id": "roi", "task": "score", "reference": "a.yuv", "distorted": "b.yuv", "feature": ["mobilesal"],
         "feature_params": ["mobilesal:roi_score=1"], **common},
        {"id": "enc", "task": "encode", "input": "a.yuv", "output": "enc/a.mp4", "crf": 30, "preset": "ultrafast",
         **common},
        {"id": "bad", "task": "score", "reference": "a.yuv", "distorted": "bad.mp4", "no_prediction": True,
         "feature": ["mobilesal"]},
    ]  # fmt: skip
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def _figures(rows: list[dict]) -> list[tuple]:
    keep = ("id", "status", "frames", "vmaf_mean", "vmaf_min", "vmaf_harmonic_mean", "vmaf_roi_mean",
            "saliency_mean_mean", "bytes")  # fmt: skip
    return [tuple(r.get(k) for k in keep) for r in rows]


def test_ray_gives_the_local_pools_figures_fails_a_bad_row_alone_and_resumes(ray_session, tmp_path: Path) -> None:
    m = _catalogue(tmp_path)
    local = run(m, tmp_path / "local", progress=False, threads=1)
    enc_local = hashlib.sha256((tmp_path / "enc" / "a.mp4").read_bytes()).hexdigest()
    (tmp_path / "enc" / "a.mp4").unlink()
    events = tmp_path / "ev.ndjson"
    on_ray = run(m, tmp_path / "ray", engine="ray", progress=False, events=str(events))
    assert _figures(on_ray) == _figures(local)  # the same jobs, the same numbers, whichever engine ran them
    assert hashlib.sha256((tmp_path / "enc" / "a.mp4").read_bytes()).hexdigest() == enc_local  # one x264 thread
    status = {r["id"]: r["status"] for r in on_ray}
    assert status == {"ab": "done", "roi": "done", "enc": "done", "bad": "failed"}
    bad = json.loads((tmp_path / "ray" / "jobs" / "bad.json").read_text())
    assert "bad.mp4" in bad["error"] and bad["attempts"] == 1  # failed for a reason of its own: not retried
    assert on_ray[1].get("vmaf_roi_mean") is not None
    ev = [json.loads(x) for x in events.read_text().splitlines()]
    assert ev[0]["event"] == "batch-start" and ev[0]["engine"] == "ray" and ev[-1]["event"] == "batch-done"
    # a rerun finds the records and runs only the failed job
    before = {r: (tmp_path / "ray" / "jobs" / f"{r}.json").stat().st_mtime_ns for r in status}
    again = run(m, tmp_path / "ray", engine="ray", progress=False)
    after = {r: (tmp_path / "ray" / "jobs" / f"{r}.json").stat().st_mtime_ns for r in status}
    assert _figures(again) == _figures(on_ray)
    assert [r for r in status if after[r] != before[r]] == ["bad"]


def test_a_ladder_on_ray_gives_the_local_ladder(ray_session, video_dir: Path, tmp_path: Path) -> None:
    """The ladder's rungs are batch jobs: on Ray they give the points, hulls and BD-rates of the local pool."""
    from tinysal.batch.ladder import ladder
    from tinysal.encode.ladder import LadderOptions

    def opts(engine: str) -> LadderOptions:
        return LadderOptions(input=str(video_dir / "foreman_cif_60f_h264.mp4"), heights="144", crfs="26,40",
                             roi=True, preset="veryfast", frame_cnt=4, threads=1, jobs=2, engine=engine,
                             work_dir=str(tmp_path / engine))  # fmt: skip

    local, on_ray = ladder(opts("local"), quiet=True), ladder(opts("ray"), quiet=True)
    strip = ("seconds",)
    assert [{k: v for k, v in p.items() if k not in strip} for p in on_ray["points"]] == [
        {k: v for k, v in p.items() if k not in strip} for p in local["points"]]  # fmt: skip
    assert on_ray["bd_rate"] == local["bd_rate"] and len(on_ray["points"]) == 4
    assert (tmp_path / "ray" / "batch" / "summary.csv").read_text().count("rung") == 4


def _pids(needle: str) -> list[int]:
    ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(ln.split()[0]) for ln in ps.splitlines()[1:] if needle in ln]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    st = Path(f"/proc/{pid}/stat")
    return not (st.exists() and st.read_text().split(") ")[-1].startswith("Z"))  # a zombie has ended


def test_a_ray_worker_killed_mid_job_is_retried_and_takes_its_job_with_it(ray_session, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    write_yuv_clip(tmp_path / "long.yuv", [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(400)])
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"id": "long", "task": "score", "reference": "long.yuv", "distorted": "long.yuv",
                             "width": 96, "height": 64, "feature": ["mobilesal"]}) + "\n")  # fmt: skip
    seen: dict[str, list[int]] = {}

    def kill_the_task() -> None:  # the Ray worker running the job, once its job's worker process has started
        t0 = time.time()
        while time.time() - t0 < 60:
            tasks, jobs = _pids("ray::tinysal-batch-job"), _pids("tinysal.batch.worker")
            if tasks and jobs:
                time.sleep(1.0)  # mid-job
                seen["task"], seen["job"] = tasks, jobs
                os.kill(tasks[0], signal.SIGKILL)
                t1 = time.time()  # its job process dies with it (a few seconds of its work were left)
                while time.time() - t1 < 2 and any(_alive(pid) for pid in jobs):
                    time.sleep(0.05)
                seen["orphans"] = [pid for pid in jobs if _alive(pid)]
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_task)
    killer.start()
    rows = run(m, tmp_path / "out", engine="ray", progress=False, retries=1)
    killer.join()
    assert seen, "the job's Ray worker was never seen"
    rec = json.loads((tmp_path / "out" / "jobs" / "long.json").read_text())
    assert rows[0]["status"] == "done" and rec["attempts"] == 2 and rows[0]["frames"] == 400
    assert seen["orphans"] == []  # the killed task's job process did not run on beside the retry


def test_an_address_that_does_not_answer_is_one_line_and_ray_missing_is_one_line(tmp_path: Path) -> None:
    m = _catalogue(tmp_path)
    t = time.time()
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "o"), "--engine", "ray", "--address",
                "127.0.0.1:9")  # fmt: skip
    assert_clean_error(p, "does not answer")
    assert time.time() - t < 30
    assert_clean_error(run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "o"), "--address", "auto"),
                       "--address is for --engine ray")  # fmt: skip
    code = "import sys; sys.modules['ray'] = None; from tinysal.cli.main import main; sys.exit(main())"
    p = subprocess.run([sys.executable, "-c", code, "batch", str(m), "--out", str(tmp_path / "o"), "--engine", "ray"],
                       capture_output=True, text=True)  # fmt: skip
    assert_clean_error(p, "pip install 'tinysal[ray]'")
    assert not (tmp_path / "o" / "summary.csv").exists()


def test_an_address_where_something_else_listens_is_one_line(tmp_path: Path) -> None:
    """An HTTP server where the Ray head should be: one line at once (ray.init hung on it, and Ray's C++ client
    printed its log lines), nothing run."""
    import http.server
    import threading

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        m = _catalogue(tmp_path)
        t = time.time()
        p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "o"), "--engine", "ray", "--address",
                    f"127.0.0.1:{srv.server_address[1]}")  # fmt: skip
        assert_clean_error(p, "answers but is not Ray")
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert time.time() - t < 20
        assert not (tmp_path / "o" / "summary.csv").exists()
    finally:
        srv.shutdown()
