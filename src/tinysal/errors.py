"""One error type for expected failures (bad input, failed checks), mapped to a one-line message at the CLI."""

from __future__ import annotations


class TinysalError(Exception):
    """An expected failure the user can act on. The CLI prints ``str(err)`` on one line and exits non-zero."""

    exit_code = 2


class CheckFailed(TinysalError):
    """A validator ran to the end and found the artefact does not meet its contract."""

    exit_code = 1
