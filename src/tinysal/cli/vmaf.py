"""``vmaf``: libvmaf's command line, with the mobilesal saliency feature beside VMAF (also ``tinysal score``).

    vmaf --reference ref.yuv --distorted dist.yuv --width 1920 --height 1080 --pixel_format 420 \\
         --bitdepth 8 --feature mobilesal --output score.json

VMAF (model vmaf_v0.6.1 by default) is computed by the real libvmaf, in the FFmpeg of the imageio-ffmpeg wheel.
--feature mobilesal adds saliency_mean; mobilesal:roi_score=1 adds saliency-weighted VMAF (vmaf_masked,
vmaf_roi) and psnr_y_saliency. Saliency model: --feature_params mobilesal:model_path= >
$VMAF_MOBILESAL_MODEL_PATH > the registry's production model. Saliency is no-reference (distorted frames).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinysal import __version__
from tinysal.errors import OneLineParser, TinysalError

MAX_THREADS = 64  # frames in flight are 2 x threads: bounded memory whatever the clip length


def _count(lo: int, hi: int | None = None) -> Any:
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {lo} to {hi}, got {v}" if hi else f"must be >= {lo}, got {v}")
        return v

    return conv


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """libvmaf's options (those that apply) plus tinysal's output extras."""
    p.add_argument("--reference", "-r", required=True, help="reference video (sets the frame count)")
    p.add_argument("--distorted", "-d", required=True, help="distorted video (what saliency is computed on)")
    p.add_argument("--width", "-w", type=int, help="frame width (raw .yuv)")
    p.add_argument("--height", "-h", type=int, help="frame height (raw .yuv)")
    p.add_argument("--pixel_format", "-p", default="420", help="420, 422 or 444 (raw .yuv)")
    p.add_argument("--bitdepth", "-b", type=int, help="8 or 10 (raw .yuv; 10-bit is little-endian; default 8, or "
                   "what -p yuv420p10le names)")
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
    p.add_argument("--frame_cnt", type=_count(0), default=0, help="score at most this many frames")
    p.add_argument("--frame_skip_ref", type=_count(0), default=0)
    p.add_argument("--frame_skip_dist", type=_count(0), default=0)
    p.add_argument("--subsample", type=_count(1), default=1, help="score every Nth frame")
    p.add_argument(
        "--threads",
        type=_count(0, MAX_THREADS),
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


def _features(args: argparse.Namespace) -> tuple[dict[str, dict[str, str]], list[tuple[str, dict[str, str]]]]:
    """(mobilesal params by name, libvmaf features as (name, params)) from --feature / --feature_params."""
    from tinysal.features.mobilesal import parse_feature_params
    from tinysal.features.vmaf import LIBVMAF_FEATURES

    feats: dict[str, dict[str, str]] = {}
    for spec in args.feature:
        name, _, rest = spec.partition(":")
        if name.startswith("name="):
            name = name[5:]
        if name != "mobilesal" and name not in LIBVMAF_FEATURES:
            raise TinysalError(f"unknown feature {name!r}; available: mobilesal, {', '.join(LIBVMAF_FEATURES)}")
        feats.setdefault(name, {})
        if rest:
            feats[name].update(parse_feature_params([f"{name}:{rest}"])[name])
    for name, params in parse_feature_params(args.feature_params).items():
        if name not in feats:
            raise TinysalError(f"--feature_params for {name!r}, which is not among the --feature options")
        feats[name].update(params)
    sal = {k: v for k, v in feats.items() if k == "mobilesal"}
    return sal, [(k, v) for k, v in feats.items() if k != "mobilesal"]


def run(args: argparse.Namespace, prog: str = "vmaf") -> int:
    from tinysal.errors import defer_warning, take_warnings
    from tinysal.features.scoring import VmafContext, score_files
    from tinysal.fileio import check_writable_target
    from tinysal.video.readers import parse_pix_fmt

    def warn(msg: str) -> None:
        defer_warning(f"{prog}: warning: {msg}")

    from tinysal.video.readers import resolve_bitdepth

    args.bitdepth = resolve_bitdepth(args.pixel_format, args.bitdepth)
    fmt = args.fmt or "json"
    if args.output == "-":  # standard output, as libvmaf's tool and most Unix tools read "-"
        args.output = None
    if args.output:
        check_writable_target(args.output)
    for extra in (args.plot, args.contact_sheet):
        if extra:
            check_writable_target(extra)
    if args.saliency_out:
        d = Path(args.saliency_out)
        if d.exists() and not d.is_dir():
            raise TinysalError(f"--saliency-out {d} exists and is not a folder")
    sal, vmaf_feats = _features(args)
    if not sal:  # these show the saliency maps: without the feature there are none (say so before any work)
        for flag, v in (("--saliency-out", args.saliency_out), ("--contact-sheet", args.contact_sheet)):
            if v:
                raise TinysalError(f"{flag} needs --feature mobilesal (it shows the saliency maps)")
    from tinysal.features.vmaf import VmafModel
    from tinysal.fileio import refuse_overlaps

    model_paths = {f"--model {m}": VmafModel.parse(m).path or None for m in args.model or []}
    for name, params in sal.items():
        model_paths[f"{name}:model_path"] = params.get("model_path")
    model_paths["$VMAF_MOBILESAL_MODEL_PATH"] = os.environ.get("VMAF_MOBILESAL_MODEL_PATH")
    refuse_overlaps(
        {"--reference": args.reference, "--distorted": args.distorted, **model_paths},
        {"--output": args.output, "--plot": args.plot, "--contact-sheet": args.contact_sheet},
        {"--saliency-out": args.saliency_out},
    )
    ctx = VmafContext(
        threads=args.threads, subsample=args.subsample, colorspace=args.colorspace, color_range=args.color_range
    )
    ctx.use_vmaf(args.model or ["version=vmaf_v0.6.1"], vmaf_feats, args.no_prediction)
    for name, params in sal.items():
        ctx.use_feature(name, params)
    if not ctx.features and not ctx.wants_vmaf:
        raise TinysalError("--no_prediction without --feature leaves nothing to compute")
    sink = None
    if args.saliency_out or args.contact_sheet:
        from tinysal.features.visual import MapSink

        sink = MapSink(args.saliency_out, args.saliency_format, args.contact_sheet is not None)
        ctx.map_sink = sink

    bar: Any = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc="mobilesal" if ctx.features else "vmaf", unit="frame", leave=False)

    def progress(i: int, n: int) -> None:
        if bar is not None:
            bar.total = n
            bar.update(i - bar.n)

    try:
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
        # The score is written first; then each side output, each all-or-nothing (maps move into place at the
        # end, files are written atomically). A failing side output is one error line and a non-zero exit; the
        # outputs finished before it stay.
        if args.output:
            from tinysal.features.output import write_result

            write_result(args.output, result, fmt)
        if sink is not None:
            sink.commit()
            if args.contact_sheet:
                sink.write_contact_sheet(args.contact_sheet)
        if args.plot:
            from tinysal.features.visual import plot_scores

            plot_scores(result, args.plot)
    finally:
        if sink is not None:
            sink.abort()
    for w in take_warnings():  # the run went well: now its warnings (a failed run shows only its error)
        print(w, file=sys.stderr)
    if not args.quiet:
        pooled = result["pooled_metrics"]
        shown = [m for m in ("vmaf", "vmaf_roi", "saliency_mean") if m in pooled] or list(pooled)[:1]
        summary = "; ".join(f"{m} mean {pooled[m]['mean']:.6f} (min {pooled[m]['min']:.6f})" for m in shown)
        print(
            f"{prog}: {info['frames_scored']} frames {info['width']}x{info['height']} at {info['fps']:.1f} fps; "
            + summary
            + (f"; wrote {args.output}" if args.output else ""),
            file=sys.stderr,
        )
    if not args.output:
        from tinysal.features.output import RENDERERS

        sys.stdout.write(RENDERERS[fmt](result))
        sys.stdout.flush()  # a full disk or closed stdout fails here, inside the guard
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "vmaf") -> int:
    from tinysal.cli.common import guarded

    args = build_parser().parse_args(argv)
    return guarded(prog, lambda: run(args, prog))


if __name__ == "__main__":
    sys.exit(main())
