"""Shared fixtures. Test data is generated here, taken from packages, or read from ../shared/data. The shared
clips have stand-ins made from the bundled sample when ../shared is absent (``video_root``), so a fresh clone
exercises every command; only tests that need the shared datasets (DAVIS frames with masks, training sets) skip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TINYSAL_SHARED", ROOT.parent / "shared"))
DAVIS = SHARED / "data" / "davis2016"
VIDEO = SHARED / "data" / "video"
MODELS = ROOT / "src" / "tinysal" / "models"
SMOKE = MODELS / "saliency_student_v2_smoke.onnx"


def interruptible() -> None:
    """``preexec_fn`` for a child that a test interrupts as Ctrl-C would: SIGINT back to its default, so that
    Python installs its KeyboardInterrupt handler even when the test runner itself was started in the background
    (where the shell sets SIGINT to ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a console entry point in a subprocess (as a user would), capturing text output."""
    prog, *rest = args
    mod = {"tinysal": "tinysal.cli.main", "vmaf": "tinysal.cli.vmaf"}[prog]
    e = dict(os.environ)
    e.pop("VMAF_MOBILESAL_MODEL_PATH", None)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", mod, *rest], capture_output=True, text=True, env=e, cwd=cwd, timeout=600
    )


def assert_clean_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    """Non-zero exit, no traceback, and a one-line message naming the problem."""
    assert p.returncode != 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    err_lines = [ln for ln in p.stderr.strip().splitlines() if "error" in ln]
    assert len(err_lines) == 1, p.stderr
    for n in needles:
        assert n.lower() in p.stderr.lower(), (n, p.stderr)


@pytest.fixture(scope="session")
def smoke_model() -> Path:
    assert SMOKE.is_file()
    return SMOKE


@pytest.fixture(scope="session")
def davis() -> Path:
    if not (DAVIS / "images").is_dir():
        pytest.skip("../shared/data/davis2016 not present")
    return DAVIS


#: the shared clips the tests read: (name, width, height, frames, rate, pixel format, container options); the
#: stand-ins have the same names, sizes, frame counts, rates, pixel formats and containers (cockatoo's 280 frames
#: cut to 20: its tests read its first frame), and the bundled Big Buck Bunny excerpt's pictures
STAND_INS = (
    ("foreman_cif_60f_h264.mp4", 352, 288, 60, "30000/1001", "yuv420p", []),
    ("carphone_pristine.mp4", 176, 144, 120, "30000/1001", "yuv420p", []),
    ("bikes.mp4", 640, 272, 250, "25", "yuv420p", []),
    ("cockatoo.mp4", 1280, 720, 20, "20", "yuv444p", []),
    ("test.webm", 640, 480, 94, "30", "yuv420p", ["-f", "matroska"]),
    ("CiscoVT2people_320x192_12fps.yuv", 320, 192, 9, "12", "yuv420p", ["-f", "rawvideo"]),
)
STAND_IN_SAR = {"foreman_cif_60f_h264.mp4": "128/117"}  # as the real one's (CIF's 12:11 family)
_STAND_IN_DIR: list[Path] = []


def video_root() -> Path:
    """../shared/data/video, or (absent) a folder of stand-ins made once per session from the bundled sample."""
    if VIDEO.is_dir():
        return VIDEO
    if _STAND_IN_DIR:
        return _STAND_IN_DIR[0]
    import tempfile

    import imageio_ffmpeg

    from tinysal.cli.commands.sample import SAMPLE_CLIP

    sample = ROOT / "src" / "tinysal" / "samples" / SAMPLE_CLIP
    d = Path(tempfile.mkdtemp(prefix="tinysal-test-clips-"))
    ff = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    for name, w, h, n, rate, pix, extra in STAND_INS:
        codec = [] if name.endswith(".yuv") else ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18"]
        # the sample's frames (looped where more are needed), restamped at the clip's rate, scaled to its size
        subprocess.run([*ff, "-stream_loop", "-1", "-i", str(sample), "-frames:v", str(n), "-an", "-vf",
                        f"setpts=N/({rate})/TB,scale={w}:{h},setsar=sar={STAND_IN_SAR.get(name, '1')}:max=1000",
                        "-r", rate, "-pix_fmt", pix, *codec, *extra,
                        str(d / name)], check=True)  # fmt: skip
    _STAND_IN_DIR.append(d)
    return d


@pytest.fixture(scope="session")
def video_dir() -> Path:
    return video_root()


def make_blob_dataset(
    root: Path,
    n_groups: int = 4,
    per_group: int = 4,
    size: tuple[int, int] = (96, 72),
    seed: int = 0,
    layout: str = "generic",
) -> Path:
    """A small synthetic SOD dataset: a bright ellipse (the salient object) on textured noise.

    ``layout`` is ``generic`` (images/<seq>/NNNNN.jpg + masks/<seq>/NNNNN.png) or ``duts``
    (DUTS-TR-Image/*.jpg + DUTS-TR-Mask/*.png)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for g in range(n_groups):
        for k in range(per_group):
            cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
            rx, ry = rng.uniform(0.1, 0.25) * w, rng.uniform(0.1, 0.25) * h
            mask = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8) * 255
            img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
            colour = rng.integers(150, 256, 3)
            img[mask > 0] = colour
            if layout == "duts":
                ip = root / "DUTS-TR-Image" / f"g{g}_{k:03d}.jpg"
                mp = root / "DUTS-TR-Mask" / f"g{g}_{k:03d}.png"
            else:
                ip = root / "images" / f"seq{g}" / f"{k:05d}.jpg"
                mp = root / "masks" / f"seq{g}" / f"{k:05d}.png"
            ip.parent.mkdir(parents=True, exist_ok=True)
            mp.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(ip, quality=95)
            Image.fromarray(mask).save(mp)
    return root


@pytest.fixture
def blob_dataset(tmp_path: Path) -> Path:
    return make_blob_dataset(tmp_path / "blobs")


def write_yuv_clip(
    path: Path,
    frames: list[np.ndarray],
    pix_fmt: str = "420",
    bitdepth: int = 8,
    colorspace: str = "bt709",
    rng: str = "limited",
) -> Path:
    """Write RGB uint8 frames as raw planar YUV (what an encoder would output)."""
    from tinysal.video.colour import rgb_to_yuv444

    sx, sy = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}[pix_fmt]
    with open(path, "wb") as f:
        for fr in frames:
            y, u, v = rgb_to_yuv444(fr.astype(np.float64) / 255.0, bitdepth, colorspace, rng)
            if sx > 1 or sy > 1:  # box-filter chroma down
                h, w = u.shape
                u = u.astype(np.float64).reshape(h // sy, sy, w // sx, sx).mean((1, 3))
                v = v.astype(np.float64).reshape(h // sy, sy, w // sx, sx).mean((1, 3))
            dt = np.uint8 if bitdepth == 8 else np.dtype("<u2")
            for p in (y, u, v):
                f.write(np.rint(p).astype(dt).tobytes())
    return path


@pytest.fixture(scope="session")
def davis_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int, list[np.ndarray]]:
    """A raw I420 clip made from real DAVIS frames (blackswan, first 6), with the masks."""
    if not (DAVIS / "images").is_dir():
        pytest.skip("../shared/data/davis2016 not present")
    frames, masks = [], []
    for k in range(6):
        frames.append(np.asarray(Image.open(DAVIS / "images" / "blackswan" / f"{k:05d}.jpg").convert("RGB")))
        masks.append(np.asarray(Image.open(DAVIS / "masks" / "blackswan" / f"{k:05d}.png").convert("L")))
    h, w = frames[0].shape[:2]
    p = write_yuv_clip(tmp_path_factory.mktemp("clip") / f"blackswan_{w}x{h}.yuv", frames)
    return p, w, h, masks
