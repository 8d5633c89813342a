"""``tinysal train``: train a saliency student (--preset sod: the shipped recipe)."""

from __future__ import annotations

import argparse
import json
import sys

from tinysal.cli.args import float_pair, fraction, int_at_least, positive_float, stages, weights

HELP = "train a saliency student (--preset sod: the shipped recipe)"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("roots", "backgrounds", "init"), ("metrics_out",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    from tinysal.model.arch import ARCHITECTURES
    from tinysal.train.config import LOSSES, PRESETS

    sp.add_argument("roots", nargs="+", help="dataset roots (DUTS-TR/DUTS-TE layout or images/+masks/)")
    sp.add_argument("--arch", default="saliency_student_v2", choices=sorted(ARCHITECTURES))
    sp.add_argument("--preset", default="reference", choices=sorted(PRESETS), help="recipe (default reference)")
    sp.add_argument("--out-dir", default="runs/train")
    sp.add_argument("--metrics-out")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out-dir from its last epoch")
    sp.add_argument("--epochs", type=int_at_least(1))
    sp.add_argument("--stages", type=stages, help="multi-scale schedule CROP:EPOCHS[,...], e.g. 192:26,256:6")
    sp.add_argument("--crop", type=int_at_least(8))
    sp.add_argument("--batch-size", type=int_at_least(2))
    sp.add_argument("--lr", type=positive_float)
    sp.add_argument("--resize", type=int_at_least(8), help="short side the cache is resized to (default 288)")
    sp.add_argument("--val-crop", type=int_at_least(8), help="validation crop, or short side with --val-mode whole")
    sp.add_argument("--val-fraction", type=fraction)
    sp.add_argument("--val-groups", help="comma-separated groups (sequences) to validate on")
    sp.add_argument("--exclude-groups", help="comma-separated groups never used (a held-out test set)")
    sp.add_argument("--scale-range", type=float_pair, help="random scale jitter LO,HI (e.g. 0.75,1.25)")
    sp.add_argument("--copy-paste", type=fraction, help="probability of pasting another image's foreground")
    sp.add_argument("--color-jitter", type=fraction, help="brightness/contrast/saturation jitter amount, e.g. 0.2")
    sp.add_argument(
        "--sampling",
        choices=["uniform", "balanced"],
        help="uniform: every image once an epoch; "
        "balanced: sources by --source-weights, scenes uniformly within a source",
    )
    sp.add_argument("--epoch-samples", type=int_at_least(2), help="samples per epoch with balanced sampling")
    sp.add_argument(
        "--source-weights",
        type=weights,
        help="NAME=W[,NAME=W...] by dataset folder name (default: sqrt of each source's image count)",
    )
    sp.add_argument("--crop-mode", choices=["window", "rrc"], help="window crops, or random resized crops")
    sp.add_argument("--rrc-area", type=float_pair, help="area fraction LO,HI of random resized crops")
    sp.add_argument("--backgrounds", help="folder of object-free photos for composites")
    sp.add_argument("--composite", type=fraction, help="probability of compositing the object onto a background")
    sp.add_argument("--loss", choices=LOSSES,
                    help="structure_mae: structure + the map's mean absolute error")
    sp.add_argument("--init", help="fine-tune: start from this tinysal checkpoint's weights (e.g. a run's best.pt)")
    sp.add_argument("--ema", type=fraction, help="EMA decay of the weights (0 = off), e.g. 0.999")
    sp.add_argument("--val-mode", choices=["crop", "whole"])
    sp.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave unreadable pairs, masks of another size, empty masks and unmasked images out "
        "(counted) instead of stopping",
    )
    sp.add_argument("--no-calibrate", action="store_true", help="skip the final logit calibration (sod preset)")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--limit", type=int_at_least(1), help="use only the first N pairs (smoke runs)")
    sp.add_argument("--cache-dir")
    sp.add_argument("--device", help="auto (default), cpu or cuda")
    sp.add_argument(
        "--select",
        choices=["best", "last"],
        help="checkpoint to export: best validation score (reference, sod) or the final epoch (cpu preset)",
    )
    sp.add_argument("--amp", choices=["off", "bf16"], help="bfloat16 autocast for training")
    sp.add_argument("--no-export", action="store_true")
    sp.add_argument("--quiet", action="store_true")


#: flags passed to the recipe as they are (None: the recipe's value)
_OVERRIDES = ("arch", "out_dir", "stages", "batch_size", "lr", "resize", "val_crop", "val_fraction", "copy_paste",
              "color_jitter", "sampling", "epoch_samples", "source_weights", "crop_mode", "rrc_area", "backgrounds",
              "composite", "loss", "ema", "val_mode", "scale_range", "select", "amp", "seed", "limit", "cache_dir",
              "device", "skip_bad", "init")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from tinysal.train.config import from_preset

    cfg = from_preset(
        args.preset, epochs=args.epochs, crop=args.crop, roots=list(args.roots),
        val_groups=[g for g in (args.val_groups or "").split(",") if g],
        exclude_groups=[g for g in (args.exclude_groups or "").split(",") if g],
        export=not args.no_export, calibrate=False if args.no_calibrate else None,
        **{k: getattr(args, k) for k in _OVERRIDES},
    )  # fmt: skip
    from tinysal.train.config import validate_config
    from tinysal.train.sampling import check_source_weights
    from tinysal.train.trainer import train

    check_source_weights(cfg)  # an impossible run is its one line, not its configuration and then the line
    validate_config(cfg)
    print(f"training {cfg.arch}: {json.dumps(dataclasses.asdict(cfg))}", file=sys.stderr)
    m = train(cfg, resume=args.resume, metrics_out=args.metrics_out, progress=not args.quiet)
    print(
        f"best epoch {m['best_epoch']} val IoU {m['best_val_iou']:.4f}; "
        + (f"ONNX {m['onnx']} parity {m['parity_max_abs_diff']:.2e}" if "onnx" in m else "no export")
    )
    return 0
