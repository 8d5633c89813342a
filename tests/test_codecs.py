"""Issue 36 (in part): one codec table read by every command; libsvtav1 beside libx264/libx265; 10-bit and 4:4:4
sources keep their depth and chroma where codec and profile carry them; --encoder-args passed through, checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import assert_clean_error, run_cli

FFMPEG = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """8-bit 4:2:0, 10-bit 4:2:0 and 8-bit 4:4:4 clips of the bundled sample, 8 frames at 320x180."""
    sample = run_cli("tinysal", "sample").stdout.strip()
    d = tmp_path_factory.mktemp("codec-sources")
    out = {}
    for name, pix, codec in (("8", "yuv420p", "libx264"), ("10", "yuv420p10le", "libx264"),
                             ("444", "yuv444p", "libx264")):  # fmt: skip
        out[name] = d / f"s{name}.mkv"
        subprocess.run([FFMPEG, "-v", "error", "-y", "-i", sample, "-frames:v", "8", "-vf", "scale=320:180",
                        "-pix_fmt", pix, "-c:v", codec, "-crf", "8", str(out[name])], check=True)  # fmt: skip
    return out


def _probe(path: Path) -> tuple[str, int]:
    import av

    with av.open(str(path)) as c:
        return c.streams.video[0].codec_context.pix_fmt, sum(1 for _ in c.decode(video=0))


@pytest.mark.parametrize("codec", ["libx264", "libx265", "libsvtav1", "libaom-av1"])
@pytest.mark.parametrize(("src", "want"), [("8", "yuv420p"), ("10", "yuv420p10le")])
def test_every_codec_encodes_8_and_10_bit_as_the_source(sources: dict, tmp_path: Path, codec: str, src: str,
                                                        want: str) -> None:  # fmt: skip
    out = tmp_path / "o.mkv"
    p = run_cli("tinysal", "encode", str(sources[src]), str(out), "--codec", codec, "--crf", "30", "-q")
    assert p.returncode == 0, p.stderr
    assert _probe(out) == (want, 8)


@pytest.mark.parametrize("codec", ["libx264", "libx265", "libsvtav1", "libaom-av1"])
@pytest.mark.parametrize("src", ["8", "10"])
def test_saliency_changes_the_bitstream_where_a_route_reaches(sources: dict, tmp_path: Path, codec: str,
                                                              src: str) -> None:  # fmt: skip
    outs = {}
    strength = "1" if codec.endswith("av1") else "6"  # the pre-filter's blur sigma; QP offsets
    for kind, extra in (("plain", []), ("roi", ["--roi", "--roi-strength", strength])):
        outs[kind] = tmp_path / f"{kind}.mkv"
        p = run_cli("tinysal", "encode", str(sources[src]), str(outs[kind]), "--codec", codec, "--crf", "30",
                    "--threads", "1", "-q", *extra)  # fmt: skip
        assert p.returncode == 0, p.stderr
    assert _probe(outs["roi"]) == _probe(outs["plain"])  # same depth and frame count
    assert outs["roi"].read_bytes() != outs["plain"].read_bytes()


def test_chroma_kept_where_the_codec_carries_it_else_converted_with_a_note(sources: dict, tmp_path: Path) -> None:
    for codec, want in (("libx264", "yuv444p"), ("libx265", "yuv444p"), ("libsvtav1", "yuv420p"),
                        ("libaom-av1", "yuv444p")):
        out = tmp_path / f"{codec}.mkv"
        p = run_cli("tinysal", "encode", str(sources["444"]), str(out), "--codec", codec, "--crf", "30")
        assert p.returncode == 0, p.stderr
        assert _probe(out) == (want, 8)
        assert ("does not carry yuv444p" in p.stderr) == (want != "yuv444p"), p.stderr


def test_bad_codec_options_are_one_line_and_leave_nothing(sources: dict, tmp_path: Path) -> None:
    src = str(sources["8"])
    cases = [
        (["--codec", "libsvtav1", "--roi-maps", str(tmp_path)], "a.mkv", "QP offsets, which libsvtav1 does not take"),
        (["--codec", "libsvtav1", "--roi"], "a.mkv", "--roi with libsvtav1 needs --roi-strength"),
        (["--codec", "libsvtav1", "--preset", "medium"], "a.mkv", "--preset for libsvtav1 must be one of -2..13"),
        (["--codec", "libsvtav1", "--crf", "70"], "a.mkv", "--crf for libsvtav1 must be 0..63"),
        (["--codec", "libx264", "--crf", "60"], "a.mkv", "--crf for libx264 must be 0..51"),
        (["--codec", "libsvtav1"], "a.mov", "cannot write libsvtav1 to 'a.mov'"),
        (["--codec", "libx264"], "a.webm", "cannot write libx264 to 'a.webm'"),
        (["--encoder-args", "crf=3"], "a.mkv", "crf is set by tinysal"),
        (["--encoder-args", "threads=4"], "a.mkv", "threads is set by tinysal"),
        (["--codec", "libsvtav1", "--encoder-args", "lp=4"], "a.mkv", "lp is set by tinysal"),
        (["--encoder-args", "bframes"], "a.mkv", "expected key=value"),
        (["--codec", "libaom-av1", "--preset", "9"], "a.mkv", "--preset for libaom-av1 must be one of 0..8"),
        (["--codec", "libaom-av1", "--encoder-args", "end-usage=vbr"], "a.mkv", "end-usage is set by tinysal"),
    ]
    for extra, name, needle in cases:
        assert_clean_error(run_cli("tinysal", "encode", src, str(tmp_path / name), *extra), needle)
    assert list(tmp_path.iterdir()) == []


def test_encoder_args_reach_the_encoder_and_are_recorded(sources: dict, tmp_path: Path) -> None:
    """x264 with bframes=0 writes no B-frames (its default writes some); the batch record says what was passed."""
    import av

    def b_frames(path: Path) -> int:
        with av.open(str(path)) as c:
            return sum(1 for f in c.decode(video=0) if int(f.pict_type) == 3)  # AV_PICTURE_TYPE_B

    for name, extra in (("dflt.mkv", []), ("nob.mkv", ["--encoder-args", "bframes=0:ref=1"])):
        p = run_cli("tinysal", "encode", str(sources["8"]), str(tmp_path / name), "--crf", "30", "-q", *extra)
        assert p.returncode == 0, p.stderr
    assert b_frames(tmp_path / "dflt.mkv") > 0 and b_frames(tmp_path / "nob.mkv") == 0
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"id": "a", "task": "encode", "input": str(sources["8"]), "output": "out/a.mkv",
                             "codec": "libsvtav1", "crf": 40, "encoder_args": "tune=0"}) + "\n")  # fmt: skip
    p = run_cli("tinysal", "batch", str(m), "--out", str(tmp_path / "b"), "-q")
    assert p.returncode == 0, p.stderr
    info = json.loads((tmp_path / "b" / "jobs" / "a.json").read_text())["info"]
    assert info["codec"] == "libsvtav1" and info["preset"] == "8" and info["encoder_args"] == "tune=0"


def test_crf_search_answers_for_libsvtav1(sources: dict, tmp_path: Path) -> None:
    out = tmp_path / "cs.json"
    p = run_cli("tinysal", "crf-search", str(sources["8"]), "--codec", "libsvtav1", "--min-vmaf", "80",
                "--samples", "1", "--sample-seconds", "0.3", "--preset", "12", "--out-json", str(out),
                "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["codec"] == "libsvtav1" and 10 <= doc["crf"] <= 55 and doc["predicted"]["vmaf"] >= 80
    assert all(10 <= a["crf"] <= 55 for a in doc["attempts"])


def test_the_table_is_what_every_command_reads() -> None:
    """One entry per codec; the commands' --codec choices and defaults come from it."""
    from tinysal.encode import codecs, encoder, search

    assert encoder.ENCODERS == tuple(codecs.CODECS)
    for name, c in codecs.CODECS.items():
        assert c.default_preset in c.presets and c.crf_range[0] <= c.first_crf <= c.crf_range[1]
        assert c.search_range[0] >= c.crf_range[0] and c.search_range[1] <= c.crf_range[1]
        opts = search.CrfSearchOptions(input="x.mp4", codec=name, min_vmaf=90)
        assert opts.preset == c.default_preset
    from tinysal.cli.main import build_parser

    parser = build_parser()
    for cmd in ("encode", "crf-search", "ladder", "roi-eval"):
        sub = parser._subparsers._group_actions[0].choices[cmd]  # type: ignore[union-attr]
        codec_action = next(a for a in sub._actions if "--codec" in a.option_strings)
        assert tuple(codec_action.choices) == tuple(codecs.CODECS), cmd


