"""The Python API: VmafContext, pooling, per-frame access, score_video; and the exact pooling weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_yuv_clip

import tinysal
from tinysal.errors import TinysalError
from tinysal.features.mobilesal import MobileSal, bilinear_matrix, pooling_weights, target_size
from tinysal.features.output import pool
from tinysal.video.readers import YuvFrame


def _frame(w: int = 80, h: int = 48, seed: int = 0) -> YuvFrame:
    r = np.random.default_rng(seed)
    return YuvFrame(
        r.integers(16, 236, (h, w), dtype=np.uint8),
        r.integers(16, 241, (h // 2, w // 2), dtype=np.uint8),
        r.integers(16, 241, (h // 2, w // 2), dtype=np.uint8),
        8,
        "420",
    )


def test_context_mirrors_libvmaf_usage(smoke_model: Path) -> None:
    ctx = tinysal.VmafContext(threads=1)
    ctx.use_feature("mobilesal", {"model_path": str(smoke_model)})
    frames = [_frame(seed=s) for s in range(4)]
    for i, f in enumerate(frames):
        ctx.read_pictures((f.y, f.u, f.v), (f.y, f.u, f.v), i)
    vals = [ctx.score_at_index("saliency_mean", i) for i in range(4)]
    assert ctx.score_pooled("saliency_mean", "mean") == pytest.approx(np.mean(vals))
    assert ctx.score_pooled("saliency_mean", "min") == min(vals)
    assert ctx.score_pooled("saliency_mean", "mean", 1, 2) == pytest.approx(np.mean(vals[1:3]))
    res = ctx.result()
    assert [f["frameNum"] for f in res["frames"]] == [0, 1, 2, 3]
    with pytest.raises(TinysalError, match="unknown metric"):
        ctx.score_pooled("vmaf")
    with pytest.raises(TinysalError, match="unknown feature"):
        ctx.use_feature("psnr")


def test_score_video_one_call(tmp_path: Path, smoke_model: Path) -> None:
    r = np.random.default_rng(1)
    clip = write_yuv_clip(tmp_path / "c.yuv", [r.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(3)])
    out = tmp_path / "r.xml"
    res = tinysal.score_video(clip, smoke_model, width=48, height=32, output=out, fmt="xml")
    assert len(res["frames"]) == 3 and out.read_text().startswith("<?xml")


def test_pooling_weights_are_exact() -> None:
    r = np.random.default_rng(0)
    for (hi, wi), (ho, wo) in [((256, 455), (1080, 1920)), ((36, 60), (48, 80)), ((256, 341), (96, 128))]:
        m = r.uniform(0, 1, (hi, wi))
        full = bilinear_matrix(hi, ho) @ m @ bilinear_matrix(wi, wo).T
        wy, wx = pooling_weights(hi, wi, ho, wo)
        assert float(wy @ m @ wx) == pytest.approx(full.mean(), rel=1e-12)


def test_bilinear_matrix_matches_onnx_resize() -> None:
    """Our resize is the same operator the model uses internally (ONNX Resize linear/half_pixel)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, 13, 9])
    node = helper.make_node(
        "Resize", ["x", "", "", "sizes"], ["y"], mode="linear", coordinate_transformation_mode="half_pixel"
    )
    g = helper.make_graph([node], "g", [x], [y], [sizes])
    s = ort.InferenceSession(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    a = np.random.default_rng(0).uniform(size=(5, 7)).astype(np.float32)
    got = s.run(None, {"x": a[None, None]})[0][0, 0]
    ours = bilinear_matrix(5, 13) @ a @ bilinear_matrix(7, 9).T
    assert np.allclose(got, ours, atol=1e-6)
    assert onnx.__version__


def test_default_scale_and_native(smoke_model: Path) -> None:
    assert target_size(1920, 1080, 256) == (455, 256)
    assert target_size(176, 144, 256) == (313, 256)
    assert target_size(1920, 1080, 0) == (1920, 1080)
    f = _frame(90, 50)
    sal = MobileSal(smoke_model, short_side=0)
    x = sal.preprocess(f)
    assert x.shape == (1, 3, 56, 96)  # padded up to multiples of 8
    assert np.array_equal(x[0, :, 50:, :], np.repeat(x[0, :, 49:50, :], 6, axis=1))  # edge replicated
    stats, m = sal.compute(f)
    assert m.shape == (50, 90) and stats["saliency_mean"] == pytest.approx(float(m.mean()), rel=1e-6)


def test_pool_methods() -> None:
    v = [0.2, 0.4, 0.6]
    assert pool(v, "min") == 0.2 and pool(v, "max") == 0.6 and pool(v, "mean") == pytest.approx(0.4)
    assert pool(v, "harmonic_mean") == pytest.approx(3 / sum(1 / (x + 1) for x in v) - 1)


def test_feature_params_parsing() -> None:
    from tinysal.features.mobilesal import parse_feature_params

    assert parse_feature_params(["mobilesal:model_path=a.onnx:short_side=0"]) == {
        "mobilesal": {"model_path": "a.onnx", "short_side": "0"}
    }
    assert parse_feature_params(["mobilesal:model_path=C:\\m\\x.onnx"])["mobilesal"]["model_path"] == "C:\\m\\x.onnx"
    with pytest.raises(TinysalError):
        parse_feature_params(["mobilesal"])
