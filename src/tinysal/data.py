"""Image/mask pair discovery and the pre-resized, memory-mapped uint8 training cache.

Layouts found under a root (first match wins):
- DUTS-TR / DUTS-TE: ``DUTS-TR-Image/*.jpg`` + ``DUTS-TR-Mask/*.png`` (likewise ``DUTS-TE-*``);
- generic: ``images/`` + ``masks/`` trees, nested folders allowed, paired by relative folder and file stem.

Every pair carries a *group* key (its relative folder, e.g. a video sequence, or its stem for flat layouts) so
that splits never put frames of one sequence on both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tinysal.errors import TinysalError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MASK_EXTS = (".png", ".bmp", ".jpg", ".jpeg")
CACHE_VERSION = 1


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    group: str  # split key: frames of one group never straddle train/validation
    root: str


def _layout_dirs(root: Path) -> tuple[Path, Path]:
    for name in ("DUTS-TR", "DUTS-TE"):
        img, msk = root / f"{name}-Image", root / f"{name}-Mask"
        if img.is_dir():
            if not msk.is_dir():
                raise TinysalError(f"{root}: found {img.name}/ but no {msk.name}/ folder")
            return img, msk
    img, msk = root / "images", root / "masks"
    if img.is_dir():
        if not msk.is_dir():
            raise TinysalError(f"{root}: found images/ but no masks/ folder")
        return img, msk
    raise TinysalError(
        f"{root}: no dataset layout found (expected DUTS-TR-Image/+DUTS-TR-Mask/, DUTS-TE-Image/+DUTS-TE-Mask/ "
        "or images/+masks/)"
    )


def find_pairs(root: str | os.PathLike[str]) -> list[Pair]:
    """All image/mask pairs under one dataset root, sorted by relative path."""
    r = Path(root)
    if not r.is_dir():
        raise TinysalError(f"dataset root not found: {r}")
    img_dir, mask_dir = _layout_dirs(r)
    masks: dict[str, Path] = {}
    for m in mask_dir.rglob("*"):
        if m.is_file() and m.suffix.lower() in MASK_EXTS:
            masks.setdefault(str(m.relative_to(mask_dir).with_suffix("")), m)
    pairs: list[Pair] = []
    missing: list[str] = []
    for im in sorted(img_dir.rglob("*")):
        if not (im.is_file() and im.suffix.lower() in IMAGE_EXTS):
            continue
        rel = im.relative_to(img_dir)
        key = str(rel.with_suffix(""))
        m = masks.get(key)
        if m is None:
            missing.append(str(rel))
            continue
        group = str(rel.parent) if str(rel.parent) != "." else rel.stem
        pairs.append(Pair(im, m, group, str(r)))
    if missing:
        raise TinysalError(
            f"{mask_dir}: no mask for {len(missing)} image(s), e.g. {missing[0]} (masks pair by relative path and stem)"
        )
    if not pairs:
        raise TinysalError(f"{img_dir}: no image/mask pairs found")
    return pairs


def find_all_pairs(roots: Sequence[str | os.PathLike[str]]) -> list[Pair]:
    """Pairs from several roots; groups are prefixed by the root name so they never collide."""
    out: list[Pair] = []
    for root in roots:
        name = Path(root).resolve().name
        for p in find_pairs(root):
            out.append(Pair(p.image, p.mask, f"{name}/{p.group}", p.root))
    return out


def filter_groups(pairs: Iterable[Pair], groups: Iterable[str], keep: bool) -> list[Pair]:
    """Keep (or drop) pairs whose group, or group's last path part, is in ``groups``."""
    want = set(groups)

    def hit(p: Pair) -> bool:
        return p.group in want or p.group.split("/", 1)[-1] in want

    out = [p for p in pairs if hit(p) == keep]
    return out


