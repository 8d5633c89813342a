"""Hardening: outputs honour the umask; more hostile-input cases live beside the features they attack."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    out = tmp_path / "o.json"
    code = f"import os; os.umask({umask}); from tinysal.fileio import write_json; write_json({str(out)!r}, {{}})"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert stat.S_IMODE(os.stat(out).st_mode) == mode
