"""The ``mobilesal`` feature: YUV frame -> saliency map -> per-frame statistics.

Default execution runs the model at its training scale (frame resized so its short side is 256) and pools the
map *as if* resized back to the frame: a separable bilinear resize (half-pixel centres, edge clamp) is linear, so
the frame-resolution mean equals a weighted mean of the small map with the resize's column sums as weights —
exact, without building the full-resolution map. ``short_side=0`` runs at native resolution.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.model.inputs import (  # noqa: F401 (re-exported: the feature's preprocessing)
    _MEAN,
    _STD,
    _pad_edges,
    bilinear_matrix,
    normalise_and_pad,
    padded_input,
    pooling_weights,
    resize_plane,
    target_size,
)
from tinysal.video.colour import upsample_chroma, yuv444_to_planar_rgb
from tinysal.video.readers import SUBSAMPLING, YuvFrame

METRIC = "saliency_mean"
EXTRA_METRICS = ("saliency_centroid_x", "saliency_centroid_y", "saliency_coverage")
ROI_PSNR = "psnr_y_saliency"
DEFAULT_SHORT_SIDE = 256


class MobileSal:
    """Saliency feature extractor. Create once; call :meth:`compute` per frame."""

    name = "mobilesal"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        short_side: int = DEFAULT_SHORT_SIDE,
        threads: int = 0,
        colorspace: str | None = None,
        color_range: str | None = None,
        extra_stats: bool = False,
        roi_score: bool = False,
        roi_threshold: float = 0.3,
        roi_fade: float = 0.1,
        roi_weight: float = 0.5,
        psnr_saliency: bool = False,
    ) -> None:
        from tinysal.model.session import create_session

        if model_path is None:
            from tinysal.model.registry import default_model_path

            model_path = default_model_path()
        if short_side < 0:
            raise TinysalError(f"short_side must be >= 0 (0 = native resolution), got {short_side}")
        self.model_path = os.fspath(model_path)
        self.session = create_session(self.model_path, threads=threads)
        self.short_side = int(short_side)
        self.colorspace = colorspace
        self.color_range = color_range
        self.extra_stats = extra_stats
        #: saliency-weighted VMAF (a second libvmaf pass on a reference-masked copy) and the cheap weighted PSNR
        self.roi_score = roi_score
        self.psnr_saliency = psnr_saliency or roi_score
        if not (np.isfinite(roi_threshold) and np.isfinite(roi_fade) and roi_fade > 0 and 0 <= roi_weight <= 1):
            raise TinysalError("mobilesal roi_threshold must be finite, roi_fade > 0 and roi_weight in [0, 1]")
        self.roi_threshold, self.roi_fade, self.roi_weight = float(roi_threshold), float(roi_fade), float(roi_weight)

    @property
    def uses_reference(self) -> bool:
        """Whether the feature analyses the reference frames too (roi_score, psnr_saliency)."""
        return self.roi_score or self.psnr_saliency

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (METRIC,) + (EXTRA_METRICS if self.extra_stats else ()) + (ROI_PSNR,) * self.psnr_saliency

    def preprocess(self, frame: YuvFrame, colorspace: str = "bt709", color_range: str = "limited") -> np.ndarray:
        """Frame -> normalised, edge-padded [1, 3, H8, W8] float32 at the inference size."""
        tw, th = target_size(frame.width, frame.height, self.short_side)
        if (tw, th) == (frame.width, frame.height):
            sx, sy = SUBSAMPLING[frame.pix_fmt]
            y = frame.y
            u = upsample_chroma(frame.u, sx, sy, frame.width, frame.height)
            v = upsample_chroma(frame.v, sx, sy, frame.width, frame.height)
        else:  # resizing each plane straight to the target grid also brings chroma to 4:4:4
            y, u, v = (resize_plane(p, tw, th) for p in (frame.y, frame.u, frame.v))
        # convert + ImageNet-normalise in one pass, straight into the padded input tensor
        x = padded_input(th, tw, self.session.input_multiple)
        yuv444_to_planar_rgb(
            y,
            u,
            v,
            frame.bitdepth,
            self.colorspace or colorspace,
            self.color_range or color_range,
            out=x[0],
            scale=1.0 / _STD,
            offset=-_MEAN / _STD,
        )
        _pad_edges(x[0], th, tw)
        return x

    def infer(self, x: np.ndarray, width: int, height: int) -> np.ndarray:
        """Run the model on a preprocessed input; return the (unpadded) map at inference size."""
        tw, th = target_size(width, height, self.short_side)
        out = self.session.run(x)
        m = out[0, 0, :th, :tw]
        if not np.all(np.isfinite(m)):
            raise TinysalError(f"model {self.model_path} produced NaN or infinite saliency values")
        lo, hi = float(m.min()), float(m.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise TinysalError(f"model {self.model_path} produced values outside [0, 1] ({lo:.4g}..{hi:.4g})")
        return m

    def statistics(self, m: np.ndarray, width: int, height: int) -> dict[str, float]:
        """Per-frame statistics of the map as resized to the frame (exact, via pooling weights)."""
        wy, wx = pooling_weights(m.shape[0], m.shape[1], height, width)
        md = m.astype(np.float64)
        total = float(wy @ md @ wx)
        stats = {METRIC: total}
        if self.extra_stats:
            # centroid in frame coordinates normalised to [0, 1] (pixel centres), weighted by saliency
            ys = (np.arange(height) + 0.5) / height
            xs = (np.arange(width) + 0.5) / width
            cy = bilinear_matrix(m.shape[0], height).T @ ys / height
            cx = bilinear_matrix(m.shape[1], width).T @ xs / width
            denom = total if total > 1e-12 else float("nan")
            stats["saliency_centroid_x"] = float(wy @ md @ cx) / denom if total > 1e-12 else 0.5
            stats["saliency_centroid_y"] = float(cy @ md @ wx) / denom if total > 1e-12 else 0.5
            stats["saliency_coverage"] = float((m >= 0.5).mean())
        return stats

    def frame_map(self, m: np.ndarray, width: int, height: int) -> np.ndarray:
        """The map resized to the frame (same bilinear resize the statistics assume)."""
        if m.shape == (height, width):
            return m
        return (
            bilinear_matrix(m.shape[0], height) @ m.astype(np.float64) @ bilinear_matrix(m.shape[1], width).T
        ).astype(np.float32)

    def compute(
        self, frame: YuvFrame, colorspace: str = "bt709", color_range: str = "limited"
    ) -> tuple[dict[str, float], np.ndarray]:
        """Statistics and inference-size map for one frame."""
        m = self.infer(self.preprocess(frame, colorspace, color_range), frame.width, frame.height)
        return self.statistics(m, frame.width, frame.height), m


def upsampled_map(m: np.ndarray, width: int, height: int) -> np.ndarray:
    """An inference-size map bilinearly resized to width x height (float32; Pillow, half-pixel centres): cheap
    enough per frame at 1080p, unlike the exact matrix form of :meth:`MobileSal.frame_map`."""
    from PIL import Image

    if m.shape == (height, width):
        return m.astype(np.float32)
    return np.asarray(Image.fromarray(m.astype(np.float32), "F").resize((width, height), Image.BILINEAR))


def roi_alpha(smap: np.ndarray, threshold: float, fade: float) -> np.ndarray:
    """The reference system's ROI mask: alpha = clip((s - threshold) / fade, 0, 1)."""
    return np.clip((smap - threshold) / fade, 0.0, 1.0).astype(np.float32)


