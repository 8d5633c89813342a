"""The `vmaf` command and `tinysal score`: documented commands, libvmaf layout, and every bad-input case."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import MODELS, assert_clean_error, run_cli, write_yuv_clip
from onnx import TensorProto, helper

CISCO = "CiscoVT2people_320x192_12fps.yuv"


@pytest.fixture
def cisco(video_dir: Path) -> Path:
    return video_dir / CISCO


@pytest.fixture(scope="module")
def synth_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 64x48 I420 clip of 5 frames (a bright square moving over noise)."""
    r = np.random.default_rng(0)
    frames = []
    for k in range(5):
        f = r.integers(0, 80, (48, 64, 3), dtype=np.uint8)
        f[10:30, 5 + 6 * k : 25 + 6 * k] = (230, 200, 40)
        frames.append(f)
    return write_yuv_clip(tmp_path_factory.mktemp("synth") / "synth_64x48.yuv", frames)


def _score_args(ref: Path, dist: Path, w: int, h: int, out: Path, *extra: str) -> list[str]:
    return [
        "--reference",
        str(ref),
        "--distorted",
        str(dist),
        "--width",
        str(w),
        "--height",
        str(h),
        "--pixel_format",
        "420",
        "--bitdepth",
        "8",
        "--feature",
        "mobilesal",
        "--output",
        str(out),
        *extra,
    ]


def _check_libvmaf_json(doc: dict, n_frames: int) -> None:
    # libvmaf's keys in libvmaf's order; then the run's provenance (which model, which inputs, which version)
    assert list(doc) == ["version", "fps", "frames", "pooled_metrics", "aggregate_metrics", "run_provenance"]
    assert doc["run_provenance"]["saliency_model"]["sha256"]
    assert [f["frameNum"] for f in doc["frames"]] == list(range(n_frames))
    vals = [f["metrics"]["saliency_mean"] for f in doc["frames"]]
    assert all(0.0 <= v <= 1.0 for v in vals)
    pooled = doc["pooled_metrics"]["saliency_mean"]
    assert list(pooled) == ["min", "max", "mean", "harmonic_mean"]
    assert pooled["min"] == pytest.approx(min(vals), abs=1e-6)
    assert pooled["max"] == pytest.approx(max(vals), abs=1e-6)
    assert pooled["mean"] == pytest.approx(sum(vals) / len(vals), abs=2e-6)
    hm = len(vals) / sum(1 / (v + 1) for v in vals) - 1  # libvmaf's harmonic mean
    assert pooled["harmonic_mean"] == pytest.approx(hm, abs=2e-6)


def test_documented_command_with_feature_params(cisco: Path, tmp_path: Path) -> None:
    from tinysal.model.registry import default_model_path

    model = default_model_path()
    out = tmp_path / "score.json"
    p = run_cli("vmaf", *_score_args(cisco, cisco, 320, 192, out, "--feature_params", f"mobilesal:model_path={model}"))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    _check_libvmaf_json(doc, 9)
    # same run through the environment variable instead of --feature_params
    out2 = tmp_path / "score2.json"
    p = run_cli("vmaf", *_score_args(cisco, cisco, 320, 192, out2), env={"VMAF_MOBILESAL_MODEL_PATH": str(model)})
    assert p.returncode == 0, p.stderr
    doc2 = json.loads(out2.read_text())
    assert [f["metrics"] for f in doc2["frames"]] == [f["metrics"] for f in doc["frames"]]


