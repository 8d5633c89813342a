"""The README's report screenshot (docs/report.png): a real batch on the bundled sample (encode -> score chained
at two CRFs with saliency and XPSNR, a crf-search, a job that fails), its report, rendered by Debian's chromium.

    python scripts/report_screenshot.py [docs/report.png]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "src" / "tinysal" / "samples" / "bigbuckbunny_360p.mp4"


def main() -> int:
    out_png = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "report.png").resolve()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        (work / "bad.mp4").write_text("not a video")
        rows = []
        for crf in (24, 32, 40):
            rows.append({"id": f"bbb-crf{crf}", "task": "encode", "input": str(SAMPLE), "output": f"enc/crf{crf}.mp4",
                         "crf": crf, "preset": "medium"})
            rows.append({"id": f"bbb-crf{crf}-score", "task": "score", "reference": str(SAMPLE),
                         "distorted": f"enc/crf{crf}.mp4", "feature": ["mobilesal:roi_score=1", "xpsnr"]})
        rows.append({"id": "bbb-target-93", "task": "crf-search", "input": str(SAMPLE), "min_vmaf": 93})
        rows.append({"id": "broken-input", "task": "score", "reference": str(SAMPLE), "distorted": "bad.mp4"})
        (work / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        run = [sys.executable, "-m", "tinysal.cli.main"]
        subprocess.run([*run, "batch", str(work / "m.jsonl"), "--out", str(work / "out"), "-q"], check=False)
        subprocess.run([*run, "report", str(work / "out"), "--title", "tinysal report: Big Buck Bunny at three CRFs",
                        "-q"], check=True)  # fmt: skip
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = b.new_page(viewport={"width": 1280, "height": 980})
            page.goto((work / "out" / "report.html").as_uri())
            page.wait_for_function("window.reportReady === true")
            page.click('th[data-key="vmaf_mean"]')
            page.click("tr.job td.id >> text=bbb-crf40-score")
            page.screenshot(path=str(out_png))
            b.close()
    print(f"wrote {out_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
