"""Files you never lose: no command writes over one of its inputs or over another of its outputs, whatever name
(symlink, hard link, `./x`) the output is given, and folder outputs are all-or-nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE, assert_clean_error, interruptible, run_cli, write_yuv_clip

from tinysal.errors import TinysalError
from tinysal.fileio import atomic_dir, refuse_overlaps


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(3)]
    return write_yuv_clip(tmp_path / "clip.yuv", frames)


def test_refuse_overlaps_sees_through_names(tmp_path: Path) -> None:
    a = tmp_path / "a.yuv"
    a.write_bytes(b"x")
    (tmp_path / "link").symlink_to(a)
    os.link(a, tmp_path / "hard")
    for other in (a, tmp_path / "link", tmp_path / "hard", tmp_path / "." / "a.yuv"):
        with pytest.raises(TinysalError, match="an input"):
            refuse_overlaps({"--reference": str(a)}, {"--output": str(other)})
    with pytest.raises(TinysalError, match="same file"):
        refuse_overlaps({}, {"--output": str(tmp_path / "new.json"), "--plot": str(tmp_path / "new.json")})
    with pytest.raises(TinysalError, match="replaced as a whole"):
        refuse_overlaps({"input": str(a)}, {}, {"outdir": str(tmp_path)})
    # distinct files, stdout and /dev/null pass
    refuse_overlaps({"--reference": str(a)}, {"--output": str(tmp_path / "b.json"), "--plot": "-"})
    refuse_overlaps({"--reference": str(a)}, {"--output": os.devnull, "--plot": os.devnull})


@pytest.mark.parametrize(
    "argv",
    [
        ["vmaf", "-r", "{clip}", "-d", "{clip}", "-w", "96", "-h", "64", "-n", "--feature", "mobilesal",
         "-o", "{clip}"],
        ["vmaf", "-r", "{clip}", "-d", "{clip}", "-w", "96", "-h", "64", "-n", "--feature", "mobilesal",
         "-o", "{link}"],
        ["vmaf", "-r", "{clip}", "-d", "{clip}", "-w", "96", "-h", "64", "--plot", "{clip}", "-o", "{out}"],
        ["vmaf", "-r", "{clip}", "-d", "{clip}", "-w", "96", "-h", "64", "--plot", "{out}", "-o", "{out}"],
        ["vmaf", "-r", "{clip}", "-d", "{clip}", "-w", "96", "-h", "64", "--feature", "mobilesal",
         "--contact-sheet", "{out}", "-o", "{out}"],
        ["tinysal", "score", "-r", "{clip}", "-d", "{clip}", "-w", "96", "-h", "64", "-n", "--feature", "mobilesal",
         "--saliency-out", "{dir}", "-o", "{dir}/s.json"],
        ["tinysal", "encode", "{clip}", "{clip}", "-w", "96", "-H", "64", "--overwrite"],
        ["tinysal", "encode", "{clip}", "{link}", "-w", "96", "-H", "64", "--overwrite"],
        ["tinysal", "roi-maps", "{clip}", "{dir}", "-w", "96", "-H", "64"],
        ["tinysal", "export", "{clip}", "-o", "{clip}"],
        ["tinysal", "plot-run", "{clip}", "-o", "{clip}"],
        ["tinysal", "check-ops", "{clip}", "--out-json", "{link}"],
        ["tinysal", "eval", "{clip}", "{dir}", "--out-json", "{clip}"],
    ],
)
def test_no_command_writes_over_its_input(tmp_path: Path, clip: Path, argv: list[str]) -> None:
    d = tmp_path  # the clip lives in here, so an output folder here would swallow it
    link = tmp_path / "link.out"
    link.symlink_to(clip)
    before = _digest(clip)
    names = {"clip": str(clip), "link": str(link), "out": str(tmp_path / "o.json"), "dir": str(d)}
    args = [a.format(**names) for a in argv]
    p = run_cli(*args)
    assert_clean_error(p)
    assert any(w in p.stderr for w in ("an input", "same file", "replaced as a whole")), p.stderr
    assert _digest(clip) == before and link.is_symlink()
    assert not (tmp_path / "o.json").exists()


def test_plot_run_refuses_to_write_over_the_trace_it_reads(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "trace.json").write_text('{"trace": []}')
    p = run_cli("tinysal", "plot-run", str(run), "-o", str(run / "trace.json"))
    assert_clean_error(p, "an input")
    assert (run / "trace.json").read_text() == '{"trace": []}'


def test_atomic_dir_swaps_whole_and_keeps_the_old_on_error(tmp_path: Path) -> None:
    out = tmp_path / "maps"
    maps = lambda name: name.startswith("frame_")  # noqa: E731
    with atomic_dir(out, maps) as t:
        (t / "frame_000000.txt").write_text("a")
        (t / "frame_000001.txt").write_text("a")
        assert not out.exists()  # nothing under the final name before the end
    assert sorted(p.name for p in out.iterdir()) == ["frame_000000.txt", "frame_000001.txt"]
    with pytest.raises(RuntimeError), atomic_dir(out, maps) as t:
        (t / "frame_000000.txt").write_text("b")
        raise RuntimeError("disk full")
    assert (out / "frame_000000.txt").read_text() == "a" and (out / "frame_000001.txt").exists()
    with atomic_dir(out, maps) as t:
        (t / "frame_000000.txt").write_text("c")
    assert [p.name for p in out.iterdir()] == ["frame_000000.txt"]  # no stale map of the older run
    assert [p.name for p in tmp_path.iterdir()] == ["maps"]  # no temp folders left
    (out / "mine.doc").write_text("user's own")
    with pytest.raises(TinysalError, match="holds other files"), atomic_dir(out, maps):
        pass
    assert (out / "mine.doc").exists()


def test_roi_maps_is_all_or_nothing(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "maps"
    p = run_cli("tinysal", "roi-maps", str(clip), "-w", "96", "-H", "64", str(out), "--encoder", "x265",
                "--model-path", str(SMOKE), "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert len(list(out.glob("frame_*.txt"))) == 3
    # a rerun with another encoder replaces the maps: no stale x265 maps beside the new x264 ones
    p = run_cli("tinysal", "roi-maps", str(clip), "-w", "96", "-H", "64", str(out), "--encoder", "x264", "--every",
                "2", "--model-path", str(SMOKE), "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["frame_000000.qp", "frame_000002.qp"]
    # a folder with the user's own files in it is not taken over
    (out / "notes.txt").write_text("mine")
    p = run_cli("tinysal", "roi-maps", str(clip), "-w", "96", "-H", "64", str(out), "--model-path", str(SMOKE))
    assert_clean_error(p, "holds other files")
    assert (out / "notes.txt").read_text() == "mine" and (out / "frame_000000.qp").exists()


def test_roi_maps_killed_mid_run_leaves_the_old_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    one = write_yuv_clip(tmp_path / "one.yuv", [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)])
    big = tmp_path / "big.yuv"
    big.write_bytes(one.read_bytes() * 300)  # one frame converted, repeated: the test is about the kill
    one.unlink()
    out = tmp_path / "maps"
    out.mkdir()
    (out / "frame_000000.txt").write_text("old")
    cmd = [sys.executable, "-m", "tinysal.cli.main", "roi-maps", str(big), "-w", "640", "-H", "480", str(out),
           "--model-path", str(SMOKE), "-q"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, preexec_fn=interruptible)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until maps are being written into the temp folder
        tmps = [d for d in tmp_path.iterdir() if d.name.startswith(".maps.")]
        if tmps and len(list(tmps[0].iterdir())) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert [x.name for x in out.iterdir()] == ["frame_000000.txt"] and (out / "frame_000000.txt").read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["big.yuv", "maps"]


@pytest.mark.parametrize("name", ["x.webm", "x.hevc", "x.gif", "x.png", "x.y4m", "x.txt", "x.yuv", "x"])
def test_encode_refuses_outputs_it_cannot_write(tmp_path: Path, clip: Path, name: str) -> None:
    p = run_cli("tinysal", "encode", str(clip), str(tmp_path / name), "-w", "96", "-H", "64")
    assert_clean_error(p, "give a .mp4")
    assert not (tmp_path / name).exists()


def test_encode_fps_for_raw_input_and_symlinked_output(tmp_path: Path, clip: Path) -> None:
    import av

    target = tmp_path / "real.mp4"
    target.write_bytes(b"old")
    link = tmp_path / "out.mp4"
    link.symlink_to(target)
    p = run_cli("tinysal", "encode", str(clip), str(link), "-w", "96", "-H", "64", "--fps", "12", "--overwrite", "-q")
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and target.stat().st_size > 100  # the link kept, its target replaced
    with av.open(str(link)) as c:
        assert c.streams.video[0].average_rate == 12 and c.streams.video[0].frames == 3
    # --fps on an input that has its own rate is a contradiction: one line, nothing written
    p = run_cli("tinysal", "encode", str(link), str(tmp_path / "b.mp4"), "--fps", "30")
    assert_clean_error(p, "--fps is for raw YUV")
    for bad in ("0", "-3", "nan", "1e9"):
        p = run_cli("tinysal", "encode", str(clip), str(tmp_path / "c.mp4"), "-w", "96", "-H", "64", "--fps", bad)
        assert_clean_error(p, "--fps")
    assert not (tmp_path / "b.mp4").exists() and not (tmp_path / "c.mp4").exists()


def test_encode_never_replaces_a_file_that_appeared_meanwhile(tmp_path: Path, clip: Path, monkeypatch) -> None:
    """check-then-rename would replace a concurrent run's output; the final step is a no-clobber link."""
    from tinysal.encode import encoder
    from tinysal.video.readers import open_video

    out = tmp_path / "o.mp4"
    real_open = encoder._open_output

    def open_and_race(path, *a, **k):  # another process writes the output while this one encodes
        out.write_bytes(b"theirs")
        return real_open(path, *a, **k)

    monkeypatch.setattr(encoder, "_open_output", open_and_race)
    with pytest.raises(TinysalError, match="appeared while encoding"):
        encoder.encode_video(open_video(clip, 96, 64), out, encoder.EncodeSettings(preset="ultrafast"))
    assert out.read_bytes() == b"theirs"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["clip.yuv", "o.mp4"]  # no temp file left