def test_model_resolution_order(synth_clip: Path, smoke_model: Path, tmp_path: Path) -> None:
    from tinysal.model.registry import default_model_path

    def mean(out: Path, env: dict | None = None, *extra: str) -> float:
        p = run_cli("vmaf", *_score_args(synth_clip, synth_clip, 64, 48, out, *extra), env=env)
        assert p.returncode == 0, p.stderr
        return json.loads(out.read_text())["pooled_metrics"]["saliency_mean"]["mean"]

    prod = default_model_path()
    m_default = mean(tmp_path / "a.json")
    m_prod = mean(tmp_path / "b.json", None, "--feature_params", f"mobilesal:model_path={prod}")
    m_smoke_env = mean(tmp_path / "c.json", {"VMAF_MOBILESAL_MODEL_PATH": str(smoke_model)})
    m_param_over_env = mean(
        tmp_path / "d.json",
        {"VMAF_MOBILESAL_MODEL_PATH": str(smoke_model)},
        "--feature_params",
        f"mobilesal:model_path={prod}",
    )
    m_by_id = mean(tmp_path / "e.json", None, "--feature_params", "mobilesal:model=saliency_student_v2_smoke")
    m_id_over_env = mean(
        tmp_path / "f.json",
        {"VMAF_MOBILESAL_MODEL_PATH": str(smoke_model)},
        "--feature_params",
        f"mobilesal:model={prod.stem}",
    )
    assert m_default == m_prod == m_param_over_env == m_id_over_env
    assert m_smoke_env != m_prod
    # the smoke fixture is the registry's smoke entry: by id or by environment, the same model
    assert m_by_id == m_smoke_env


@pytest.mark.parametrize(
    "params, msg",
    [
        ("mobilesal:model=saliency_student_v9", "no model 'saliency_student_v9' in the registry; known: saliency_"),
        ("mobilesal:model=saliency_student_v2:model_path=x.onnx", "not both"),
    ],
)
def test_model_by_registry_id_errors(synth_clip: Path, tmp_path: Path, params: str, msg: str) -> None:
    out = tmp_path / "s.json"
    p = run_cli("vmaf", *_score_args(synth_clip, synth_clip, 64, 48, out, "--feature_params", params))
    assert_clean_error(p, msg)
    assert not out.exists()


def test_xml_and_csv_and_stdout(synth_clip: Path, tmp_path: Path) -> None:
    x = tmp_path / "s.xml"
    assert run_cli("vmaf", *_score_args(synth_clip, synth_clip, 64, 48, x, "--xml")).returncode == 0
    root = ET.parse(x).getroot()
    assert root.tag == "VMAF" and len(root.find("frames")) == 5
    names = [m.get("name") for m in root.findall("pooled_metrics/metric")]
    assert names[-1] == "saliency_mean" and "vmaf" in names  # libvmaf's metrics first, then saliency
    assert root.find("frames/frame").get("saliency_mean") is not None
    c = tmp_path / "s.csv"
    assert run_cli("vmaf", *_score_args(synth_clip, synth_clip, 64, 48, c, "--csv")).returncode == 0
    lines = c.read_text().splitlines()
    header = lines[0].split(",")
    assert header[0] == "Frame" and "vmaf" in header and header[-2:] == ["saliency_mean", ""]
    assert len(lines) == 6 and lines[1].startswith("0,")
    p = run_cli("tinysal", "score", "-r", str(synth_clip), "-d", str(synth_clip), "-w", "64", "-h", "48", "-q")
    assert p.returncode == 0 and json.loads(p.stdout)["frames"][4]["frameNum"] == 4 and p.stderr == ""


def test_frame_options(synth_clip: Path, tmp_path: Path) -> None:
    def frames(*extra: str) -> list[int]:
        out = tmp_path / "f.json"
        p = run_cli("vmaf", *_score_args(synth_clip, synth_clip, 64, 48, out, *extra))
        assert p.returncode == 0, p.stderr
        return [f["frameNum"] for f in json.loads(out.read_text())["frames"]]

    assert frames("--frame_cnt", "3") == [0, 1, 2]
    assert frames("--subsample", "2") == [0, 2, 4]
    assert frames("--frame_skip_dist", "2") == [0, 1, 2]
    base = json.loads((tmp_path / "f.json").read_text())["frames"][0]["metrics"]["saliency_mean"]
    assert frames() == [0, 1, 2, 3, 4]
    third = json.loads((tmp_path / "f.json").read_text())["frames"][2]["metrics"]["saliency_mean"]
    assert base == third  # skipping two distorted frames starts scoring at the third


