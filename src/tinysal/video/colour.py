"""YCbCr -> RGB: every matrix, range and bit depth in one place.

For a bit depth ``n`` and scale ``s = 2**(n-8)``:

* limited ("TV") range: ``Y' = (Y - 16 s) / (219 s)``, ``Cb = (U - 128 s) / (224 s)``, ``Cr = (V - 128 s) / (224 s)``
* full ("PC") range:    ``Y' = Y / (2**n - 1)``, ``Cb = (U - 2**(n-1)) / (2**n - 1)``, likewise ``Cr``

then, with the matrix's luma weights ``Kr`` and ``Kb`` (``Kg = 1 - Kr - Kb``)::

    R = Y' + 2 (1 - Kr) Cr
    G = Y' - (2 Kb (1 - Kb) / Kg) Cb - (2 Kr (1 - Kr) / Kg) Cr
    B = Y' + 2 (1 - Kb) Cb

and R, G, B are clipped to [0, 1]. BT.709 limited range is the default (the reference extractor's behaviour).
Chroma is brought to the luma grid (4:4:4) before the conversion.
"""

from __future__ import annotations

import numpy as np

from tinysal.errors import TinysalError

MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}
RANGES = ("limited", "full")


def matrix(colorspace: str) -> np.ndarray:
    """3x3 matrix mapping (Y', Cb, Cr) to (R, G, B)."""
    try:
        kr, kb = MATRICES[colorspace]
    except KeyError:
        raise TinysalError(f"unknown colour matrix {colorspace!r}; choose one of {', '.join(MATRICES)}") from None
    kg = 1.0 - kr - kb
    return np.array(
        [[1.0, 0.0, 2 * (1 - kr)], [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg], [1.0, 2 * (1 - kb), 0.0]],
        dtype=np.float64,
    )


def range_params(bitdepth: int, rng: str) -> tuple[float, float, float, float]:
    """(y_offset, y_scale, c_offset, c_scale) so that ``Y' = (Y - y_offset) / y_scale`` etc."""
    if rng not in RANGES:
        raise TinysalError(f"unknown range {rng!r}; choose limited or full")
    s = float(1 << (bitdepth - 8))
    if rng == "limited":
        return 16 * s, 219 * s, 128 * s, 224 * s
    top = float((1 << bitdepth) - 1)
    return 0.0, top, float(1 << (bitdepth - 1)), top


def yuv_affine(bitdepth: int = 8, colorspace: str = "bt709", rng: str = "limited") -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with ``rgb = A @ [Y, U, V] + b`` for code values: range scaling folded into the matrix."""
    yo, ys, co, cs = range_params(bitdepth, rng)
    a = matrix(colorspace) * np.array([1 / ys, 1 / cs, 1 / cs])
    return a, -(a @ np.array([yo, co, co]))


def yuv444_to_planar_rgb(
    y: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    bitdepth: int = 8,
    colorspace: str = "bt709",
    rng: str = "limited",
    out: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """Planes of equal size (code values) -> float32 RGB as 3xHxW, clipped to [0, 1], then optionally mapped
    per channel as ``rgb * scale + offset`` (e.g. ImageNet normalisation) in the same pass.

    ``out`` may be a larger 3xH'xW' array; the result fills its top-left corner."""
    if not (y.shape == u.shape == v.shape):
        raise ValueError(f"planes differ in size: {y.shape} {u.shape} {v.shape}")
    h, w = y.shape
    a, b = yuv_affine(bitdepth, colorspace, rng)
    yf = y.astype(np.float32, copy=False)
    uf = u.astype(np.float32, copy=False)
    vf = v.astype(np.float32, copy=False)
    if out is None:
        out = np.empty((3, h, w), np.float32)
    for c in range(3):
        ch = out[c, :h, :w]
        np.multiply(yf, np.float32(a[c, 0]), out=ch)
        if a[c, 1]:
            ch += uf * np.float32(a[c, 1])
        if a[c, 2]:
            ch += vf * np.float32(a[c, 2])
        ch += np.float32(b[c])
        np.clip(ch, 0.0, 1.0, out=ch)
        if scale is not None:
            ch *= np.float32(scale[c])
        if offset is not None:
            ch += np.float32(offset[c])
    return out


def yuv444_to_rgb(
    y: np.ndarray, u: np.ndarray, v: np.ndarray, bitdepth: int = 8, colorspace: str = "bt709", rng: str = "limited"
) -> np.ndarray:
    """Planes of equal size (any integer or float dtype, code values) -> float32 RGB HxWx3 in [0, 1]."""
    return yuv444_to_planar_rgb(y, u, v, bitdepth, colorspace, rng).transpose(1, 2, 0)


def upsample_chroma(plane: np.ndarray, sx: int, sy: int, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour (sample replication) upsampling of a subsampled chroma plane to the luma grid."""
    if sx == 1 and sy == 1:
        return plane
    up = np.repeat(np.repeat(plane, sy, axis=0), sx, axis=1)
    return up[:height, :width]


def rgb_to_yuv444(
    rgb: np.ndarray, bitdepth: int = 8, colorspace: str = "bt709", rng: str = "limited"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`yuv444_to_rgb` (rounded code values), used to make test clips from images."""
    yo, ys, co, cs = range_params(bitdepth, rng)
    inv = np.linalg.inv(matrix(colorspace))
    ycc = rgb.astype(np.float64) @ inv.T
    top = (1 << bitdepth) - 1
    dt = np.uint8 if bitdepth == 8 else np.uint16
    y = np.clip(np.rint(ycc[..., 0] * ys + yo), 0, top).astype(dt)
    u = np.clip(np.rint(ycc[..., 1] * cs + co), 0, top).astype(dt)
    v = np.clip(np.rint(ycc[..., 2] * cs + co), 0, top).astype(dt)
    return y, u, v
