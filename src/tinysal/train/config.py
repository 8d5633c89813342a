"""A training run's options: the named recipes (``--preset``), ``TrainConfig`` with its defaults, and the checks that
refuse a configuration that cannot train before any work (one clear ``TinysalError`` line each)."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from tinysal.errors import TinysalError
from tinysal.model.arch import input_multiple

#: Named recipes. ``reference`` is the published recipe (50 epochs at crop 256); ``cpu`` reaches a useful model
#: on 2 CPU cores by spending most epochs on cheap 128-pixel crops (same object scale: crops are cut from the
#: same 288-short-side images) and finishing at 256.
PRESETS: dict[str, dict[str, Any]] = {
    "reference": {
        "stages": [[256, 50]],
        "batch_size": 32,
        "lr": 1e-3,
        "resize": 288,
        "val_crop": 256,
        "scale_range": [1.0, 1.0],
        "copy_paste": 0.0,
        "select": "best",
    },
    # The salient-object recipe the shipped weights use: every source of a multi-source run sampled so that none
    # dominates (sources by sqrt of their size, scenes uniformly within a source), random-resized crops that keep
    # most of the scene (not object fragments), composites onto object-free backgrounds, colour jitter, a
    # boundary-weighted BCE + IoU loss, an EMA of the weights, whole-image validation at the inference scale
    # (short side 256) per source, and a finishing stage at crop 256.
    "sod": {
        "stages": [[192, 24], [256, 6]],
        "val_fraction": 0.03,
        "batch_size": 16,
        "lr": 2e-3,
        "resize": 288,
        "val_crop": 256,
        "scale_range": [1.0, 1.0],
        "copy_paste": 0.0,
        "color_jitter": 0.2,
        "select": "best",
        "sampling": "balanced",
        "epoch_samples": 6000,
        "crop_mode": "rrc",
        "rrc_area": [0.35, 1.0],
        "composite": 0.15,
        "loss": "structure",
        "ema": 0.999,
        "val_mode": "whole",
        "amp": "bf16",
        "calibrate": True,
    },
    "cpu": {
        "stages": [[128, 60], [256, 12]],
        "batch_size": 16,
        "lr": 2e-3,
        "resize": 288,
        "val_crop": 256,
        "scale_range": [0.75, 1.25],
        "copy_paste": 0.0,
        "select": "last",
    },
}


#: the training losses (``--loss``); scripts/make_sidecar.py describes each of them in a sidecar
LOSSES = ("bce_dice", "structure", "structure_mae")


@dataclass
class TrainConfig:
    arch: str = "saliency_student_v2"
    roots: list[str] = field(default_factory=list)
    out_dir: str = "runs/train"
    preset: str = "reference"
    stages: list[list[int]] = field(default_factory=lambda: [[256, 50]])  # [[crop, epochs], ...]
    batch_size: int = 32
    lr: float = 1e-3
    resize: int = 288
    val_crop: int = 256
    val_fraction: float = 0.05
    val_groups: list[str] = field(default_factory=list)
    exclude_groups: list[str] = field(default_factory=list)
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    copy_paste: float = 0.0
    color_jitter: float = 0.0
    seed: int = 42
    limit: int = 0  # use only the first N pairs (smoke runs, tests)
    cache_dir: str = ""
    device: str = "auto"
    export: bool = True
    #: which checkpoint is exported: "best" (highest validation IoU, the reference recipe) or "last" (the
    #: cosine-annealed final epoch; steadier when the validation set is a handful of sequences)
    select: str = "best"
    #: "bf16": bfloat16 autocast for the training forward pass (2-2.5x faster on CPUs with AVX512-BF16/AMX and
    #: on recent GPUs). Off by default: the shipped weights were trained in float32.
    amp: str = "off"
    #: "uniform": every training image once per epoch; "balanced": ``epoch_samples`` draws per epoch, a source
    #: (dataset root) by ``source_weights`` (default: proportional to the square root of its training images),
    #: then a group (scene, video sequence) uniformly, then one of its images
    sampling: str = "uniform"
    epoch_samples: int = 0
    source_weights: dict[str, float] = field(default_factory=dict)
    #: "window": a crop x crop window of the cached image (scale jitter by ``scale_range``); "rrc": a random
    #: resized crop covering ``rrc_area`` of the image (aspect 3:4..4:3), resized to crop x crop
    crop_mode: str = "window"
    rrc_area: list[float] = field(default_factory=lambda: [0.35, 1.0])
    #: probability of compositing the sample's object onto an object-free background from ``backgrounds``
    backgrounds: str = ""
    composite: float = 0.0
    #: "bce_dice" (the reference recipe), "structure" (boundary-weighted BCE + weighted IoU) or "structure_mae"
    #: (that plus the mean absolute error of the map: a push towards confident maps, haze and fill alike)
    loss: str = "bce_dice"
    #: decay of an exponential moving average of the weights (0 = off); validation and checkpoints use the EMA
    ema: float = 0.0
    #: "crop": centre crops of ``val_crop``; "whole": whole images at short side ``val_crop``, per source
    val_mode: str = "crop"
    #: leave bad pairs (unreadable, mask of another size, empty mask, no mask) out, counted, instead of stopping
    skip_bad: bool = False
    #: after selection, fit a logit scale/shift on the validation split and fold it into the head
    #: (``tinysal calibrate``); kept only if the pooled validation MAE improves without costing IoU
    calibrate: bool = False
    #: start from the weights of this tinysal checkpoint (``best.pt``: a run's EMA weights; or a ``last.pt``) instead
    #: of a random initialisation: a fine-tune. Only the weights: optimiser and schedule start afresh
    init: str = ""

    @property
    def epochs(self) -> int:
        return sum(int(e) for _, e in self.stages)

    def crop_for_epoch(self, epoch: int) -> int:
        e = epoch
        for crop, n in self.stages:
            if e < n:
                return int(crop)
            e -= n
        return int(self.stages[-1][0])

    def fingerprint(self) -> dict[str, Any]:
        """The fields that must match for ``--resume`` to continue the same run."""
        d = dataclasses.asdict(self)
        for k in ("out_dir", "device", "cache_dir", "export", "skip_bad", "calibrate"):
            d.pop(k)
        if not d["init"]:  # runs from a random start keep the fingerprint they had before the option existed
            d.pop("init")
        return d


def from_preset(preset: str, *, epochs: int | None = None, crop: int | None = None, **options: Any) -> TrainConfig:
    """A run's configuration: the named recipe, then each option given (None: the recipe's value), then
    ``epochs`` (single-stage recipes) and ``crop`` (every stage's crop) on top of the stages."""
    if preset not in PRESETS:
        raise TinysalError(f"unknown preset {preset!r}; choose {', '.join(sorted(PRESETS))}")
    cfg = TrainConfig(preset=preset, **copy.deepcopy(PRESETS[preset]))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for k, v in options.items():
        if k not in names:
            raise TinysalError(f"unknown training option {k!r}")
        if v is not None:
            setattr(cfg, k, v)
    if epochs:
        if len(cfg.stages) != 1:
            raise TinysalError("--epochs applies to single-stage recipes; use --stages for multi-stage ones")
        cfg.stages = [[cfg.stages[0][0], epochs]]
    if crop:
        cfg.stages = [[crop, e] for _, e in cfg.stages]
    return cfg


def parse_stages(text: str) -> list[list[int]]:
    """``"128:40,256:8"`` -> ``[[128, 40], [256, 8]]``."""
    out = []
    try:
        for part in text.split(","):
            c, e = part.split(":")
            out.append([int(c), int(e)])
    except ValueError:
        raise TinysalError(f"bad --stages {text!r}: expected CROP:EPOCHS[,CROP:EPOCHS...], e.g. 128:40,256:8") from None
    if not out or any(c % 8 or c <= 0 or e <= 0 for c, e in out):
        raise TinysalError(f"bad --stages {text!r}: crops must be positive multiples of 8 and epochs positive")
    return out


def _check_choices(cfg: TrainConfig) -> None:
    """The named choices, the architecture, the roots, batch size, learning rate and stages."""
    from tinysal.model.arch import ARCHITECTURES

    choices = {
        "select": ("best", "last"),
        "amp": ("off", "bf16"),
        "sampling": ("uniform", "balanced"),
        "crop_mode": ("window", "rrc"),
        "loss": LOSSES,
        "val_mode": ("crop", "whole"),
    }
    for k, allowed in choices.items():
        if getattr(cfg, k) not in allowed:
            raise TinysalError(f"{k} must be one of {', '.join(allowed)}, got {getattr(cfg, k)!r}")
    if cfg.arch not in ARCHITECTURES:
        raise TinysalError(f"unknown architecture {cfg.arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    if not cfg.roots:
        raise TinysalError("no dataset root given")
    if cfg.batch_size < 2:
        raise TinysalError(f"batch size must be at least 2 (BatchNorm), got {cfg.batch_size}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise TinysalError(f"learning rate must be a positive finite number, got {cfg.lr}")
    if not cfg.stages or any(int(c) <= 0 or int(c) % 8 or int(e) <= 0 for c, e in cfg.stages):
        raise TinysalError(f"stages must be positive multiples of 8 with positive epochs, got {cfg.stages}")


def _check_ranges(cfg: TrainConfig) -> None:
    """Ranges, probabilities, sampling, weights, backgrounds, and crops that fit the architecture and the cache."""
    lo, hi = cfg.scale_range
    if not (0 < lo <= hi <= 4):
        raise TinysalError(f"scale range must satisfy 0 < LO <= HI <= 4, got {lo},{hi}")
    alo, ahi = cfg.rrc_area
    if not (0 < alo <= ahi <= 1):
        raise TinysalError(f"rrc area must satisfy 0 < LO <= HI <= 1, got {alo},{ahi}")
    for k in ("copy_paste", "composite", "color_jitter", "val_fraction"):
        if not 0 <= getattr(cfg, k) <= 1:
            raise TinysalError(f"{k} must be in [0, 1], got {getattr(cfg, k)}")
    if not 0 <= cfg.ema < 1:
        raise TinysalError(f"ema decay must be in [0, 1), got {cfg.ema}")
    if cfg.sampling == "balanced" and cfg.epoch_samples < 2:
        raise TinysalError("balanced sampling needs epoch_samples >= 2")
    if any(not (math.isfinite(w) and w >= 0) for w in cfg.source_weights.values()):
        raise TinysalError(f"source weights must be finite and >= 0, got {cfg.source_weights}")
    if cfg.composite > 0 and not cfg.backgrounds:
        raise TinysalError("composite > 0 needs a backgrounds folder (--backgrounds DIR)")
    mult = input_multiple(cfg.arch)
    if any(int(c) % mult for c, _ in cfg.stages) or cfg.val_crop % mult:
        raise TinysalError(
            f"{cfg.arch} takes inputs in multiples of {mult}: crops {cfg.stages}, val crop {cfg.val_crop}"
        )
    if cfg.resize < max(int(c) for c, _ in cfg.stages) or cfg.resize < 8:
        raise TinysalError(f"resize ({cfg.resize}) must be at least the largest crop")
    _check_init(cfg)


def _check_init(cfg: TrainConfig) -> None:
    """A fine-tune's starting checkpoint exists, and is not in the run's folder (whose best.pt/last.pt the run
    rewrites: the checkpoint it started from would be lost)."""
    import os

    if not cfg.init:
        return
    if not os.path.isfile(cfg.init):
        raise TinysalError(f"--init {cfg.init}: no such checkpoint")
    here = os.path.dirname(os.path.realpath(cfg.init))  # through a symlink to the run's own best.pt too
    if here == os.path.realpath(os.path.abspath(cfg.out_dir)):
        raise TinysalError(f"--init {cfg.init} is in --out-dir {cfg.out_dir}, whose checkpoints the run rewrites: "
                           "copy it elsewhere or give another --out-dir")  # fmt: skip


def validate_config(cfg: TrainConfig) -> None:
    """Refuse a configuration that cannot train, before any work (the CLI's argparse types check most of it)."""
    import os

    for root in cfg.roots:  # first: a typo in a path is the likeliest mistake, and the one the user can see
        if not os.path.exists(root):
            raise TinysalError(f"dataset root not found: {root}")
    if os.path.islink(cfg.out_dir) and not os.path.exists(cfg.out_dir):
        raise TinysalError(f"--out-dir {cfg.out_dir} is a symlink to {os.readlink(cfg.out_dir)}, which does not exist")
    _check_choices(cfg)
    _check_ranges(cfg)
