"""Issue 35, wrong numbers: full-range sources are scored as decoded (libvmaf on the raw planes), and encodes keep
the input's range tag and sample aspect ratio from every input kind (Y4M, raw with --range, containers)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

FFMPEG = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def sample() -> Path:
    return Path(run_cli("tinysal", "sample").stdout.strip())


def _probe(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        return {"pix_fmt": cc.pix_fmt, "range": int(cc.color_range), "sar": str(s.sample_aspect_ratio or "1"),
                "frames": sum(1 for _ in c.decode(video=0))}  # fmt: skip


def _direct_raw(ref: Path, dist: Path, fmt: str, size: str, tmp: Path) -> list[float]:
    """libvmaf on the two files' raw planes: decoded to rawvideo in their own format (no conversion), then read
    back as plain planes, so nothing of range or tags can reach libvmaf."""
    raws = []
    for clip in (ref, dist):
        raw = tmp / f"{clip.stem}.raw"
        _ffmpeg("-i", str(clip), "-f", "rawvideo", str(raw))  # the decoder's own pixel format
        raws.append(raw)
    log = tmp / "direct.json"
    r = ["-f", "rawvideo", "-pix_fmt", fmt, "-s", size]
    _ffmpeg(*r, "-i", str(raws[1]), *r, "-i", str(raws[0]), "-lavfi",
            f"[0:v][1:v]libvmaf=log_fmt=json:log_path={log}", "-f", "null", "-")  # fmt: skip
    return [f["metrics"]["vmaf"] for f in json.loads(log.read_text())["frames"]]


@pytest.mark.parametrize(("bits", "codec", "fmt", "raw_fmt"), [
    (8, "libx264", "yuvj420p", "yuv420p"),
    (10, "libx265", "yuv420p10le", "yuv420p10le"),
])  # fmt: skip
def test_full_range_pairs_score_as_libvmaf_on_the_raw_planes(sample: Path, tmp_path: Path, bits: int, codec: str,
                                                             fmt: str, raw_fmt: str) -> None:  # fmt: skip
    ref, dist = tmp_path / "ref.mkv", tmp_path / "dist.mkv"
    quiet = ["-x265-params", "log-level=error"] if codec == "libx265" else []
    _ffmpeg("-i", str(sample), "-frames:v", "6", "-vf", "scale=w=320:h=180:out_range=full,format=" + fmt,
            "-color_range", "pc", "-c:v", codec, "-crf", "8", *quiet, str(ref))  # fmt: skip
    _ffmpeg("-i", str(ref), "-c:v", codec, "-crf", "40", "-color_range", "pc", *quiet, str(dist))
    assert _probe(ref)["range"] == _probe(dist)["range"] == 2  # both tagged full range
    out = tmp_path / "s.json"
    p = run_cli("vmaf", "-r", str(ref), "-d", str(dist), "-o", str(out), "-q")
    assert p.returncode == 0, p.stderr
    got = [f["metrics"]["vmaf"] for f in json.loads(out.read_text())["frames"]]
    want = _direct_raw(ref, dist, raw_fmt, "320x180", tmp_path)
    assert got == pytest.approx(want, abs=0.01)


def test_pairs_of_different_ranges_are_scored_as_decoded_and_said(sample: Path, tmp_path: Path) -> None:
    full, limited = tmp_path / "full.mkv", tmp_path / "limited.mkv"
    _ffmpeg("-i", str(sample), "-frames:v", "4", "-vf", "scale=w=320:h=180:out_range=full,format=yuvj420p",
            "-c:v", "libx264", "-crf", "10", str(full))  # fmt: skip
    _ffmpeg("-i", str(sample), "-frames:v", "4", "-vf", "scale=w=320:h=180,format=yuv420p", "-c:v", "libx264",
            "-crf", "10", str(limited))  # fmt: skip
    p = run_cli("vmaf", "-r", str(full), "-d", str(limited), "-o", str(tmp_path / "s.json"))
    assert p.returncode == 0, p.stderr
    assert "reference is full range and distorted limited range" in p.stderr


def _y4m_full(sample: Path, tmp: Path, frames: int = 5) -> Path:
    """A Y4M tagged full range (XCOLORRANGE=FULL, A1:1), as FFmpeg writes one from JPEG frames."""
    y4m = tmp / "full.y4m"
    _ffmpeg("-i", str(sample), "-frames:v", str(frames), "-vf", "scale=w=320:h=180:out_range=full,format=yuvj420p",
            str(y4m))  # fmt: skip
    assert b"XCOLORRANGE=FULL" in y4m.read_bytes()[:100]
    return y4m


def _libvmaf_direct(dist: Path, ref: Path, tmp: Path) -> float:
    """A plain FFmpeg libvmaf run on the two files as FFmpeg reads them (tags and all): what every other tool
    sees of the encode."""
    log = tmp / "plain.json"
    _ffmpeg("-i", str(dist), "-i", str(ref), "-lavfi", f"[0:v][1:v]libvmaf=log_fmt=json:log_path={log}", "-f",
            "null", "-")  # fmt: skip
    return json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"]


def test_encode_keeps_full_range_and_sar_from_y4m_raw_and_containers(sample: Path, tmp_path: Path) -> None:
    y4m = _y4m_full(sample, tmp_path)
    plain = tmp_path / "plain.mp4"  # what FFmpeg itself makes of it
    _ffmpeg("-i", str(y4m), "-c:v", "libx264", "-crf", "31", str(plain))
    want = _probe(plain)
    assert want["range"] == 2 and want["sar"] == "1"
    raw = tmp_path / "full.yuv"
    _ffmpeg("-i", str(y4m), "-f", "rawvideo", str(raw))
    mkv = tmp_path / "full.mkv"
    _ffmpeg("-i", str(y4m), "-c:v", "libx264", "-crf", "5", str(mkv))
    for src, extra in ((y4m, []), (raw, ["-w", "320", "-H", "180", "--range", "full"]), (mkv, [])):
        out = tmp_path / f"out-{src.suffix[1:]}.mp4"
        p = run_cli("tinysal", "encode", str(src), str(out), "--crf", "31", "-q", *extra)
        assert p.returncode == 0, p.stderr
        got = _probe(out)
        assert got["range"] == 2, (src, got)
        if src is not raw:  # raw YUV carries no aspect ratio (nor does a plain FFmpeg encode of it)
            assert got["sar"] == "1", (src, got)
    # every other tool now reads the encode as full range: a plain libvmaf run scores it as the raw planes do
    out = tmp_path / "out-y4m.mp4"
    dec = tmp_path / "out.yuv"
    _ffmpeg("-i", str(out), "-f", "rawvideo", str(dec))
    log = tmp_path / "raw.json"
    r = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "320x180"]
    _ffmpeg(*r, "-i", str(dec), *r, "-i", str(raw), "-lavfi", f"[0:v][1:v]libvmaf=log_fmt=json:log_path={log}",
            "-f", "null", "-")  # fmt: skip
    true = json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"]
    assert _libvmaf_direct(out, y4m, tmp_path) == pytest.approx(true, abs=0.05)
    # a --range that contradicts the file is one line
    p = run_cli("tinysal", "encode", str(y4m), str(tmp_path / "x.mp4"), "--range", "limited")
    assert p.returncode == 2 and "says it is full range" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_encode_keeps_variable_frame_timing_and_audio_in_sync(sample: Path, tmp_path: Path) -> None:
    """60 frames over 3.6 s (30 at 25 fps, then 30 at 12.5 fps) with 3.6 s of audio: the encode keeps each
    frame's time, lasts as long, keeps the audio alongside, and says nothing of truncation."""
    import av

    vfr = tmp_path / "vfr.mkv"
    _ffmpeg("-i", str(sample), "-f", "lavfi", "-i", "sine=frequency=440:duration=3.6", "-frames:v", "60", "-vf",
            "scale=320:180,setpts='if(lt(N,30),N*0.04,1.2+(N-30)*0.08)/TB'", "-fps_mode", "passthrough",
            "-c:v", "libx264", "-crf", "20", "-c:a", "aac", "-t", "3.6", str(vfr))  # fmt: skip
    out = tmp_path / "o.mp4"
    p = run_cli("tinysal", "encode", str(vfr), str(out), "--crf", "30")
    assert p.returncode == 0, p.stderr
    assert "truncated" not in p.stderr

    def times(path: Path) -> tuple[list[float], float]:
        with av.open(str(path)) as c:
            t = [float(f.time) for f in c.decode(video=0)]
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            end = max(float(pk.pts * pk.time_base) for pk in c.demux(a) if pk.pts is not None)
        return t, end

    (src_t, src_a), (out_t, out_a) = times(vfr), times(out)
    assert len(out_t) == 60
    assert out_t == pytest.approx(src_t, abs=0.002)  # each frame at its own time
    assert out_t[-1] > 3.4 and out_a == pytest.approx(src_a, abs=0.05)


def test_saliency_out_is_replaced_whole_and_a_folder_of_other_files_refused(sample: Path, tmp_path: Path) -> None:
    maps = tmp_path / "maps"

    def run(n: int) -> subprocess.CompletedProcess:
        return run_cli("vmaf", "-r", str(sample), "-d", str(sample), "--no_prediction", "--feature", "mobilesal",
                       "--frame_cnt", str(n), "--saliency-out", str(maps), "-o", str(tmp_path / "s.json"),
                       "-q")  # fmt: skip

    assert run(6).returncode == 0
    assert sorted(p.name for p in maps.iterdir()) == [f"{i:06d}.png" for i in range(6)]
    assert run(2).returncode == 0  # a shorter clip: no stale maps of the longer one stay
    assert sorted(p.name for p in maps.iterdir()) == ["000000.png", "000001.png"]
    (maps / "notes.txt").write_text("mine")
    before = sorted(p.name for p in maps.iterdir())
    p = run(3)
    assert p.returncode == 2 and "holds other files (notes.txt)" in p.stderr, p.stderr
    assert sorted(p.name for p in maps.iterdir()) == before and (maps / "notes.txt").read_text() == "mine"
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".")]  # no temp folder left beside it