def masked_frame(ref: YuvFrame, dis: YuvFrame, alpha: np.ndarray) -> YuvFrame:
    """round(ref * (1 - alpha) + dis * alpha) per plane; chroma uses alpha resized to the chroma size."""
    from PIL import Image

    out = []
    for r, d in ((ref.y, dis.y), (ref.u, dis.u), (ref.v, dis.v)):
        a = alpha
        if r.shape != alpha.shape:
            a = np.asarray(Image.fromarray(alpha, "F").resize((r.shape[1], r.shape[0]), Image.BILINEAR))
        rf = r.astype(np.float32)
        out.append(np.rint(rf + (d.astype(np.float32) - rf) * a).astype(r.dtype))
    return YuvFrame(out[0], out[1], out[2], ref.bitdepth, ref.pix_fmt)


def weighted_psnr_y(ref_y: np.ndarray, dis_y: np.ndarray, weights: np.ndarray, bitdepth: int) -> float:
    """PSNR of luma with the per-pixel squared error weighted by ``weights`` (the saliency map at frame size).

    Peak (2^b - 1); capped at 6b + 12 dB as libvmaf caps its PSNR (60 dB at 8 bits); a map of all zeros weighs
    every pixel equally."""
    err = (ref_y.astype(np.float64) - dis_y.astype(np.float64)) ** 2
    wsum = float(weights.sum(dtype=np.float64))
    mse = float((err * weights).sum(dtype=np.float64) / wsum) if wsum > 1e-9 else float(err.mean())
    return psnr_of_mse(mse, bitdepth)


