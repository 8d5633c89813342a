"""Architecture facts that inference code needs without importing torch."""

from __future__ import annotations

#: name -> facts: upsampler kind (TinyU-Nets), expected trainable parameter count, and the multiple that input
#: height and width must be (the network's total downsampling)
ARCHITECTURES: dict[str, dict[str, object]] = {
    "saliency_student_v1": {"upsampler": "convtranspose", "params": 112_841, "input_multiple": 8},
    "saliency_student_v2": {"upsampler": "resize_conv", "params": 123_721, "input_multiple": 8},
    "saliency_student_v3": {"upsampler": "fpn", "params": 118_553, "input_multiple": 32},
}
#: ONNX metadata key that carries a model's input multiple (absent: 8, the TinyU-Nets' and the reference's)
INPUT_MULTIPLE_KEY = "tinysal.input_multiple"

INPUT_NAME = "input"
OUTPUT_NAME = "saliency_map"
OPSET = 17
#: The TinyU-Nets pool three times, so H and W must be multiples of 8; a model may declare more (v3: 32).
STRIDE = 8


def input_multiple(arch: str) -> int:
    """The multiple an architecture's input height and width must be."""
    return int(ARCHITECTURES[arch]["input_multiple"])  # type: ignore[call-overload]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
