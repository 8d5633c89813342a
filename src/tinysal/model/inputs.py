"""The model's input geometry and normalisation, shared by every path that feeds it (the video feature, SOD
evaluation, the cost estimate, ROI block maps): inference size, bilinear resize matrices, ImageNet
normalisation with edge padding to the input multiple."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tinysal.model.arch import IMAGENET_MEAN, IMAGENET_STD, STRIDE

_MEAN = np.array(IMAGENET_MEAN, np.float32)
_STD = np.array(IMAGENET_STD, np.float32)


@lru_cache(maxsize=32)
def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of a 1-D bilinear resize with half-pixel centres and clamped edges
    (ONNX Resize linear/half_pixel, PyTorch align_corners=False)."""
    m = np.zeros((n_out, n_in), np.float64)
    if n_in == n_out:
        np.fill_diagonal(m, 1.0)
        return m
    scale = n_in / n_out
    x = (np.arange(n_out) + 0.5) * scale - 0.5
    x = np.clip(x, 0, n_in - 1)
    x0 = np.floor(x).astype(int)
    x1 = np.minimum(x0 + 1, n_in - 1)
    w1 = x - x0
    m[np.arange(n_out), x0] += 1 - w1
    m[np.arange(n_out), x1] += w1
    return m


@lru_cache(maxsize=32)
def pooling_weights(h_in: int, w_in: int, h_out: int, w_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column weights such that ``mean(resize(M)) == wy @ M @ wx`` (weights sum to 1)."""
    wy = bilinear_matrix(h_in, h_out).sum(0) / h_out
    wx = bilinear_matrix(w_in, w_out).sum(0) / w_out
    return wy, wx


def resize_plane(plane: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize one plane of code values to (h, w) as float32 (Pillow bilinear: antialiased when shrinking)."""
    from PIL import Image

    if plane.shape == (h, w):
        return plane.astype(np.float32)
    if plane.dtype == np.uint8:
        img = Image.fromarray(plane, "L")
    else:
        img = Image.fromarray(plane.astype(np.float32), "F")
    # reducing_gap: shrink by an integer box filter first when the factor is >= 2x (several times faster at
    # 1080p -> 256, same antialiasing intent)
    return np.asarray(img.resize((w, h), Image.BILINEAR, reducing_gap=2.0), dtype=np.float32)


def _pad_edges(x: np.ndarray, h: int, w: int) -> None:
    """Replicate the last valid row/column of a CxHpxWp array into its padding, in place."""
    if x.shape[2] > w:
        x[:, :h, w:] = x[:, :h, w - 1 : w]
    if x.shape[1] > h:
        x[:, h:, :] = x[:, h - 1 : h, :]


def padded_input(h: int, w: int, multiple: int = STRIDE) -> np.ndarray:
    """An uninitialised [1, 3, Hm, Wm] float32 model input for an h x w picture (Hm, Wm: the next multiples of the
    model's input multiple: 8 for v1/v2, 32 for v3; see ``ModelSession.input_multiple``)."""
    return np.empty((1, 3, h + (-h) % multiple, w + (-w) % multiple), np.float32)


def normalise_and_pad(rgb: np.ndarray, multiple: int = STRIDE) -> np.ndarray:
    """float RGB HxWx3 in [0, 1] -> ImageNet-normalised [1, 3, Hm, Wm], edge-replicated up to the multiple."""
    h, w = rgb.shape[:2]
    x = padded_input(h, w, multiple)
    x[0, :, :h, :w] = ((rgb - _MEAN) / _STD).transpose(2, 0, 1)
    _pad_edges(x[0], h, w)
    return x


def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Model input size (before padding) for a frame: short side scaled to ``short_side`` (0 = native)."""
    if short_side <= 0:
        return width, height
    s = short_side / min(width, height)
    return max(1, round(width * s)), max(1, round(height * s))
