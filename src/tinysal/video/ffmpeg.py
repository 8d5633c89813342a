"""The bundled FFmpeg program and its children: which binary, how long a child may stand still, and how a child
dies with its parent. Every stage that runs FFmpeg (scoring, encoding, the batch's workers) takes them from here."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

from tinysal.errors import TinysalError


def ffmpeg_exe() -> str:
    """The FFmpeg with libvmaf: ``$TINYSAL_FFMPEG`` if set, else the one in the imageio-ffmpeg wheel."""
    exe = os.environ.get("TINYSAL_FFMPEG")
    if exe:
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise TinysalError(f"$TINYSAL_FFMPEG={exe} is not an executable file")
        return exe
    try:
        import imageio_ffmpeg
    except ImportError:
        raise TinysalError("VMAF needs FFmpeg with libvmaf: pip install imageio-ffmpeg") from None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as e:
        raise TinysalError(f"no FFmpeg binary found: {e}") from None


def stall_seconds() -> float:
    """How long the FFmpeg child may go without scoring a frame before it is called wedged and stopped
    (``$TINYSAL_FFMPEG_STALL_SECONDS``, default 300: far above libvmaf's time for one 8K frame)."""
    try:
        v = float(os.environ.get("TINYSAL_FFMPEG_STALL_SECONDS", "300"))
    except ValueError:
        raise TinysalError("$TINYSAL_FFMPEG_STALL_SECONDS must be a number of seconds") from None
    if not (v > 0 and v < 1e7):
        raise TinysalError("$TINYSAL_FFMPEG_STALL_SECONDS must be a number of seconds above 0")
    return v


def die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGKILL this (child) process when its parent dies (prctl PR_SET_PDEATHSIG), between fork and
    exec or first thing in a Python child. The signal follows the thread that forked, not the process: use it only
    when that thread outlives the child (the main thread, or a pool thread that waits for the child)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took hold
            os._exit(1)