def test_sighup_mid_encode_leaves_no_temp_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    one = write_yuv_clip(tmp_path / "one.yuv", [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)])
    big = tmp_path / "big.yuv"
    big.write_bytes(one.read_bytes() * 200)
    one.unlink()
    out = tmp_path / "o.mp4"
    # veryslow: 200 identical frames at medium can finish within the 0.3 s below on a quiet machine (CI saw the
    # complete output in place when the signal came); the test is about a signal mid-encode
    cmd = [sys.executable, "-m", "tinysal.cli.main", "encode", str(big), str(out), "-w", "640", "-H", "480", "-q",
           "--preset", "veryslow"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, preexec_fn=interruptible)
    deadline = time.time() + 60
    while time.time() < deadline and not any(x.name.startswith(".o.mp4") for x in tmp_path.iterdir()):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGHUP)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert sorted(x.name for x in tmp_path.iterdir()) == ["big.yuv"]


def test_every_listed_builtin_vmaf_model_runs(tmp_path: Path, clip: Path) -> None:
    from tinysal.features.vmaf import BUILTIN_MODELS

    for m in BUILTIN_MODELS:
        out = tmp_path / f"{m}.json"
        p = run_cli("vmaf", "-r", str(clip), "-d", str(clip), "-w", "96", "-h", "64", "--model", f"version={m}",
                    "--frame_cnt", "2", "-q", "-o", str(out))  # fmt: skip
        assert p.returncode == 0, (m, p.stderr)


