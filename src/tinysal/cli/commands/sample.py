"""``tinysal sample``: print the path of the bundled sample clip (Big Buck Bunny excerpt, CC-BY 3.0)."""

from __future__ import annotations

import argparse
import sys

from tinysal.errors import TinysalError

#: the clip shipped with the package (Big Buck Bunny excerpt, CC-BY 3.0; samples/ATTRIBUTION.md)
SAMPLE_CLIP = "bigbuckbunny_360p.mp4"

#: it reads and writes no file
FILE_ROLES = None
HELP = "print the path of the bundled sample clip (Big Buck Bunny excerpt, CC-BY 3.0)"


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--attribution", action="store_true", help="also print its licence and origin (to stderr)")


def run(args: argparse.Namespace) -> int:
    from importlib.resources import files

    clip = files("tinysal") / "samples" / SAMPLE_CLIP
    if not clip.is_file():
        raise TinysalError(f"the sample clip is missing from this installation ({clip})")
    print(clip)
    if args.attribution:
        print((files("tinysal") / "samples" / "ATTRIBUTION.md").read_text(encoding="utf-8"), file=sys.stderr)
    return 0