def test_extra_stats_and_visual_outputs(synth_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    maps = tmp_path / "maps"
    args = _score_args(
        synth_clip,
        synth_clip,
        64,
        48,
        out,
        "--feature_params",
        "mobilesal:extra_stats=1",
        "--saliency-out",
        str(maps),
        "--plot",
        str(tmp_path / "plot.png"),
        "--contact-sheet",
        str(tmp_path / "sheet.png"),
    )
    p = run_cli("vmaf", *args)
    assert p.returncode == 0, p.stderr
    m = json.loads(out.read_text())["frames"][0]["metrics"]
    assert {"saliency_mean", "saliency_centroid_x", "saliency_centroid_y", "saliency_coverage"} <= set(m)
    assert 0 <= m["saliency_centroid_x"] <= 1 and 0 <= m["saliency_coverage"] <= 1
    from PIL import Image

    pngs = sorted(maps.glob("*.png"))
    assert len(pngs) == 5 and Image.open(pngs[0]).size == (64, 48)
    saved = np.asarray(Image.open(pngs[0]), np.float64) / 255
    assert saved.mean() == pytest.approx(m["saliency_mean"], abs=2 / 255)
    assert Image.open(tmp_path / "plot.png").size[0] > 100
    assert Image.open(tmp_path / "sheet.png").size[0] >= 64


def test_npy_maps_and_native_resolution(synth_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "n.json"
    maps = tmp_path / "npy"
    p = run_cli(
        "vmaf",
        *_score_args(
            synth_clip,
            synth_clip,
            64,
            48,
            out,
            "--feature_params",
            "mobilesal:short_side=0",
            "--saliency-out",
            str(maps),
            "--saliency-format",
            "npy",
        ),
    )
    assert p.returncode == 0, p.stderr
    arr = np.load(maps / "000000.npy")
    assert arr.shape == (48, 64)  # native: the map is at frame size
    assert json.loads(out.read_text())["frames"][0]["metrics"]["saliency_mean"] == pytest.approx(
        float(arr.mean()), abs=1e-6
    )


def test_frame_count_mismatch_scores_common_prefix(synth_clip: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.yuv"
    short.write_bytes(synth_clip.read_bytes()[: 64 * 48 * 3 // 2 * 3])
    out = tmp_path / "m.json"
    p = run_cli("vmaf", *_score_args(short, synth_clip, 64, 48, out))
    assert p.returncode == 0, p.stderr
    assert "warning" in p.stderr and "common 3 frames" in p.stderr
    assert len(json.loads(out.read_text())["frames"]) == 3


# ------------------------------------------------------------------------------------------- bad input
def _bad_model(kind: str, path: Path, smoke_model: Path) -> Path:
    if kind == "disallowed":
        m = onnx.load(str(smoke_model))
        relu = next(n for n in m.graph.node if n.op_type == "Relu")
        relu.op_type = "Elu"
    elif kind == "io":
        m = onnx.load(str(smoke_model))
        m.graph.output[0].name = "prob"
        m.graph.node[-1].output[0] = "prob"
    else:
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])
        y = helper.make_tensor_value_info("saliency_map", TensorProto.FLOAT, [1, 1, "h", "w"])
        w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [5.0, 5.0, 5.0])
        nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv")]
        if kind == "nan":
            nodes += [
                helper.make_node("Sub", ["c", "c"], ["z"], name="zero"),
                helper.make_node("Div", ["z", "z"], ["saliency_map"], name="nan"),
            ]
        else:  # out of range: an un-squashed convolution
            nodes += [
                helper.make_node("Relu", ["c"], ["r"], name="relu"),
                helper.make_node("Add", ["r", "r"], ["saliency_map"], name="double"),
            ]
        m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(m.SerializeToString())
    return path


@pytest.mark.parametrize(
    "kind,msg", [("disallowed", "disallowed op"), ("io", "output names"), ("nan", "NaN"), ("range", "outside [0, 1]")]
)
def test_bad_models(kind: str, msg: str, synth_clip: Path, smoke_model: Path, tmp_path: Path) -> None:
    model = _bad_model(kind, tmp_path / f"{kind}.onnx", smoke_model)
    out = tmp_path / "o.json"
    p = run_cli(
        "vmaf", *_score_args(synth_clip, synth_clip, 64, 48, out, "--feature_params", f"mobilesal:model_path={model}")
    )
    assert_clean_error(p, msg)
    assert not out.exists()


@pytest.mark.parametrize(
    "case",
    [
        "leftover",
        "empty",
        "odd_width",
        "zero_height",
        "pix_fmt",
        "bitdepth",
        "gray",
        "missing_model",
        "malformed_params",
        "malformed_params_kv",
        "unknown_feature",
        "unknown_param",
        "no_output_dir",
        "output_is_dir",
        "huge",
        "missing_video",
    ],
)
def test_bad_inputs(case: str, synth_clip: Path, tmp_path: Path) -> None:
    ref = dist = synth_clip
    w, h = "64", "48"
    out = tmp_path / "out.json"
    extra: list[str] = []
    pix, bits = "420", "8"
    needle = {
        "leftover": "17 bytes left over",
        "empty": "zero frames",
        "odd_width": "multiple of 2",
        "zero_height": "must be positive",
        "pix_fmt": "unsupported pixel format",
        "bitdepth": "bit depth",
        "gray": "4:0:0",
        "missing_model": "model file not found",
        "malformed_params": "malformed feature params",
        "malformed_params_kv": "is not key=value",
        "unknown_feature": "unknown feature",
        "unknown_param": "unknown mobilesal parameter",
        "no_output_dir": "output folder does not exist",
        "output_is_dir": "is a directory",
        "huge": "too large",
        "missing_video": "not found",
    }[case]
    if case == "leftover":
        dist = tmp_path / "leftover.yuv"
        dist.write_bytes(synth_clip.read_bytes() + b"\0" * 17)
    elif case == "empty":
        dist = tmp_path / "empty.yuv"
        dist.write_bytes(b"")
    elif case == "odd_width":
        w = "63"
    elif case == "zero_height":
        h = "0"
    elif case == "pix_fmt":
        pix = "411"
    elif case == "bitdepth":
        bits = "12"
    elif case == "gray":
        pix = "400"
    elif case == "missing_model":
        extra = ["--feature_params", f"mobilesal:model_path={tmp_path / 'nope.onnx'}"]
    elif case == "malformed_params":
        extra = ["--feature_params", "mobilesal"]
    elif case == "malformed_params_kv":
        extra = ["--feature_params", "mobilesal:model_path"]
    elif case == "unknown_feature":
        extra = ["--feature", "banana"]
    elif case == "unknown_param":
        extra = ["--feature_params", "mobilesal:modelpath=x.onnx"]
    elif case == "no_output_dir":
        out = tmp_path / "no" / "such" / "out.json"
    elif case == "output_is_dir":
        out = tmp_path
    elif case == "huge":
        w = h = "100000"
    elif case == "missing_video":
        dist = tmp_path / "missing.yuv"
    args = [
        "--reference",
        str(ref),
        "--distorted",
        str(dist),
        "--width",
        w,
        "--height",
        h,
        "--pixel_format",
        pix,
        "--bitdepth",
        bits,
        "--feature",
        "mobilesal",
        "--output",
        str(out),
        *extra,
    ]
    p = run_cli("vmaf", *args)
    assert_clean_error(p, needle)
    if out != tmp_path:
        assert not out.exists()
    assert not list(tmp_path.glob(".out.json.*")), "temp file left behind"


def test_failure_mid_run_leaves_no_output(synth_clip: Path, tmp_path: Path, smoke_model: Path) -> None:
    """A model that fails on the first frame: the run stops and no score file (or temp file) remains."""
    model = _bad_model("nan", tmp_path / "nan.onnx", smoke_model)
    out = tmp_path / "score.json"
    out.write_text("previous results")  # an existing file is not clobbered by a failed run
    p = run_cli(
        "vmaf", *_score_args(synth_clip, synth_clip, 64, 48, out, "--feature_params", f"mobilesal:model_path={model}")
    )
    assert p.returncode != 0 and out.read_text() == "previous results"
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".")] == []


