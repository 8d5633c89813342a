"""``tinysal`` command line: a thin layer over functions the Python API and the tests call directly.

Every expected failure is a ``TinysalError``: one line on stderr, a non-zero exit, no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tinysal import __version__
from tinysal.cli.common import guarded
from tinysal.errors import CheckFailed, OneLineParser, TinysalError, defer_warning


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _report(path: str | None, report: dict[str, Any], args: argparse.Namespace, inputs: Sequence[str]) -> None:
    from tinysal.fileio import write_json
    from tinysal.provenance import run_provenance

    if path:
        report = {**report, "run_provenance": run_provenance(vars_clean(args), inputs, [path])}
        write_json(path, report)


def _precheck(path: str | None) -> None:
    """Fail before any work if a report path cannot be written."""
    if path:
        from tinysal.fileio import check_writable_target

        check_writable_target(path)


def _int_at_least(lo: int) -> Callable[[str], int]:
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v

    return conv


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    at_least = _int_at_least(lo)

    def conv(text: str) -> int:
        v = at_least(text)
        if v > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi}, got {v}")
        return v

    return conv


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    v = _float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return v


def _fraction(text: str) -> float:
    v = _float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text!r}")
    return v


def _float_pair(text: str) -> list[float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}")
    lo, hi = (_float(p) for p in parts)
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, got {text!r}")
    return [lo, hi]


def _weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, sep, w = part.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT[,NAME=WEIGHT...], got {text!r}")
        v = _float(w)
        if v < 0:
            raise argparse.ArgumentTypeError(f"weights must be >= 0, got {part!r}")
        out[name] = v
    return out


def _stages(text: str) -> list[list[int]]:
    from tinysal.train.config import parse_stages

    try:
        return parse_stages(text)
    except TinysalError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def vars_clean(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k != "func"}


# ------------------------------------------------------------------------------------------- commands
def cmd_export(args: argparse.Namespace) -> int:
    from tinysal.model.export import export_checkpoint, export_random_init

    if bool(args.checkpoint) == bool(args.random_init):
        raise TinysalError("give either a CHECKPOINT or --random-init ARCH (a smoke model), not both or neither")
    if args.random_init:
        info = export_random_init(args.random_init, args.seed, args.output)
        print("note: randomly initialised weights: a smoke model for plumbing tests, not for scoring", file=sys.stderr)
    else:
        info = export_checkpoint(args.checkpoint, args.output)
    print(f"exported {info['arch']} ({info['param_count']} params) to {info['output']} sha256 {info['sha256']}")
    return 0


def cmd_check_ops(args: argparse.Namespace) -> int:
    from tinysal.model.checks import check_ops, describe_failures

    _precheck(args.out_json)
    report = check_ops(args.model)
    _report(args.out_json, report, args, [args.model])
    if not report["ok"]:
        for line in describe_failures(report):
            print(f"FAIL {args.model}: {line}", file=sys.stderr)
        return 1
    print(f"OK {args.model}: opset {report['opset']}, ops {', '.join(report['op_types'])}")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    from tinysal.model.cost import inference_size, model_macs
    from tinysal.model.session import create_session

    _precheck(args.out_json)
    multiple = create_session(args.model, threads=1).input_multiple
    fw, fh = args.frame
    w, h = inference_size(fw, fh, args.short_side, multiple)
    if w * h > 7680 * 4320:
        raise TinysalError(f"a {w}x{h} model input is beyond 8K UHD (7680x4320): lower --frame or --short-side")
    rep = model_macs(args.model, w, h)
    rep.update(frame=f"{fw}x{fh}", short_side=args.short_side, input_multiple=multiple)
    _report(args.out_json, rep, args, [args.model])
    parts = ", ".join(f"{k} {v / 1e6:,.1f} M" for k, v in sorted(rep["by_op"].items()))
    print(f"{args.model}: {fw}x{fh} frame -> {w}x{h} input (short side {args.short_side or 'native'}, padded to "
          f"x{multiple}): {rep['macs'] / 1e9:.3f} GMACs ({parts})")  # fmt: skip
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    from tinysal.model.parity import parity

    _precheck(args.out_json)
    rep = parity(args.checkpoint, args.model, tol=args.tolerance)
    _report(args.out_json, rep, args, [args.checkpoint, args.model])
    for s in rep["sizes"]:
        print(f"{s['height']}x{s['width']}: max_abs_diff {s['max_abs_diff']:.3e} {'ok' if s['ok'] else 'FAIL'}")
    if not rep["ok"]:
        raise CheckFailed(f"parity failed: max_abs_diff {rep['max_abs_diff']:.3e} > {args.tolerance:g}")
    print(f"parity OK: max_abs_diff {rep['max_abs_diff']:.3e} <= {args.tolerance:g}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from tinysal.train.config import PRESETS, TrainConfig

    preset = dict(PRESETS[args.preset])
    cfg = TrainConfig(arch=args.arch, roots=list(args.roots), out_dir=args.out_dir, preset=args.preset, **preset)
    over = {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "resize": args.resize,
        "val_crop": args.val_crop,
        "val_fraction": args.val_fraction,
        "copy_paste": args.copy_paste,
        "color_jitter": args.color_jitter,
        "sampling": args.sampling,
        "epoch_samples": args.epoch_samples,
        "source_weights": args.source_weights,
        "crop_mode": args.crop_mode,
        "rrc_area": args.rrc_area,
        "backgrounds": args.backgrounds,
        "composite": args.composite,
        "loss": args.loss,
        "ema": args.ema,
        "val_mode": args.val_mode,
        "scale_range": args.scale_range,
        "select": args.select,
        "amp": args.amp,
        "seed": args.seed,
        "limit": args.limit,
        "cache_dir": args.cache_dir,
        "device": args.device,
    }
    for k, v in over.items():
        if v is not None:
            setattr(cfg, k, v)
    if args.stages:
        cfg.stages = args.stages
    if args.epochs:
        if len(cfg.stages) != 1:
            raise TinysalError("--epochs applies to single-stage recipes; use --stages for multi-stage ones")
        cfg.stages = [[cfg.stages[0][0], args.epochs]]
    if args.crop:
        cfg.stages = [[args.crop, e] for _, e in cfg.stages]
    cfg.val_groups = [g for g in (args.val_groups or "").split(",") if g]
    cfg.exclude_groups = [g for g in (args.exclude_groups or "").split(",") if g]
    cfg.export = not args.no_export
    cfg.skip_bad = args.skip_bad
    if args.no_calibrate:
        cfg.calibrate = False
    from tinysal.train.trainer import train

    print(f"training {cfg.arch}: {json.dumps(dataclasses.asdict(cfg))}", file=sys.stderr)
    m = train(cfg, resume=args.resume, metrics_out=args.metrics_out, progress=not args.quiet)
    print(
        f"best epoch {m['best_epoch']} val IoU {m['best_val_iou']:.4f}; "
        + (f"ONNX {m['onnx']} parity {m['parity_max_abs_diff']:.2e}" if "onnx" in m else "no export")
    )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from tinysal.fileio import check_writable_target, read_json
    from tinysal.train.calibrate import calibrate

    check_writable_target(args.output)
    _precheck(args.out_json)
    run = read_json(args.metrics, "training metrics")
    groups = run.get("val_groups") if isinstance(run, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise TinysalError(f"{args.metrics}: not a training run's metrics (no 'val_groups' list of group names)")
    rep = calibrate(args.checkpoint, groups, args.roots, args.output, args.cache_dir or "")
    _report(args.out_json, rep, args, [args.checkpoint, args.metrics])
    for n, v in rep["per_source"].items():
        print(f"{n:<18} {v['images']:>5} img  IoU {v['iou_before']:.4f} -> {v['iou_after']:.4f}  "
              f"MAE {v['mae_before']:.4f} -> {v['mae_after']:.4f}")  # fmt: skip
    print(f"logit scale {rep['a']:.4f} shift {rep['b']:+.4f} folded into the head; wrote {rep['output']}")
    return 0


def cmd_validate_registry(args: argparse.Namespace) -> int:
    from tinysal.model.validate import validate_registry

    _precheck(args.out_json)
    rep = validate_registry(args.registry)
    _report(args.out_json, rep, args, [rep["registry"]] + [m["file"] for m in rep["models"]])
    for m in rep["models"]:
        print(f"{m['id']:<32} {m['status']:<11} {m['verdict']}")
        for p in m["problems"]:
            print(f"    - {p}", file=sys.stderr)
    for p in rep["problems"]:
        print(f"registry: {p}", file=sys.stderr)
    if not rep["ok"]:
        raise CheckFailed(f"registry {rep['registry']} failed validation")
    print(f"registry OK: production model {rep['production'][0]}")
    return 0


def cmd_validate_model(args: argparse.Namespace) -> int:
    from tinysal.model.validate import validate_model

    _precheck(args.out_json)
    rep = validate_model(args.model, args.checkpoint, args.registry)
    _report(args.out_json, rep, args, [args.model] + ([args.checkpoint] if args.checkpoint else []))
    status = rep["registry_status"]
    note = " (random weights: not for scoring)" if status == "smoke" else ""
    for p in rep["problems"]:
        print(f"FAIL {args.model}: {p}", file=sys.stderr)
    if "parity" in rep:
        print(f"parity max_abs_diff {rep['parity']['max_abs_diff']:.3e}")
    print(f"registry status: {status}{note}")
    if not rep["ok"]:
        raise CheckFailed(f"{args.model} failed validation")
    print(f"model OK: {args.model}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tinysal.train.evaluate import evaluate

    if args.short_side < 0:
        raise TinysalError("--short-side must be >= 0 (0 = native resolution)")
    _precheck(args.out_json)
    groups = [g for g in (args.groups or "").split(",") if g]
    rep = evaluate(args.model, args.roots, args.short_side, groups, args.threads)
    _report(args.out_json, rep, args, [args.model])
    print(f"{'dataset':<20} {'n':>5} {'IoU':>7} {'MAE':>7} {'maxF':>7} {'meanF':>7} {'S':>7} {'E':>7}")
    for d in rep["datasets"]:
        print(
            f"{os.path.basename(d['root']):<20} {d['n_images']:>5} {d['iou']:>7.4f} {d['mae']:>7.4f} "
            f"{d['max_f']:>7.4f} {d['mean_f']:>7.4f} {d['s_measure']:>7.4f} {d['e_measure']:>7.4f}"
        )
    return 0


def _open_input(args: argparse.Namespace) -> Any:
    from tinysal.video.readers import open_video, parse_pix_fmt, resolve_bitdepth

    args.bitdepth = resolve_bitdepth(args.pixel_format, args.bitdepth)
    reader = open_video(args.input, args.width, args.height, parse_pix_fmt(args.pixel_format), args.bitdepth)
    note = getattr(reader, "note", None)
    if note:  # a file cut short is worked on as far as it goes, as FFmpeg does, but never silently
        defer_warning(f"tinysal {args.command}: warning: {note.replace('scoring those', 'using those')}")
    return reader


def cmd_roi_maps(args: argparse.Namespace) -> int:
    from tinysal.encode.roi import iter_progress, roi_maps

    reader = _open_input(args)
    cb, close = iter_progress(reader.frame_count, "roi-maps", args.quiet)
    try:
        info = roi_maps(reader, args.outdir, args.encoder, args.ctu, args.strength, args.every,
                        args.model_path, args.frame_cnt, cb)  # fmt: skip
    finally:
        close()
    rows, cols = info["grid"]
    print(f"wrote {len(info['maps'])} {info['encoder']} maps ({cols}x{rows} blocks of {info['ctu']}) to {args.outdir}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from tinysal.encode.roi import EncodeSettings, encode_video, iter_progress

    if args.bitrate and args.crf is not None:
        raise TinysalError("give --bitrate or --crf, not both")
    if not (args.roi or args.roi_maps):
        for flag, v in (("--roi-strength", args.roi_strength), ("--roi-every", args.roi_every or None)):
            if v is not None:
                raise TinysalError(f"{flag} applies to ROI encodes: add --roi")
    s = EncodeSettings(
        codec=args.codec, bitrate=args.bitrate or 0, crf=23.0 if args.crf is None else args.crf, preset=args.preset,
        roi=args.roi or bool(args.roi_maps), roi_strength=args.roi_strength, roi_every=args.roi_every,
        roi_maps=args.roi_maps or "", model_path=args.model_path, no_audio=args.no_audio,
    )  # fmt: skip
    reader = _open_input(args)
    cb, close = iter_progress(reader.frame_count, "encode", args.quiet)
    try:
        info = encode_video(reader, args.output, s, overwrite=args.overwrite, frame_cnt=args.frame_cnt, progress=cb,
                            fps=args.fps)  # fmt: skip
    finally:
        close()
    roi = f", ROI every {info['roi_every']} frames" if info["roi"] else ""
    k = info["kept"]
    if k["audio"] or k["subtitles"]:
        roi += f", {len(k['audio'])} audio ({len(k['reencoded_audio'])} re-encoded to AAC) and {len(k['subtitles'])} "
        roi += "subtitle streams kept"
    print(f"wrote {info['output']}: {info['frames']} frames, {info['kbps']:.1f} kbit/s, {info['seconds']:.1f} s{roi}")
    return 0


#: the clip shipped with the package (Big Buck Bunny excerpt, CC-BY 3.0; samples/ATTRIBUTION.md)
SAMPLE_CLIP = "bigbuckbunny_360p.mp4"


def cmd_sample(args: argparse.Namespace) -> int:
    from importlib.resources import files

    clip = files("tinysal") / "samples" / SAMPLE_CLIP
    if not clip.is_file():
        raise TinysalError(f"the sample clip is missing from this installation ({clip})")
    print(clip)
    if args.attribution:
        print((files("tinysal") / "samples" / "ATTRIBUTION.md").read_text(encoding="utf-8"), file=sys.stderr)
    return 0


def cmd_plot_run(args: argparse.Namespace) -> int:
    from tinysal.train.curves import load_run, plot_runs

    _precheck(args.output)
    runs = [load_run(p) for p in args.runs]
    if args.labels:
        labels = args.labels.split(",")
        if len(labels) != len(runs) or not all(labels):
            raise TinysalError(f"--labels needs one non-empty name per run ({len(runs)}), got {args.labels!r}")
        for run, name in zip(runs, labels):
            run["name"] = name
    plot_runs(runs, args.output, args.title or "")
    for run in runs:
        tr, best = run["trace"], run["best"]
        planned = f"/{run['epochs']}" if run["epochs"] else ""
        tail = f", best epoch {best['epoch'] + 1} ({best['val_iou']:.4f})" if best else ""
        print(f"{run['name']}: {len(tr)}{planned} epochs, last validation score {tr[-1]['val_iou']:.4f}{tail}")
    return 0


def cmd_roi_eval(args: argparse.Namespace) -> int:
    from tinysal.encode.roi_eval import plot_rd, run_roi_eval

    _precheck(args.out_json)
    if args.plot:
        _precheck(args.plot)
    seqs = [s for s in args.sequences.split(",") if s]
    if not seqs:
        raise TinysalError("--sequences names no sequence")
    models: list[tuple[str, str | None]] = [("model", None)]  # the production model
    if args.model:
        models = []
        for spec in args.model:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise TinysalError(f"--model {spec!r}: expected NAME=PATH.onnx (the name labels its rows)")
            if name in ("oracle", "plain") or name in {n for n, _ in models}:
                raise TinysalError(f"--model name {name!r} is taken (plain, oracle, or an earlier --model)")
            models.append((name, path))
    quiet = args.quiet

    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    from tinysal.encode.roi import DEFAULT_ROI_STRENGTH

    strengths = args.strengths or [DEFAULT_ROI_STRENGTH[args.codec]]
    res = run_roi_eval(args.root, seqs, args.bitrates, args.codec, strengths, models, not args.no_oracle,
                       args.preset, args.frames, say)  # fmt: skip
    _report(args.out_json, res, args, [args.root])
    if args.plot:
        plot_rd(res, args.plot)
    for seq, d in res["sequences"].items():
        for label, bd in d["bd_rate_percent"].items():
            cells = ", ".join(f"{k} {v:+.1f}%" if isinstance(v, float) else f"{k} {v}" for k, v in bd.items())
            print(f"{seq} {label}: BD-rate vs plain: {cells}")
    return 0


def _frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1920x1080, got {text!r}") from None
    if not (1 <= w <= 16384 and 1 <= h <= 16384):
        raise argparse.ArgumentTypeError(f"frame size must be 1..16384 on each side, got {text!r}")
    return w, h


def _bitrate(text: str) -> int:
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        v = float(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a bitrate like 800k or 2M, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"bitrate must be positive, got {text!r}")
    return int(v)


def _input_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("input", help="video: raw .yuv (with --width/--height), .y4m, or anything FFmpeg decodes")
    sp.add_argument("--width", "-w", type=int)
    sp.add_argument("--height", "-H", type=int)
    sp.add_argument("--pixel_format", "-p", default="420")
    sp.add_argument("--bitdepth", "-b", type=int)
    sp.add_argument("--frame_cnt", type=_int_at_least(0), default=0, help="at most this many frames")
    sp.add_argument("--model-path", help="saliency model (default: the registry's production model)")
    sp.add_argument("--quiet", "-q", action="store_true")


def cmd_score(args: argparse.Namespace) -> int:
    from tinysal.cli.vmaf import run

    return run(args, prog="tinysal score")


# ------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from tinysal.model.arch import ARCHITECTURES
    from tinysal.train.config import PRESETS

    p = OneLineParser(
        prog="tinysal",
        description="tinysal: train, export, check, validate and evaluate the tiny saliency model; "
        "`tinysal score` (or `vmaf`) runs the mobilesal video feature.",
    )
    p.add_argument("--version", action="version", version=f"tinysal {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    sp = add("export", cmd_export, "export a checkpoint to ONNX (opset 17, dynamic H/W, deterministic bytes)")
    sp.add_argument("checkpoint", nargs="?")
    sp.add_argument("--output", "-o", required=True)
    sp.add_argument(
        "--random-init",
        metavar="ARCH",
        choices=["saliency_student_v1", "saliency_student_v2"],
        help="export a randomly initialised model (a smoke model) instead of a checkpoint",
    )
    sp.add_argument("--seed", type=int, default=0, help="seed for --random-init")

    sp = add("check-ops", cmd_check_ops, "check an ONNX model against the op allowlist and the I/O contract")
    sp.add_argument("model")
    sp.add_argument("--out-json")

    sp = add("cost", cmd_cost, "multiply-accumulates of one inference at the size the vmaf feature uses")
    sp.add_argument("model")
    sp.add_argument("--frame", type=_frame_size, default=(1920, 1080), metavar="WxH",
                    help="frame size before the inference resize (default 1920x1080)")
    sp.add_argument("--short-side", type=_int_at_least(0), default=256, help="inference short side (0 = native)")
    sp.add_argument("--out-json")

    sp = add("parity", cmd_parity, "compare PyTorch and ONNX Runtime outputs on fixed-seed inputs")
    sp.add_argument("checkpoint")
    sp.add_argument("model")
    sp.add_argument("--tolerance", type=_positive_float, default=1e-5)
    sp.add_argument("--out-json")

    sp = add("train", cmd_train, "train a saliency student (--preset sod: the shipped recipe)")
    sp.add_argument("roots", nargs="+", help="dataset roots (DUTS-TR/DUTS-TE layout or images/+masks/)")
    sp.add_argument("--arch", default="saliency_student_v2", choices=sorted(ARCHITECTURES))
    sp.add_argument("--preset", default="reference", choices=sorted(PRESETS), help="recipe (default reference)")
    sp.add_argument("--out-dir", default="runs/train")
    sp.add_argument("--metrics-out")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out-dir from its last epoch")
    sp.add_argument("--epochs", type=_int_at_least(1))
    sp.add_argument("--stages", type=_stages, help="multi-scale schedule CROP:EPOCHS[,...], e.g. 192:26,256:6")
    sp.add_argument("--crop", type=_int_at_least(8))
    sp.add_argument("--batch-size", type=_int_at_least(2))
    sp.add_argument("--lr", type=_positive_float)
    sp.add_argument("--resize", type=_int_at_least(8), help="short side the cache is resized to (default 288)")
    sp.add_argument("--val-crop", type=_int_at_least(8), help="validation crop, or short side with --val-mode whole")
    sp.add_argument("--val-fraction", type=_fraction)
    sp.add_argument("--val-groups", help="comma-separated groups (sequences) to validate on")
    sp.add_argument("--exclude-groups", help="comma-separated groups never used (a held-out test set)")
    sp.add_argument("--scale-range", type=_float_pair, help="random scale jitter LO,HI (e.g. 0.75,1.25)")
    sp.add_argument("--copy-paste", type=_fraction, help="probability of pasting another image's foreground")
    sp.add_argument("--color-jitter", type=_fraction, help="brightness/contrast/saturation jitter amount, e.g. 0.2")
    sp.add_argument(
        "--sampling",
        choices=["uniform", "balanced"],
        help="uniform: every image once an epoch; "
        "balanced: sources by --source-weights, scenes uniformly within a source",
    )
    sp.add_argument("--epoch-samples", type=_int_at_least(2), help="samples per epoch with balanced sampling")
    sp.add_argument(
        "--source-weights",
        type=_weights,
        help="NAME=W[,NAME=W...] by dataset folder name (default: sqrt of each source's image count)",
    )
    sp.add_argument("--crop-mode", choices=["window", "rrc"], help="window crops, or random resized crops")
    sp.add_argument("--rrc-area", type=_float_pair, help="area fraction LO,HI of random resized crops")
    sp.add_argument("--backgrounds", help="folder of object-free photos for composites")
    sp.add_argument("--composite", type=_fraction, help="probability of compositing the object onto a background")
    sp.add_argument("--loss", choices=["bce_dice", "structure"])
    sp.add_argument("--ema", type=_fraction, help="EMA decay of the weights (0 = off), e.g. 0.999")
    sp.add_argument("--val-mode", choices=["crop", "whole"])
    sp.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave unreadable pairs, masks of another size, empty masks and unmasked images out "
        "(counted) instead of stopping",
    )
    sp.add_argument("--no-calibrate", action="store_true", help="skip the final logit calibration (sod preset)")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--limit", type=_int_at_least(1), help="use only the first N pairs (smoke runs)")
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

    sp = add("sample", cmd_sample, "print the path of the bundled sample clip (Big Buck Bunny excerpt, CC-BY 3.0)")
    sp.add_argument("--attribution", action="store_true", help="also print its licence and origin (to stderr)")

    sp = add("plot-run", cmd_plot_run, "training curves of one or more runs (validation score, losses, per source)")
    sp.add_argument("runs", nargs="+", help="a run's --out-dir (also while it trains) or its metrics JSON")
    sp.add_argument("--output", "-o", required=True, help="PNG to write")
    sp.add_argument("--labels", help="comma-separated names, one per run (default: the folder or file name)")
    sp.add_argument("--title")

    sp = add("calibrate", cmd_calibrate, "fit a logit scale/shift on a run's validation split, fold it into the head")
    sp.add_argument("checkpoint")
    sp.add_argument("roots", nargs="+", help="the dataset roots the run trained on")
    sp.add_argument("--metrics", required=True, help="the run's metrics JSON (its validation groups)")
    sp.add_argument("--output", "-o", required=True)
    sp.add_argument("--cache-dir")
    sp.add_argument("--out-json")

    sp = add("roi-maps", cmd_roi_maps, "per-block QP-offset maps from saliency, in the reference system's formats")
    _input_arguments(sp)
    sp.add_argument("outdir")
    sp.add_argument("--encoder", choices=["x265", "svt-av1", "x264", "vvenc"], default="x265")
    sp.add_argument("--ctu", type=_int_at_least(8), help="block size (default 64; 16 for x264)")
    sp.add_argument("--strength", type=_float, default=6.0, help="offset = round(-strength*(2s-1)), +-12 (default 6)")
    sp.add_argument("--every", type=_int_at_least(1), default=1, help="a map every N frames (default every frame)")

    sp = add("encode", cmd_encode, "encode with libx264/libx265; --roi puts the bits where the saliency is")
    _input_arguments(sp)
    sp.add_argument("output")
    sp.add_argument("--codec", default="libx264", choices=["libx264", "libx265"])
    sp.add_argument("--bitrate", type=_bitrate, help="target bitrate, e.g. 800k (default: --crf 23)")
    sp.add_argument("--crf", type=_float)
    sp.add_argument("--preset", default="medium")
    sp.add_argument("--roi", action="store_true", help="regions of interest from the saliency of the frames")
    sp.add_argument("--roi-strength", type=_float, default=None,
                    help="QP offset at full/no saliency (default: 3 for libx264, 2 for libx265, chosen by the roi-eval "
                    "sweep)")  # fmt: skip
    sp.add_argument("--roi-every", type=_int_at_least(0), default=0,
                    help="frames per saliency update (default ~1/3 s; at most 1 s)")
    sp.add_argument("--roi-maps", help="folder of x264 maps from `roi-maps --encoder x264` instead of the model")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    sp.add_argument("--no-audio", action="store_true", help="drop the input's audio (kept by default)")
    sp.add_argument("--fps", type=_float, help="frame rate of raw YUV input (default 25; other inputs carry theirs)")

    sp = add("roi-eval", cmd_roi_eval, "A/B of plain vs ROI encodes on sequences with ground-truth masks (BD-rate)")
    sp.add_argument("root", help="DAVIS-layout folder: images/<seq>/*.jpg and masks/<seq>/*.png")
    sp.add_argument("--sequences", required=True, help="comma-separated sequence names")
    sp.add_argument("--codec", default="libx264", choices=["libx264", "libx265"])
    sp.add_argument("--bitrates", type=lambda t: [_bitrate(x) for x in t.split(",")],
                    default=[_bitrate(x) for x in ("250k", "500k", "1000k", "2000k")],
                    help="comma-separated target bitrates, at least 4 (default 250k,500k,1000k,2000k)")
    sp.add_argument("--strengths", type=lambda t: [_float(x) for x in t.split(",")], default=None,
                    help="ROI strengths to sweep (default: the codec's encode default)")
    sp.add_argument("--model", action="append", metavar="NAME=PATH.onnx",
                    help="saliency model(s) to compare (default: the production model)")
    sp.add_argument("--no-oracle", action="store_true", help="skip the ground-truth-mask oracle")
    sp.add_argument("--preset", default="medium")
    sp.add_argument("--frames", type=_int_at_least(0), default=0, help="first N frames per sequence (0 = all)")
    sp.add_argument("--out-json")
    sp.add_argument("--plot", help="PNG of the rate-quality curves")
    sp.add_argument("--quiet", "-q", action="store_true")

    sp = add(
        "validate-registry",
        cmd_validate_registry,
        "validate the model registry: schema, files, sha256, opset, allowlist, I/O, one production model",
    )
    sp.add_argument("--registry", help="registry.json to check (default: the one shipped in the package)")
    sp.add_argument("--out-json")

    sp = add(
        "validate-model",
        cmd_validate_model,
        "allowlist + I/O contract + parity (with --checkpoint) + registry status of one ONNX file",
    )
    sp.add_argument("model")
    sp.add_argument("--checkpoint")
    sp.add_argument("--registry")
    sp.add_argument("--out-json")

    sp = add("eval", cmd_eval, "SOD metrics (IoU, MAE, max/mean-F, S, E) of an ONNX model on datasets")
    sp.add_argument("model")
    sp.add_argument("roots", nargs="+")
    sp.add_argument("--short-side", type=int, default=256, help="inference short side (0 = native)")
    sp.add_argument("--groups", help="comma-separated groups (sequences) to evaluate on, e.g. held-out ones")
    sp.add_argument("--threads", type=_int_in(0, 64), default=0, help="ONNX Runtime threads (0 = one per core)")
    sp.add_argument("--out-json")

    from tinysal.cli.vmaf import add_score_arguments

    sp = sub.add_parser(
        "score",
        add_help=False,
        help="score a video with mobilesal (same options as `vmaf`)",
        description="score a video with mobilesal (same options as `vmaf`)",
    )
    sp.add_argument("--help", action="help", help="show this help and exit")
    add_score_arguments(sp)
    sp.set_defaults(func=cmd_score)
    return p


#: command -> (the arguments it reads, the files it writes, the folders it writes as a whole), for the check that
#: no output replaces an input or another output (``score`` checks its own, in cli/vmaf.py)
FILE_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "export": (("checkpoint",), ("output",), ()),
    "check-ops": (("model",), ("out_json",), ()),
    "cost": (("model",), ("out_json",), ()),
    "parity": (("checkpoint", "model"), ("out_json",), ()),
    "train": (("roots", "backgrounds"), ("metrics_out",), ()),
    "plot-run": (("runs",), ("output",), ()),
    "calibrate": (("checkpoint", "roots", "metrics"), ("output", "out_json"), ()),
    "roi-maps": (("input", "model_path"), (), ("outdir",)),
    "encode": (("input", "model_path", "roi_maps"), ("output",), ()),
    "roi-eval": (("root",), ("out_json", "plot"), ()),
    "validate-registry": (("registry",), ("out_json",), ()),
    "validate-model": (("model", "checkpoint", "registry"), ("out_json",), ()),
    "eval": (("model", "roots"), ("out_json",), ()),
}


def _run_inputs(path: str) -> list[str]:
    """What plot-run reads of a run: the folder's metrics.json and trace.json, or the file named."""
    from tinysal.train.curves import TRACE_NAME

    p = Path(path)
    return [str(p / n) for n in ("metrics.json", TRACE_NAME)] if p.is_dir() else [path]


def check_file_roles(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output that is one of the command's inputs or another of its outputs."""
    from tinysal.fileio import refuse_overlaps

    roles = FILE_ROLES.get(args.command)
    if not roles:
        return

    def named(attrs: tuple[str, ...]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for a in attrs:
            v = getattr(args, a, None)
            positional = a in ("input", "output", "checkpoint", "model", "root", "outdir", "roots", "runs")
            flag = a if positional else "--" + a.replace("_", "-")
            if isinstance(v, list):
                paths = [q for x in v for q in (_run_inputs(x) if args.command == "plot-run" else [x])]
                out.update({f"{flag}[{i}]": x for i, x in enumerate(paths)})
            else:
                out[flag] = v
        return out

    ins, outs, dirs = roles
    refuse_overlaps(named(ins), named(outs), named(dirs))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        check_file_roles(args)
        return int(args.func(args) or 0)

    return guarded(f"tinysal {args.command}", go)


if __name__ == "__main__":
    sys.exit(main())