def test_the_prefilter_route_keeps_the_salient_region_and_spends_less_elsewhere(tmp_path: Path) -> None:
    """SVT-AV1 takes no QP map: with --roi its input is blended towards a blurred copy where the saliency is low.
    With a box as the saliency (as roi-eval's oracle gives a mask), at the same CRF the box keeps its quality and
    the rest loses detail and bits."""
    import math

    import av
    import numpy as np

    from tinysal.encode import encoder
    from tinysal.video.readers import open_video

    sample = run_cli("tinysal", "sample").stdout.strip()
    src = tmp_path / "s.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-i", sample, "-frames:v", "12", "-vf", "scale=320:180", "-c:v",
                    "libx264", "-crf", "5", str(src)], check=True)  # fmt: skip
    box = np.zeros((180, 320), bool)
    box[45:135, 80:240] = True

    def saliency(i: int, fr: object) -> np.ndarray:
        return box.astype(np.float32)

    outs = {}
    for kind, roi in (("plain", False), ("roi", True)):
        s = encoder.EncodeSettings(codec="libsvtav1", crf=30, preset="10", roi=roi, roi_strength=3 if roi else None)
        outs[kind] = encoder.encode_video(open_video(src), tmp_path / f"{kind}.mkv", s, saliency=saliency)

    def planes(p: Path) -> list[np.ndarray]:
        with av.open(str(p)) as c:
            return [f.to_ndarray(format="yuv420p")[:180] for f in c.decode(video=0)]

    ref = planes(src)

    def psnr(p: Path, m: np.ndarray) -> float:
        mse = np.mean([((a.astype(float) - b) ** 2)[m].mean() for a, b in zip(planes(p), ref)])
        return 10 * math.log10(255**2 / mse)

    assert outs["roi"]["video_bytes"] < 0.9 * outs["plain"]["video_bytes"]
    assert psnr(tmp_path / "roi.mkv", box) > psnr(tmp_path / "plain.mkv", box) - 0.5  # the box as it was
    assert psnr(tmp_path / "roi.mkv", ~box) < psnr(tmp_path / "plain.mkv", ~box) - 1.0  # the rest smoothed


