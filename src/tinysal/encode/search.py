"""Target-quality search (``tinysal crf-search``): the highest CRF whose encode keeps VMAF, and optionally the
saliency-weighted ``vmaf_roi``, at or above a target, found on samples of the clip as ab-av1 does.

1. **Samples.** ``samples`` segments of ``sample_seconds`` spread evenly over the clip (the whole clip when it is
   shorter than all of them together), cut from one decode of the input into raw 8-bit 4:2:0 files: lossless, so
   each sample's encode is scored against exactly the frames it was made from. A sample is encoded with up to half
   its length of the frames that follow it, which are not scored: x264's macroblock tree starves the last frames
   of a clip (nothing references them), and short samples scored to their very end under-predicted the full
   encode's VMAF by 1-2 points (bench/bench_crf_search.py).
2. **Attempts.** An attempt encodes every sample at one CRF with the ``encode`` task (plain or ROI, its guarantees)
   and scores it with the ``score`` task, as ``vmaf`` scores (libvmaf in FFmpeg; ``vmaf_roi`` from the reference
   frames' saliency when a ROI target is set). The per-frame scores of all samples are pooled by ``pool``: the
   mean, libvmaf's harmonic mean, or ``pN``, the N-th percentile (``p5``: Av1an's probing statistic).
3. **Search.** Not a sweep: after the first attempt, the next CRF is interpolated (or extrapolated) from the
   attempts' margins to the targets, within the bracket of the highest CRF that passed and the lowest that failed,
   until the two are adjacent. The predicted size scales the samples' bytes to the clip's length.
4. **ROI.** With ``roi``, one search per ROI strength of a small set (0 = the plain encode); the smallest predicted
   size wins: what ROI saves on this title at equal quality.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tinysal.encode.codecs import CODECS
from tinysal.encode.encoder import (
    EncodeOptions,
    check_codec,
    check_count,
    check_fps,
    default_preset,
    encode,
)
from tinysal.encode.sampling import SampleSet, cut_samples, plan_samples, pooled_xpsnr
from tinysal.errors import CheckFailed, TinysalError
from tinysal.fileio import EventLog
from tinysal.video.readers import VideoInput

# the CRF range searched by default and the first attempt are the codec table's (``search_range``, ``first_crf``)
#: VMAF points lost per CRF step, to extrapolate from a single attempt (measured ~1.5-2.5 on the shared clips)
SLOPE_GUESS = 2.0
MAX_ATTEMPTS = 12
#: the largest jump when extrapolating from one side of the target
MAX_STEP = 6.0
DEFAULT_FPS = 25.0


def roi_strengths(codec: str) -> tuple[float, ...]:
    """The ROI strengths a ``--roi`` search tries: plain (0), the codec's default, and a stronger one."""
    d = CODECS[codec].roi_strength
    if d is None:
        raise TinysalError(f"--roi with {codec}: it has no default ROI strength (no strength of its route meets "
                           "roi-eval's bar; docs/codecs.md), so a search cannot choose one")  # fmt: skip
    return (0.0, d, d + 2.0)


def parse_pool(pool: str) -> tuple[str, float | None]:
    if pool in ("mean", "harmonic_mean"):
        return pool, None
    if pool.startswith("p"):
        try:
            q = float(pool[1:])
        except ValueError:
            q = math.nan
        if 1 <= q <= 99:
            return "percentile", q
        raise TinysalError(f"--pool {pool}: a percentile must be p1 to p99")
    raise TinysalError(f"--pool must be mean, harmonic_mean or pN (p1..p99), got {pool!r}")


def pooled(values: list[float], pool: str) -> float:
    """``--pool`` over the frames: the writers' one pooling function (features.output.pool)."""
    from tinysal.features.output import pool as pool_frames

    parse_pool(pool)
    return pool_frames(values, pool)


