"""``tinysal crf-search``: the highest CRF whose encode keeps VMAF (and the salient region's VMAF) on target."""

from __future__ import annotations

import argparse

from tinysal.cli.args import input_arguments, int_at_least, number
from tinysal.encode.codecs import CODECS

HELP = "find the highest CRF that keeps VMAF (and vmaf_roi) at a target, on samples of the clip; --roi: with ROI"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("input",), ("out_json", "encode", "events"), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    input_arguments(sp)
    sp.add_argument("--codec", default="libx264", choices=list(CODECS),
                    help="the encoder (the codec table: docs/codecs.md)")
    sp.add_argument("--min-vmaf", type=number, required=True, help="the pooled VMAF to keep (e.g. 93)")
    sp.add_argument("--min-vmaf-roi", type=number,
                    help="also keep the saliency-weighted VMAF (vmaf_roi, from the reference's saliency) at this")
    sp.add_argument("--min-xpsnr", type=number, help="also keep XPSNR (FFmpeg's xpsnr: the lowest of its pooled "
                    "Y/U/V values, dB) at this")
    sp.add_argument("--roi", action="store_true",
                    help="search ROI encodes too (strengths 0 = plain, the default, a stronger one): the smallest wins")
    sp.add_argument("--pool", default="mean", help="mean, harmonic_mean or pN (N-th percentile of frames, e.g. p5)")
    sp.add_argument("--samples", type=int_at_least(1), default=3, help="segments sampled (default 3)")
    sp.add_argument("--sample-seconds", type=number, default=2.0, help="length of each sample (default 2 s)")
    sp.add_argument("--min-crf", type=number, help="lowest CRF tried (default 10)")
    sp.add_argument("--max-crf", type=number, help="highest CRF tried (default 45)")
    sp.add_argument("--preset", default=None, help="the encoder's preset (default: the codec's, docs/codecs.md)")
    sp.add_argument("--encoder-args", default="", metavar="K=V[:K=V...]",
                    help="the encoder's own parameters, passed as -x264-params / -x265-params / -svtav1-params "
                    "(rate control, threads, keyframes and ROI are tinysal's flags: refused here)")
    sp.add_argument("--fps", type=number, help="frame rate of raw YUV input (default 25)")
    sp.add_argument("--out-json", help="the result: crf, predicted figures and size, every attempt")
    sp.add_argument("--encode", help="then encode the whole clip at the answer into this file")
    sp.add_argument("--overwrite", action="store_true", help="--encode may replace an existing file")
    sp.add_argument("--events", help="NDJSON events (sample-encode-done, crf-search-attempt, ...) to a file or -")
    sp.add_argument("--threads", type=int_at_least(0), default=0, help="encoder and libvmaf threads (0 = all cores)")


def run(args: argparse.Namespace) -> int:
    from tinysal.cli.common import options_from
    from tinysal.encode.search import CrfSearchOptions, crf_search

    doc = crf_search(options_from(CrfSearchOptions, args), quiet=args.quiet)
    p = doc["predicted"]
    roi = f", ROI strength {doc['roi_strength']:g}" if doc["roi_strength"] else ""
    saving = ""
    if "roi_best_saving_percent" in doc:
        v = doc["roi_best_saving_percent"]
        saving = (f"; ROI saves {v:.1f}% against plain" if v > 0 else
                  f"; ROI costs {-v:+.1f}% against plain on this title: plain kept")  # fmt: skip
    roi_v = f", vmaf_roi {p['vmaf_roi']:.2f}" if p["vmaf_roi"] is not None else ""
    print(f"crf {doc['crf']:g}{roi}: predicted vmaf {p['vmaf']:.2f}{roi_v}, {p['video_kbps']:.0f} kbit/s "
          f"({p['size_percent']:.1f}% of the input's video){saving}; {len(doc['attempts'])} attempts, "
          f"{doc['frames_encoded']} frames encoded")  # fmt: skip
    if "encode" in doc:
        e = doc["encode"]
        print(f"wrote {e['output']}: {e['video_kbps']:.1f} kbit/s video ({e['total_kbps']:.1f} in all)")
    return 0
