from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tinysal.model.nets import count_params, create_model  # noqa: E402


@pytest.mark.parametrize("arch,expected", [("saliency_student_v2", 123_721), ("saliency_student_v1", 112_841)])
def test_param_counts(arch: str, expected: int) -> None:
    assert count_params(create_model(arch)) == expected


@pytest.mark.parametrize("arch", ["saliency_student_v1", "saliency_student_v2"])
@pytest.mark.parametrize("hw", [(8, 8), (64, 64), (72, 120), (256, 256), (272, 480)])
def test_multiples_of_8_round_trip(arch: str, hw: tuple[int, int]) -> None:
    m = create_model(arch).eval()
    with torch.no_grad():
        y = m(torch.randn(1, 3, *hw))
    assert y.shape == (1, 1, *hw)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_v1_and_v2_differ_only_in_upsampler() -> None:
    v1 = {k: v.shape for k, v in create_model("saliency_student_v1").state_dict().items()}
    v2 = {k: v.shape for k, v in create_model("saliency_student_v2").state_dict().items()}
    assert v1.keys() == v2.keys()
    differing = {k for k in v1 if v1[k] != v2[k]}
    assert differing == {"up3.up.weight", "up2.up.weight", "up1.up.weight"}


def test_unknown_arch_is_a_clear_error() -> None:
    from tinysal.errors import TinysalError

    with pytest.raises(TinysalError, match="unknown architecture"):
        create_model("resnet50")
