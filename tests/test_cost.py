"""MAC counting (`tinysal cost`): exact counts on hand-built graphs and on the bundled v2 against its layer list."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import assert_clean_error, run_cli
from onnx import TensorProto, helper

from tinysal.model.cost import inference_size, model_macs

ROOT = Path(__file__).resolve().parent.parent
V2 = ROOT / "src" / "tinysal" / "models" / "saliency_student_v2.onnx"


def _model(tmp_path: Path) -> Path:
    """input [1,3,H,W] -> Conv 3->8 3x3 stride 2 pad 1 -> grouped Conv 8->8 3x3 dilation 2 pad 2 group 4 ->
    ConvTranspose 8->2 2x2 stride 2 -> Conv 2->1 1x1 -> Sigmoid."""
    rng = np.random.default_rng(0)

    def w(name: str, shape: list[int]) -> onnx.TensorProto:
        return helper.make_tensor(name, TensorProto.FLOAT, shape, rng.standard_normal(shape).ravel().tolist())

    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["a"], strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Conv", ["a", "w2"], ["b"], pads=[2, 2, 2, 2], dilations=[2, 2], group=4, kernel_shape=[3, 3]),
        helper.make_node("ConvTranspose", ["b", "w3"], ["c"], strides=[2, 2], kernel_shape=[2, 2]),
        helper.make_node("Conv", ["c", "w4"], ["d"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["d"], ["saliency_map"]),
    ]
    inits = [w("w1", [8, 3, 3, 3]), w("w2", [8, 2, 3, 3]), w("w3", [8, 2, 2, 2]), w("w4", [1, 2, 1, 1])]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("saliency_map", TensorProto.FLOAT, [1, 1, "h", "w"])
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    return p


def test_counts_strides_groups_dilations_and_transposed(tmp_path: Path) -> None:
    h, w = 16, 24
    r = model_macs(_model(tmp_path), w, h)
    half = (h // 2) * (w // 2)
    conv1 = 8 * half * 3 * 9  # stride 2: output is half size
    conv2 = 8 * half * 2 * 9  # group 4: 2 input channels per output
    tconv = 8 * half * 2 * 4  # every input element feeds 2 outputs x 2x2 taps
    head = 1 * h * w * 2
    assert r["by_op"] == {"Conv": conv1 + conv2 + head, "ConvTranspose": tconv}
    assert r["macs"] == conv1 + conv2 + head + tconv
    assert r["other_ops"] == ["Sigmoid"]
    # the count scales with the input area
    assert model_macs(_model(tmp_path), 2 * w, 2 * h)["macs"] == 4 * r["macs"]


def test_inference_size_pads_to_the_model_multiple() -> None:
    assert inference_size(1920, 1080, 256, 8) == (456, 256)
    assert inference_size(1920, 1080, 256, 32) == (480, 256)
    assert inference_size(1280, 720, 0, 32) == (1280, 736)


def _v2_analytic(h: int, w: int) -> int:
    """v2's convolutions from its architecture, each as (output pixels) x (weights): encoder 3->16->32->48 with two
    3x3 convs per stage and 2x2 max pools, a 48->48 3x3 bottleneck at 1/8, and per decoder level a bilinear x2
    resize, a 3x3 conv (to 32, 16, 8), concat with the skip and a 3x3 conv; a 1x1 head."""
    s1 = h * w
    s2, s3, s4 = s1 // 4, s1 // 16, s1 // 64
    k = 9
    enc = s1 * k * (3 * 16 + 16 * 16) + s2 * k * (16 * 32 + 32 * 32) + s3 * k * (32 * 48 + 48 * 48)
    bottleneck = s4 * k * 48 * 48
    dec = s3 * k * (48 * 32 + 80 * 32) + s2 * k * (32 * 16 + 48 * 16) + s1 * k * (16 * 8 + 24 * 8)
    return enc + bottleneck + dec + s1 * 8


@pytest.mark.skipif(not V2.exists(), reason="bundled v2 model missing")
def test_v2_cost_matches_its_architecture_and_cli(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    p = run_cli("tinysal", "cost", str(V2), "--frame", "1920x1080", "--out-json", str(out))
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    assert (rep["width"], rep["height"], rep["input_multiple"]) == (456, 256, 8)
    assert rep["macs"] == _v2_analytic(256, 456)
    assert "456x256 input" in p.stdout and f"{rep['macs'] / 1e9:.3f} GMACs" in p.stdout


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--frame", "1920x"], "expected WIDTHxHEIGHT"),
        (["--frame", "0x10"], "1..16384"),
        (["--short-side", "-1"], "at least 0"),
        (["--frame", "16000x9000", "--short-side", "0"], "beyond 8K UHD"),
    ],
)
def test_cost_bad_arguments(args: list[str], msg: str) -> None:
    if not V2.exists():
        pytest.skip("bundled v2 model missing")
    assert_clean_error(run_cli("tinysal", "cost", str(V2), *args), msg)


def test_cost_refuses_a_missing_model(tmp_path: Path) -> None:
    assert_clean_error(run_cli("tinysal", "cost", str(tmp_path / "nope.onnx")), "not found")
