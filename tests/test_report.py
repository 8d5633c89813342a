"""``tinysal report`` (issue 38, items 1-2): one self-contained page over a real batch (encode -> score chained,
a crf-search, a failed job), rendered by Debian's chromium driven by Playwright (never a browser download): no
console errors, no request leaves the file, a click sorts, a filter filters, a section opens with its plots and
contact sheet. Bad input: a folder that is not a batch output, truncated records, another version's records."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_clean_error, run_cli

SAMPLE = ROOT / "src" / "tinysal" / "samples" / "bigbuckbunny_360p.mp4"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report")
    bad = d / "not_video.mp4"
    bad.write_text("not a video")
    rows = [
        {"id": "score-30", "task": "score", "reference": str(SAMPLE), "distorted": "enc/a30.mp4",
         "feature": ["mobilesal", "xpsnr"], "frame_cnt": 40},
        {"id": "enc-30", "task": "encode", "input": str(SAMPLE), "output": "enc/a30.mp4", "crf": 30, "frame_cnt": 40,
         "preset": "veryfast"},
        {"id": "score-42", "task": "score", "reference": str(SAMPLE), "distorted": "enc/a42.mp4", "frame_cnt": 40},
        {"id": "enc-42", "task": "encode", "input": str(SAMPLE), "output": "enc/a42.mp4", "crf": 42, "frame_cnt": 40,
         "preset": "veryfast"},
        {"id": "search", "task": "crf-search", "input": str(SAMPLE), "min_vmaf": 90, "samples": 1,
         "sample_seconds": 1, "preset": "ultrafast", "frame_cnt": 40},
        {"id": "broken", "task": "score", "reference": str(SAMPLE), "distorted": str(bad)},
    ]  # fmt: skip
    (d / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = run_cli("tinysal", "batch", str(d / "m.jsonl"), "--out", str(d / "out"), "-q")
    assert p.returncode == 1, p.stderr  # the broken job fails; the rest are done
    return d / "out"


def _report(batch: Path, *extra: str) -> Path:
    p = run_cli("tinysal", "report", str(batch), *extra)
    assert p.returncode == 0, p.stderr
    return batch / "report.html"


def test_the_page_is_one_self_contained_file(batch: Path) -> None:
    page = _report(batch).read_text()
    assert "<link" not in page and "src=\"http" not in page and "@import" not in page
    assert "default-src 'none'" in page  # the page's own policy: no request may leave it
    for jid in ("score-30", "enc-30", "score-42", "enc-42", "search", "broken"):
        assert f'"id":"{jid}"' in page
    assert "data:image/jpeg;base64," in page  # the contact sheets are inside


def _browser():  # noqa: ANN202 - playwright's own types
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); CI has it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return sync_playwright()


def test_headless_chromium_renders_sorts_filters_and_opens_a_section(batch: Path) -> None:
    page_file = _report(batch)
    summary = {r["id"]: r for r in __import__("csv").DictReader((batch / "summary.csv").open())}
    with _browser() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_function("window.reportReady === true")
            ids = page.locator("tr.job td.id").all_inner_texts()
            assert sorted(ids) == sorted(summary)  # every job named
            # a click sorts by VMAF mean (ascending, jobs without one last), a second click descending
            page.click('th[data-key="vmaf_mean"]')
            ids = page.locator("tr.job td.id").all_inner_texts()
            scored = sorted((float(r["vmaf_mean"]), k) for k, r in summary.items() if r["vmaf_mean"])
            assert ids[: len(scored)] == [k for _, k in scored]
            assert page.get_attribute('th[data-key="vmaf_mean"]', "aria-sort") == "ascending"
            page.click('th[data-key="vmaf_mean"]')
            assert page.locator("tr.job td.id").all_inner_texts()[: len(scored)] == [k for _, k in scored[::-1]]
            # the filter
            page.fill("#filter", "enc-")
            assert sorted(page.locator("tr.job td.id").all_inner_texts()) == ["enc-30", "enc-42"]
            page.fill("#filter", "")
            page.select_option("#status", "failed")
            assert page.locator("tr.job td.id").all_inner_texts() == ["broken"]
            page.select_option("#status", "")
            # a title's section opens with its plots (path drawn) and its contact sheet
            page.click("tr.job td.id >> text=score-30")
            sec = page.locator("tr.detail")
            assert sec.count() == 1
            assert sec.locator("svg path").count() >= 3  # VMAF, saliency_mean, XPSNR curves
            assert "VMAF (vmaf_v0.6.1) per frame" in sec.inner_text() and "a30.mp4" in sec.inner_text()
            assert sec.locator("img.sheet").count() == 1
            assert "encode of job enc-30" in sec.inner_text()
            page.click("tr.job td.id >> text=search")
            assert page.locator("tr.detail").count() == 2
            assert "crf-search attempts" in page.locator("tr.detail", has_text="search: crf-search").inner_text()
            assert not errors, errors
            assert {u.split("#")[0] for u in requests} == {page_file.as_uri()}  # nothing left the file
        finally:
            browser.close()


def test_what_cannot_be_read_is_one_line_each_and_the_rest_reported(batch: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(batch, out)
    rec = out / "jobs" / "enc-42.json"
    rec.write_text(rec.read_text()[:100])  # truncated
    (out / "jobs" / "junk.json").write_text("[1, 2")
    old = json.loads((out / "jobs" / "enc-30.json").read_text())
    old["versions"]["tinysal"] = "0.1.0"
    (out / "jobs" / "enc-30.json").write_text(json.dumps(old))
    p = run_cli("tinysal", "report", str(out), "-o", str(tmp_path / "r.html"))
    assert p.returncode == 0, p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 3, p.stderr  # two unreadable files and one line for the other version
    assert any("enc-42.json: not reported: truncated" in w for w in warnings)
    assert any("1 records from another tinysal (0.1.0" in w for w in warnings)
    assert "5 jobs" in p.stdout and "2 files could not be reported" in p.stdout
    page = (tmp_path / "r.html").read_text()
    assert "enc-42.json: not reported" in page and '"id":"enc-30"' in page


def test_not_a_batch_output_is_one_line(tmp_path: Path) -> None:
    p = run_cli("tinysal", "report", str(tmp_path))
    assert_clean_error(p, "not a batch output")
    assert p.returncode == 2 and not (tmp_path / "report.html").exists()
    (tmp_path / "x.json").write_text('{"hello": 1}')
    assert_clean_error(run_cli("tinysal", "report", str(tmp_path / "x.json")), "nothing to report")


def test_documents_and_work_dirs_are_reported(tmp_path: Path) -> None:
    cs = tmp_path / "cs.json"
    p = run_cli("tinysal", "crf-search", str(SAMPLE), "--min-vmaf", "85", "--samples", "1", "--sample-seconds", "1",
                "--preset", "ultrafast", "--frame_cnt", "40", "--out-json", str(cs), "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    ae, work = tmp_path / "ae.json", tmp_path / "work"
    p = run_cli("tinysal", "auto-encode", str(SAMPLE), str(tmp_path / "o.mp4"), "--min-vmaf", "85", "--per-shot",
                "--preset", "ultrafast", "--samples", "1", "--frame_cnt", "40", "--work-dir", str(work),
                "--out-json", str(ae))  # fmt: skip
    assert p.returncode == 0, p.stderr
    out = tmp_path / "r.html"
    p = run_cli("tinysal", "report", str(work), str(cs), str(ae), "-o", str(out), "-q")
    assert p.returncode == 0, p.stderr
    page = out.read_text()
    assert '"task":"shot"' in page and '"id":"cs"' in page and '"id":"ae"' in page and '"shots":[' in page