def test_version_and_help() -> None:
    p = run_cli("vmaf", "--version")
    assert p.returncode == 0 and "tinysal" in p.stdout
    p = run_cli("vmaf", "--help")
    assert p.returncode == 0 and "--feature_params" in p.stdout and "--width" in p.stdout


def test_davis_clip_default_path_tracks_the_object(davis_clip, tmp_path: Path) -> None:
    """On real frames (a sequence held out of training) the default map is far higher on the object than off it."""
    clip, w, h, masks = davis_clip
    maps = tmp_path / "maps"
    out = tmp_path / "d.json"
    p = run_cli("vmaf", *_score_args(clip, clip, w, h, out, "--saliency-out", str(maps), "--saliency-format", "npy"))
    assert p.returncode == 0, p.stderr
    from tinysal.features.mobilesal import bilinear_matrix

    fg_vals, bg_vals = [], []
    for k, mask in enumerate(masks):
        m = np.load(maps / f"{k:06d}.npy")
        full = bilinear_matrix(m.shape[0], h) @ m @ bilinear_matrix(m.shape[1], w).T
        fg = mask > 127
        fg_vals.append(full[fg].mean())
        bg_vals.append(full[~fg].mean())
    assert np.mean(fg_vals) > 2 * np.mean(bg_vals), (fg_vals, bg_vals)
    assert not math.isnan(json.loads(out.read_text())["fps"])


