#!/usr/bin/env python3
"""crf-search accuracy and cost on real clips, measured in this run:

1. **Prediction.** For each clip, ``crf-search --min-vmaf 90`` on samples, then the whole clip encoded at the
   answer and scored by the ``score`` task: predicted VMAF (and size) against the full encode's.
2. **Cost.** Frames the search encoded against an exhaustive sweep of the same samples over every CRF in range.
3. **ROI at equal targets** (held-out DAVIS sequences, never trained on): ``--min-vmaf 90 --min-vmaf-roi 93 --roi``;
   the plain answer and the ROI answer each encoded whole: their sizes, and the object region's PSNR-Y measured
   with the sequence's ground-truth masks (``vmaf_roi`` uses the same model that placed the bits, so the masks are
   the independent check).

    python bench/bench_crf_search.py [--samples 3 --sample-seconds 1] [--preset medium] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TINYSAL_SHARED", ROOT.parent / "shared"))
CLIPS = ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"]  # (cockatoo is 4:4:4: encode takes 4:2:0)
HELD_OUT = ["blackswan", "car-roundabout", "dance-twirl", "libby"]  # excluded from every training run


def davis_clip(seq: str, folder: Path) -> tuple[Path, int, int, object, list]:
    from tinysal.encode.roi_eval import load_sequence
    from tinysal.video.readers import frame_bytes_of

    src, masks = load_sequence(SHARED / "data" / "davis2016", seq)
    raw = folder / f"{seq}.yuv"
    with open(raw, "wb") as f:
        for fr in src.frames():
            f.write(frame_bytes_of(fr))
    return raw, src.width, src.height, src, masks


def real_vmaf(ref: Path, enc: Path, w: int | None, h: int | None) -> float:
    from tinysal.features.task import ScoreOptions, score

    return score(ScoreOptions(reference=str(ref), distorted=str(enc), width=w, height=h)).result["pooled_metrics"][
        "vmaf"]["mean"]  # fmt: skip


def search(inp: Path, w: int | None, h: int | None, fps: float | None, a: argparse.Namespace, **kw) -> dict:
    from tinysal.encode.search import CrfSearchOptions, crf_search

    o = CrfSearchOptions(input=str(inp), width=w, height=h, fps=fps, samples=a.samples,
                         sample_seconds=a.sample_seconds, preset=a.preset, overwrite=True, **kw)  # fmt: skip
    return crf_search(o, quiet=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--sample-seconds", type=float, default=1.0)
    ap.add_argument("--preset", default=None, help="default: the codec's (the codec table)")
    ap.add_argument("--codec", default="libx264")
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    from tinysal.encode.codecs import CODECS

    a.preset = a.preset or CODECS[a.codec].default_preset
    d = Path(tempfile.mkdtemp(prefix="bench-crf-"))
    rows, roi_rows = [], []
    try:
        inputs = [(SHARED / "data" / "video" / c, None, None, None, c) for c in CLIPS]
        davis = {}
        for seq in HELD_OUT:
            raw, w, h, src, masks = davis_clip(seq, d)
            davis[seq] = (raw, w, h, src, masks)
            inputs.append((raw, w, h, 24.0, f"davis/{seq}"))
        print(f"{'clip':24s} {'crf':>4s} {'pred':>6s} {'real':>6s} {'err':>6s} {'pred kbps':>9s} {'real kbps':>9s} "
              f"{'attempts':>8s} {'cost':>6s}", flush=True)  # fmt: skip
        for inp, w, h, fps, name in inputs:
            t = time.perf_counter()
            full = d / "full.mp4"
            doc = search(inp, w, h, fps, a, codec=a.codec, min_vmaf=90.0, encode=str(full))
            real = real_vmaf(inp, full, w, h)
            lo, hi = CODECS[a.codec].search_range
            sweep = (hi - lo + 1) * sum(s["frames"] for s in doc["samples"])  # every CRF in range, same samples
            row = {"clip": name, "crf": doc["crf"], "predicted_vmaf": doc["predicted"]["vmaf"], "real_vmaf": real,
                   "error": doc["predicted"]["vmaf"] - real, "predicted_kbps": doc["predicted"]["video_kbps"],
                   "real_kbps": doc["encode"]["video_kbps"], "attempts": len(doc["attempts"]),
                   "frames_encoded": doc["frames_encoded"], "sweep_frames": sweep,
                   "cost": doc["frames_encoded"] / sweep, "whole_clip_sampled": len(doc["samples"]) == 1
                   and doc["samples"][0]["start"] == 0, "seconds": time.perf_counter() - t}  # fmt: skip
            rows.append(row)
            print(f"{name:24s} {row['crf']:4g} {row['predicted_vmaf']:6.2f} {real:6.2f} {row['error']:+6.2f} "
                  f"{row['predicted_kbps']:9.0f} {row['real_kbps']:9.0f} {row['attempts']:8d} {row['cost']:6.1%}"
                  f"{'  (whole clip)' if row['whole_clip_sampled'] else ''}", flush=True)  # fmt: skip
        errs = [abs(r["error"]) for r in rows]
        cost = sum(r["cost"] for r in rows) / len(rows)
        print(f"|predicted - real| VMAF: mean {sum(errs) / len(errs):.2f}, worst {max(errs):.2f} (targets <= 1.0, "
              f"<= 2.0); search cost: mean {cost:.1%} of a sweep (<= 30%)")  # fmt: skip
        if CODECS[a.codec].roi_strength is None:  # no default ROI strength (its route misses roi-eval's bar)
            davis = {}
        else:
            print("\nROI at equal targets (--min-vmaf 90 --min-vmaf-roi 93 --roi), held-out DAVIS, whole encodes:")
        from tinysal.encode.encoder import EncodeOptions, encode
        from tinysal.encode.roi_eval import measure

        for seq, (raw, w, h, src, masks) in davis.items():
            doc = search(raw, w, h, 24.0, a, codec=a.codec, min_vmaf=90.0, min_vmaf_roi=93.0, roi=True)
            plain = doc["per_strength"][0]
            out = {}
            for tag, crf, strength in (("plain", plain["crf"], 0.0), ("roi", doc["crf"], doc["roi_strength"])):
                if crf is None:
                    continue
                enc = d / f"{seq}-{tag}.mp4"
                info = encode(EncodeOptions(input=str(raw), width=w, height=h, fps=24.0, output=str(enc),
                                            codec=a.codec, crf=crf, preset=a.preset, roi=strength > 0,
                                            roi_strength=strength or None, overwrite=True))  # fmt: skip
                m = measure(src, masks, enc, raw)
                out[tag] = {"crf": crf, "roi_strength": strength, "bytes": info["bytes"], **m}
            r = {"sequence": seq, **out, "predicted_saving_percent": doc.get("roi_saving_percent")}
            if "plain" in out and "roi" in out:
                r["real_saving_percent"] = 100 * (1 - out["roi"]["bytes"] / out["plain"]["bytes"])
                r["object_psnr_delta"] = out["roi"]["psnr_y_object"] - out["plain"]["psnr_y_object"]
                print(f"  {seq:16s} plain crf {out['plain']['crf']:g} {out['plain']['bytes']:8d} B  roi crf "
                      f"{out['roi']['crf']:g} strength {out['roi']['roi_strength']:g} {out['roi']['bytes']:8d} B  "
                      f"saving {r['real_saving_percent']:+.1f}% (predicted {r['predicted_saving_percent']:+.1f}%)  "
                      f"object PSNR-Y {out['plain']['psnr_y_object']:.2f} -> {out['roi']['psnr_y_object']:.2f}  "
                      f"VMAF {out['plain']['vmaf']:.2f} -> {out['roi']['vmaf']:.2f}", flush=True)  # fmt: skip
            roi_rows.append(r)
        savings = [r["real_saving_percent"] for r in roi_rows if "real_saving_percent" in r]
        if savings:
            print(f"mean ROI saving at equal targets: {sum(savings) / len(savings):+.1f}% (target >= 10%)")
        if a.json:
            doc = {"prediction": rows, "roi": roi_rows, "samples": a.samples, "sample_seconds": a.sample_seconds,
                   "preset": a.preset}
            Path(a.json).write_text(json.dumps(doc, indent=2))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
