"""saliency_student_v3: size, whole-image receptive field, ONNX contract with a 32 input multiple that every
padding path honours (mobilesal, eval, parity, training validation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, make_blob_dataset, run_cli

torch = pytest.importorskip("torch")

V3 = "saliency_student_v3"


def test_v3_size_and_shapes() -> None:
    from tinysal.model.arch import ARCHITECTURES, input_multiple
    from tinysal.model.nets import count_params, create_model

    m = create_model(V3).eval()
    assert count_params(m) == ARCHITECTURES[V3]["params"] <= 130_000
    assert input_multiple(V3) == 32
    with torch.no_grad():
        for hw in ((32, 32), (256, 448), (96, 160)):
            y = m(torch.randn(1, 3, *hw))
            assert y.shape == (1, 1, *hw) and 0 <= float(y.min()) and float(y.max()) <= 1


def test_v3_sees_the_whole_image() -> None:
    """The output's bottom-right pixel depends on the input's top-left corner for v3 (non-zero gradient through the
    global context path and the 1/32 stage) but not for v2, whose receptive field is ~60 pixels."""
    from tinysal.model.nets import create_model

    torch.manual_seed(0)
    for arch, reaches in ((V3, True), ("saliency_student_v2", False)):
        m = create_model(arch).eval().double()
        x = torch.randn(1, 3, 256, 256, dtype=torch.float64, requires_grad=True)
        m.logits(x)[0, 0, -1, -1].backward()
        corner = x.grad[0, :, :32, :32].abs().sum().item()
        assert (corner > 0) == reaches, (arch, corner)


@pytest.fixture(scope="module")
def v3_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tinysal.model.nets import create_model, save_checkpoint

    d = tmp_path_factory.mktemp("v3")
    torch.manual_seed(1)
    ckpt = d / "v3.pt"
    save_checkpoint(ckpt, create_model(V3).eval(), V3)
    onnx_path = d / "v3.onnx"
    p = run_cli("tinysal", "export", str(ckpt), "--output", str(onnx_path))
    assert p.returncode == 0, p.stderr
    return ckpt, onnx_path


def test_v3_export_contract_parity_and_metadata(v3_onnx: tuple[Path, Path]) -> None:
    from tinysal.model.checks import check_ops
    from tinysal.model.session import create_session

    ckpt, onnx_path = v3_onnx
    rep = check_ops(onnx_path)
    assert rep["ok"] and set(rep["op_types"]) <= {"Add", "Constant", "Conv", "GlobalAveragePool", "Identity",
                                                   "Relu", "Resize", "Sigmoid"}  # fmt: skip
    assert create_session(onnx_path).input_multiple == 32
    p = run_cli("tinysal", "parity", str(ckpt), str(onnx_path))
    assert p.returncode == 0, p.stderr
    assert "288x480" in p.stdout  # 272x480 rounded up to the model's multiple of 32


def test_padding_path_follows_the_model(v3_onnx: tuple[Path, Path], tmp_path: Path) -> None:
    """A 200x120 frame becomes a 427x256 map at short side 256: padded to 448x256 for v3, 432x256 for v2."""
    from tinysal.features.mobilesal import MobileSal, target_size
    from tinysal.model.registry import registry_model_path
    from tinysal.video.readers import YuvFrame

    _, onnx_path = v3_onnx
    rng = np.random.default_rng(0)
    fr = YuvFrame(rng.integers(16, 235, (120, 200), dtype=np.uint8), np.full((60, 100), 128, np.uint8),
                  np.full((60, 100), 128, np.uint8), 8, "420")  # fmt: skip
    assert target_size(200, 120, 256) == (427, 256)
    for model, padded in ((onnx_path, (256, 448)), (registry_model_path("saliency_student_v2"), (256, 432))):
        feat = MobileSal(model)
        x = feat.preprocess(fr)
        assert x.shape[2:] == padded
        stats, m = feat.compute(fr)
        assert m.shape == (256, 427) and 0 <= stats["saliency_mean"] <= 1
    out = tmp_path / "e.json"
    root = make_blob_dataset(tmp_path / "ds", n_groups=1, per_group=2)  # 96x72 images
    p = run_cli("tinysal", "eval", str(onnx_path), str(root), "--short-side", "72", "--out-json", str(out))
    assert p.returncode == 0, p.stderr


def test_v3_trains_with_the_same_command(tmp_path: Path) -> None:
    root = make_blob_dataset(tmp_path / "ds", n_groups=3, per_group=3)
    bgs = tmp_path / "bgs"
    bgs.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(bgs / "b.jpg")
    common = ["tinysal", "train", str(root), "--arch", V3, "--preset", "sod", "--epoch-samples", "16",
              "--batch-size", "4", "--resize", "72", "--val-crop", "64", "--val-fraction", "0.34",
              "--backgrounds", str(bgs), "--quiet"]  # fmt: skip
    assert_clean_error(run_cli(*common, "--stages", "48:1", "--out-dir", str(tmp_path / "bad")), "multiples of 32")
    out = tmp_path / "m.json"
    p = run_cli(*common, "--stages", "32:1,64:1", "--out-dir", str(tmp_path / "r"), "--metrics-out", str(out))
    assert p.returncode == 0, p.stderr
    m = json.loads(out.read_text())
    assert m["arch"] == V3 and m["param_count"] == 118_553 and m["parity_max_abs_diff"] <= 1e-5 and m["op_check"]
