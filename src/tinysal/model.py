"""The TinyU-Net saliency students (PyTorch). Built by name: ``create_model("saliency_student_v2")``.

Encoder 3->16->32->48 (two Conv-BN-ReLU per stage, MaxPool after each), bottleneck Conv-BN-ReLU 48->48, three
decoder stages (x2 upsample, concat with the encoder skip, Conv-BN-ReLU), 1x1 head + sigmoid.
v2 upsamples with bilinear resize (align_corners=False) + 3x3 conv; v1 with ConvTranspose2d(k=2, s=2).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tinysal.arch import ARCHITECTURES
from tinysal.errors import TinysalError

ENC = (16, 32, 48)
BOTTLENECK = 48
DEC = (32, 16, 8)


def _cbr(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "convtranspose":
            self.up = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2, bias=False)
        else:
            self.up = nn.Conv2d(cin, cout, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "convtranspose":
            return self.up(x)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.up(x)


class TinyUNet(nn.Module):
    """TinyU-Net. ``forward`` returns the saliency map in [0, 1]; ``logits`` the pre-sigmoid map."""

    def __init__(self, upsampler: str = "resize_conv") -> None:
        super().__init__()
        c1, c2, c3 = ENC
        self.enc1 = nn.Sequential(*_cbr(3, c1), *_cbr(c1, c1))
        self.enc2 = nn.Sequential(*_cbr(c1, c2), *_cbr(c2, c2))
        self.enc3 = nn.Sequential(*_cbr(c2, c3), *_cbr(c3, c3))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(*_cbr(c3, BOTTLENECK))
        d3, d2, d1 = DEC
        self.up3 = _Up(BOTTLENECK, d3, upsampler)
        self.dec3 = nn.Sequential(*_cbr(d3 + c3, d3))
        self.up2 = _Up(d3, d2, upsampler)
        self.dec2 = nn.Sequential(*_cbr(d2 + c2, d2))
        self.up1 = _Up(d2, d1, upsampler)
        self.dec1 = nn.Sequential(*_cbr(d1 + c1, d1))
        self.head = nn.Conv2d(d1, 1, 1, bias=True)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.enc1(x)
        s2 = self.enc2(self.pool(s1))
        s3 = self.enc3(self.pool(s2))
        b = self.bottleneck(self.pool(s3))
        y = self.dec3(torch.cat([self.up3(b), s3], dim=1))
        y = self.dec2(torch.cat([self.up2(y), s2], dim=1))
        y = self.dec1(torch.cat([self.up1(y), s1], dim=1))
        return self.head(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def create_model(name: str) -> TinyUNet:
    """Build an untrained model by architecture name."""
    if name not in ARCHITECTURES:
        raise TinysalError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return TinyUNet(str(ARCHITECTURES[name]["upsampler"]))


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_checkpoint(path: str | os.PathLike[str], model: TinyUNet, arch: str, **meta: Any) -> None:
    """Save weights in a form that loads with ``torch.load(weights_only=True)`` (no pickled classes)."""
    from tinysal.fileio import atomic_open

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_open(path, "wb") as f:
        torch.save({"format": "tinysal-checkpoint-1", "arch": arch, "state_dict": state, "meta": meta}, f)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[TinyUNet, str, dict[str, Any]]:
    """Load a checkpoint safely (``weights_only=True``) and return (eval-mode model, arch, meta).

    Accepts tinysal checkpoints and trainer state files (``last.pt``), which carry the same keys.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise TinysalError(f"checkpoint not found: {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for pickles, truncation and garbage
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TinysalError(
            f"cannot load checkpoint {p} safely (weights_only=True refuses pickled objects): {first}"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "arch" not in ckpt:
        raise TinysalError(f"{p} is not a tinysal checkpoint (expected keys 'arch' and 'state_dict')")
    arch = str(ckpt["arch"])
    model = create_model(arch)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise TinysalError(f"checkpoint {p} does not match {arch}: {str(e).splitlines()[0]}") from None
    model.eval()
    meta = ckpt.get("meta") or {}
    return model, arch, dict(meta)