@dataclass(kw_only=True)
class SearchTargets:
    """What a search is for and how it samples: the fields crf-search, a shot of auto-encode and auto-encode share
    (the names are the commands' flags)."""

    codec: str = "libx264"
    min_vmaf: float
    min_vmaf_roi: float | None = None
    min_xpsnr: float | None = None  # also keep XPSNR (the lowest of its pooled components, dB) at this
    roi: bool = False
    pool: str = "mean"
    samples: int = 3
    sample_seconds: float = 2.0
    min_crf: float | None = None
    max_crf: float | None = None
    preset: str | None = None  # None: the codec's default preset

    def __post_init__(self) -> None:
        self.preset = default_preset(self.codec, self.preset)

    def targets(self) -> list[tuple[str, float]]:
        """(metric, the least it may be) for every target given, in the order they are reported."""
        given = (("vmaf", self.min_vmaf), ("vmaf_roi", self.min_vmaf_roi), ("xpsnr", self.min_xpsnr))
        return [(k, v) for k, v in given if v is not None]

    def target_fields(self) -> dict[str, Any]:
        """This class's own fields and their values: what a search for the same targets is built from."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(SearchTargets)}


@dataclass(kw_only=True)
class CrfSearchOptions(SearchTargets, VideoInput):
    """The ``crf-search`` task's options; the names are the command's flags."""

    fps: float | None = None  # raw YUV only
    out_json: str | None = None
    encode: str | None = None  # encode the whole clip at the answer into this file
    overwrite: bool = False
    events: str | None = None
    threads: int = 0
    frame_cnt: int = 0  # search (and --encode) at most this many frames of the clip
    model_path: str | None = None  # saliency model for ROI encodes and vmaf_roi (default: the production model)
    encoder_args: str = ""  # the encoder's own parameters for every encode (k=v:k2=v2)

    def check(self, files: bool = True) -> tuple[float, float]:
        """Refuse, before any work, what cannot run (one line each); the CRF range. ``files=False``: the values
        only (a batch checks every row's files at once)."""
        c = check_codec(self.codec, self.preset)
        if self.roi:
            roi_strengths(self.codec)
        check_count("--frame-cnt", self.frame_cnt)
        check_fps(self.fps)
        for flag, v in (("--min-vmaf", self.min_vmaf), ("--min-vmaf-roi", self.min_vmaf_roi),
                        ("--min-xpsnr", self.min_xpsnr)):  # fmt: skip
            if v is not None and not (math.isfinite(v) and 0 <= v <= 100):
                raise TinysalError(f"{flag} must be 0..100, got {v:g}")
        c.check_params(self.encoder_args)
        parse_pool(self.pool)
        if self.samples < 1 or self.samples > 100:
            raise TinysalError(f"--samples must be 1..100, got {self.samples}")
        if not (math.isfinite(self.sample_seconds) and 0.1 <= self.sample_seconds <= 600):
            raise TinysalError(f"--sample-seconds must be 0.1..600, got {self.sample_seconds:g}")
        lo = float(c.search_range[0]) if self.min_crf is None else self.min_crf
        hi = float(c.search_range[1]) if self.max_crf is None else self.max_crf
        for flag, v in (("--min-crf", lo), ("--max-crf", hi)):
            if not (math.isfinite(v) and c.crf_range[0] <= v <= c.crf_range[1] and v == int(v)):
                raise TinysalError(f"{flag} must be a whole CRF {c.crf_range[0]}..{c.crf_range[1]} for {c.name}, "
                                   f"got {v:g}")  # fmt: skip
        if lo >= hi:
            raise TinysalError(f"--min-crf {lo:g} must be below --max-crf {hi:g}")
        if self.encode:
            from tinysal.encode.encoder import check_container, output_path

            if files:
                output_path(self.encode, self.codec, self.overwrite)  # the container too
            else:
                check_container(self.encode, self.codec)
        return lo, hi


@dataclass
class Attempt:
    crf: float
    roi_strength: float
    vmaf: float
    vmaf_roi: float | None
    xpsnr: float | None
    bytes: int  # predicted for the whole clip
    video_kbps: float
    size_percent: float  # of the input's video stream
    frames_encoded: int
    seconds: float
    passed: bool = False
    margin: float = 0.0

    def doc(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("crf", "roi_strength", "vmaf", "vmaf_roi", "xpsnr", "bytes", "video_kbps",
                                          "size_percent",
                                          "frames_encoded", "seconds", "passed")}  # fmt: skip
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


class Events(EventLog):
    """NDJSON events (ab-av1's names), and each attempt as a line on stderr unless quiet."""

    def __init__(self, target: str | None, quiet: bool = False) -> None:
        super().__init__(target)
        self.quiet = quiet

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=sys.stderr, flush=True)