def test_registry_default_is_used_without_model_path(synth_clip: Path, tmp_path: Path) -> None:
    reg = json.loads((MODELS / "registry.json").read_text())
    assert any(m["status"] == "production" for m in reg["models"])
    out = tmp_path / "x.json"
    p = run_cli("vmaf", *_score_args(synth_clip, synth_clip, 64, 48, out))
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("pix_fmt,bits", [("420", 10), ("422", 8), ("444", 8), ("444", 10)])
def test_formats_agree_with_8_bit_420(davis_clip, pix_fmt: str, bits: int, tmp_path: Path) -> None:
    """The same real frames written as 4:2:0 8-bit and as another format/bit depth score (almost) the same."""
    from conftest import DAVIS
    from PIL import Image

    _, w, h, _ = davis_clip
    frames = [np.asarray(Image.open(DAVIS / "images" / "dog" / f"{k:05d}.jpg").convert("RGB")) for k in range(3)]
    ref = write_yuv_clip(tmp_path / "ref.yuv", frames)
    other = write_yuv_clip(tmp_path / "other.yuv", frames, pix_fmt=pix_fmt, bitdepth=bits)

    def score(clip: Path, fmt: str, b: int) -> list[float]:
        out = tmp_path / f"{clip.stem}.json"
        p = run_cli(
            "vmaf",
            "-r",
            str(clip),
            "-d",
            str(clip),
            "-w",
            str(w),
            "-h",
            str(h),
            "-p",
            fmt,
            "-b",
            str(b),
            "-o",
            str(out),
            "-q",
            "--feature",
            "mobilesal",
            "--no_prediction",
        )
        assert p.returncode == 0, p.stderr
        return [f["metrics"]["saliency_mean"] for f in json.loads(out.read_text())["frames"]]

    base, got = score(ref, "420", 8), score(other, pix_fmt, bits)
    assert np.allclose(base, got, atol=0.01), (base, got)


def test_y4m_and_container_inputs(synth_clip: Path, video_dir: Path, tmp_path: Path) -> None:
    """Y4M (geometry from its header) and an H.264 .mp4 go through the same command without --width/--height."""
    raw = synth_clip.read_bytes()
    fb = 64 * 48 * 3 // 2
    y4m = tmp_path / "synth.y4m"
    with open(y4m, "wb") as f:
        f.write(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n")
        for k in range(5):
            f.write(b"FRAME\n" + raw[k * fb : (k + 1) * fb])
    out_raw, out_y4m = tmp_path / "raw.json", tmp_path / "y4m.json"
    assert run_cli("vmaf", *_score_args(synth_clip, synth_clip, 64, 48, out_raw)).returncode == 0
    p = run_cli("vmaf", "-r", str(y4m), "-d", str(y4m), "--feature", "mobilesal", "-o", str(out_y4m), "-q")
    assert p.returncode == 0, p.stderr
    assert json.loads(out_y4m.read_text())["frames"] == json.loads(out_raw.read_text())["frames"]
    mp4 = video_dir / "foreman_cif_60f_h264.mp4"
    out = tmp_path / "mp4.json"
    p = run_cli("vmaf", "-r", str(mp4), "-d", str(mp4), "--feature", "mobilesal", "--frame_cnt", "6", "-o", str(out))
    assert p.returncode == 0, p.stderr
    _check_libvmaf_json(json.loads(out.read_text()), 6)
