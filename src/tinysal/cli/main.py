"""``tinysal`` command line: a thin layer over functions the Python API and the tests call directly.

Each verb is a module of ``tinysal.cli.commands`` (its arguments and its handler side by side); this module builds
the parser from them and runs the chosen one. Every expected failure is a ``TinysalError``: one line on stderr, a
non-zero exit, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from tinysal import __version__
from tinysal.cli.commands import COMMANDS
from tinysal.cli.common import check_file_roles, guarded
from tinysal.errors import OneLineParser


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"tinysal.cli.commands.{name.replace('-', '_')}")


def _flag_names(sp: argparse.ArgumentParser) -> dict[str, str]:
    """Each argument's name on the command line, by dest: its long option, or the positional's name."""
    out = {}
    for a in sp._actions:
        longs = [o for o in a.option_strings if o.startswith("--")]
        out[a.dest] = longs[0] if longs else (a.option_strings[0] if a.option_strings else a.dest)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="tinysal",
        description="tinysal: train, export, check, validate and evaluate the tiny saliency model; "
        "`tinysal score` (or `vmaf`) runs the mobilesal video feature.",
    )
    p.add_argument("--version", action="version", version=f"tinysal {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        mod = command_module(name)
        own_help = name == "score"  # `-h` is --height there, as in libvmaf's tool
        sp = sub.add_parser(name, help=mod.HELP, description=mod.HELP, add_help=not own_help)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
        if mod.FILE_ROLES:
            sp.set_defaults(flag_names=_flag_names(sp))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        mod = command_module(args.command)
        if mod.FILE_ROLES:
            check_file_roles(args, mod.FILE_ROLES, args.flag_names, getattr(mod, "expand", None))
        return int(args.func(args) or 0)

    return guarded(f"tinysal {args.command}", go)


if __name__ == "__main__":
    sys.exit(main())
