"""What every entry point shares: running a command so that expected failures are one line and an exit code."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

from tinysal.errors import TinysalError, take_warnings


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
