"""The shipped v3 recipe, cut short, as a replay: its command line, and ``record`` to write what it produced.

The v3 recipe as the long run trains it (``--preset sod --arch saliency_student_v3 --amp off``, backgrounds, seed
42; docs/long-run.md) with the stages and the samples per epoch cut down, on one real dataset of ``../shared/data``
so it runs in seconds.
``python tests/golden/v3_replay.py`` runs it and writes ``v3_replay.json`` (the per-epoch losses and validation
figures, and a sha256 of every weight tensor after the last epoch): the trainer's output at the commit named in the
file. ``tests/test_train_replay.py`` runs the same command and asserts it reproduces that file bit for bit, so a
refactor of the trainer that changes one sampled crop, one random draw or one operation order fails.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "v3_replay.json"


def command(shared: Path, out_dir: Path) -> list[str]:
    data = shared / "data"
    return [
        "train", str(data / "weizmann-horses"), "--preset", "sod", "--arch", "saliency_student_v3", "--amp", "off",
        "--backgrounds", str(data / "backgrounds"), "--stages", "192:2,256:1", "--epoch-samples", "96",
        "--val-fraction", "0.05", "--seed", "42", "--quiet",
        "--out-dir", str(out_dir), "--metrics-out", str(out_dir / "metrics.json"),
    ]  # fmt: skip


def weights_digest(path: Path) -> dict[str, str]:
    """sha256 of the raw bytes of every tensor of a checkpoint's model and EMA weights, by name."""
    import torch

    state = torch.load(path, weights_only=True)
    out = {}
    for part in ("state_dict", "ema"):
        for k, v in sorted(state[part].items()):
            out[f"{part}/{k}"] = hashlib.sha256(v.detach().contiguous().cpu().numpy().tobytes()).hexdigest()
    return out


def machine() -> dict[str, str]:
    """What the figures depend on besides the code: fp32 kernels differ between torch versions and CPU ISAs."""
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def outcome(out_dir: Path) -> dict:
    m = json.loads((out_dir / "metrics.json").read_text())
    keep = ("epoch", "crop", "train_loss", "val_loss", "val_iou", "lr", "val_per_source")
    return {
        "trace": [{k: r[k] for k in keep} for r in m["trace"]],
        "best_epoch": m["best_epoch"],
        "calibration": {k: v for k, v in m["calibration"].items() if k != "output"},
        "weights_sha256": weights_digest(out_dir / "last.pt"),
    }


def run(shared: Path, out_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tinysal.cli.main", *command(shared, out_dir)], capture_output=True, text=True
    )


def record(shared: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = run(shared, Path(tmp))
        if p.returncode:
            sys.exit(p.stderr)
        rec = outcome(Path(tmp))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    rec = {"recorded_at_commit": commit, "machine": machine(), **rec}
    GOLDEN.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"wrote {GOLDEN} ({len(rec['trace'])} epochs, at {commit})")


if __name__ == "__main__":
    record(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared")