@pytest.mark.parametrize("body", ['{"a": 1}', "[1, 2]", "not json", "[" * 100000])
def test_a_bad_vmaf_model_file_is_refused_before_ffmpeg(tmp_path: Path, clip: Path, body: str) -> None:
    bad = tmp_path / "m.json"
    bad.write_text(body)
    p = run_cli("vmaf", "-r", str(clip), "-d", str(clip), "-w", "96", "-h", "64", "--model", f"path={bad}", "-q",
                "-o", str(tmp_path / "o.json"))  # fmt: skip
    assert_clean_error(p, "model")
    assert "signal" not in p.stderr and not (tmp_path / "o.json").exists()


def test_dash_output_is_stdout_and_colon_names_are_files(tmp_path: Path, clip: Path) -> None:
    import json

    odd = tmp_path / "take:2.yuv"
    odd.write_bytes(clip.read_bytes())
    p = run_cli("vmaf", "-r", str(odd), "-d", str(odd), "-w", "96", "-h", "64", "-q", "-o", "-", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["pooled_metrics"]["vmaf"]["mean"] > 90
    assert not (tmp_path / "-").exists()
    # a container whose name has a colon, given relative to the working folder (FFmpeg saw a protocol "take")
    mp4 = tmp_path / "take:3.mp4"
    p = run_cli("tinysal", "encode", str(clip), str(mp4), "-w", "96", "-H", "64", "-q")
    assert p.returncode == 0, p.stderr
    p = run_cli("vmaf", "-r", "take:3.mp4", "-d", "take:3.mp4", "-q", "--feature", "mobilesal", "-o", "s.json",
                cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert len(json.loads((tmp_path / "s.json").read_text())["frames"]) == 3


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["vmaf", "-r", "{clip}", "-d", "{clip}", "-w", "96", "-h", "64", "--contact-sheet", "{tmp}/c.png"],
         "needs --feature mobilesal"),
        (["vmaf", "-r", "{clip}", "-d", "{clip}", "-w", "96", "-h", "64", "--saliency-out", "{tmp}/maps"],
         "needs --feature mobilesal"),
        (["tinysal", "encode", "{clip}", "{tmp}/o.mp4", "-w", "96", "-H", "64", "--roi-strength", "4"], "add --roi"),
        (["tinysal", "encode", "{clip}", "{tmp}/o.mp4", "-w", "96", "-H", "64", "--roi-every", "4"], "add --roi"),
        (["tinysal", "roi-eval", "{tmp}", "--sequences", ""], "no sequence"),
        (["tinysal", "roi-eval", "{tmp}", "--sequences", "a", "--model", "x.onnx"], "NAME=PATH"),
        (["tinysal", "roi-eval", "{tmp}", "--sequences", "a", "--model", "oracle=x.onnx"], "taken"),
        (["tinysal", "roi-eval", "{tmp}", "--sequences", "a", "--model", "a=x.onnx", "--model", "a=y.onnx"], "taken"),
        (["tinysal", "eval", str(SMOKE), "{tmp}", "--threads", "100000"], "at most 64"),
        (["tinysal", "eval", str(SMOKE), "{tmp}", "--threads", "-5"], "at least 0"),
        (["tinysal", "parity", "{clip}", str(SMOKE), "--tolerance", "-1"], "tolerance"),
    ],
)
def test_contradictory_options_are_one_line_before_any_work(
    tmp_path: Path, clip: Path, argv: list[str], needle: str
) -> None:
    args = [a.format(clip=clip, tmp=tmp_path) for a in argv]
    t0 = time.time()
    p = run_cli(*args)
    assert_clean_error(p, needle)
    assert time.time() - t0 < 30
    assert sorted(x.name for x in tmp_path.iterdir()) == ["clip.yuv"]