@pytest.mark.parametrize(("src", "codec"), [("10", "libx265"), ("444", "libsvtav1"), ("444", "libx264")])
def test_crf_search_and_ladder_take_10_bit_and_444(sources: dict, tmp_path: Path, src: str, codec: str) -> None:
    """They cut their samples and rung sources in the layout the codec encodes the source in (10-bit stays 10-bit;
    4:4:4 stays 4:4:4 where the codec carries it, else is converted as encode converts it) and answer."""
    preset = ["--preset", "12"] if codec == "libsvtav1" else ["--preset", "ultrafast"]
    out = tmp_path / "cs.json"
    p = run_cli("tinysal", "crf-search", str(sources[src]), "--codec", codec, "--min-vmaf", "80", "--samples", "1",
                "--sample-seconds", "0.3", "--out-json", str(out), "-q", *preset)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert json.loads(out.read_text())["predicted"]["vmaf"] >= 80
    lj = tmp_path / "l.json"
    p = run_cli("tinysal", "ladder", str(sources[src]), "--codec", codec, "--heights", "180,90", "--crfs", "30,40",
                "--out-json", str(lj), "-q", *preset)  # fmt: skip
    assert p.returncode == 0, p.stderr
    pts = json.loads(lj.read_text())["points"]
    assert len(pts) == 4 and all(0 < pt["vmaf"] <= 100 and pt["video_kbps"] > 0 for pt in pts)
    by = {(pt["height"], pt["crf"]): pt for pt in pts}
    assert by[(180, 30.0)]["vmaf"] > by[(180, 40.0)]["vmaf"] and by[(180, 30.0)]["vmaf"] > by[(90, 30.0)]["vmaf"]


def test_libaom_runs_in_the_ffmpeg_program_and_keeps_the_audio(sources: dict, tmp_path: Path) -> None:
    """libaom-av1 is not in PyAV's FFmpeg: its frames are piped to the bundled program, which muxes them with the
    input's audio copied; the summary counts the video packets alone."""
    import av

    src = tmp_path / "a.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-i", str(sources["8"]), "-f", "lavfi", "-i", "sine=d=0.5", "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", "flac", "-shortest", str(src)], check=True)  # fmt: skip
    out = tmp_path / "o.mkv"
    p = run_cli("tinysal", "encode", str(src), str(out), "--codec", "libaom-av1", "--crf", "40", "--preset", "8")
    assert p.returncode == 0, p.stderr
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.codec.name in ("libdav1d", "libaom-av1", "av1")
        assert [a.codec_context.name for a in c.streams.audio] == ["flac"]
        vbytes = sum(pk.size for pk in c.demux(video=0) if pk.size)
    assert f"{vbytes * 8 / (8 / 25) / 1000:.1f} kbit/s video" in p.stdout
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".")]  # no temp file or log left


def test_vvc_is_one_table_entry(sources: dict, tmp_path: Path) -> None:
    """libvvenc (VVC, 10-bit 4:2:0 only, quality as qp) through the program route: 8-bit sources become 10-bit with
    a note; 10-bit stays; the pre-filter reaches it."""
    for src, extra in (("8", []), ("10", ["--roi", "--roi-strength", "1"])):
        out = tmp_path / f"v{src}.mkv"
        p = run_cli("tinysal", "encode", str(sources[src]), str(out), "--codec", "libvvenc", "--preset", "faster",
                    "--crf", "36", *extra)  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert _probe(out) == ("yuv420p10le", 8)
        assert ("8 -> 10-bit" in p.stderr) == (src == "8"), p.stderr


def test_ladder_passes_encoder_args_to_every_rung(sources: dict, tmp_path: Path) -> None:
    docs = {}
    for tag, extra in (("dflt", []), ("nob", ["--encoder-args", "bframes=0"])):
        out = tmp_path / f"{tag}.json"
        p = run_cli("tinysal", "ladder", str(sources["8"]), "--heights", "180", "--crfs", "30", "--preset",
                    "medium", "--threads", "1", "--out-json", str(out), "-q", *extra)  # fmt: skip
        assert p.returncode == 0, p.stderr
        docs[tag] = json.loads(out.read_text())["points"][0]
    assert docs["dflt"]["bytes"] != docs["nob"]["bytes"]
    assert_clean_error(run_cli("tinysal", "ladder", str(sources["8"]), "--encoder-args", "threads=2"),
                       "threads is set by tinysal")  # fmt: skip
