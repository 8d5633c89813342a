"""The scoring context: frames in, per-frame metrics collected, pooled like libvmaf.

Mirrors libvmaf's C usage::

    ctx = VmafContext(threads=2)
    ctx.use_feature("mobilesal", {"model_path": "model.onnx"})
    for i, (ref, dist) in enumerate(frames):
        ctx.read_pictures(ref, dist, i)
    ctx.score_pooled("saliency_mean", "mean")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tinysal.errors import TinysalError
from tinysal.features.mobilesal import MobileSal, feature_from_params
from tinysal.features.output import POOL_METHODS, percentile_key, pool, write_result
from tinysal.features.vmaf import DEFAULT_MODEL, VmafFeature, VmafModel, model_names
from tinysal.video.readers import YuvFrame

FEATURES = ("mobilesal",)


def as_frame(obj: Any, bitdepth: int | None = None, pix_fmt: str | None = None) -> YuvFrame:
    """A :class:`YuvFrame`, or a (y, u, v) tuple of numpy planes (4:2:0/4:2:2/4:4:4 inferred from shapes; 8-bit
    from uint8 planes, 10-bit from uint16 ones, unless ``bitdepth`` says)."""
    if isinstance(obj, YuvFrame):
        return obj
    try:
        y, u, v = (np.asarray(p) for p in obj)
    except (TypeError, ValueError):
        raise TinysalError("a picture is a YuvFrame or a (y, u, v) tuple of 2-D numpy arrays") from None
    if y.ndim != 2 or u.shape != v.shape or u.ndim != 2:
        raise TinysalError("planes must be 2-D, with u and v of equal shape")
    if min(y.shape) < 1 or min(u.shape) < 1:
        raise TinysalError(f"planes must not be empty, got luma {y.shape} and chroma {u.shape}")
    if bitdepth is None:  # from the samples' type: uint8 is 8-bit, uint16 10-bit (little values, not 16-bit)
        bitdepth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 10}.get(y.dtype, 0)
    if bitdepth not in (8, 10):
        raise TinysalError(f"planes are uint8 (8-bit) or uint16 (10-bit) code values, got {y.dtype}")
    want = np.uint8 if bitdepth == 8 else np.uint16
    for name, p in (("y", y), ("u", u), ("v", v)):
        # samples are integer code values: floats in [0, 1], negatives or complex numbers would be scored as
        # nonsense without a word, and 16-bit samples above 1023 are not 10-bit video
        if p.dtype != want:
            raise TinysalError(f"plane {name} is {p.dtype}; {bitdepth}-bit planes are {np.dtype(want).name}")
        if bitdepth == 10 and int(p.max()) > 1023:
            raise TinysalError(f"plane {name} holds {int(p.max())}, above the 10-bit maximum 1023")
    h, w = y.shape
    ch, cw = u.shape
    fmt = pix_fmt or {(h, w): "444", (h, (w + 1) // 2): "422", ((h + 1) // 2, (w + 1) // 2): "420"}.get((ch, cw))
    if fmt is None:
        raise TinysalError(f"chroma planes {u.shape} do not fit luma {y.shape} as 4:2:0, 4:2:2 or 4:4:4")
    return YuvFrame(y, u, v, bitdepth, fmt)


class VmafContext:
    """Collects per-frame metrics from the features in use and pools them.

    ``threads`` is how many frames :func:`score_files` scores side by side (0 = one per core), each on one ONNX
    Runtime thread, so ``threads=N`` uses N cores for the model, never more (a batch job's ``--threads 1`` is one
    thread). :meth:`read_pictures` scores the frame it is given in the caller's thread, on one thread.
    """

    def __init__(
        self, threads: int = 0, subsample: int = 1, colorspace: str = "bt709", color_range: str = "limited"
    ) -> None:
        if subsample < 1:
            raise TinysalError("subsample must be >= 1")
        if not 0 <= threads <= 64:
            raise TinysalError(f"threads must be 0 (all cores) to 64, got {threads}")
        #: frames scored in parallel by score_files, each on one ONNX Runtime thread: for a network this small,
        #: N single-threaded runs side by side beat one run on N threads (see docs/benchmarks.md)
        self.threads = threads or (os.cpu_count() or 1)
        self.subsample = subsample
        #: percentiles added to every pooled metric (``p1``, ``p5``: the "1% lows"), after libvmaf's four keys
        self.pool_percentiles: list[float] = []
        self.colorspace = colorspace
        self.color_range = color_range
        self.features: list[MobileSal] = []
        self.scores: dict[str, dict[int, float]] = {}
        #: called as ``map_sink(index, frame, map, feature)`` after each frame (maps are not kept in memory)
        self.map_sink: Callable[[int, YuvFrame, np.ndarray, MobileSal], None] | None = None
        self.width = self.height = 0
        #: libvmaf (through FFmpeg) for score_files: models, extra libvmaf features, no_prediction
        self.vmaf_models: list[VmafModel] = []
        self.vmaf_features: list[VmafFeature] = []
        self.xpsnr = False
        self.no_prediction = False
        #: libvmaf's own pooled values for its metrics (computed at full precision, as libvmaf reports them)
        self.vmaf_pooled: dict[str, dict[str, float]] = {}
        self.vmaf_metrics: list[str] = []
        #: set when the distorted was scaled to the reference's size: its size, the size scored, the scaler
        self.scaling: dict[str, str] | None = None

    # -- set-up ---------------------------------------------------------------------------------------
    def use_feature(self, name: str, params: dict[str, Any] | None = None) -> MobileSal:
        """Register a feature by name with its parameters (``model_path``, ``short_side``, ...)."""
        if name not in FEATURES:
            raise TinysalError(f"unknown feature {name!r}; available: {', '.join(FEATURES)}")
        feat = feature_from_params({k: str(v) for k, v in (params or {}).items()}, threads=1)
        self.features.append(feat)
        for m in feat.metric_names:
            self.scores.setdefault(m, {})
        return feat

    def use_vmaf(
        self,
        models: Sequence[str] = (DEFAULT_MODEL,),
        features: Sequence[tuple[str, dict[str, str]]] = (),
        no_prediction: bool = False,
    ) -> None:
        """Compute real VMAF (libvmaf in FFmpeg) in :func:`score_files`: ``models`` as libvmaf's ``--model``
        (``version=vmaf_v0.6.1``, ``path=model.json``, optional ``:name=``), extra libvmaf ``features`` as
        (name, params), ``no_prediction`` to report features only."""
        self.vmaf_models = [VmafModel.parse(m) for m in models] or [VmafModel.parse(DEFAULT_MODEL)]
        model_names(self.vmaf_models)  # refuse clashing score names now
        from tinysal.features.vmaf import FILTER_FEATURES

        self.vmaf_features = [VmafFeature.parse(n, dict(p)) for n, p in features if n not in FILTER_FEATURES]
        #: XPSNR by FFmpeg's xpsnr filter in libvmaf's child (per-frame xpsnr_y/u/v, pooled like the others)
        self.xpsnr = any(n == "xpsnr" for n, _ in features)
        self.no_prediction = no_prediction

    def record_metric(self, name: str, per_frame: dict[int, float], pooled: dict[str, float] | None = None) -> None:
        """Record a metric computed beside the features (libvmaf's, XPSNR, the saliency-weighted scores): its value
        per frame index and, when its producer pooled it (libvmaf), those pooled values; the writers pool the
        rest. Listed before the features' metrics, in the order recorded."""
        self.scores[name] = per_frame
        self.add_vmaf_metric(name)
        if pooled:
            self.vmaf_pooled[name] = {k: float(v) for k, v in pooled.items()}

    def set_geometry(self, width: int, height: int, scaling: dict[str, str] | None = None) -> None:
        """The size the scores are measured at and, for a distorted of another size, how it was scaled."""
        self.width, self.height = width, height
        if scaling is not None:
            self.scaling = scaling

    def add_vmaf_metric(self, name: str) -> None:
        """Record a libvmaf-side metric name (these come first in the output, in libvmaf's order)."""
        if name not in self.vmaf_metrics:
            self.vmaf_metrics.append(name)

    @property
    def wants_vmaf(self) -> bool:
        return bool(self.vmaf_models) and (not self.no_prediction or bool(self.vmaf_features) or self.xpsnr)

    # -- frames ---------------------------------------------------------------------------------------
    def read_pictures(self, ref: Any, dist: Any, index: int) -> None:
        """Score one frame pair. Saliency is no-reference: only ``dist`` is analysed (``ref`` may be None)."""
        if not self.features:
            raise TinysalError("no feature in use: call use_feature first")
        if self.subsample > 1 and index % self.subsample:
            return
        frame = as_frame(dist)
        self._score(frame, index)

    def compute_maps(
        self, frame: YuvFrame, colorspace: str | None = None, color_range: str | None = None
    ) -> list[np.ndarray]:
        """Each feature's inference-size map for one frame (thread-safe: no context state is touched)."""
        cs, cr = colorspace or self.colorspace, color_range or self.color_range
        return [feat.infer(feat.preprocess(frame, cs, cr), frame.width, frame.height) for feat in self.features]

    def record_frame(self, frame: YuvFrame, index: int, maps: list[np.ndarray],
                     size: tuple[int, int] | None = None) -> None:  # fmt: skip
        """Record one frame's statistics; ``size`` is the frame's own (width, height) when ``frame`` is the small
        copy the one-decode route gives."""
        self.width, self.height = size or (frame.width, frame.height)
        for feat, m in zip(self.features, maps):
            for k, v in feat.statistics(m, self.width, self.height).items():
                self.scores[k][index] = v
            if self.map_sink is not None:
                self.map_sink(index, frame, m, feat)

    def _score(
        self, frame: YuvFrame, index: int, colorspace: str | None = None, color_range: str | None = None
    ) -> None:
        self.record_frame(frame, index, self.compute_maps(frame, colorspace, color_range))

    # -- results --------------------------------------------------------------------------------------
    def score_at_index(self, metric: str, index: int) -> float:
        try:
            return self.scores[metric][index]
        except KeyError:
            raise TinysalError(f"no {metric!r} score for frame {index}") from None

    def score_pooled(
        self, metric: str, method: str = "mean", start: int | None = None, end: int | None = None
    ) -> float:
        """Pool a metric over frames [start, end] (inclusive, like libvmaf) with min/max/mean/harmonic_mean."""
        if metric not in self.scores:
            raise TinysalError(f"unknown metric {metric!r}; have {sorted(self.scores)}")
        vals = [
            v
            for i, v in sorted(self.scores[metric].items())
            if (start is None or i >= start) and (end is None or i <= end)
        ]
        if not vals:
            raise TinysalError(f"no frames scored for {metric!r}")
        return pool(vals, method)

    def result(self, fps: float = float("nan")) -> dict[str, Any]:
        """The libvmaf-layout result dict (what the writers render)."""
        from tinysal._version import __version__

        # libvmaf's metrics first, in its order, then the saliency ones
        names = [m for m in self.vmaf_metrics if m in self.scores]
        names += [m for m in self.scores if m not in self.vmaf_metrics]
        frames_idx = sorted({i for d in self.scores.values() for i in d})
        frames = [
            {"frameNum": i, "metrics": {m: self.scores[m][i] for m in names if i in self.scores[m]}} for i in frames_idx
        ]
        pooled = {
            m: {**(self.vmaf_pooled.get(m) or {p: pool(list(self.scores[m].values()), p) for p in POOL_METHODS}),
                **{percentile_key(q): pool(list(self.scores[m].values()), percentile_key(q))
                   for q in self.pool_percentiles}}  # fmt: skip
            for m in names
            if self.scores[m]
        }
        return {
            "version": f"tinysal-{__version__}",
            "fps": fps,
            "frames": frames,
            "pooled_metrics": pooled,
            "aggregate_metrics": {},
            "width": self.width,
            "height": self.height,
            **({"scaling": self.scaling} if self.scaling else {}),
        }

    def write_output(self, path: str | os.PathLike[str], fmt: str = "json", fps: float = float("nan")) -> None:
        write_result(path, self.result(fps), fmt)
