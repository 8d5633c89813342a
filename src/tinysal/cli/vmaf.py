"""``vmaf``: libvmaf's command line, with the mobilesal saliency feature beside VMAF (also ``tinysal score``).

    vmaf --reference ref.yuv --distorted dist.yuv --width 1920 --height 1080 --pixel_format 420 \\
         --bitdepth 8 --feature mobilesal --output score.json

VMAF (model vmaf_v0.6.1 by default) is computed by the real libvmaf, in the FFmpeg of the imageio-ffmpeg wheel.
--feature mobilesal adds saliency_mean; mobilesal:roi_score=1 adds saliency-weighted VMAF (vmaf_masked,
vmaf_roi) and psnr_y_saliency. Saliency model: --feature_params mobilesal:model_path= >
$VMAF_MOBILESAL_MODEL_PATH > the registry's production model (--saliency-model PATH says it as tinysal's
subcommands do). Saliency is no-reference (distorted frames). As in libvmaf's tool, -h is --height: help is --help.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tinysal import __version__
from tinysal.cli.args import int_at_least, int_in, percentiles
from tinysal.errors import OneLineParser
from tinysal.features.task import MAX_THREADS, SCALERS

if TYPE_CHECKING:
    from tinysal.features.task import ScoreOptions, ScoreResult


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """libvmaf's options (those that apply) plus tinysal's output extras."""
    p.add_argument("--reference", "-r", required=True, help="reference video (sets the frame count)")
    p.add_argument("--distorted", "-d", required=True, help="distorted video (what saliency is computed on)")
    p.add_argument("--width", "-w", type=int, help="frame width (raw .yuv)")
    p.add_argument("--height", "-h", type=int, help="frame height (raw .yuv); -h is height here, as in libvmaf's tool")
    p.add_argument("--pixel_format", "-p", default="420", help="420, 422 or 444 (raw .yuv)")
    p.add_argument(
        "--bitdepth",
        "-b",
        type=int,
        help="8 or 10 (raw .yuv; 10-bit is little-endian; default 8, or what -p yuv420p10le names)",
    )
    p.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME[:k=v...]",
        help="feature to compute besides VMAF (repeatable): mobilesal, or a libvmaf feature (psnr, float_ssim, "
        "float_ms_ssim, cambi, ciede, psnr_hvs, ...)",
    )
    p.add_argument(
        "--feature_params",
        action="append",
        default=[],
        metavar="NAME:k=v[:k2=v2]",
        help="feature parameters, e.g. mobilesal:model_path=m.onnx:short_side=256 (0 = native)",
    )
    p.add_argument(
        "--model",
        "-m",
        action="append",
        default=[],
        metavar="version=NAME|path=FILE[:name=N]",
        help="VMAF model (repeatable; default version=vmaf_v0.6.1; built in: vmaf_v0.6.1, vmaf_v0.6.1neg, "
        "vmaf_4k_v0.6.1, vmaf_4k_v0.6.1neg)",
    )
    p.add_argument("--output", "-o", help="output file (format by --json/--xml/--csv; JSON by default)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json")
    fmt.add_argument("--xml", dest="fmt", action="store_const", const="xml")
    fmt.add_argument("--csv", dest="fmt", action="store_const", const="csv")
    p.add_argument("--frame_cnt", type=int_at_least(0), default=0, help="score at most this many frames")
    p.add_argument("--frame_skip_ref", type=int_at_least(0), default=0)
    p.add_argument("--frame_skip_dist", type=int_at_least(0), default=0)
    p.add_argument("--dist-delay", type=int_at_least(0), default=0, metavar="N",
                   help="the distorted starts N frames late: its frame N+i is scored against the reference's frame i "
                   "(adds to --frame_skip_dist)")  # fmt: skip
    p.add_argument("--scaler", choices=SCALERS, default="bicubic",
                   help="how a distorted of another size is scaled to the reference's for VMAF (default bicubic, "
                   "FFmpeg's swscale)")  # fmt: skip
    p.add_argument("--no-scale", action="store_true", help="refuse a distorted of another size instead of scaling it")
    p.add_argument("--subsample", type=int_at_least(1), default=1, help="score every Nth frame")
    p.add_argument("--pool-percentiles", type=percentiles, default=[], metavar="P[,P...]",
                   help="add these percentiles of the frames to every pooled metric (1,5: p1 and p5, the '1%% and "
                   "5%% lows'); libvmaf's own keys stay as they are")  # fmt: skip
    p.add_argument(
        "--threads",
        type=int_in(0, MAX_THREADS),
        default=0,
        help=f"libvmaf threads, and saliency frames scored in parallel (0 = one per core; at most {MAX_THREADS})",
    )
    p.add_argument(
        "--colorspace",
        choices=["bt709", "bt601", "bt2020"],
        default="bt709",
        help="YCbCr matrix when the file does not say (default bt709)",
    )
    p.add_argument(
        "--range",
        dest="color_range",
        choices=["limited", "full"],
        default="limited",
        help="code-value range when the file does not say (default limited)",
    )
    p.add_argument("--saliency-model", metavar="PATH",
                   help="the saliency model (.onnx) for --feature mobilesal: the same as --feature_params "
                   "mobilesal:model_path=PATH, spelled as tinysal's subcommands spell it")  # fmt: skip
    p.add_argument("--saliency-out", help="folder to write per-frame saliency maps into")
    p.add_argument("--saliency-format", choices=["png", "npy"], default="png")
    p.add_argument("--contact-sheet", help="PNG grid of frames with their saliency overlaid")
    p.add_argument("--plot", help="PNG plot of VMAF and saliency_mean per frame")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary")
    p.add_argument(
        "--no_prediction",
        "-n",
        action="store_true",
        help="no VMAF score: libvmaf features only (none unless --feature names them), as libvmaf's -n",
    )
    p.set_defaults(fmt=None)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="vmaf",
        add_help=False,
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--version", "-v", action="version", version=f"vmaf (tinysal {__version__})")
    add_score_arguments(p)
    return p


def options(args: argparse.Namespace) -> ScoreOptions:
    """The parsed command line as the score task's options (the flags' names are its fields)."""
    from dataclasses import fields

    from tinysal.features.task import ScoreOptions

    kw = {f.name: getattr(args, f.name) for f in fields(ScoreOptions)}
    if getattr(args, "saliency_model", None):
        from tinysal.errors import TinysalError
        from tinysal.features.task import _feature_name

        if not any(_feature_name(f)[0] == "mobilesal" for f in kw["feature"]):
            raise TinysalError("--saliency-model needs --feature mobilesal (it is the saliency model's file)")
        kw["feature_params"] = [*kw["feature_params"], f"mobilesal:model_path={args.saliency_model}"]
    return ScoreOptions(**{**kw, "fmt": args.fmt or "json"})


def _summary(prog: str, res: ScoreResult, output: str | None) -> str:
    info, pooled = res.info, res.result["pooled_metrics"]
    shown = [m for m in ("vmaf", "vmaf_roi", "saliency_mean") if m in pooled] or list(pooled)[:1]
    summary = "; ".join(f"{m} mean {pooled[m]['mean']:.6f} (min {pooled[m]['min']:.6f})" for m in shown)
    if "vmaf_roi" in shown:
        summary += " [vmaf_roi: VMAF weighted towards the salient region, what viewers look at]"
    return (f"{prog}: {info['frames_scored']} frames {info['width']}x{info['height']} scored at "
            f"{info['fps']:.1f} frames/s; "
            + summary + (f"; wrote {output}" if output else ""))  # fmt: skip


def run(args: argparse.Namespace, prog: str = "vmaf") -> int:
    from tinysal.cli.common import progress_bar
    from tinysal.errors import defer_warning, take_warnings
    from tinysal.features.output import RENDERERS
    from tinysal.features.task import score

    opts = options(args)
    progress, close = progress_bar("mobilesal" if opts.wants_saliency() else "vmaf", args.quiet)
    try:
        res = score(opts, progress, lambda msg: defer_warning(f"{prog}: warning: {msg}"))
    finally:
        close()
    for w in take_warnings():  # the run went well: now its warnings (a failed run shows only its error)
        print(w, file=sys.stderr)
    if not args.quiet:
        print(_summary(prog, res, opts.output), file=sys.stderr)
    if not opts.output:
        sys.stdout.write(RENDERERS[opts.fmt](res.result))
        sys.stdout.flush()  # a full disk or closed stdout fails here, inside the guard
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "vmaf") -> int:
    from tinysal.cli.common import guarded

    args = build_parser().parse_args(argv)
    return guarded(prog, lambda: run(args, prog))


if __name__ == "__main__":
    sys.exit(main())