def psnr_of_mse(mse: float, bitdepth: int) -> float:
    """PSNR from an MSE in code values: peak (2^b - 1), capped at 6b + 12 dB as libvmaf caps its PSNR."""
    peak = float((1 << bitdepth) - 1)
    cap = 6.0 * bitdepth + 12.0
    return cap if mse <= 0 else float(min(cap, 10.0 * np.log10(peak * peak / mse)))


def parse_bool(name: str, value: Any) -> bool:
    """A feature parameter's boolean: 1/true/yes/on or 0/false/no/off; anything else is an error."""
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise TinysalError(f"mobilesal {name}={value!r}: expected 1 or 0 (true/false)")


def parse_feature_params(items: list[str] | None) -> dict[str, dict[str, str]]:
    """``["mobilesal:model_path=x:short_side=0"]`` -> ``{"mobilesal": {"model_path": "x", "short_side": "0"}}``.

    Windows drive letters are not split (``model_path=C:\\m.onnx``)."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        name, sep, rest = item.partition(":")
        if not sep or not name or not rest:
            raise TinysalError(f"malformed feature params {item!r}: expected NAME:key=value[:key2=value2]")
        params = out.setdefault(name, {})
        parts = rest.split(":")
        merged: list[str] = []
        for part in parts:  # re-join pieces without '=' (a drive letter's colon) to the previous value
            if "=" not in part and merged:
                merged[-1] += ":" + part
            else:
                merged.append(part)
        for kv in merged:
            k, eq, v = kv.partition("=")
            if not eq or not k:
                raise TinysalError(f"malformed feature params {item!r}: {kv!r} is not key=value")
            params[k] = v
    return out


FEATURE_PARAMS = {
    "model",
    "model_path",
    "short_side",
    "threads",
    "extra_stats",
    "colorspace",
    "range",
    "roi_score",
    "roi_threshold",
    "roi_fade",
    "roi_weight",
    "psnr_saliency",
}
#: refuse inference sizes whose tensors would be absurd (a typo, or a resource bomb): 8K's short side
MAX_SHORT_SIDE = 4320


def feature_from_params(params: dict[str, Any], threads: int = 0) -> MobileSal:
    """Build the feature from string params (CLI/API): ``model`` names a registry model by id, ``model_path`` an
    ONNX file; without either, the environment's ``VMAF_MOBILESAL_MODEL_PATH``, then the registry's production
    model."""
    unknown = set(params) - FEATURE_PARAMS
    if unknown:
        raise TinysalError(f"unknown mobilesal parameter(s) {sorted(unknown)}; known: {sorted(FEATURE_PARAMS)}")
    if params.get("model") and params.get("model_path"):
        raise TinysalError("mobilesal: give model (a registry id) or model_path (a file), not both")
    if params.get("model"):
        from tinysal.model.registry import registry_model_path

        model: str | None = str(registry_model_path(str(params["model"])))
    else:
        model = params.get("model_path") or os.environ.get("VMAF_MOBILESAL_MODEL_PATH") or None
    try:
        short = int(params.get("short_side", DEFAULT_SHORT_SIDE))
        th = int(params.get("threads", threads))
    except ValueError:
        raise TinysalError("mobilesal short_side and threads must be integers") from None
    if not 0 <= short <= MAX_SHORT_SIDE:
        raise TinysalError(f"mobilesal short_side must be 0 (native) to {MAX_SHORT_SIDE}, got {short}")
    if not 0 <= th <= 64:
        raise TinysalError(f"mobilesal threads must be 0 (all cores) to 64, got {th}")
    roi = {}
    for k, default in (("roi_threshold", 0.3), ("roi_fade", 0.1), ("roi_weight", 0.5)):
        try:
            roi[k] = float(params.get(k, default))
        except ValueError:
            raise TinysalError(f"mobilesal {k} must be a number, got {params[k]!r}") from None
    return MobileSal(
        model,
        short_side=short,
        threads=th,
        colorspace=params.get("colorspace"),
        color_range=params.get("range"),
        extra_stats=parse_bool("extra_stats", params.get("extra_stats", "0")),
        roi_score=parse_bool("roi_score", params.get("roi_score", "0")),
        psnr_saliency=parse_bool("psnr_saliency", params.get("psnr_saliency", "0")),
        **roi,
    )
