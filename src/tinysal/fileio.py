"""Small file helpers shared by every writer: atomic writes and hashing."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tinysal.errors import TinysalError


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    """The process umask (read without changing it, where /proc allows; else set-and-restore)."""
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _resolve(path: str | os.PathLike[str]) -> Path:
    """The path an output really goes to: a symlink is followed to its target (the link stays a link)."""
    p = Path(path)
    if _is_special(p):  # /dev/stdout -> /proc/self/fd/1 -> "pipe:[123]": open the name we were given
        return p
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _is_special(p: Path) -> bool:
    """An existing character device, FIFO or socket (``/dev/stdout``, ``/dev/null``, a named pipe)."""
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


# --- temporary work that outlives nobody ---------------------------------------------------------------------
# kill -9 (an OOM killer, a CI timeout) runs no cleanup: temp files and folders are therefore named by their owner
# (pid and the process's start time, so a reused pid is not mistaken for the owner), and any tinysal run that makes
# temporary work first removes what dead owners left where it is about to write: in the temp folder for work
# folders, beside an output for its temp file.

_OWNER_RE = re.compile(r"\.~(\d+)-(\d+)~")


def _start_ticks(pid: int) -> int | None:
    """A process's start time (clock ticks since boot, /proc/PID/stat field 22), or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read().decode("ascii", "replace")
    except OSError:
        return None
    try:
        return int(stat_line.rsplit(")", 1)[1].split()[19])  # after "pid (comm)": state is field 3
    except (IndexError, ValueError):
        return None


@functools.cache
def owner_tag() -> str:
    """This process as it appears in its temp names: ``.~PID-START~``."""
    pid = os.getpid()
    return f".~{pid}-{_start_ticks(pid) or 0}~"


def _owner_gone(name: str) -> bool:
    """Whether a name carries an owner tag whose process no longer runs (False for names without one)."""
    m = _OWNER_RE.search(name)
    if m is None:
        return False
    pid, ticks = int(m.group(1)), int(m.group(2))
    if not os.path.exists("/proc/self/stat"):  # no procfs: only a pid that does not exist is surely gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    now = _start_ticks(pid)
    return now is None or (ticks != 0 and now != ticks)


_reaped: set[str] = set()


