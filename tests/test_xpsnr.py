"""XPSNR (issue 38, item 3): ``--feature xpsnr`` gives per-frame xpsnr_y/u/v equal to FFmpeg's xpsnr filter on the
same frames (computed in libvmaf's own FFmpeg child), pooled like the others in JSON/XML/CSV; ``--min-xpsnr`` is a
target of crf-search and auto-encode."""

from __future__ import annotations

import csv
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_clean_error, run_cli

SAMPLE = ROOT / "src" / "tinysal" / "samples" / "bigbuckbunny_360p.mp4"


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("xpsnr")
    out = {}
    for depth, fmt in ((8, "yuv420p"), (10, "yuv420p10le")):
        ref = d / f"ref{depth}.yuv"
        _ffmpeg("-i", str(SAMPLE), "-frames:v", "20", "-vf", f"scale=320:180,format={fmt}", "-f", "rawvideo", str(ref))
        enc = d / f"enc{depth}.mkv"
        _ffmpeg("-f", "rawvideo", "-pix_fmt", fmt, "-s", "320x180", "-r", "25", "-i", str(ref), "-c:v", "libx264",
                "-crf", "35", "-preset", "ultrafast", str(enc))  # fmt: skip
        out[f"ref{depth}"], out[f"enc{depth}"] = ref, enc
    return out


def _filter_stats(ref: Path, enc: Path, fmt: str) -> dict[int, dict[str, float]]:
    """FFmpeg's xpsnr on the pair, run directly (the distorted first), as its stats file says."""
    from tinysal.features.vmaf import read_xpsnr_log

    log = enc.with_suffix(f".{fmt}.xpsnr.txt")
    _ffmpeg("-f", "rawvideo", "-pix_fmt", fmt, "-s", "320x180", "-i", str(ref), "-i", str(enc), "-lavfi",
            f"[1:v][0:v]xpsnr=stats_file={log}", "-f", "null", "-")  # fmt: skip
    return read_xpsnr_log(str(log))


@pytest.mark.parametrize("depth", [8, 10])
def test_xpsnr_equals_the_filter_per_frame(pair: dict[str, Path], tmp_path: Path, depth: int) -> None:
    fmt = "yuv420p" if depth == 8 else "yuv420p10le"
    ref, enc = pair[f"ref{depth}"], pair[f"enc{depth}"]
    out = tmp_path / "x.json"
    p = run_cli("vmaf", "-r", str(ref), "-d", str(enc), "-w", "320", "-h", "180", "-p", "420", "-b", str(depth),
                "--feature", "xpsnr", "--json", "-o", str(out), "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    want = _filter_stats(ref, enc, fmt)
    assert len(doc["frames"]) == len(want) == 20
    for fr in doc["frames"]:
        got = {k: fr["metrics"][k] for k in ("xpsnr_y", "xpsnr_u", "xpsnr_v")}
        assert got == want[fr["frameNum"]], fr["frameNum"]  # the stats file's 4 decimals, exactly
        assert "vmaf" in fr["metrics"]  # from the same child
    pooled = doc["pooled_metrics"]["xpsnr_y"]
    ys = [want[i]["xpsnr_y"] for i in range(20)]
    assert pooled["min"] == pytest.approx(min(ys)) and pooled["mean"] == pytest.approx(sum(ys) / 20)


def test_xpsnr_in_xml_csv_with_subsample_and_identical_frames(pair: dict[str, Path], tmp_path: Path) -> None:
    ref, enc = pair["ref8"], pair["enc8"]
    raw = ["-w", "320", "-h", "180", "-p", "420", "-b", "8"]
    xml, table = tmp_path / "x.xml", tmp_path / "x.csv"
    assert run_cli("vmaf", "-r", str(ref), "-d", str(enc), *raw, "--feature", "xpsnr", "--subsample", "5", "--xml",
                   "-o", str(xml), "-q").returncode == 0  # fmt: skip
    frames = ET.parse(xml).getroot().iter("frame")
    want = _filter_stats(ref, enc, "yuv420p")
    nums = []
    for fr in frames:
        n = int(fr.get("frameNum"))
        nums.append(n)
        assert float(fr.get("xpsnr_u")) == want[n]["xpsnr_u"]
    assert nums == [0, 5, 10, 15]  # libvmaf's frames, each with the filter's value for that frame
    assert run_cli("vmaf", "-r", str(ref), "-d", str(enc), *raw, "--feature", "xpsnr", "--csv", "-o", str(table),
                   "-q").returncode == 0  # fmt: skip
    rows = list(csv.DictReader(table.open()))
    assert float(rows[3]["xpsnr_v"]) == want[3]["xpsnr_v"]
    # identical frames: the filter says inf; JSON holds no infinity, so the cap
    same = tmp_path / "same.json"
    p = run_cli("vmaf", "-r", str(ref), "-d", str(ref), *raw, "--feature", "xpsnr", "--json", "-o", str(same), "-q")
    assert p.returncode == 0, p.stderr
    from tinysal.features.vmaf import XPSNR_CAP

    assert json.loads(same.read_text())["frames"][0]["metrics"]["xpsnr_y"] == XPSNR_CAP


def test_bad_xpsnr_options_are_one_line(pair: dict[str, Path]) -> None:
    raw = ["-w", "320", "-h", "180", "-p", "420", "-b", "8"]
    p = run_cli("vmaf", "-r", str(pair["ref8"]), "-d", str(pair["enc8"]), *raw, "--feature", "xpsnr:x=1")
    assert_clean_error(p, "xpsnr takes no parameters")
    p = run_cli("tinysal", "crf-search", str(SAMPLE), "--min-vmaf", "80", "--min-xpsnr", "300")
    assert_clean_error(p, "--min-xpsnr must be 0..100")


def test_crf_search_and_auto_encode_keep_xpsnr_at_the_target(tmp_path: Path) -> None:
    out = tmp_path / "cs.json"
    p = run_cli("tinysal", "crf-search", str(SAMPLE), "--min-vmaf", "50", "--min-xpsnr", "36", "--samples", "1",
                "--sample-seconds", "1", "--preset", "ultrafast", "--frame-cnt", "50", "--threads", "1",
                "--out-json", str(out), "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["predicted"]["xpsnr"] >= 36 and doc["predicted"]["vmaf"] > 50
    above = [a for a in doc["attempts"] if a["crf"] > doc["crf"]]
    assert above and all(a["xpsnr"] < 36 for a in above)  # XPSNR was the binding target: the next CRF misses it
    d = tmp_path / "ae.json"
    p = run_cli("tinysal", "auto-encode", str(SAMPLE), str(tmp_path / "o.mp4"), "--min-vmaf", "50", "--min-xpsnr",
                "36", "--per-shot", "--preset", "ultrafast", "--samples", "1", "--frame-cnt", "50", "--out-json",
                str(d))  # fmt: skip
    assert p.returncode == 0, p.stderr
    for s in json.loads(d.read_text())["shots"]:
        assert s["measured"]["xpsnr"] >= 36 - 0.3, s
