"""One error type for expected failures (bad input, failed checks), mapped to a one-line message at the CLI."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class TinysalError(Exception):
    """An expected failure the user can act on. The CLI prints ``str(err)`` on one line and exits non-zero."""

    exit_code = 2


class CheckFailed(TinysalError):
    """A validator ran to the end and found the artefact does not meet its contract."""

    exit_code = 1


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``prog: error: ...``), not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


#: warnings of the command now running, shown when it ends well (before its summary) and dropped when it fails:
#: a failing command prints one line, its error, not a warning and then the error
_PENDING: list[str] = []


def defer_warning(message: str) -> None:
    _PENDING.append(message)


def take_warnings() -> list[str]:
    """The warnings so far, once (the list is emptied)."""
    out = list(_PENDING)
    _PENDING.clear()
    return out
