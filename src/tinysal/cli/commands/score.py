"""``tinysal score``: the ``vmaf`` command under tinysal's name (same options, same outputs)."""

from __future__ import annotations

import argparse

HELP = "score a video with mobilesal (same options as `vmaf`; -h is --height there, as in libvmaf: --help for help)"
#: `score` checks its own inputs and outputs (cli/vmaf.py), as `vmaf` does
FILE_ROLES = None


def add_arguments(sp: argparse.ArgumentParser) -> None:
    from tinysal.cli.vmaf import add_score_arguments

    sp.add_argument("--help", action="help", help="show this help and exit")
    add_score_arguments(sp)


def run(args: argparse.Namespace) -> int:
    from tinysal.cli.vmaf import run as run_vmaf

    return run_vmaf(args, prog="tinysal score")
