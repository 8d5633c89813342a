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
CACHE_VERSION = 2


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


def find_pairs(root: str | os.PathLike[str], skip_bad: bool = False) -> list[Pair]:
    """All image/mask pairs under one dataset root, sorted by relative path.

    An image without a mask is an error naming it; with ``skip_bad`` it is left out (and counted by the caller
    through :func:`find_all_pairs`' report)."""
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
    if missing and not skip_bad:
        raise TinysalError(
            f"{mask_dir}: no mask for {len(missing)} image(s), e.g. {missing[0]} (masks pair by relative path and stem;"
            " --skip-bad leaves them out)"
        )
    if missing:
        print(
            f"warning: {mask_dir}: {len(missing)} image(s) without a mask skipped, e.g. {missing[0]}", file=sys.stderr
        )
    if not pairs:
        raise TinysalError(f"{img_dir}: no image/mask pairs found")
    return pairs


def source_name(root: str | os.PathLike[str]) -> str:
    """The name a dataset root goes by in groups, reports and ``--source-weights`` (its folder name)."""
    return Path(root).resolve().name


def find_all_pairs(roots: Sequence[str | os.PathLike[str]], skip_bad: bool = False) -> list[Pair]:
    """Pairs from several roots; groups are prefixed by the root name so they never collide."""
    out: list[Pair] = []
    names = [source_name(r) for r in roots]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TinysalError(f"two dataset roots share the folder name {dup[0]!r}: sources are named by folder")
    for root, name in zip(roots, names):
        for p in find_pairs(root, skip_bad):
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


#: Images larger than this many pixels are refused before decoding (a decompression bomb, or no photo).
MAX_IMAGE_PIXELS = 64_000_000


def _open_image(path: Path, mode: str) -> Image.Image:
    """Decode an image fully, refusing huge or broken files with one line naming the file."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise TinysalError(f"{path}: {w}x{h} is larger than {MAX_IMAGE_PIXELS:,} pixels; refused")
            return im.convert(mode)
    except TinysalError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise TinysalError(f"{path}: cannot read image: {e}") from None


def load_pair(p: Pair, short_side: int | None = None, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 HxWx3 and mask uint8 HxW (0/255 after binarising at 0.5), optionally resized.

    ``strict`` (training data) also refuses a mask whose size differs from its image and an empty mask; otherwise
    a mask of another size is resized to the image (nearest)."""
    img = _open_image(p.image, "RGB")
    mask = _open_image(p.mask, "L")
    if img.size != mask.size:
        if strict:
            raise TinysalError(
                f"{p.mask}: mask is {mask.size[0]}x{mask.size[1]} but its image {p.image.name} is "
                f"{img.size[0]}x{img.size[1]}"
            )
        mask = mask.resize(img.size, Image.NEAREST)
    if strict and not np.asarray(mask).max(initial=0) >= 128:
        raise TinysalError(f"{p.mask}: empty mask (no pixel >= 128): nothing salient to learn from")
    if short_side:
        size = resize_short_side(img.size, short_side)
        img = img.resize(size, Image.BILINEAR)
        mask = mask.resize(size, Image.BILINEAR)
    m = (np.asarray(mask) >= 128).astype(np.uint8) * 255
    return np.asarray(img, dtype=np.uint8), m


