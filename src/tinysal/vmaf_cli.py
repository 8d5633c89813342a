"""``vmaf``: a libvmaf-style command line for the mobilesal feature (also ``tinysal score``).

    vmaf --reference ref.yuv --distorted dist.yuv --width 1920 --height 1080 --pixel_format 420 \\
         --bitdepth 8 --feature mobilesal --feature_params mobilesal:model_path=PATH.onnx --output score.json

Model: ``--feature_params mobilesal:model_path=`` > ``$VMAF_MOBILESAL_MODEL_PATH`` > the registry's production
model. Saliency is no-reference: it runs on the distorted frames; the reference fixes the frame count.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinysal import __version__
from tinysal.errors import TinysalError


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """libvmaf's options (those that apply) plus tinysal's output extras."""
    p.add_argument("--reference", "-r", required=True, help="reference video (sets the frame count)")
    p.add_argument("--distorted", "-d", required=True, help="distorted video (what saliency is computed on)")
    p.add_argument("--width", "-w", type=int, help="frame width (raw .yuv)")
    p.add_argument("--height", "-h", type=int, help="frame height (raw .yuv)")
    p.add_argument("--pixel_format", "-p", default="420", help="420, 422 or 444 (raw .yuv)")
    p.add_argument("--bitdepth", "-b", type=int, default=8, help="8 or 10 (raw .yuv; 10-bit is little-endian)")
    p.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME[:k=v...]",
        help="feature to compute (repeatable); only mobilesal is provided",
    )
    p.add_argument(
        "--feature_params",
        action="append",
        default=[],
        metavar="NAME:k=v[:k2=v2]",
        help="feature parameters, e.g. mobilesal:model_path=m.onnx:short_side=256 (0 = native)",
    )
    p.add_argument("--model", "-m", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--output", "-o", help="output file (format by --json/--xml/--csv; JSON by default)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json")
    fmt.add_argument("--xml", dest="fmt", action="store_const", const="xml")
    fmt.add_argument("--csv", dest="fmt", action="store_const", const="csv")
    p.add_argument("--frame_cnt", type=int, default=0, help="score at most this many frames")
    p.add_argument("--frame_skip_ref", type=int, default=0)
    p.add_argument("--frame_skip_dist", type=int, default=0)
    p.add_argument("--subsample", type=int, default=1, help="score every Nth frame")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="frames scored in parallel, one ONNX Runtime thread each (0 = one per core)",
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
    p.add_argument("--saliency-out", help="folder to write per-frame saliency maps into")
    p.add_argument("--saliency-format", choices=["png", "npy"], default="png")
    p.add_argument("--contact-sheet", help="PNG grid of frames with their saliency overlaid")
    p.add_argument("--plot", help="PNG plot of saliency_mean per frame")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary")
    p.add_argument("--no_prediction", "-n", action="store_true", help="accepted for libvmaf compatibility")
    p.set_defaults(fmt=None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vmaf",
        add_help=False,
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--version", "-v", action="version", version=f"vmaf (tinysal {__version__})")
    add_score_arguments(p)
    return p


def _features(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    from tinysal.mobilesal import parse_feature_params
    from tinysal.scoring import FEATURES

    if args.model:
        raise TinysalError("--model (VMAF models) is not supported by this tool: it provides the mobilesal feature")
    feats: dict[str, dict[str, str]] = {}
    for spec in args.feature or ["mobilesal"]:
        name, _, rest = spec.partition(":")
        if name.startswith("name="):
            name = name[5:]
        if name not in FEATURES:
            raise TinysalError(f"unknown feature {name!r}; available: {', '.join(FEATURES)}")
        feats.setdefault(name, {})
        if rest:
            feats[name].update(parse_feature_params([f"{name}:{rest}"])[name])
    for name, params in parse_feature_params(args.feature_params).items():
        if name not in feats:
            raise TinysalError(f"--feature_params for {name!r}, which is not among the --feature options")
        feats[name].update(params)
    return feats


def run(args: argparse.Namespace, prog: str = "vmaf") -> int:
    from tinysal.fileio import check_writable_target
    from tinysal.scoring import VmafContext, score_files
    from tinysal.video import parse_pix_fmt

    def warn(msg: str) -> None:
        print(f"{prog}: warning: {msg}", file=sys.stderr)

    for k in ("frame_cnt", "frame_skip_ref", "frame_skip_dist"):
        if getattr(args, k) < 0:
            raise TinysalError(f"--{k} must be >= 0")
    fmt = args.fmt or "json"
    if args.output:
        check_writable_target(args.output)
    for extra in (args.plot, args.contact_sheet):
        if extra:
            check_writable_target(extra)
    if args.saliency_out:
        d = Path(args.saliency_out)
        if d.exists() and not d.is_dir():
            raise TinysalError(f"--saliency-out {d} exists and is not a folder")
    feats = _features(args)
    ctx = VmafContext(
        threads=args.threads, subsample=args.subsample, colorspace=args.colorspace, color_range=args.color_range
    )
    for name, params in feats.items():
        ctx.use_feature(name, params)
    sink = None
    if args.saliency_out or args.contact_sheet:
        from tinysal.visual import MapSink

        sink = MapSink(args.saliency_out, args.saliency_format, args.contact_sheet is not None)
        ctx.map_sink = sink

    bar: Any = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc="mobilesal", unit="frame", leave=False)

    def progress(i: int, n: int) -> None:
        if bar is not None:
            bar.total = n
            bar.update(i - bar.n)

    try:
        info = score_files(
            ctx,
            args.reference,
            args.distorted,
            args.width,
            args.height,
            parse_pix_fmt(args.pixel_format),
            args.bitdepth,
            args.frame_cnt,
            args.frame_skip_ref,
            args.frame_skip_dist,
            progress=progress,
            warn=warn,
        )
    finally:
        if bar is not None:
            bar.close()
    result = ctx.result(info["fps"])
    if args.output:
        from tinysal.output import write_result

        write_result(args.output, result, fmt)
    if sink is not None and args.contact_sheet:
        sink.write_contact_sheet(args.contact_sheet)
    if args.plot:
        from tinysal.visual import plot_metric

        plot_metric(result, "saliency_mean", args.plot)
    if not args.quiet:
        pooled = result["pooled_metrics"]["saliency_mean"]
        print(
            f"{prog}: {info['frames_scored']} frames {info['width']}x{info['height']} at {info['fps']:.1f} fps; "
            f"saliency_mean mean {pooled['mean']:.6f} (min {pooled['min']:.6f}, max {pooled['max']:.6f})"
            + (f"; wrote {args.output}" if args.output else ""),
            file=sys.stderr,
        )
    if not args.output:
        from tinysal.output import RENDERERS

        sys.stdout.write(RENDERERS[fmt](result))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "vmaf") -> int:
    from tinysal.cli import guarded

    args = build_parser().parse_args(argv)
    return guarded(prog, lambda: run(args, prog))


if __name__ == "__main__":
    sys.exit(main())