@dataclass
class Search:
    """The search's state: the samples, the targets and every attempt made (cached by CRF and strength)."""

    opts: CrfSearchOptions
    sampleset: SampleSet
    total_frames: int
    input_bytes: int
    events: Events
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.sampleset.fps

    def attempt(self, crf: float, strength: float) -> Attempt:
        for a in self.attempts:
            if a.crf == crf and a.roi_strength == strength:
                return a
        o = self.opts
        t = time.perf_counter()

        def said(k: int, frames: int, b: int, v: list[float]) -> None:
            self.events.emit("sample-encode-done", sample=k, crf=crf, roi_strength=strength, frames=frames, bytes=b,
                             vmaf=pooled(v, o.pool))  # fmt: skip

        p = self.sampleset.probe(crf, strength, said)
        vm, roi, nbytes, frames = p.vmaf, p.vmaf_roi, p.bytes, p.frames_encoded
        predicted = round(nbytes / frames * self.total_frames)
        seconds = self.total_frames / self.fps
        a = Attempt(crf, strength, pooled(vm, o.pool), pooled(roi, o.pool) if roi else None,
                    pooled_xpsnr(p.xpsnr, o.pool), predicted, predicted * 8 / seconds / 1000,
                    100 * predicted / self.input_bytes, frames, time.perf_counter() - t)  # fmt: skip
        a.margin = margin(o, {"vmaf": a.vmaf, "vmaf_roi": a.vmaf_roi, "xpsnr": a.xpsnr})
        a.passed = a.margin >= 0
        self.attempts.append(a)
        roi_txt = f" vmaf_roi {a.vmaf_roi:.2f}" if a.vmaf_roi is not None else ""
        roi_txt += f" xpsnr {a.xpsnr:.2f}" if a.xpsnr is not None else ""
        tag = f" roi {strength:g}" if o.roi else ""
        self.events.say(f"crf {crf:g}{tag}: vmaf {a.vmaf:.2f}{roi_txt} predicted {a.video_kbps:.0f} kbit/s "
                        f"({a.size_percent:.1f}% of the input's video)"
                        f"{'' if a.passed else ' (below target)'}")  # fmt: skip
        self.events.emit("crf-search-attempt", **a.doc())
        return a


def margin(o: SearchTargets, scores: dict[str, Any]) -> float:
    """How far ``scores`` (``vmaf``, ``vmaf_roi``, ``xpsnr``) are above the targets: the smallest of the margins of
    the targets scored (below 0: a target missed)."""
    return min(scores[k] - want for k, want in o.targets() if scores.get(k) is not None)


def missed_targets(o: SearchTargets, scores: dict[str, Any]) -> list[str]:
    """The targets ``scores`` miss, each as ``vmaf_roi >= 95 (vmaf_roi 93.10)``."""
    out = [f"{k} >= {want:g} ({k} {scores[k]:.2f})" for k, want in o.targets()
           if scores.get(k) is not None and scores[k] < want]  # fmt: skip
    return out or ["the targets"]


def target_text(o: SearchTargets) -> str:
    """The targets as a user reads them: ``vmaf >= 93, vmaf_roi >= 95, xpsnr >= 40``."""
    return ", ".join(f"{k} >= {want:g}" for k, want in o.targets())


def _next_crf(points: list[Attempt], lo: float, hi: float) -> float | None:
    """The next CRF to try, or None when the answer is known: interpolate the margin to 0 between the highest
    passing and the lowest failing attempt; extrapolate from the nearest two (or the slope guess) otherwise."""
    passed = [a for a in points if a.passed]
    failed = [a for a in points if not a.passed]
    best_pass = max(passed, key=lambda a: a.crf) if passed else None
    worst_fail = min(failed, key=lambda a: a.crf) if failed else None
    if best_pass and worst_fail:
        if worst_fail.crf - best_pass.crf <= 1:
            return None
        p, f = best_pass, worst_fail
        c = p.crf + (f.crf - p.crf) * p.margin / (p.margin - f.margin) if p.margin != f.margin else (p.crf + f.crf) / 2
        return float(min(f.crf - 1, max(p.crf + 1, round(c))))
    ref = best_pass or worst_fail
    assert ref is not None
    if best_pass and best_pass.crf >= hi:
        return None  # even the highest CRF in range meets the targets
    if worst_fail and worst_fail.crf <= lo:
        return None  # even the lowest fails: unreachable
    side = sorted(points, key=lambda a: a.crf)
    slope = SLOPE_GUESS
    if len(side) >= 2:
        a, b = side[0], side[-1]
        if b.crf != a.crf and a.margin != b.margin:
            slope = max(0.25, (a.margin - b.margin) / (b.crf - a.crf))
    # margin > 0: up (a higher CRF); < 0: down. At most MAX_STEP: VMAF falls faster as CRF rises, so a slope
    # measured at high quality overshoots far (seen: 26 and 29 passing led to a wasted attempt at 45)
    step = max(-MAX_STEP, min(MAX_STEP, ref.margin / slope))
    step = max(1.0, round(step)) if step > 0 else min(-1.0, round(step))
    return float(min(hi, max(lo, ref.crf + step)))


