"""Architecture facts that inference code needs without importing torch."""

from __future__ import annotations

#: name -> (upsampler kind, expected trainable parameter count)
ARCHITECTURES: dict[str, dict[str, object]] = {
    "saliency_student_v1": {"upsampler": "convtranspose", "params": 112_841},
    "saliency_student_v2": {"upsampler": "resize_conv", "params": 123_721},
}

INPUT_NAME = "input"
OUTPUT_NAME = "saliency_map"
OPSET = 17
#: The network pools three times, so H and W must be multiples of 8.
STRIDE = 8
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
