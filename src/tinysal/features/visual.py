"""Things for a person to look at: per-frame saliency maps, a contact sheet with overlays, a metric plot."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tinysal.errors import TinysalError
from tinysal.fileio import atomic_dir, atomic_open
from tinysal.video.readers import YuvFrame

THUMB_W = 320
#: the names of the maps a --saliency-out folder holds (the only entries an existing one may hold to be replaced)
MAP_NAME = re.compile(r"\d{6}\.(png|npy)")
MAX_THUMBS = 48


def _save_png(img: Image.Image, path: str | os.PathLike[str]) -> None:
    with atomic_open(path, "wb") as f:
        img.save(f, format="PNG")


def frame_rgb(frame: YuvFrame, width: int | None = None) -> np.ndarray:
    """uint8 RGB of a frame (BT.709 limited), optionally downscaled to ``width``."""
    from tinysal.video.colour import upsample_chroma, yuv444_to_rgb
    from tinysal.video.readers import SUBSAMPLING

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
        #: maps go to a hidden temp folder beside the target, which replaces the target as a whole only when the
        #: run succeeds (:meth:`commit`: no stale maps of a longer clip stay); an interrupted or failed run removes
        #: it (:meth:`abort`): all or nothing. An existing target holding anything but maps is refused, as
        #: ``roi-maps`` refuses it (a folder of the user's own files is never replaced)
        self.target = Path(folder) if folder else None
        self.folder: Path | None = None
        self._dir: Any = None
        if self.target is not None:
            if self.target.exists() and not self.target.is_dir():
                raise TinysalError(f"--saliency-out {self.target} exists and is not a folder")
            try:
                self.target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise TinysalError(f"cannot create --saliency-out folder {self.target}: {e.strerror}") from None
            try:
                self._dir = atomic_dir(self.target, replaceable=lambda name: bool(MAP_NAME.fullmatch(name)))
                self.folder = self._dir.__enter__()
            except TinysalError as e:
                raise TinysalError(f"--saliency-out {e}") from None
            except OSError as e:
                raise TinysalError(f"cannot create --saliency-out folder {self.target}: {e.strerror}") from None
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

    def commit(self) -> None:
        """The finished maps take the target folder's place as a whole."""
        if self._dir is None:
            return
        dirs, self._dir, self.folder = self._dir, None, None
        dirs.__exit__(None, None, None)

    def abort(self) -> None:
        """Remove the partial maps (a failed or interrupted run); the target stays as it was."""
        if self._dir is None:
            return
        dirs, self._dir, self.folder = self._dir, None, None
        err = TinysalError("aborted")
        dirs.__exit__(TinysalError, err, None)

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


def plot_scores(result: dict[str, Any], path: str | os.PathLike[str], title: str = "per-frame scores") -> None:
    """Per-frame VMAF (left axis, 0-100: vmaf, vmaf_roi, vmaf_masked when present) and saliency_mean (right axis,
    0-1) over frame number, pooled means in the legend; written atomically as PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    frames = result["frames"]
    pooled = result["pooled_metrics"]

    def series(metric: str) -> tuple[list[int], list[float]]:
        pts = [(f["frameNum"], f["metrics"][metric]) for f in frames if metric in f["metrics"]]
        return [p[0] for p in pts], [p[1] for p in pts]

    left = [m for m in ("vmaf", "vmaf_roi", "vmaf_masked") if m in pooled]
    right = [m for m in ("saliency_mean",) if m in pooled]
    if not left and not right:
        raise TinysalError("nothing to plot: the result has neither vmaf nor saliency_mean")
    fig = Figure(figsize=(9, 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    handles = []
    styles = {"vmaf": "C0", "vmaf_roi": "C2", "vmaf_masked": "C4", "saliency_mean": "C3"}
    for m in left:
        xs, ys = series(m)
        handles += ax.plot(xs, ys, color=styles[m], marker="." if len(xs) < 60 else None,
                           label=f"{m} (mean {pooled[m]['mean']:.2f})")  # fmt: skip
    if left:
        ax.set_ylabel("VMAF")
        ax.set_ylim(0, 100)
    ax.set_xlabel("frame")
    ax.grid(True, alpha=0.3)
    if right:
        ax2 = ax.twinx() if left else ax
        xs, ys = series("saliency_mean")
        handles += ax2.plot(xs, ys, color=styles["saliency_mean"], marker="." if len(xs) < 60 else None,
                            label=f"saliency_mean (mean {pooled['saliency_mean']['mean']:.4f})")  # fmt: skip
        ax2.set_ylabel("saliency_mean")
        ax2.set_ylim(0, max(0.05, max(ys) * 1.15))
    ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    from tinysal.fileio import atomic_open

    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