def _cache_key(pairs: Sequence[Pair], short_side: int, skip_bad: bool) -> tuple[str, list[tuple[str, str]]]:
    """The cache's key (the files by absolute path, size and mtime, the short side, the skip rule) and the files'
    absolute paths: the same files named from another working directory (../datasets vs /work/datasets) are the
    same cache, not a second 5 GB copy, and its index names them so from any directory."""
    try:
        stats = [(p.image.stat(), p.mask.stat()) for p in pairs]
    except OSError as e:
        raise TinysalError(f"cannot read {e.filename}: {e.strerror}") from None
    names = [(os.path.abspath(p.image), os.path.abspath(p.mask)) for p in pairs]
    files = [
        (im, si.st_size, si.st_mtime_ns, mk, sm.st_size, sm.st_mtime_ns) for (im, mk), (si, sm) in zip(names, stats)
    ]
    key_src = json.dumps([CACHE_VERSION, short_side, skip_bad, files])
    return hashlib.sha256(key_src.encode()).hexdigest()[:16], names


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
        self.kept = list(meta.get("kept", range(len(self.shapes))))  # cache item -> position in the pairs given
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
        cls,
        pairs: Sequence[Pair],
        short_side: int,
        cache_root: str | os.PathLike[str],
        progress: bool = True,
        skip_bad: bool = False,
        label: str = "",
    ) -> PairCache:
        """Return the cache for these pairs, building it if it is missing or stale.

        Every pair is decoded and checked (``load_pair(strict=True)``) while the cache is built, so bad data stops
        a run before its first epoch, never halfway. With ``skip_bad`` bad pairs are left out and listed in
        ``meta["skipped"]``; ``meta["kept"]`` maps cache items back to positions in ``pairs``."""
        key, names = _cache_key(pairs, short_side, skip_bad)
        folder = Path(cache_root) / f"s{short_side}-{key}"
        if (folder / "index.json").is_file():
            return cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shapes: list[tuple[int, int]] = []
        offsets: list[int] = []
        kept: list[int] = []
        skipped: list[str] = []
        total = 0
        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm

        def load(i: int) -> tuple[np.ndarray, np.ndarray] | str:
            try:
                return load_pair(pairs[i], short_side, strict=True)
            except TinysalError as e:
                if not skip_bad:
                    raise
                return str(e)

        tty = progress and sys.stderr.isatty()
        desc = f"caching {label + ' ' if label else ''}at short side {short_side}"
        tmp_i, tmp_m = folder / "images.u8.tmp", folder / "masks.u8.tmp"
        step = max(500, len(pairs) // 10)
        # PIL releases the GIL while decoding and resizing: threads use every core
        with open(tmp_i, "wb") as fi, open(tmp_m, "wb") as fm, ThreadPoolExecutor(os.cpu_count() or 1) as ex:
            results = ex.map(load, range(len(pairs)))
            for i, r in enumerate(tqdm(results, total=len(pairs), desc=desc, disable=not tty, unit="img")):
                if isinstance(r, str):
                    skipped.append(r)
                    continue
                img, mask = r
                h, w = mask.shape
                fi.write(np.ascontiguousarray(img).tobytes())
                fm.write(np.ascontiguousarray(mask).tobytes())
                shapes.append((h, w))
                offsets.append(total)
                kept.append(i)
                total += h * w
                if progress and not tty and (i + 1) % step == 0:
                    print(f"{desc}: {i + 1}/{len(pairs)}", file=sys.stderr, flush=True)
        if skipped:
            print(f"skipped {len(skipped)} bad pair(s) (--skip-bad), e.g. {skipped[0]}", file=sys.stderr)
        if not kept:
            raise TinysalError(f"no usable image/mask pairs left {('in ' + label) if label else ''}after skipping")
        os.replace(tmp_i, folder / "images.u8")
        os.replace(tmp_m, folder / "masks.u8")
        _write_index(folder, short_side, shapes, offsets, kept, skipped, [names[i][0] for i in kept])
        return cls(folder)


def _write_index(folder: Path, short_side: int, shapes: list[tuple[int, int]], offsets: list[int], kept: list[int],
                 skipped: list[str], sources: list[str]) -> None:  # fmt: skip
    """The cache's index, written last and atomically: a cache without it is rebuilt."""
    index = {"version": CACHE_VERSION, "short_side": short_side, "shapes": shapes, "offsets": offsets, "kept": kept,
             "skipped": skipped, "sources": sources}  # fmt: skip
    (folder / "index.json.tmp").write_text(json.dumps(index))
    os.replace(folder / "index.json.tmp", folder / "index.json")


def load_backgrounds(folder: str | os.PathLike[str], short_side: int) -> list[np.ndarray]:
    """Every image under ``folder`` (recursively) as uint8 RGB resized to ``short_side``: composite backgrounds."""
    root = Path(folder)
    if not root.is_dir():
        raise TinysalError(f"backgrounds folder not found: {root}")
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise TinysalError(f"{root}: no background images found")
    out = []
    for f in files:
        im = _open_image(f, "RGB")
        out.append(np.asarray(im.resize(resize_short_side(im.size, short_side), Image.BILINEAR), dtype=np.uint8))
    return out