def test_api_refuses_a_bad_format_before_scoring(tmp_path: Path, clip: Path, monkeypatch) -> None:
    import tinysal
    from tinysal.features import scoring

    def never(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("scored before the format was checked")

    monkeypatch.setattr(scoring, "score_files", never)
    with pytest.raises(TinysalError, match="unknown output format"):
        tinysal.score_video(clip, width=96, height=64, output=tmp_path / "o.x", fmt="bogus")
    assert not (tmp_path / "o.x").exists()


def _davis_like(root: Path, masks: list[np.ndarray], size: tuple[int, int] = (64, 48)) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    (root / "images" / "s").mkdir(parents=True)
    (root / "masks" / "s").mkdir(parents=True)
    for i, m in enumerate(masks):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / "images" / "s" /
                                                                                            f"{i:05d}.jpg")  # fmt: skip
        Image.fromarray(m).save(root / "masks" / "s" / f"{i:05d}.png")


def test_roi_eval_on_masks_without_an_object_or_a_bomb(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    _davis_like(empty, [np.zeros((48, 64), np.uint8)] * 3)
    p = run_cli("tinysal", "roi-eval", str(empty), "--sequences", "s", "-q")
    assert_clean_error(p, "no mask marks an object")
    bomb = tmp_path / "bomb"
    _davis_like(bomb, [np.zeros((48, 64), np.uint8)] * 2)
    from PIL import Image

    # a mask PNG that claims a huge size (a tiny file: one colour compresses to nothing)
    Image.new("L", (13000, 13000)).save(bomb / "masks" / "s" / "00000.png", optimize=True)
    p = run_cli("tinysal", "roi-eval", str(bomb), "--sequences", "s", "-q")
    assert_clean_error(p, "too large")


def test_truncated_container_is_said_by_encode_and_roi_maps(tmp_path: Path, video_dir: Path) -> None:
    import imageio_ffmpeg

    full = tmp_path / "full.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(video_dir /
                    "foreman_cif_60f_h264.mp4"), "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart",
                    str(full)], check=True)  # fmt: skip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    p = run_cli("tinysal", "encode", str(cut), str(tmp_path / "o.mp4"), "--preset", "ultrafast", "-q")
    assert p.returncode == 0, p.stderr
    assert "warning:" in p.stderr and "header announces" in p.stderr
    p = run_cli("tinysal", "roi-maps", str(cut), str(tmp_path / "maps"), "--model-path", str(SMOKE), "-q")
    assert p.returncode == 0 and "header announces" in p.stderr, p.stderr
    # a command that then fails says one line, its error, not the warning and the error
    p = run_cli("tinysal", "encode", str(cut), str(tmp_path / "o.mp4"), "--preset", "ultrafast", "-q")
    assert_clean_error(p, "exists")
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = run_cli("vmaf", "-r", str(cut), "-d", str(cut), "-q", "-o", str(tmp_path / "no" / "s.json"))
    assert_clean_error(p, "does not exist")
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_truncated_container_one_frame_set_for_every_metric(tmp_path: Path, video_dir: Path) -> None:
    import json

    import imageio_ffmpeg

    full = tmp_path / "full.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(video_dir /
                    "foreman_cif_60f_h264.mp4"), "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-movflags",
                    "+faststart", str(full)],
                   check=True)  # fmt: skip
    scored = 0
    for keep in (0.4, 0.7):
        cut = tmp_path / f"cut{keep}.mp4"
        cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * keep)])
        out = tmp_path / "s.json"
        p = run_cli("vmaf", "-r", str(cut), "-d", str(cut), "--feature", "mobilesal", "-q", "-o", str(out))
        if p.returncode != 0:  # a file cut before its index: one clear line
            assert_clean_error(p)
            continue
        frames = json.loads(out.read_text())["frames"]
        assert 0 < len(frames) < 60
        assert all({"vmaf", "saliency_mean"} <= set(f["metrics"]) for f in frames)
        scored += 1
    assert scored  # the index is at the front: a cut file still plays up to the cut
