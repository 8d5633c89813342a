"""``tinysal report`` over 10,000 jobs: build time, page size, and headless chromium's time to a rendered table,
a sort and an opened section; the baseline, measured in the same run, is the same page with every row in the DOM
at once (no paging).

The records are copies of a real small batch's records on the bundled sample (a score with saliency and XPSNR on
132 frames, an encode, a crf-search), each with its own id and its figures jittered, so the page holds 10,000
real-shaped records. Needs Debian's chromium and playwright.

    python bench/bench_report.py [--jobs 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "src" / "tinysal" / "samples" / "bigbuckbunny_360p.mp4"


def seed_batch(work: Path) -> list[dict]:
    rows = [
        {"id": "enc", "task": "encode", "input": str(SAMPLE), "output": "enc/a.mp4", "crf": 34, "preset": "veryfast"},
        {"id": "score", "task": "score", "reference": str(SAMPLE), "distorted": "enc/a.mp4",
         "feature": ["mobilesal", "xpsnr"]},
        {"id": "search", "task": "crf-search", "input": str(SAMPLE), "min_vmaf": 90, "samples": 1,
         "preset": "ultrafast"},
    ]  # fmt: skip
    (work / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    subprocess.run([sys.executable, "-m", "tinysal.cli.main", "batch", str(work / "m.jsonl"), "--out",
                    str(work / "seed"), "-q"], check=True)  # fmt: skip
    return [json.loads((work / "seed" / "jobs" / f"{r['id']}.json").read_text()) for r in rows]


def jitter(obj, rnd: random.Random):  # noqa: ANN001, ANN201
    if isinstance(obj, float):
        return obj * (1 + rnd.uniform(-0.05, 0.05))
    if isinstance(obj, list):
        return [jitter(x, rnd) for x in obj]
    if isinstance(obj, dict):
        return {k: jitter(v, rnd) for k, v in obj.items()}
    return obj


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    a = ap.parse_args()
    if not os.path.exists("/usr/bin/chromium"):
        print("needs Debian's chromium (apt-get install -y chromium)")
        return 0
    from playwright.sync_api import sync_playwright

    rnd = random.Random(1)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        seeds = seed_batch(work)
        jobs = work / "big" / "jobs"
        jobs.mkdir(parents=True)
        for k in range(a.jobs):
            rec = jitter(seeds[k % len(seeds)], rnd)
            rec["id"] = f"title{k:05d}-{rec['task']}"
            if k % 97 == 0:
                rec["status"], rec["error"] = "failed", "cannot decode title: Invalid data found when processing input"
            (jobs / f"{rec['id']}.json").write_text(json.dumps(rec))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tinysal.cli.main", "report", str(work / "big"), "-q"], check=True)
        build = time.perf_counter() - t
        page_file = work / "big" / "report.html"
        size = page_file.stat().st_size
        baseline = work / "big" / "all_rows.html"
        baseline.write_text(page_file.read_text().replace("const PAGE = 200;", "const PAGE = 1e9;"))
        print(f"{a.jobs} records (copies of a real batch's score, encode and crf-search records, jittered); "
              f"{os.cpu_count()} cores")  # fmt: skip
        print(f"build: {build:.1f} s (12 contact sheets decoded included); page {size / 1e6:.1f} MB")
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            for name, f in (("paged (200 rows a page)", page_file), ("baseline: every row in the DOM", baseline)):
                page = b.new_page(viewport={"width": 1300, "height": 900})
                t = time.perf_counter()
                page.goto(f.as_uri())
                page.wait_for_function("window.reportReady === true", timeout=120_000)
                ready = time.perf_counter() - t
                t = time.perf_counter()
                page.click('th[data-key="vmaf_mean"]')
                page.wait_for_function("document.querySelector('#head th[data-key=vmaf_mean]')"
                                       ".getAttribute('aria-sort') === 'ascending'")  # fmt: skip
                sort = time.perf_counter() - t
                t = time.perf_counter()
                page.locator("tr.job td.id").first.click()
                page.locator("tr.detail").first.wait_for()
                section = time.perf_counter() - t
                print(f"  {name}: table rendered {ready:.2f} s after navigation; sort by VMAF {sort * 1000:.0f} ms; "
                      f"a section opened {section * 1000:.0f} ms")  # fmt: skip
                page.close()
            b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
