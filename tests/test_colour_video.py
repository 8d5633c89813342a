"""Colour conversion against known values, and the video readers (raw YUV, Y4M, FFmpeg via PyAV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinysal.errors import TinysalError
from tinysal.video.colour import rgb_to_yuv444, yuv444_to_rgb
from tinysal.video.readers import AvReader, RawYuvReader, Y4mReader, open_video

# SMPTE/ITU 75% colour bars, BT.709, 8-bit limited range: (Y, Cb, Cr) -> 75% RGB (191 or 0 in 8-bit).
BARS_709 = {
    "white": ((180, 128, 128), (191, 191, 191)),
    "yellow": ((168, 44, 136), (191, 191, 0)),
    "cyan": ((145, 147, 44), (0, 191, 191)),
    "green": ((133, 63, 52), (0, 191, 0)),
    "magenta": ((63, 193, 204), (191, 0, 191)),
    "red": ((51, 109, 212), (191, 0, 0)),
    "blue": ((28, 212, 120), (0, 0, 191)),
    "black": ((16, 128, 128), (0, 0, 0)),
}


@pytest.mark.parametrize("name", list(BARS_709))
def test_75_percent_bars_bt709_within_one_code_value(name: str) -> None:
    (y, u, v), rgb = BARS_709[name]
    got = yuv444_to_rgb(np.array([[y]], np.uint8), np.array([[u]], np.uint8), np.array([[v]], np.uint8))[0, 0]
    expected = np.array(rgb) / 191 * 0.75 * 255  # 75% of full scale is 191.25 code values
    assert np.all(np.abs(got * 255 - expected) <= 1.0), (name, got * 255)


def test_bt601_differs_from_bt709_and_matches_its_own_bars() -> None:
    # 75% yellow in BT.601: Y=162, Cb=44, Cr=142
    args = (np.array([[162]]), np.array([[44]]), np.array([[142]]))
    got601 = yuv444_to_rgb(*args, colorspace="bt601")[0, 0] * 255
    got709 = yuv444_to_rgb(*args, colorspace="bt709")[0, 0] * 255
    assert np.all(np.abs(got601 - [191.25, 191.25, 0]) <= 1.1)
    assert np.abs(got709 - got601).max() > 5


@pytest.mark.parametrize("cs", ["bt601", "bt709", "bt2020"])
@pytest.mark.parametrize("rng", ["limited", "full"])
@pytest.mark.parametrize("bits", [8, 10])
def test_round_trip_within_quantisation_error(cs: str, rng: str, bits: int) -> None:
    # Rounding Y, Cb, Cr to code values costs at most half a code each; through the matrix (largest chroma
    # gain 2(1-Kb) <= 1.89) that is < 1.7 RGB code values. Anything larger is a bug in a matrix or offset.
    r = np.random.default_rng(0)
    rgb = r.uniform(0, 1, (16, 16, 3))
    y, u, v = rgb_to_yuv444(rgb, bits, cs, rng)
    back = yuv444_to_rgb(y, u, v, bits, cs, rng)
    top = (1 << bits) - 1
    assert np.abs(back - rgb).max() * top <= 1.7


def test_limited_range_10_bit_scales_offsets() -> None:
    # 10-bit limited: black Y=64, white Y=940, neutral chroma 512
    out = yuv444_to_rgb(np.array([[64, 940]]), np.array([[512, 512]]), np.array([[512, 512]]), bitdepth=10)
    assert np.allclose(out[0, 0], 0, atol=1e-6) and np.allclose(out[0, 1], 1, atol=1e-6)


# ------------------------------------------------------------------------------------------------ readers
def _planes(w: int, h: int, pix_fmt: str, bits: int, seed: int = 0):
    sx, sy = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}[pix_fmt]
    r = np.random.default_rng(seed)
    dt = np.uint8 if bits == 8 else np.uint16
    top = (1 << bits) - 1
    return (
        r.integers(0, top + 1, (h, w)).astype(dt),
        r.integers(0, top + 1, (h // sy, w // sx)).astype(dt),
        r.integers(0, top + 1, (h // sy, w // sx)).astype(dt),
    )


@pytest.mark.parametrize("pix_fmt", ["420", "422", "444"])
@pytest.mark.parametrize("bits", [8, 10])
def test_raw_reader_round_trips_planes(tmp_path: Path, pix_fmt: str, bits: int) -> None:
    frames = [_planes(64, 48, pix_fmt, bits, s) for s in range(3)]
    p = tmp_path / "c.yuv"
    with open(p, "wb") as f:
        for fr in frames:
            for pl in fr:
                f.write(pl.astype("<u2" if bits == 10 else np.uint8).tobytes())
    rd = RawYuvReader(p, 64, 48, pix_fmt, bits)
    assert rd.frame_count == 3
    got = list(rd.frames())
    assert len(got) == 3
    for g, fr in zip(got, frames):
        for a, b in zip((g.y, g.u, g.v), fr):
            assert np.array_equal(a, b)
    assert [np.array_equal(f.y, frames[2][0]) for f in rd.frames(start=2)] == [True]


def test_raw_reader_reports_leftover_bytes(tmp_path: Path) -> None:
    p = tmp_path / "c.yuv"
    p.write_bytes(b"\0" * (64 * 48 * 3 // 2 * 2 + 100))
    with pytest.raises(TinysalError, match="2 frames and 100 bytes left over"):
        RawYuvReader(p, 64, 48)


@pytest.mark.parametrize(
    "args,msg",
    [
        ((0, 48, "420", 8), "must be positive"),
        ((63, 48, "420", 8), "multiple of 2"),
        ((64, 48, "411", 8), "unsupported pixel format"),
        ((64, 48, "400", 8), "4:0:0"),
        ((64, 48, "420", 12), "bit depth"),
        ((100_000, 100_000, "420", 8), "too large"),
    ],
)
def test_raw_reader_bad_geometry(tmp_path: Path, args: tuple, msg: str) -> None:
    p = tmp_path / "c.yuv"
    p.write_bytes(b"\0" * 4608)
    with pytest.raises(TinysalError, match=msg):
        RawYuvReader(p, *args)


def _write_y4m(path: Path, frames, w: int, h: int, c: str = "420jpeg", extra: str = "") -> None:
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C{c}{extra}\n".encode())
        for fr in frames:
            f.write(b"FRAME\n")
            for pl in fr:
                f.write(pl.astype("<u2" if pl.dtype == np.uint16 else np.uint8).tobytes())


@pytest.mark.parametrize("c,pix_fmt,bits", [("420jpeg", "420", 8), ("422", "422", 8), ("444p10", "444", 10)])
def test_y4m_reader(tmp_path: Path, c: str, pix_fmt: str, bits: int) -> None:
    frames = [_planes(32, 16, pix_fmt, bits, s) for s in range(4)]
    p = tmp_path / "c.y4m"
    _write_y4m(p, frames, 32, 16, c, " XCOLORRANGE=FULL")
    rd = Y4mReader(p)
    assert (rd.width, rd.height, rd.pix_fmt, rd.bitdepth, rd.frame_count) == (32, 16, pix_fmt, bits, 4)
    assert rd.range == "full" and rd.fps == 25
    for g, fr in zip(rd.frames(), frames):
        assert all(np.array_equal(a, b) for a, b in zip((g.y, g.u, g.v), fr))


def test_y4m_errors(tmp_path: Path) -> None:
    p = tmp_path / "mono.y4m"
    p.write_bytes(b"YUV4MPEG2 W32 H16 F25:1 Cmono\nFRAME\n" + b"\0" * 512)
    with pytest.raises(TinysalError, match="4:0:0"):
        Y4mReader(p)
    t = tmp_path / "trunc.y4m"
    t.write_bytes(b"YUV4MPEG2 W32 H16 F25:1 C420jpeg\nFRAME\n" + b"\0" * 100)
    with pytest.raises(TinysalError, match="truncated"):
        Y4mReader(t)
    n = tmp_path / "not.y4m"
    n.write_bytes(b"hello")
    with pytest.raises(TinysalError, match="not a Y4M"):
        Y4mReader(n)


def test_av_reader_decodes_lossless_clip_exactly(tmp_path: Path) -> None:
    import av

    frames = [_planes(64, 48, "420", 8, s) for s in range(5)]
    p = tmp_path / "lossless.mkv"
    with av.open(str(p), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for y, u, v in frames:
            fr = av.VideoFrame(64, 48, "yuv420p")
            for k, pl in enumerate((y, u, v)):
                ls = fr.planes[k].line_size
                buf = np.zeros((pl.shape[0], ls), np.uint8)
                buf[:, : pl.shape[1]] = pl
                fr.planes[k].update(buf.tobytes())
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    rd = open_video(p)
    assert isinstance(rd, AvReader) and rd.frame_count == 5 and (rd.width, rd.height) == (64, 48)
    got = list(rd.frames())
    assert len(got) == 5
    for g, fr in zip(got, frames):
        assert all(np.array_equal(a, b) for a, b in zip((g.y, g.u, g.v), fr))


def test_av_reader_real_clips(video_dir: Path) -> None:
    rd = open_video(video_dir / "cockatoo.mp4")  # H.264 4:4:4
    assert rd.pix_fmt == "444" and (rd.width, rd.height) == (1280, 720)
    fr = next(iter(rd.frames()))
    assert fr.u.shape == (720, 1280)
    web = open_video(video_dir / "test.webm")
    assert web.frame_count == 94 and web.pix_fmt == "420"


def test_av_reader_rejects_non_video(tmp_path: Path) -> None:
    p = tmp_path / "x.mp4"
    p.write_bytes(b"definitely not an mp4" * 50)
    with pytest.raises(TinysalError, match="cannot decode"):
        open_video(p)