def split_by_group(
    pairs: Sequence[Pair], val_fraction: float, seed: int, val_groups: Sequence[str] = ()
) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into (train, val) by group.

    With ``val_groups`` the named groups are validation. Otherwise groups are shuffled with ``seed`` and taken
    until ``val_fraction`` of the images (at least one group) is reached.
    """
    if val_groups:
        val = filter_groups(pairs, val_groups, keep=True)
        if not val:
            raise TinysalError(f"none of the validation groups {list(val_groups)} is in the data")
        return filter_groups(pairs, val_groups, keep=False), val
    groups = sorted({p.group for p in pairs})
    if len(groups) < 2:
        raise TinysalError("need at least two groups (sequences or images) to split train/validation")
    rng = np.random.default_rng(seed)
    order = [groups[i] for i in rng.permutation(len(groups))]
    counts: dict[str, int] = {}
    for p in pairs:
        counts[p.group] = counts.get(p.group, 0) + 1
    target = max(1, round(val_fraction * len(pairs)))
    chosen: set[str] = set()
    n = 0
    for g in order:
        if n >= target or len(chosen) == len(groups) - 1:
            break
        chosen.add(g)
        n += counts[g]
    return [p for p in pairs if p.group not in chosen], [p for p in pairs if p.group in chosen]


def content_hash(pairs: Sequence[Pair]) -> str:
    """sha256 over every pair's relative names and file bytes: identifies the exact data a run saw."""
    h = hashlib.sha256()
    for p in pairs:
        for f in (p.image, p.mask):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def resize_short_side(size: tuple[int, int], short: int) -> tuple[int, int]:
    """(w, h) scaled so that min(w, h) == short."""
    w, h = size
    s = short / min(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def load_pair(p: Pair, short_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 HxWx3 and mask uint8 HxW (0/255 after binarising at 0.5), optionally resized."""
    try:
        with Image.open(p.image) as im:
            img = im.convert("RGB")
        with Image.open(p.mask) as m:
            mask = m.convert("L")
    except OSError as e:
        raise TinysalError(f"cannot read {p.image} / {p.mask}: {e}") from None
    if img.size != mask.size:
        mask = mask.resize(img.size, Image.NEAREST)
    if short_side:
        size = resize_short_side(img.size, short_side)
        img = img.resize(size, Image.BILINEAR)
        mask = mask.resize(size, Image.BILINEAR)
    m = (np.asarray(mask) >= 128).astype(np.uint8) * 255
    return np.asarray(img, dtype=np.uint8), m


class PairCache:
    """A pre-resized uint8 cache: one flat memory-mapped file for images, one for masks, and a JSON index.

    Built once per (pairs, short side); later runs memory-map it, so an epoch costs no JPEG decoding.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        meta = json.loads((folder / "index.json").read_text())
        self.meta = meta
        self.shapes = [tuple(s) for s in meta["shapes"]]  # (h, w)
        self.offsets = np.asarray(meta["offsets"], dtype=np.int64)
        self.images = np.memmap(folder / "images.u8", dtype=np.uint8, mode="r")
        self.masks = np.memmap(folder / "masks.u8", dtype=np.uint8, mode="r")

    def __len__(self) -> int:
        return len(self.shapes)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.shapes[i]
        o = int(self.offsets[i])
        img = self.images[3 * o : 3 * (o + h * w)].reshape(h, w, 3)
        mask = self.masks[o : o + h * w].reshape(h, w)
        return img, mask

    @classmethod
    def build(
        cls, pairs: Sequence[Pair], short_side: int, cache_root: str | os.PathLike[str], progress: bool = True
    ) -> PairCache:
        """Return the cache for these pairs, building it if it is missing or stale."""
        key_src = json.dumps(
            [
                CACHE_VERSION,
                short_side,
                [
                    (
                        str(p.image),
                        p.image.stat().st_size,
                        p.image.stat().st_mtime_ns,
                        str(p.mask),
                        p.mask.stat().st_size,
                        p.mask.stat().st_mtime_ns,
                    )
                    for p in pairs
                ],
            ]
        )
        key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
        folder = Path(cache_root) / f"s{short_side}-{key}"
        if (folder / "index.json").is_file():
            return cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shapes: list[tuple[int, int]] = []
        offsets: list[int] = []
        total = 0
        from tqdm import tqdm

        tmp_i, tmp_m = folder / "images.u8.tmp", folder / "masks.u8.tmp"
        with open(tmp_i, "wb") as fi, open(tmp_m, "wb") as fm:
            for p in tqdm(
                pairs,
                desc=f"caching at short side {short_side}",
                disable=not (progress and sys.stderr.isatty()),
                unit="img",
            ):
                img, mask = load_pair(p, short_side)
                h, w = mask.shape
                fi.write(np.ascontiguousarray(img).tobytes())
                fm.write(np.ascontiguousarray(mask).tobytes())
                shapes.append((h, w))
                offsets.append(total)
                total += h * w
        os.replace(tmp_i, folder / "images.u8")
        os.replace(tmp_m, folder / "masks.u8")
        index = {
            "version": CACHE_VERSION,
            "short_side": short_side,
            "shapes": shapes,
            "offsets": offsets,
            "sources": [str(p.image) for p in pairs],
        }
        (folder / "index.json.tmp").write_text(json.dumps(index))
        os.replace(folder / "index.json.tmp", folder / "index.json")
        return cls(folder)
