"""Things for a person to look at: per-frame saliency maps, a contact sheet with overlays, a metric plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tinysal.errors import TinysalError
from tinysal.fileio import atomic_open
from tinysal.video import YuvFrame

THUMB_W = 320
MAX_THUMBS = 48


def _save_png(img: Image.Image, path: str | os.PathLike[str]) -> None:
    with atomic_open(path, "wb") as f:
        img.save(f, format="PNG")


def frame_rgb(frame: YuvFrame, width: int | None = None) -> np.ndarray:
    """uint8 RGB of a frame (BT.709 limited), optionally downscaled to ``width``."""
    from tinysal.colour import upsample_chroma, yuv444_to_rgb
    from tinysal.video import SUBSAMPLING

    sx, sy = SUBSAMPLING[frame.pix_fmt]
    rgb = yuv444_to_rgb(
        frame.y,
        upsample_chroma(frame.u, sx, sy, frame.width, frame.height),
        upsample_chroma(frame.v, sx, sy, frame.width, frame.height),
        frame.bitdepth,
    )
    img = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8))
    if width and width < frame.width:
        img = img.resize((width, max(1, round(frame.height * width / frame.width))), Image.BILINEAR)
    return np.asarray(img)


def overlay(rgb: np.ndarray, sal: np.ndarray) -> np.ndarray:
    """Blend the frame towards red in proportion to saliency (``sal`` in [0, 1], same size); 0 leaves it as is."""
    a = 0.6 * sal[..., None]
    red = np.array([255.0, 0.0, 0.0], np.float32)
    return np.clip(rgb.astype(np.float32) * (1 - a) + red * a, 0, 255).astype(np.uint8)


class MapSink:
    """Receives each frame's map: writes it to a folder (8-bit PNG at frame size, or .npy at inference size) and
    keeps small overlay thumbnails for a contact sheet (at most ``MAX_THUMBS``, so memory stays bounded)."""

    def __init__(self, folder: str | None, fmt: str = "png", contact: bool = False) -> None:
        self.folder = Path(folder) if folder else None
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise TinysalError(f"cannot create --saliency-out folder {self.folder}: {e.strerror}") from None
        self.fmt = fmt
        self.contact = contact
        self.thumbs: list[tuple[int, np.ndarray]] = []
        self.stride = 1

    def __call__(self, index: int, frame: YuvFrame, m: np.ndarray, feat: Any) -> None:
        if self.folder is not None:
            if self.fmt == "npy":
                with atomic_open(self.folder / f"{index:06d}.npy", "wb") as f:
                    np.save(f, m.astype(np.float32))
            else:
                full = feat.frame_map(m, frame.width, frame.height)
                _save_png(
                    Image.fromarray((np.clip(full, 0, 1) * 255 + 0.5).astype(np.uint8), "L"),
                    self.folder / f"{index:06d}.png",
                )
        if self.contact and index % self.stride == 0:
            rgb = frame_rgb(frame, THUMB_W)
            sal = np.asarray(
                Image.fromarray(m.astype(np.float32), "F").resize((rgb.shape[1], rgb.shape[0]), Image.BILINEAR)
            )
            self.thumbs.append((index, overlay(rgb, np.clip(sal, 0, 1))))
            if len(self.thumbs) >= MAX_THUMBS:  # keep every other one and halve the sampling rate
                self.thumbs = self.thumbs[::2]
                self.stride *= 2

    def write_contact_sheet(self, path: str | os.PathLike[str], cols: int = 4) -> None:
        if not self.thumbs:
            raise TinysalError("no frames to put on the contact sheet")
        th, tw = self.thumbs[0][1].shape[:2]
        rows = -(-len(self.thumbs) // cols)
        sheet = Image.new("RGB", (cols * tw, rows * (th + 14)), (20, 20, 20))
        d = ImageDraw.Draw(sheet)
        for k, (i, img) in enumerate(self.thumbs):
            x, y = (k % cols) * tw, (k // cols) * (th + 14)
            sheet.paste(Image.fromarray(img), (x, y + 14))
            d.text((x + 4, y + 1), f"frame {i}", fill=(230, 230, 230))
        _save_png(sheet, path)


def plot_metric(result: dict[str, Any], metric: str, path: str | os.PathLike[str], size=(900, 360)) -> None:
    """A line plot of one per-frame metric (drawn with Pillow: no plotting dependency)."""
    xs = [f["frameNum"] for f in result["frames"] if metric in f["metrics"]]
    ys = [f["metrics"][metric] for f in result["frames"] if metric in f["metrics"]]
    if not xs:
        raise TinysalError(f"no {metric} values to plot")
    w, h = size
    left, right, top, bottom = 60, 20, 30, 40
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    lo, hi = 0.0, max(1e-6, max(ys) * 1.1)
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x0) / (x1 - x0) * (w - left - right),
            h - bottom - (y - lo) / (hi - lo) * (h - top - bottom),
        )

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for k in range(5):
        yv = lo + (hi - lo) * k / 4
        _, yy = px(x0, yv)
        d.line([left - 4, yy, left, yy], fill="black")
        d.text((4, yy - 6), f"{yv:.3f}", fill="black")
    for k in range(5):
        xv = x0 + (x1 - x0) * k / 4
        xx, _ = px(xv, lo)
        d.line([xx, h - bottom, xx, h - bottom + 4], fill="black")
        d.text((xx - 10, h - bottom + 8), f"{xv:.0f}", fill="black")
    pts = [px(x, y) for x, y in zip(xs, ys)]
    if len(pts) > 1:
        d.line(pts, fill=(200, 30, 30), width=2)
    else:
        d.ellipse([pts[0][0] - 3, pts[0][1] - 3, pts[0][0] + 3, pts[0][1] + 3], fill=(200, 30, 30))
    d.text((left, 8), f"{metric} per frame (mean {np.mean(ys):.4f})", fill="black")
    d.text((w // 2 - 20, h - 16), "frame", fill="black")
    _save_png(img, path)
