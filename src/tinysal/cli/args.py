"""The argument types every command shares: numbers in a range, fractions, pairs, weights, stages, frame sizes and
bitrates (each an ``argparse`` type: a bad value is argparse's one-line usage error), and the options of a command
that reads one video."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from tinysal.errors import TinysalError


def int_at_least(lo: int) -> Callable[[str], int]:
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v

    return conv


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    at_least = int_at_least(lo)

    def conv(text: str) -> int:
        v = at_least(text)
        if v > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi}, got {v}")
        return v

    return conv


def number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def percentiles(text: str) -> list[float]:
    """``1,5`` -> [1.0, 5.0]: percentiles strictly between 0 and 100."""
    try:
        qs = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected percentiles like 1,5, got {text!r}") from None
    if not qs or any(not 0 < q < 100 for q in qs):
        raise argparse.ArgumentTypeError(f"percentiles must be between 0 and 100 (e.g. 1,5), got {text!r}")
    return qs


def positive_float(text: str) -> float:
    v = number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return v


def fraction(text: str) -> float:
    v = number(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text!r}")
    return v


def float_pair(text: str) -> list[float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}")
    lo, hi = (number(p) for p in parts)
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, got {text!r}")
    return [lo, hi]


def weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, sep, w = part.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT[,NAME=WEIGHT...], got {text!r}")
        v = number(w)
        if v < 0:
            raise argparse.ArgumentTypeError(f"weights must be >= 0, got {part!r}")
        out[name] = v
    return out


def stages(text: str) -> list[list[int]]:
    from tinysal.train.config import parse_stages

    try:
        return parse_stages(text)
    except TinysalError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1920x1080, got {text!r}") from None
    if not (1 <= w <= 16384 and 1 <= h <= 16384):
        raise argparse.ArgumentTypeError(f"frame size must be 1..16384 on each side, got {text!r}")
    return w, h


def bitrate(text: str) -> int:
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        v = float(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a bitrate like 800k or 2M, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"bitrate must be positive, got {text!r}")
    return int(v)


def input_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("input", help="video: raw .yuv (with --width/--height), .y4m, or anything FFmpeg decodes")
    sp.add_argument("--width", "-w", type=int)
    sp.add_argument("--height", "-H", type=int, help="frame height (raw .yuv); -H, as -h is help here")
    sp.add_argument("--pixel_format", "-p", default="420")
    sp.add_argument("--bitdepth", "-b", type=int)
    sp.add_argument("--frame_cnt", "--frame-cnt", type=int_at_least(0), default=0, help="at most this many frames")
    sp.add_argument("--saliency-model", "--model-path", dest="model_path", metavar="PATH",
                    help="the saliency model (.onnx; default: the registry's production model); --model-path is "
                    "the old spelling")  # fmt: skip
    sp.add_argument("--quiet", "-q", action="store_true")