def _refine(s: Search, mine: list[Attempt], strength: float) -> None:
    """Between the highest passing whole CRF and the failing one above it, one attempt at the CRF interpolated to
    the target (in the codec's ``crf_step``): a 1-CRF step is 1-2 VMAF at the usual targets."""
    step = CODECS[s.opts.codec].crf_step
    passed = [a for a in mine if a.passed]
    if step >= 1 or not passed:
        return
    p = max(passed, key=lambda a: a.crf)
    f = next((a for a in mine if not a.passed and a.crf == p.crf + 1), None)
    if f is None or p.margin == f.margin:
        return
    c = p.crf + round(p.margin / (p.margin - f.margin) / step) * step
    if p.crf < c < f.crf:
        mine.append(s.attempt(float(c), strength))


def search_one(s: Search, strength: float, lo: float, hi: float, refine: bool = False) -> dict[str, Any]:
    """One strength's search: the highest CRF meeting every target (or None) and its attempts; ``refine``: then
    one attempt between that CRF and the next (codecs with fractional CRFs)."""
    first = float(min(hi, max(lo, CODECS[s.opts.codec].first_crf)))
    c: float | None = first
    mine: list[Attempt] = []
    for _ in range(MAX_ATTEMPTS):
        assert c is not None
        mine.append(s.attempt(c, strength))
        c = _next_crf(mine, lo, hi)
        if c is None:
            break
    if refine:
        _refine(s, mine, strength)
    passed = [a for a in mine if a.passed]
    best = max(passed, key=lambda a: a.crf) if passed else None
    return {"roi_strength": strength, "crf": best.crf if best else None, "predicted": best.doc() if best else None,
            "best_reachable": max(mine, key=lambda a: a.margin).doc(),
            "attempts": [a.doc() for a in sorted(mine, key=lambda a: a.crf)]}  # fmt: skip


