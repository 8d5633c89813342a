"""The score task: ``ScoreOptions`` (the ``vmaf`` command's options, with their defaults and checks) in, the
libvmaf-layout result out. The ``vmaf``/``tinysal score`` command parses into it, the Python API and the batch
runner build it directly; one set of checks and defaults for all three.

    from tinysal.features.task import ScoreOptions, score
    res = score(ScoreOptions(reference="ref.mp4", distorted="dist.mp4", feature=["mobilesal"]))
    res.result["pooled_metrics"]["vmaf"]["mean"]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinysal.errors import TinysalError

#: FFmpeg swscale's scalers a distorted of another size can be scaled with (``--scaler``)
SCALERS = ("bicubic", "bilinear", "lanczos", "spline", "area", "neighbor")
MAX_THREADS = 64  # frames in flight are 2 x threads: bounded memory whatever the clip length
FORMATS = ("json", "xml", "csv")


def _feature_name(spec: str) -> tuple[str, str]:
    """``NAME[:k=v...]`` (or libvmaf's ``name=NAME:...``) -> (name, the ``k=v`` rest)."""
    name, _, rest = spec.partition(":")
    return name.removeprefix("name="), rest


def _check_percentiles(qs: list[float]) -> None:
    for q in qs:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 100:
            raise TinysalError(f"--pool-percentiles: {q!r} is not a percentile between 0 and 100")


@dataclass
class ScoreOptions:
    """What to score and where to write it; the names are the ``vmaf`` command's flags (``--frame_cnt`` is
    ``frame_cnt``, ``--range`` is ``color_range``). ``output`` None (or ``-``) writes nothing: the result is
    returned (the command prints it)."""

    reference: str
    distorted: str
    width: int | None = None
    height: int | None = None
    pixel_format: str = "420"
    bitdepth: int | None = None  # None: what pixel_format implies, else 8
    feature: list[str] = field(default_factory=list)  # NAME[:k=v...]: mobilesal or a libvmaf feature
    feature_params: list[str] = field(default_factory=list)  # NAME:k=v[:k2=v2]
    model: list[str] = field(default_factory=list)  # libvmaf --model specs; empty: version=vmaf_v0.6.1
    output: str | None = None
    fmt: str = "json"
    frame_cnt: int = 0
    frame_skip_ref: int = 0
    frame_skip_dist: int = 0
    dist_delay: int = 0  # the distorted starts this many frames late (adds to frame_skip_dist)
    scaler: str = "bicubic"  # a distorted of another size is scaled to the reference's with this
    no_scale: bool = False  # refuse a distorted of another size instead
    subsample: int = 1
    threads: int = 0
    colorspace: str = "bt709"
    color_range: str = "limited"
    saliency_out: str | None = None
    saliency_format: str = "png"
    contact_sheet: str | None = None
    plot: str | None = None
    no_prediction: bool = False
    pool_percentiles: list[float] = field(default_factory=list)  # adds pN to every pooled metric (p1, p5: lows)

    def check(self, files: bool = True) -> None:
        """Refuse, before any work, options that cannot run: one ``TinysalError`` line each. ``files=False``: the
        values only (a batch checks every row's files at once, its outputs' folders made later)."""
        from tinysal.video.readers import resolve_bitdepth

        self.bitdepth = resolve_bitdepth(self.pixel_format, self.bitdepth)
        if self.output == "-":  # standard output, as libvmaf's tool and most Unix tools read "-"
            self.output = None
        for name, lo, hi in (("frame_cnt", 0, None), ("frame_skip_ref", 0, None), ("frame_skip_dist", 0, None),
                             ("dist_delay", 0, None), ("subsample", 1, None), ("threads", 0, MAX_THREADS)):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
                span = f"{lo} to {hi}" if hi is not None else f">= {lo}"
                raise TinysalError(f"{name} must be a whole number {span}, got {v!r}")
        _check_percentiles(self.pool_percentiles)
        for name, allowed in (("fmt", FORMATS), ("colorspace", ("bt709", "bt601", "bt2020")), ("scaler", SCALERS),
                              ("color_range", ("limited", "full")), ("saliency_format", ("png", "npy"))):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise TinysalError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if files:
            self._check_outputs()
        sal, _ = self.features()
        if not sal:  # these show the saliency maps: without the feature there are none (say so before any work)
            for flag, v in (("--saliency-out", self.saliency_out), ("--contact-sheet", self.contact_sheet)):
                if v:
                    raise TinysalError(f"{flag} needs --feature mobilesal (it shows the saliency maps)")
        if files:
            self._check_overlaps(sal)

    def _check_outputs(self) -> None:
        from tinysal.fileio import check_writable_target

        for out in (self.output, self.plot, self.contact_sheet):
            if out:
                check_writable_target(out)
        if self.saliency_out:
            from tinysal.fileio import refuse_dangling

            refuse_dangling(self.saliency_out, "--saliency-out")
            d = Path(self.saliency_out)
            if d.exists() and not d.is_dir():
                raise TinysalError(f"--saliency-out {d} exists and is not a folder")

    def _check_overlaps(self, sal: dict[str, dict[str, str]]) -> None:
        from tinysal.features.vmaf import VmafModel
        from tinysal.fileio import refuse_overlaps

        model_paths = {f"--model {m}": VmafModel.parse(m).path or None for m in self.model}
        for name, params in sal.items():
            model_paths[f"{name}:model_path"] = params.get("model_path")
        model_paths["$VMAF_MOBILESAL_MODEL_PATH"] = os.environ.get("VMAF_MOBILESAL_MODEL_PATH")
        refuse_overlaps(
            {"--reference": self.reference, "--distorted": self.distorted, **model_paths},
            {"--output": self.output, "--plot": self.plot, "--contact-sheet": self.contact_sheet},
            {"--saliency-out": self.saliency_out},
        )

    def wants_saliency(self) -> bool:
        """Whether the mobilesal feature is asked for (without parsing or checking its parameters)."""
        return any(_feature_name(spec)[0] == "mobilesal" for spec in self.feature)

    def features(self) -> tuple[dict[str, dict[str, str]], list[tuple[str, dict[str, str]]]]:
        """(mobilesal params by name, libvmaf features as (name, params)) from ``feature`` / ``feature_params``."""
        from tinysal.features.mobilesal import parse_feature_params
        from tinysal.features.vmaf import FILTER_FEATURES, LIBVMAF_FEATURES

        feats: dict[str, dict[str, str]] = {}
        for spec in self.feature:
            name, rest = _feature_name(spec)
            if name != "mobilesal" and name not in LIBVMAF_FEATURES + FILTER_FEATURES:
                raise TinysalError(f"unknown feature {name!r}; available: mobilesal, xpsnr, "
                                   f"{', '.join(LIBVMAF_FEATURES)}")  # fmt: skip
            feats.setdefault(name, {})
            if rest:
                feats[name].update(parse_feature_params([f"{name}:{rest}"])[name])
        for name, params in parse_feature_params(self.feature_params).items():
            if name not in feats:
                raise TinysalError(f"--feature_params for {name!r}, which is not among the --feature options")
            feats[name].update(params)
        if feats.get("xpsnr"):
            raise TinysalError("xpsnr takes no parameters (FFmpeg's xpsnr filter, as it is)")
        sal = {k: v for k, v in feats.items() if k == "mobilesal"}
        return sal, [(k, v) for k, v in feats.items() if k != "mobilesal"]


@dataclass
class ScoreResult:
    result: dict[str, Any]  # the libvmaf-layout document (what --output holds)
    info: dict[str, Any]  # facts about the run: frames scored, size, fps, colour, notes


def _context(opts: ScoreOptions) -> Any:
    from tinysal.features.context import VmafContext

    sal, vmaf_feats = opts.features()
    ctx = VmafContext(threads=opts.threads, subsample=opts.subsample, colorspace=opts.colorspace,
                      color_range=opts.color_range)  # fmt: skip
    ctx.use_vmaf(opts.model or ["version=vmaf_v0.6.1"], vmaf_feats, opts.no_prediction)
    ctx.pool_percentiles = sorted({float(q) for q in opts.pool_percentiles})
    for name, params in sal.items():
        ctx.use_feature(name, params)
    if not ctx.features and not ctx.wants_vmaf:
        raise TinysalError("--no_prediction without --feature leaves nothing to compute")
    return ctx


def _write_outputs(opts: ScoreOptions, result: dict[str, Any], sink: Any) -> None:
    """The score is written first; then each side output, each all-or-nothing (maps move into place at the end,
    files are written atomically). A failing side output is one error; the outputs finished before it stay."""
    if opts.output:
        from tinysal.features.output import write_result

        write_result(opts.output, result, opts.fmt)
    if sink is not None:
        sink.commit()
        if opts.contact_sheet:
            sink.write_contact_sheet(opts.contact_sheet)
    if opts.plot:
        from tinysal.features.visual import plot_scores

        plot_scores(result, opts.plot, _plot_title(opts, result))


def _plot_title(opts: ScoreOptions, result: dict[str, Any]) -> str:
    """What the plot shows: the metrics, the clip (distorted against reference) and the models."""
    pooled = result.get("pooled_metrics") or {}
    metrics = [m for m in ("vmaf", "vmaf_roi", "saliency_mean") if m in pooled]
    vmaf_model = ", ".join(m.split("=", 1)[-1].split(":")[0] for m in opts.model) or "vmaf_v0.6.1"
    models = [f"VMAF model {vmaf_model}"] if "vmaf" in pooled else []
    sal = (result.get("run_provenance") or {}).get("saliency_model") or {}
    if "saliency_mean" in pooled and isinstance(sal, dict) and sal.get("id"):
        models.append(f"saliency model {sal['id']}")
    clip = f"{os.path.basename(opts.distorted)} against {os.path.basename(opts.reference)}"
    return f"{', '.join(metrics)} per frame: {clip}" + (f"\n{'; '.join(models)}" if models else "")


def provenance(opts: Any, sal_model: str | None = None, inputs: tuple[str, ...] = ("reference", "distorted", "input"),
               outputs: tuple[str, ...] = ("output", "out_json", "encode", "plot", "contact_sheet", "saliency_out")
               ) -> dict[str, Any]:  # fmt: skip
    """The ``run_provenance`` block of a task's JSON: tinysal's version, argv, the options, the inputs (hashed up to
    64 MB, else size and mtime), the outputs, and the saliency model (registry id and sha256) the run used."""
    import dataclasses

    from tinysal.model.registry import model_identity
    from tinysal.provenance import run_provenance

    ins = [getattr(opts, k) for k in inputs if getattr(opts, k, None) not in (None, "", "-")]
    outs = [getattr(opts, k) for k in outputs if getattr(opts, k, None) not in (None, "", "-")]
    try:
        model = model_identity(sal_model or getattr(opts, "model_path", None))
    except TinysalError:
        model = None
    return run_provenance(dataclasses.asdict(opts), ins, outs, {"saliency_model": model})


def score(
    opts: ScoreOptions,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Check ``opts``, score the pair (libvmaf in an FFmpeg child, saliency here) and write the outputs asked for.

    ``progress(done, total)`` is called as frames are scored; ``warn(message)`` for what the run should report
    (a truncated clip, differing frame counts); the messages are also in ``info["notes"]``."""
    from tinysal.features.scoring import score_files
    from tinysal.video.readers import parse_pix_fmt

    opts.check()
    ctx = _context(opts)
    sink = None
    if opts.saliency_out or opts.contact_sheet:
        from tinysal.features.visual import MapSink

        sink = MapSink(opts.saliency_out, opts.saliency_format, opts.contact_sheet is not None)
        ctx.map_sink = sink
    try:
        info = score_files(ctx, opts.reference, opts.distorted, opts.width, opts.height,
                           parse_pix_fmt(opts.pixel_format), opts.bitdepth, opts.frame_cnt, opts.frame_skip_ref,
                           opts.frame_skip_dist + opts.dist_delay, progress=progress, warn=warn,
                           scaler=None if opts.no_scale else opts.scaler)  # fmt: skip
        result = ctx.result(info["fps"])
        result["run_provenance"] = provenance(opts, sal_model=next((f.model_path for f in ctx.features), None))
        _write_outputs(opts, result, sink)
    finally:
        if sink is not None:
            sink.abort()
    return ScoreResult(result, info)
