"""Small generators shared by the pipe and dataset tests (importable, so DataLoader workers can
unpickle them)."""

from __future__ import annotations

import torch
from torch import nn

from mlvgm_data import LatentGroup, LatentSpec
from mlvgm_data.generators.base import MLVGM


class TinyGenerator(MLVGM):
    """Two groups (a vector and a spatial map) → 3×16×16 images in [0, 1]."""

    def __init__(self, num_classes: int | None = None, size: int = 16) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("top", (8,)), LatentGroup("map", (4, 4, 4))])
        self.image_shape = (3, size, size)
        self.num_classes = num_classes
        g = torch.Generator().manual_seed(0)
        self.lin = nn.Linear(8, 3 * 4 * 4)
        self.conv = nn.Conv2d(4, 3, 3, padding=1)
        self.embed = nn.Embedding(num_classes or 1, 3)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def _decode(self, latents, classes):
        x = self.lin(latents["top"]).view(-1, 3, 4, 4) + self.conv(latents["map"])
        if classes is not None:
            x = x + self.embed(classes)[:, :, None, None]
        size = self.image_shape[-1]
        return torch.sigmoid(nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))


class BrokenGenerator(TinyGenerator):
    """Fails in a chosen way from a chosen call on (to test error propagation)."""

    def __init__(self, mode: str, after: int = 0) -> None:
        super().__init__()
        self.mode, self.after, self.calls = mode, after, 0

    def _decode(self, latents, classes):
        self.calls += 1
        out = super()._decode(latents, classes)
        if self.calls <= self.after:
            return out
        if self.mode == "raise":
            raise ArithmeticError("decoder exploded")
        if self.mode == "nan":
            return out * float("nan")
        if self.mode == "shape":
            return out[:, :, :8]
        if self.mode == "interrupt":
            raise KeyboardInterrupt
        return out
