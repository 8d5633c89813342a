"""scripts/make_sidecar.py: a fine-tuned model's sidecar carries the history of the run it started from."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_sidecar.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_sidecar", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _metrics(epochs: int, sampling: str, epoch_samples: int, train_pairs: int, seconds: float) -> dict:
    return {
        "epochs": epochs,
        "train_pairs": train_pairs,
        "best_epoch": epochs - 2,
        "best_val_iou": 0.8,
        "train_seconds_total": seconds,
        "run_provenance": {
            "argv": ["/venv/bin/tinysal", "train", "DATA", "--stages", "192:8"],
            "args": {"sampling": sampling, "epoch_samples": epoch_samples},
        },
    }


def test_samples_follow_the_sampling_mode() -> None:
    ms = _script()
    assert ms.samples(_metrics(10, "balanced", 6000, 12167, 1.0)) == 60_000
    assert ms.samples(_metrics(10, "uniform", 6000, 12167, 1.0)) == 121_670
    assert ms.samples(_metrics(10, "balanced", 6000, 12167, 1.0), epochs=3) == 18_000


def test_parent_record_needs_the_parent_metrics(tmp_path: Path) -> None:
    ms = _script()
    a = argparse.Namespace(parent_metrics=None, parent_command="", parent_resumes=None)
    with pytest.raises(SystemExit, match="--parent-metrics"):
        ms.parent_record(a, "start.pt")
    parent = tmp_path / "parent.json"
    parent.write_text(json.dumps(_metrics(450, "balanced", 6000, 12167, 64487.8)))
    a = argparse.Namespace(parent_metrics=str(parent), parent_command="", parent_resumes=8)
    rec = ms.parent_record(a, "start.pt")
    assert rec["samples"] == 2_700_000 and rec["resumes"] == 8 and rec["selected_epoch"] == 448
    assert rec["selected_epoch_samples"] == 449 * 6000  # epochs count from 0 in the metrics JSON
    assert rec["command"] == "tinysal train DATA --stages 192:8"  # as typed, without the install path
    assert rec["training_wall_clock_seconds"] == 64487.8 and rec["init_checkpoint"] == "start.pt"


def test_every_training_loss_has_a_sidecar_description() -> None:
    """A loss the trainer accepts but the script cannot describe made it fail with a KeyError (structure_mae did)."""
    from tinysal.train.config import LOSSES

    assert set(_script().LOSSES) == set(LOSSES)