def reap(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the temp entries of ``folder`` (hidden ``.NAME.~PID-START~…`` files and folders beside outputs,
    ``tinysal-KIND.~PID-START~…`` work folders) whose owner is gone; once per folder in a process, so a catalogue's
    thousands of writes into one folder list it once. The names removed."""
    key = os.path.abspath(folder)
    if key in _reaped:
        return []
    _reaped.add(key)
    gone = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith((".", "tinysal-")) and _owner_gone(e.name)]
    except OSError:
        return []
    for e in entries:
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            gone.append(e.name)
    return gone


def work_dir(kind: str) -> Path:
    """A private temp folder for a run's intermediate files (samples, rung sources, libvmaf logs), named by its
    owner so that the next run reaps it if this process dies without cleaning up (kill -9)."""
    base = tempfile.gettempdir()
    reap(base)
    return Path(tempfile.mkdtemp(prefix=f"tinysal-{kind}{owner_tag()}", dir=base))


def run_work_dir(path: str | None, kind: str) -> tuple[Path, bool]:
    """(the folder a run works in, whether it is kept): the user's ``--work-dir`` (kept, so a rerun resumes), or
    a temp folder of its own (:func:`work_dir`)."""
    return (kept_work_dir(path), True) if path else (work_dir(kind), False)


def kept_work_dir(path: str, flag: str = "--work-dir") -> Path:
    """A work folder the user names (kept after the run, so that a rerun resumes): made if absent, its absolute
    path (manifests written in it name their files from there), or one line for what cannot be used."""
    refuse_dangling(path, flag)
    work = Path(os.path.abspath(path))
    if work.exists() and not work.is_dir():
        raise TinysalError(f"{flag} {work}: exists and is not a folder")
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinysalError(f"{flag} {work}: cannot create it: {e.strerror or e}") from None
    if not os.access(work, os.W_OK | os.X_OK):
        raise TinysalError(f"{flag} {work}: not writable")
    return work


def temp_beside(path: Path, suffix: str = ".tmp") -> str:
    """The prefix of a temp name beside ``path`` (``.NAME.~PID-START~``), after reaping dead owners' ones."""
    parent = path.parent if str(path.parent) else Path(".")
    reap(parent)
    return f".{path.name}{owner_tag()}"


def refuse_dangling(path: str | os.PathLike[str], flag: str) -> None:
    """A folder argument that is a symlink to nothing: one line naming it (making the folder failed with 'File
    exists', or a temp folder's rename with 'Not a directory')."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise TinysalError(f"{flag} {p} is a symlink to {os.readlink(p)}, which does not exist")


def check_writable_target(path: str | os.PathLike[str]) -> Path:
    """Fail early, with a clear message, if ``path`` cannot be written (before doing any expensive work)."""
    p = _resolve(path)
    if _is_special(p):
        if not os.access(p, os.W_OK):
            raise TinysalError(f"output is not writable: {path}")
        return p
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise TinysalError(f"output path is a directory: {p}")
    if p.exists() and not p.is_file():
        raise TinysalError(f"output path exists and is not a regular file: {p}")
    if not parent.is_dir():
        raise TinysalError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise TinysalError(f"output folder is not writable: {parent}")
    return p


def _identity(path: str | os.PathLike[str]) -> tuple[str, tuple[int, int] | None]:
    """(absolute real path, (device, inode) when the file exists): two names are one file when either matches
    (symlinks resolve to one real path; hard links share an inode)."""
    real = os.path.realpath(os.fspath(path))
    try:
        st = os.stat(real)
        return real, (st.st_dev, st.st_ino)
    except OSError:
        return real, None


def _same(a: tuple[str, tuple[int, int] | None], b: tuple[str, tuple[int, int] | None]) -> bool:
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def refuse_overlaps(
    inputs: dict[str, str | os.PathLike[str] | None],
    outputs: dict[str, str | os.PathLike[str] | None],
    out_dirs: dict[str, str | os.PathLike[str] | None] | None = None,
) -> None:
    """Fail before any work if an output is (or resolves to) one of the inputs or another output, or if an output
    folder (replaced as a whole at the end) holds an input or another output. Keys are the names the user typed
    the paths under (``--output``, ``reference``); ``None`` values and ``-`` (standard output) are left out."""
    ins = [(k, os.fspath(v)) for k, v in inputs.items() if v not in (None, "", "-")]
    outs = [(k, os.fspath(v)) for k, v in outputs.items() if v not in (None, "", "-")]
    dirs = [(k, os.fspath(v)) for k, v in (out_dirs or {}).items() if v not in (None, "", "-")]
    ids = {v: _identity(v) for _, v in ins + outs + dirs}
    for i, (ko, vo) in enumerate(outs + dirs):
        if _is_special(Path(vo)):
            continue  # /dev/null, /dev/stdout: writing there replaces nothing
        for ki, vi in ins:
            if _same(ids[vo], ids[vi]):
                raise TinysalError(f"{ko} {vo} is the same file as {ki} {vi}, an input: refusing to overwrite it")
        for kj, vj in (outs + dirs)[i + 1 :]:
            if _same(ids[vo], ids[vj]):
                raise TinysalError(f"{ko} and {kj} are the same file ({vo}): give each output its own path")
    for kd, vd in dirs:
        for k, v in ins + outs:
            if _inside(ids[v][0], ids[vd][0]):
                what = "the input" if (k, v) in ins else "the output"
                raise TinysalError(f"{kd} {vd} would be replaced as a whole, and holds {what} {k} {v}")


#: the first characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection rule)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would evaluate (``=2+3``, ``@SUM(1)``, ``+cmd|...``, ``-1+1``) prefixed with
    ``'`` so it is shown as text, as OWASP advises for every CSV written from data a user chose; numbers (``-3.5``
    as a number, not text) and every other value are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success rename it over ``path``, on error remove it.

    A reader never sees a half-written file, and a failed run leaves no output behind. A symlink is written
    through (its target is replaced, the link kept); a character device or FIFO (``/dev/stdout``) is written
    directly, never replaced. The file gets 0666 less the umask, as any program's output would.
    """
    p = check_writable_target(path)
    if _is_special(p):
        with open(p, mode) as f:
            yield f
        return
    fd, tmp = tempfile.mkstemp(prefix=temp_beside(p), suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; an output honours the umask like any program's
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], replaceable: Any = None) -> Iterator[Path]:
    """A temp folder beside ``path`` to fill; on success it takes ``path``'s place as a whole (an older ``path`` is
    removed only then), on error or interrupt it is removed and ``path`` is left as it was. A reader sees the old
    folder or the complete new one, never a mix. ``replaceable(name) -> bool`` says which entries an existing
    ``path`` may hold to be replaced; anything else there refuses the write before it starts (a folder of the
    user's own files is never deleted)."""
    p = Path(path)
    refuse_dangling(p, "output folder")
    if p.exists() and not p.is_dir():
        raise TinysalError(f"{p} exists and is not a folder")
    if p.is_dir():
        foreign = sorted(e.name for e in p.iterdir() if replaceable is None or not replaceable(e.name))
        if foreign:
            raise TinysalError(f"{p} holds other files ({foreign[0]}{', ...' if len(foreign) > 1 else ''}): "
                               "give an empty or new folder")  # fmt: skip
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise TinysalError(f"output folder does not exist: {parent}")
    tmp = Path(tempfile.mkdtemp(prefix=temp_beside(p), suffix=".tmp", dir=parent))
    old = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if p.is_dir():
            old = Path(tempfile.mkdtemp(prefix=temp_beside(p), suffix=".old", dir=parent))
            os.replace(p, old / "x")
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            if old is not None and (old / "x").exists() and not p.exists():
                os.replace(old / "x", p)  # put the old folder back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, allow_nan=False)
        f.write("\n")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Read JSON with a clear error for a missing file or bad syntax."""
    p = Path(path)
    if not p.is_file():
        raise TinysalError(f"{what} not found: {p}")
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TinysalError(f"{what} is not valid JSON: {p}: {e}") from None
    except RecursionError:  # "[[[[...": valid JSON nested deeper than the parser's stack
        raise TinysalError(f"{what} is nested too deeply to read: {p}") from None


class EventLog:
    """NDJSON events for other programs: one JSON object a line (``event``, ``time``, the fields), appended to a
    file, or to stdout for ``-``; nothing for None. Safe to emit from several threads."""

    def __init__(self, target: str | None) -> None:
        import sys
        import threading

        self.f: IO[str] | None = None
        self.own = False
        if target == "-":
            self.f = sys.stdout
        elif target:
            self.f, self.own = open(target, "a", encoding="utf-8"), True  # noqa: SIM115 - closed by close()
        self.lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        if self.f is None:
            return
        import time

        with self.lock:
            self.f.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, default=str) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.own and self.f is not None:
            self.f.close()
