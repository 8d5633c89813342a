"""The v3 recipe replays bit for bit: its first epochs' losses, validation figures, calibration and every weight
tensor equal what the trainer produced when ``tests/golden/v3_replay.json`` was recorded (issue 22: a refactor of
the trainer must not change one random draw or one operation order)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED

pytest.importorskip("torch")
sys.path.insert(0, str(ROOT / "tests" / "golden"))
import v3_replay  # noqa: E402


def test_v3_recipe_replays_bit_for_bit(tmp_path: Path) -> None:
    if not (SHARED / "data" / "weizmann-horses").is_dir() or not (SHARED / "data" / "backgrounds").is_dir():
        pytest.skip("../shared/data/weizmann-horses or backgrounds not present")
    golden = json.loads(v3_replay.GOLDEN.read_text())
    if golden["machine"] != v3_replay.machine():
        pytest.skip(f"golden recorded with {golden['machine']}, this machine is {v3_replay.machine()}")
    p = v3_replay.run(SHARED, tmp_path)
    assert p.returncode == 0, p.stderr
    got = v3_replay.outcome(tmp_path)
    for mine, theirs in zip(got["trace"], golden["trace"], strict=True):
        assert mine == theirs, mine["epoch"]
    assert got["best_epoch"] == golden["best_epoch"]
    assert got["calibration"] == golden["calibration"]
    diff = [k for k in golden["weights_sha256"] if got["weights_sha256"].get(k) != golden["weights_sha256"][k]]
    assert not diff and set(got["weights_sha256"]) == set(golden["weights_sha256"]), diff[:5]
