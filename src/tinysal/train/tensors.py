"""uint8 batches (NHWC images, NHW masks) to the network's tensors: ImageNet-normalised float NCHW images and
[0, 1] masks. Shared by the trainer and the calibration, which must see validation images exactly alike."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinysal.model.arch import IMAGENET_MEAN, IMAGENET_STD


def to_tensor(torch: Any, imgs: np.ndarray, masks: np.ndarray, device: Any, channels_last: bool) -> tuple[Any, Any]:
    x = torch.from_numpy(imgs).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = ((x - mean) / std).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    y = torch.from_numpy(masks).to(device).unsqueeze(1).float().div_(255.0)
    return x, y
