"""What every entry point shares: running a command so that expected failures are one line and an exit code, the
check that no output replaces an input, reports with provenance, and opening a command's input video."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tinysal.errors import TinysalError, defer_warning, take_warnings


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same cleanup (temp files, partial maps, FFmpeg children) runs."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def guarded(prog: str, fn: Callable[[], int]) -> int:
    """Run a command: expected failures become one stderr line and an exit code, never a traceback."""
    import signal

    with contextlib.suppress(ValueError):  # not the main thread (an embedding application): leave it alone
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGHUP, _on_sigterm)  # a closed terminal cleans up as SIGTERM does
    take_warnings()  # none left over from an earlier command in this process
    try:
        rc = int(fn() or 0)
        for w in take_warnings():
            print(w, file=sys.stderr)
        return rc
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except TinysalError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os._exit(1)
    except MemoryError:
        print(f"{prog}: error: out of memory (try a smaller short_side, fewer --threads or a smaller input)",
              file=sys.stderr)  # fmt: skip
        return 2
    except OSError as e:  # a full disk, a read-only filesystem, a closed stdout: one line, not a traceback
        where = f": {e.filename}" if e.filename else ""
        print(f"{prog}: error: {e.strerror or e}{where}", file=sys.stderr)
        with contextlib.suppress(OSError):  # stdout may be what failed: don't fail again at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 2


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def report(path: str | None, doc: dict[str, Any], args: argparse.Namespace, inputs: Sequence[str]) -> None:
    from tinysal.fileio import write_json
    from tinysal.provenance import run_provenance

    if path:
        doc = {**doc, "run_provenance": run_provenance(vars_clean(args), inputs, [path])}
        write_json(path, doc)


def precheck(path: str | None) -> None:
    """Fail before any work if a report path cannot be written."""
    if path:
        from tinysal.fileio import check_writable_target

        check_writable_target(path)


def options_from(cls: type, args: argparse.Namespace) -> Any:
    """A task's options dataclass from the parsed command line: its fields are the command's flags."""
    import dataclasses

    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def vars_clean(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed arguments as a run's provenance records them (without the parser's own entries)."""
    return {k: v for k, v in vars(args).items() if k not in ("func", "flag_names")}


def warn_notes(notes: Sequence[str], command: str) -> None:
    """A task's notes on its input (a file cut short is worked on as far as it goes, as FFmpeg does, but never
    silently), as warnings printed when the command ends."""
    for note in notes:
        defer_warning(f"tinysal {command}: warning: {note.replace('scoring those', 'using those')}")


def check_file_roles(
    args: argparse.Namespace,
    roles: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    flags: dict[str, str],
    expand: Callable[[str], list[str]] | None = None,
) -> None:
    """Refuse, before any work, an output that is one of the command's inputs or another of its outputs.

    ``roles``: the arguments (by dest) a command reads, the files it writes, the folders it writes as a whole;
    ``flags``: each dest's name on the command line (its long option, or the positional's name), for the message;
    ``expand``: the files one item of a list argument stands for (a run folder: the files plot-run reads of it)."""
    from tinysal.fileio import refuse_overlaps

    def named(attrs: tuple[str, ...]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for a in attrs:
            v = getattr(args, a, None)
            flag = flags.get(a, a)
            if isinstance(v, list):
                paths = [q for x in v for q in (expand(x) if expand else [x])]
                out.update({f"{flag}[{i}]": x for i, x in enumerate(paths)})
            else:
                out[flag] = v
        return out

    ins, outs, dirs = roles
    refuse_overlaps(named(ins), named(outs), named(dirs))


def progress_bar(desc: str, quiet: bool) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A tqdm progress callback ``cb(done, total)`` on a TTY (and its closer)."""
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="frame", leave=False)

    def cb(i: int, n: int) -> None:
        bar.total = n  # the task knows the count once it has opened its input
        bar.update(i - bar.n)

    return cb, bar.close


def run_task(task: Callable[[Any, Any], dict[str, Any]], opts: Any, command: str, quiet: bool) -> dict[str, Any]:
    """Run a frame-by-frame task (``task(opts, progress)``) with a progress bar on a TTY; its notes on the input
    become warnings printed when the command ends."""
    cb, close = progress_bar(command, quiet)
    try:
        info = task(opts, cb)
    finally:
        close()
    warn_notes(info.get("notes", []), command)
    return info
