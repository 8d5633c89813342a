#!/usr/bin/env python3
"""Training throughput at crop 256: tinysal's cached pipeline vs a plain per-sample PIL-decode loop.

cached:   images pre-resized once into a memory-mapped uint8 cache; random crop/flip on uint8 arrays;
          channels-last tensors (what `tinysal train` does on CPU).
baseline: every sample decoded from JPEG/PNG with PIL, resized to short side 288, cropped and flipped, NCHW
          tensors (a typical first Dataset implementation).

Both run the same model, loss, optimiser, batch size and number of steps, in this process, one after the other.

    python bench/bench_train.py [--root ../shared/data/davis2016] [--steps 6] [--batch 16] [--crop 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TINYSAL_SHARED", ROOT.parent / "shared"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(SHARED / "data" / "davis2016"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    a = ap.parse_args()
    import torch
    from PIL import Image

    from tinysal.model.nets import create_model
    from tinysal.train.data import PairCache, find_pairs, load_pair
    from tinysal.train.trainer import _loss, _to_tensor, make_train_batch

    if not Path(a.root).is_dir():
        print(f"dataset not found: {a.root}", file=sys.stderr)
        return 2
    pairs = find_pairs(a.root)[: a.batch * (a.steps + 1)]
    n_img = a.batch * a.steps
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(pairs)} pairs from {a.root}; "
        f"crop {a.crop}, batch {a.batch}, {a.steps} timed steps (+1 warm-up)"
    )

    def run(channels_last: bool, batches, amp: bool = False, arch: str = "saliency_student_v2",
            loss: str = "bce_dice") -> float:  # fmt: skip
        torch.manual_seed(0)
        model = create_model(arch)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        t0 = 0.0
        for k, (imgs, masks) in enumerate(batches()):
            if k == 1:
                t0 = time.perf_counter()
            x, y = _to_tensor(torch, imgs, masks, torch.device("cpu"), channels_last)
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                logits = model.logits(x)
            _loss(torch, logits.float(), y, loss).backward()
            opt.step()
        return n_img / (time.perf_counter() - t0)

    t_build = time.perf_counter()
    cache = PairCache.build(pairs, 288, tempfile.mkdtemp(), progress=False)
    build_s = time.perf_counter() - t_build

    def cached_batches():
        rng = np.random.default_rng(0)
        idx = np.arange(len(cache))
        for k in range(a.steps + 1):
            yield make_train_batch(cache, idx[k * a.batch : (k + 1) * a.batch], a.crop, rng, (1.0, 1.0), 0.0, idx)

    def plain_batches():
        rng = np.random.default_rng(0)
        for k in range(a.steps + 1):
            imgs, masks = [], []
            for p in pairs[k * a.batch : (k + 1) * a.batch]:
                img, mask = load_pair(p, 288)  # decode + resize every time
                h, w = mask.shape
                y0, x0 = rng.integers(0, h - a.crop + 1), rng.integers(0, w - a.crop + 1)
                img, mask = img[y0 : y0 + a.crop, x0 : x0 + a.crop], mask[y0 : y0 + a.crop, x0 : x0 + a.crop]
                if rng.random() < 0.5:
                    img, mask = img[:, ::-1], mask[:, ::-1]
                imgs.append(np.ascontiguousarray(img))
                masks.append(np.ascontiguousarray(mask))
            yield np.stack(imgs), np.stack(masks)

    assert Image  # PIL does the decoding inside load_pair
    base = run(False, plain_batches)
    cached = run(True, cached_batches)
    print(f"baseline (PIL decode per sample, NCHW): {base:.2f} img/s")
    print(
        f"cached   (memory-mapped uint8, channels-last): {cached:.2f} img/s  (cache built once in {build_s:.1f} s "
        f"for {len(pairs)} images)"
    )
    print(f"speed-up: {cached / base:.2f}x  (target >= 3x)")
    amp = run(True, cached_batches, amp=True)
    print(f"cached + bf16 autocast (`tinysal train --amp bf16`, opt-in): {amp:.2f} img/s, speed-up {amp / base:.2f}x")

    # the sod preset's steps: random resized crops at 192 with colour jitter and background composites, the
    # structure loss -- v2 and v3 in bf16, v3 in fp32 (the next v3 runs)
    bgs = [np.asarray(Image.open(f).convert("RGB").resize((432, 288))) for f in
           sorted((SHARED / "data" / "backgrounds").rglob("*.jpg"))[:20]]  # fmt: skip

    def sod_batches():
        rng = np.random.default_rng(0)
        idx = np.arange(len(cache))
        for k in range(a.steps + 1):
            yield make_train_batch(cache, idx[k * a.batch : (k + 1) * a.batch], 192, rng, (1.0, 1.0), 0.0, idx,
                                   0.2, "rrc", (0.35, 1.0), bgs, 0.15)  # fmt: skip

    for arch, bf16 in (("saliency_student_v2", True), ("saliency_student_v3", True), ("saliency_student_v3", False)):
        r = run(True, sod_batches, amp=bf16, arch=arch, loss="structure")
        kind = "bf16" if bf16 else "fp32"
        print(f"sod recipe step at crop 192 (rrc, jitter, composites, structure loss, {kind}), {arch}: {r:.2f} img/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
