"""The TinyU-Net saliency students (PyTorch). Built by name: ``create_model("saliency_student_v2")``.

Encoder 3->16->32->48 (two Conv-BN-ReLU per stage, MaxPool after each), bottleneck Conv-BN-ReLU 48->48, three
decoder stages (x2 upsample, concat with the encoder skip, Conv-BN-ReLU), 1x1 head + sigmoid.
v2 upsamples with bilinear resize (align_corners=False) + 3x3 conv; v1 with ConvTranspose2d(k=2, s=2).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tinysal.errors import TinysalError
from tinysal.model.arch import ARCHITECTURES

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


def _cbr_k(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, dil: int = 1, act: bool = True):
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, padding=dil * (k // 2), dilation=dil, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _DSBlock(nn.Module):
    """Residual depthwise-separable block: depthwise 3x3 (optionally dilated) + pointwise, added to the input."""

    def __init__(self, c: int, dil: int = 1) -> None:
        super().__init__()
        self.dw = _cbr_k(c, c, 3, groups=c, dil=dil)
        self.pw = _cbr_k(c, c, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.pw(self.dw(x)))


class _Down(nn.Module):
    """Stride-2 depthwise 3x3 + pointwise channel change."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.dw = _cbr_k(cin, cin, 3, 2, groups=cin)
        self.pw = _cbr_k(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


V3_ENC = (16, 24, 56, 96, 128)
V3_DEC = 32


class SalientFPN(nn.Module):
    """saliency_student_v3: five resolutions down to 1/32 with a global context vector and a top-down decoder.

    Plain 3x3 convolutions where the maps are large (stride-2 stem, 1/4 stage): cheap to train on a CPU, where
    depthwise convolutions are slow to back-propagate; depthwise-separable residual blocks (dilation 1 and 2) at
    1/8, 1/16 and 1/32, where they cost little and widen the receptive field past the whole 256-pixel input.
    Global average pooling of the 1/32 features gives a context vector added to the top of an FPN-style decoder
    (1x1 laterals, bilinear x2, depthwise-separable refinement), which ends at 1/2 and is resized x2 to the input.
    Input height and width must be multiples of 32."""

    def __init__(self, enc: tuple[int, ...] = V3_ENC, d: int = V3_DEC) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = enc
        self.stem = _cbr_k(3, c1, 3, 2)
        self.s4 = nn.Sequential(_cbr_k(c1, c2, 3, 2), _cbr_k(c2, c2))
        self.s8 = nn.Sequential(_Down(c2, c3), _DSBlock(c3), _DSBlock(c3, 2))
        self.s16 = nn.Sequential(_Down(c3, c4), _DSBlock(c4), _DSBlock(c4, 2))
        self.s32 = nn.Sequential(_Down(c4, c5), _DSBlock(c5), _DSBlock(c5, 2))
        self.context = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c5, d, 1), nn.ReLU(inplace=True))
        self.lat5, self.lat4, self.lat3, self.lat2 = (_cbr_k(c, d, 1) for c in (c5, c4, c3, c2))
        self.ref4 = nn.Sequential(_cbr_k(d, d, 3, groups=d), _cbr_k(d, d, 1))
        self.ref3 = nn.Sequential(_cbr_k(d, d, 3, groups=d), _cbr_k(d, d, 1))
        self.ref2 = _cbr_k(d, 16, 3)
        self.lat1 = _cbr_k(c1, 16, 1)
        self.ref1 = _cbr_k(16, 8, 3)
        self.head = nn.Conv2d(8, 1, 1)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.stem(x)
        f2 = self.s4(f1)
        f3 = self.s8(f2)
        f4 = self.s16(f3)
        f5 = self.s32(f4)
        p = self.lat5(f5) + self.context(f5)
        p = self.ref4(self._up(p) + self.lat4(f4))
        p = self.ref3(self._up(p) + self.lat3(f3))
        p = self.ref2(self._up(p) + self.lat2(f2))
        p = self.ref1(self._up(p) + self.lat1(f1))
        return self._up(self.head(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def create_model(name: str) -> nn.Module:
    """Build an untrained model by architecture name."""
    if name not in ARCHITECTURES:
        raise TinysalError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    if ARCHITECTURES[name]["upsampler"] == "fpn":
        return SalientFPN()
    return TinyUNet(str(ARCHITECTURES[name]["upsampler"]))


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, arch: str, **meta: Any) -> None:
    """Save weights in a form that loads with ``torch.load(weights_only=True)`` (no pickled classes)."""
    from tinysal.fileio import atomic_open

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_open(path, "wb") as f:
        torch.save({"format": "tinysal-checkpoint-1", "arch": arch, "state_dict": state, "meta": meta}, f)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, str, dict[str, Any]]:
    """Load a checkpoint safely (``weights_only=True``) and return (eval-mode model, arch, meta).

    Accepts tinysal checkpoints and trainer state files (``last.pt``), which carry the same keys.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise TinysalError(f"checkpoint not found: {p}")
    try:
        with warnings.catch_warnings():  # torch warns about the refused pickle too; the one error line suffices
            warnings.simplefilter("ignore")
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
