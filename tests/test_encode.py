"""Saliency-guided encoding: block maps (the reference formula and formats), regions, and real encodes in which
the ROI side data changes what libx264/libx265 do."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli

av = pytest.importorskip("av")


def test_block_offsets_formula_and_edges() -> None:
    from tinysal.encode.roi import block_means, block_offsets

    m = np.zeros((40, 70), np.float32)
    m[:16, :16] = 1.0  # one fully salient block
    m[:16, 16:32] = 0.5
    m[32:, 64:] = 1.0  # the partial corner block (8x6 real pixels) is entirely salient
    g = block_offsets(m, 16, 6)
    assert g.shape == (math.ceil(40 / 16), math.ceil(70 / 16))
    assert g[0, 0] == -6 and g[0, 1] == 0 and g[1, 1] == 6 and g[2, 4] == -6
    assert block_means(m, 16)[2, 4] == 1.0
    assert np.all(np.abs(block_offsets(m, 16, 40)) <= 12)  # clamped
    # round half away from zero: s = 0.25 at strength 1 -> -1 * (-0.5) = 0.5 -> 1
    assert block_offsets(np.full((16, 16), 0.25), 16, 1)[0, 0] == 1
    assert block_offsets(np.full((16, 16), 0.75), 16, 1)[0, 0] == -1


def test_regions_cover_exactly_the_nonzero_blocks() -> None:
    from tinysal.encode.roi import regions_from_offsets

    rng = np.random.default_rng(0)
    for _ in range(20):
        g = rng.choice([-3, 0, 0, 2], size=(7, 9)).astype(np.int8)
        regs = regions_from_offsets(g, 16, 9 * 16 - 5, 7 * 16 - 3)
        back = np.zeros_like(g)
        hits = np.zeros(g.shape, int)
        for r in regs:
            back[r.y // 16 : math.ceil((r.y + r.h) / 16), r.x // 16 : math.ceil((r.x + r.w) / 16)] = r.offset
            hits[r.y // 16 : math.ceil((r.y + r.h) / 16), r.x // 16 : math.ceil((r.x + r.w) / 16)] += 1
            assert r.x + r.w <= 9 * 16 - 5 and r.y + r.h <= 7 * 16 - 3
        assert np.array_equal(back, g) and hits.max() <= 1  # exact cover, no overlaps
        assert len(regs) <= np.count_nonzero(g)


def test_roi_maps_formats_and_round_trip(tmp_path: Path, video_dir: Path) -> None:
    from tinysal.encode.roi import read_map

    clip = video_dir / "CiscoVT2people_320x192_12fps.yuv"
    for enc, ctu, suffix in (("x265", 64, ".txt"), ("svt-av1", 64, ".bin"), ("x264", 16, ".qp"), ("vvenc", 64, ".csv")):
        out = tmp_path / enc
        p = run_cli("tinysal", "roi-maps", str(clip), "-w", "320", "-H", "192", str(out), "--encoder", enc,
                    "--every", "4", "-q")  # fmt: skip
        assert p.returncode == 0, p.stderr
        files = sorted(out.iterdir())
        assert [f.name for f in files] == [f"frame_{i:06d}{suffix}" for i in (0, 4, 8)]
        rows, cols = math.ceil(192 / ctu), math.ceil(320 / ctu)
        grid = read_map(files[0], enc, rows, cols)
        assert grid.shape == (rows, cols) and np.abs(grid).max() <= 6 and grid.min() < grid.max()
    assert (tmp_path / "x265" / "frame_000000.txt").read_text().startswith("# tinysal roi-maps")
    assert (tmp_path / "svt-av1" / "frame_000000.bin").stat().st_size == 3 * 5
    from tinysal.errors import TinysalError

    with pytest.raises(TinysalError, match="the video needs"):
        read_map(tmp_path / "x264" / "frame_000000.qp", "x264", 10, 20)


def _planes(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]


def _psnr(a: list[np.ndarray], b: list[np.ndarray], mask: np.ndarray) -> float:
    h = mask.shape[0]
    mse = np.mean([((x[:h].astype(float) - y[:h]) ** 2)[mask].mean() for x, y in zip(a, b)])
    return 10 * math.log10(255**2 / mse)


def test_layered_regions_give_the_same_offsets_in_fewer_regions() -> None:
    """Applied from the end of the list (earlier regions win, as FFmpeg's libx264/libx265 wrappers do), the layered
    list reproduces every block's offset, zeros included."""
    from tinysal.encode.roi import block_offsets, layered_regions, regions_from_offsets

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:120, 0:200]
    for _ in range(10):
        cy, cx, r = rng.uniform(20, 100), rng.uniform(20, 180), rng.uniform(10, 60)
        smap = np.clip(1.2 - np.hypot(yy - cy, xx - cx) / r, 0, 1) * rng.uniform(0.5, 1)  # a soft blob
        g = block_offsets(smap, 16, 4)
        regs = layered_regions(g, 16, 200, 120)
        back = np.full(g.shape, 99, np.int16)
        for reg in reversed(regs):
            rows = slice(reg.y // 16, math.ceil((reg.y + reg.h) / 16))
            back[rows, reg.x // 16 : math.ceil((reg.x + reg.w) / 16)] = reg.offset
        assert np.array_equal(back, g)
        assert regs[-1] == type(regs[-1])(0, 0, 200, 120, int(g.max()))  # the background's offset, once
        assert len(regs) <= len(regions_from_offsets(g, 16, 200, 120))


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_layered_and_flat_region_lists_encode_identically(
    tmp_path: Path, video_dir: Path, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoders see the same per-block offsets either way: the bitstreams are byte-identical. One encoder
    thread: with frame threads, x264's one-pass bitrate control counts the planned sizes of the frames still in
    flight on other threads (ratecontrol.c, rate_estimate_qscale), so two encodes of the same frames at the same
    target can differ by timing alone (seen on a loaded CI machine)."""
    from tinysal.encode import encoder, roi
    from tinysal.video import open_video

    src = video_dir / "foreman_cif_60f_h264.mp4"
    yy, xx = np.mgrid[0:288, 0:352]

    def saliency(i: int, fr: object) -> np.ndarray:
        return np.clip(1.3 - np.hypot(yy - 144, xx - 100 - 4 * i) / 90, 0, 1)

    s = encoder.EncodeSettings(codec=codec, bitrate=200_000, preset="veryfast", roi=True, roi_every=4, threads=1)
    encoder.encode_video(open_video(src), tmp_path / "layered.mp4", s, frame_cnt=12, saliency=saliency)
    monkeypatch.setattr(encoder, "layered_regions", roi.regions_from_offsets)  # what the encoder calls
    encoder.encode_video(open_video(src), tmp_path / "flat.mp4", s, frame_cnt=12, saliency=saliency)
    assert (tmp_path / "layered.mp4").read_bytes() == (tmp_path / "flat.mp4").read_bytes()


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_roi_moves_bits_into_the_region(tmp_path: Path, video_dir: Path, codec: str) -> None:
    """Maps that favour a centre box: at the same target bitrate the box gets better, the rest worse."""
    from tinysal.encode.roi import write_map

    src = video_dir / "foreman_cif_60f_h264.mp4"
    frames = 30
    grid = np.full((18, 22), 4, np.int8)
    grid[5:13, 6:16] = -4
    maps = tmp_path / "maps"
    maps.mkdir()
    for i in range(0, frames, 10):
        write_map(maps / f"frame_{i:06d}.qp", grid, "x264", i, 16, 4)
    outs = {}
    for name, extra in (("plain", []), ("roi", ["--roi-maps", str(maps), "--roi-every", "10"])):
        outs[name] = tmp_path / f"{name}.mp4"
        p = run_cli("tinysal", "encode", str(src), str(outs[name]), "--codec", codec, "--bitrate", "150k",
                    "--frame_cnt", str(frames), "--preset", "veryfast", "-q", *extra)  # fmt: skip
        assert p.returncode == 0, p.stderr
    ref = _planes(src)[:frames]
    box = np.zeros((288, 352), bool)
    box[80:208, 96:256] = True
    plain, roi = _planes(outs["plain"]), _planes(outs["roi"])
    gain_in = _psnr(ref, roi, box) - _psnr(ref, plain, box)
    loss_out = _psnr(ref, roi, ~box) - _psnr(ref, plain, ~box)
    assert gain_in > 1.0 and loss_out < -0.5, (gain_in, loss_out)
    ratio = outs["roi"].stat().st_size / outs["plain"].stat().st_size
    assert 0.6 < ratio < 1.6  # same rate control target, not simply more bits


def test_encode_with_the_model_runs_and_refuses_bad_input(tmp_path: Path, video_dir: Path) -> None:
    src = video_dir / "foreman_cif_60f_h264.mp4"
    out = tmp_path / "o.mp4"
    p = run_cli("tinysal", "encode", str(src), str(out), "--roi", "--crf", "30", "--frame_cnt", "12", "--preset",
                "ultrafast")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert len(_planes(out)) == 12 and "ROI every" in p.stdout
    assert_clean_error(run_cli("tinysal", "encode", str(src), str(out), "--crf", "30"), "--overwrite")
    assert_clean_error(run_cli("tinysal", "encode", str(src), str(tmp_path / "a.mp4"), "--crf", "60"), "--crf")
    assert_clean_error(run_cli("tinysal", "encode", str(src), str(tmp_path / "a.mp4"), "--bitrate", "5"), "bitrate")
    assert_clean_error(run_cli("tinysal", "encode", str(src), str(tmp_path / "a.mp4"), "--bitrate", "x"), "bitrate")
    p = run_cli("tinysal", "encode", str(src), str(tmp_path / "a.mp4"), "--codec", "libvpx-vp9")
    assert p.returncode != 0 and "invalid choice" in p.stderr
    # x264-format QP maps cannot reach SVT-AV1 (its route is the pre-filter): one line, never a silent plain encode
    assert_clean_error(run_cli("tinysal", "encode", str(src), str(tmp_path / "a.mkv"), "--codec", "libsvtav1",
                               "--roi-maps", str(tmp_path)), "does not take")  # fmt: skip
    assert not (tmp_path / "a.mkv").exists()
    # a map missing halfway: one line, no output and no temp file left
    maps = tmp_path / "maps"
    maps.mkdir()
    from tinysal.encode.roi import write_map

    write_map(maps / "frame_000000.qp", np.zeros((18, 22), np.int8), "x264", 0, 16, 6)
    p = run_cli("tinysal", "encode", str(src), str(tmp_path / "b.mp4"), "--roi-maps", str(maps), "--roi-every", "5")
    assert_clean_error(p, "frame_000005", "no map")
    assert not (tmp_path / "b.mp4").exists() and not list(tmp_path.glob(".b.mp4*"))
    bad = tmp_path / "badmaps"
    bad.mkdir()
    write_map(bad / "frame_000000.qp", np.zeros((3, 4), np.int8), "x264", 0, 16, 6)
    assert_clean_error(run_cli("tinysal", "encode", str(src), str(tmp_path / "c.mp4"), "--roi-maps", str(bad)),
                       "the video needs")  # fmt: skip


def test_default_roi_strength_is_per_codec_and_an_explicit_one_wins() -> None:
    from tinysal.encode.codecs import CODECS
    from tinysal.encode.encoder import EncodeSettings, check_settings

    for codec in ("libx264", "libx265"):
        s = EncodeSettings(codec=codec, roi=True)
        check_settings(s)
        assert s.roi_strength == CODECS[codec].roi_strength
    # the sweep in docs/benchmarks.md
    assert {k: c.roi_strength for k, c in CODECS.items() if c.saliency == "qp-offsets"} == {"libx264": 3.0,
                                                                                         "libx265": 2.0}
    s = EncodeSettings(codec="libx265", roi=True, roi_strength=5.0)
    check_settings(s)
    assert s.roi_strength == 5.0


@pytest.mark.parametrize("block", [16, 64])
def test_block_means_without_the_frame_size_map_match_the_map(video_dir: Path, block: int) -> None:
    """The folded matrices give the block means of the upsampled map (partial edge blocks included)."""
    from tinysal.encode.roi import SaliencyBlocks, block_means
    from tinysal.video import open_video

    fr = next(iter(open_video(video_dir / "foreman_cif_60f_h264.mp4").frames()))  # 352x288: 64 leaves partials
    sb = SaliencyBlocks()
    direct = block_means(sb.frame_map(fr), block)
    folded = sb.block_means(fr, block)
    assert folded.shape == direct.shape == (math.ceil(288 / block), math.ceil(352 / block))
    assert np.abs(folded - direct).max() < 1e-5 and folded.std() > 0.01  # a real map, not a constant


def test_encode_keeps_audio_aspect_metadata_and_chapters(tmp_path: Path, video_dir: Path) -> None:
    """What FFmpeg keeps when it transcodes, tinysal encode keeps: audio (copied, or AAC where the container cannot
    hold it), SAR, container metadata, chapters; --no-audio drops the audio only."""
    import av
    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    meta = tmp_path / "meta.txt"
    meta.write_text(";FFMETADATA1\ntitle=A title\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=500\ntitle=One\n"
                    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=500\nEND=1000\ntitle=Two\n")  # fmt: skip
    src = tmp_path / "in.mp4"
    run = ["-v", "error", "-y"]
    subprocess.run([ff, *run, "-i", str(video_dir / "foreman_cif_60f_h264.mp4"), "-f", "lavfi", "-i",
                    "sine=f=440:d=1", "-i", str(meta), "-map", "0:v", "-map", "1:a", "-map_metadata", "2",
                    "-map_chapters", "2", "-frames:v", "30", "-c:v", "copy", "-c:a", "aac", str(src)], check=True)
    mkv = tmp_path / "in.mkv"  # audio that an .mp4 cannot hold
    subprocess.run([ff, *run, "-i", str(src), "-map", "0:v", "-map", "0:a", "-c:v", "copy", "-c:a", "adpcm_ima_wav",
                    str(mkv)], check=True)  # fmt: skip
    for inp, out, extra, codec in ((src, "a.mp4", [], "aac"), (mkv, "b.mp4", [], "aac"), (src, "c.mp4",
                                   ["--no-audio"], None)):  # fmt: skip
        p = run_cli("tinysal", "encode", str(inp), str(tmp_path / out), "--preset", "ultrafast", "-q", *extra)
        assert p.returncode == 0, p.stderr
        with av.open(str(tmp_path / out)) as c:
            v = c.streams.video[0]
            assert v.codec_context.sample_aspect_ratio == Fraction(128, 117)
            assert [a.codec_context.name for a in c.streams.audio] == ([codec] if codec else [])
            if codec:
                n = sum(f.samples for f in c.decode(c.streams.audio[0]))
                assert 0.9 * 44100 < n < 1.1 * 44100  # the whole second of sound
            if inp == src:
                assert c.metadata.get("title") == "A title"
                assert [ch["metadata"].get("title") for ch in c.chapters()] == ["One", "Two"]
    assert "1 re-encoded to AAC" in run_cli("tinysal", "encode", str(mkv), str(tmp_path / "d.mp4"), "--preset",
                                             "ultrafast").stdout  # fmt: skip


def test_matroska_keeps_the_frames_at_the_inputs_times_beside_aac_priming(tmp_path: Path) -> None:
    """An AAC track starts with a priming packet 1024 samples before 0; FFmpeg's copy keeps it there in .mkv. The
    muxer's default moved every stream later instead (the first frame at 23 ms): now the frames keep their times."""
    import subprocess

    import imageio_ffmpeg

    from tinysal.encode.shots import frames_pts

    src = tmp_path / "a.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x96:r=25:d=1",
                    "-f", "lavfi", "-i", "sine=d=1", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(src)],
                   check=True)  # fmt: skip
    for ext in (".mkv", ".webm", ".mp4"):
        out = tmp_path / f"o{ext}"
        codec = "libsvtav1" if ext == ".webm" else "libx264"
        p = run_cli("tinysal", "encode", str(src), str(out), "--codec", codec, "-q")
        assert p.returncode == 0, p.stderr
        assert frames_pts(str(out)) == pytest.approx(frames_pts(str(src)), abs=1e-3), ext
        if ext == ".webm":  # WebM holds no AAC: the audio is re-encoded to Opus (it raised a traceback before)
            assert "1 re-encoded to Opus" in run_cli("tinysal", "encode", str(src), str(out), "--codec", codec,
                                                     "--overwrite").stdout  # fmt: skip
            import av

            with av.open(str(out)) as c:
                assert c.streams.audio[0].codec_context.name in ("opus", "libopus")