def search(opts: CrfSearchOptions, quiet: bool = False, whole_if_short: bool = False,
           refine: bool = False) -> dict[str, Any]:  # fmt: skip
    """The search alone: its document (``crf``, ``predicted``, ``attempts``, per ROI strength with ``roi``). A
    target that no CRF in range reaches gives ``crf`` None, ``unreachable`` (the one line saying so) and
    ``best_reachable`` (the attempt closest to the targets). ``whole_if_short``: a clip shorter than one sample is
    searched whole (a shot of a title) instead of refused. ``refine``: a fractional CRF between the answer and the
    next whole one, where the codec takes one (auto-encode's shots: each as close to the target as it can be)."""
    lo, hi = opts.check()
    reader = opts.open_input()
    fps = float(opts.fps or getattr(reader, "fps", None) or DEFAULT_FPS)
    total = min(reader.frame_count, opts.frame_cnt) if opts.frame_cnt else reader.frame_count
    ev = Events(opts.events, quiet)
    from tinysal.fileio import work_dir

    folder = work_dir("crf-search")
    t0 = time.perf_counter()
    try:
        plan = plan_samples(total, fps, opts.samples, opts.sample_seconds, whole_if_short)
        layout, note = CODECS[opts.codec].pix_fmt_for(reader.pix_fmt, reader.bitdepth)
        if note:
            ev.say(f"crf-search: {note}")
        samples = cut_samples(reader, plan, folder, total, layout)
        ss = SampleSet(samples=samples, width=reader.width, height=reader.height, fps=fps, layout=layout,
                       folder=folder, codec=opts.codec, preset=opts.preset, threads=opts.threads,
                       model_path=opts.model_path, encoder_args=opts.encoder_args,
                       score_roi=opts.min_vmaf_roi is not None,
                       score_xpsnr=opts.min_xpsnr is not None)  # fmt: skip
        s = Search(opts, ss, total, max(1, getattr(reader, "video_bytes", 0) or os.path.getsize(opts.input)), ev)
        ev.say(f"{len(samples)} sample(s) of {samples[0].frames} frames from {total} "
               f"({reader.width}x{reader.height} at {fps:g} fps)")  # fmt: skip
        runs = [search_one(s, k, lo, hi, refine) for k in (roi_strengths(opts.codec) if opts.roi else (0.0,))]
        doc = _answer(opts, s, runs, (lo, hi))
        doc["samples"] = [{"start": x.start, "frames": x.frames, "tail": x.tail} for x in samples]
        doc["seconds"] = round(time.perf_counter() - t0, 2)
        if doc["crf"] is None:
            ev.emit("crf-search-error", error=doc["unreachable"], best=doc["best_reachable"])
        else:
            ev.emit("crf-search-done", crf=doc["crf"], roi_strength=doc["roi_strength"], predicted=doc["predicted"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        ev.close()
    return doc


def _answer(opts: CrfSearchOptions, s: Search, runs: list[dict[str, Any]],
            crf_range: tuple[float, float]) -> dict[str, Any]:  # fmt: skip
    """The search's document from its runs (one per ROI strength)."""
    ok = [r for r in runs if r["crf"] is not None]
    doc: dict[str, Any] = {
        "input": opts.input, "codec": opts.codec, "preset": opts.preset, "targets": {
            "min_vmaf": opts.min_vmaf, "min_vmaf_roi": opts.min_vmaf_roi, "min_xpsnr": opts.min_xpsnr,
            "pool": opts.pool},
        "crf": None, "roi_strength": None, "predicted": None,
        "attempts": [a.doc() for a in s.attempts],
        "frames_encoded": sum(a.frames_encoded for a in s.attempts),
    }  # fmt: skip
    if not ok:
        targets = target_text(opts)
        best = max((r["best_reachable"] for r in runs), key=lambda a: (a["vmaf"], -a["crf"]))
        roi_txt = f", vmaf_roi {best['vmaf_roi']:.2f}" if best["vmaf_roi"] is not None else ""
        roi_txt += f", xpsnr {best['xpsnr']:.2f}" if best.get("xpsnr") is not None else ""
        lo, hi = crf_range
        missed = missed_targets(opts, best)
        doc["unreachable"] = (f"no CRF in {lo:g}..{hi:g} reaches {targets} (pooled by {opts.pool}); the best "
                              f"reachable: crf {best['crf']:g} gives vmaf {best['vmaf']:.2f}{roi_txt}, short of "
                              f"{' and '.join(missed)}")  # fmt: skip
        doc["missed_targets"] = missed
        doc["best_reachable"] = best
        return doc
    win = min(ok, key=lambda r: r["predicted"]["bytes"])
    doc.update(crf=win["crf"], roi_strength=win["roi_strength"], predicted=win["predicted"])
    if opts.roi:
        doc["per_strength"] = runs
        plain = next((r for r in ok if r["roi_strength"] == 0), None)
        roi_ok = [r for r in ok if r["roi_strength"] > 0]
        if plain:

            def saving(r: dict[str, Any]) -> float:
                return round(100 * (1 - r["predicted"]["bytes"] / plain["predicted"]["bytes"]), 2)

            doc["roi_saving_percent"] = saving(win)  # of the answer: 0 when plain wins
            if roi_ok:  # what the best ROI strength saves (below 0: costs)
                doc["roi_best_saving_percent"] = saving(min(roi_ok, key=lambda r: r["predicted"]["bytes"]))
    return doc


def crf_search(opts: CrfSearchOptions, quiet: bool = False) -> dict[str, Any]:
    """Run the search; the result (``crf``, ``predicted``, ``attempts``, per ROI strength with ``roi``), also
    written to ``out_json``. A target no CRF in range reaches raises :class:`CheckFailed` naming the best."""
    doc = search(opts, quiet)
    if doc["crf"] is None:
        raise CheckFailed(doc["unreachable"])  # the search ran to the end: its answer is "none" (exit 1)
    doc.pop("best_reachable", None)
    doc.pop("unreachable", None)
    if opts.encode:
        eo = EncodeOptions(input=opts.input, width=opts.width, height=opts.height, pixel_format=opts.pixel_format,
                           bitdepth=opts.bitdepth, output=opts.encode, fps=opts.fps, codec=opts.codec,
                           crf=doc["crf"], preset=opts.preset, roi=doc["roi_strength"] > 0,
                           roi_strength=doc["roi_strength"] or None, overwrite=opts.overwrite,
                           threads=opts.threads, frame_cnt=opts.frame_cnt, model_path=opts.model_path,
                           encoder_args=opts.encoder_args)  # fmt: skip
        doc["encode"] = {k: v for k, v in encode(eo).items() if k != "notes"}
    from tinysal.features.task import provenance

    doc["run_provenance"] = provenance(opts)
    if opts.out_json:
        from tinysal.fileio import write_json

        write_json(opts.out_json, doc)
    return doc

