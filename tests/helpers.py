"""Small generators shared by the pipe and dataset tests (importable, so DataLoader workers can
unpickle them)."""

from __future__ import annotations

import gc
import threading
import time

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
        self.eval()  # a frozen generator, as load_generator returns them

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


class OneArgGenerator(nn.Module):
    """The documented protocol at its plainest: ``latent_spec``, ``image_shape`` and
    ``decode(latents)`` with no ``classes`` argument (not an MLVGM subclass)."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("a", (3,)), LatentGroup("b", (3,))])
        self.image_shape = (3, 8, 8)
        self.scale = nn.Parameter(torch.tensor(0.2))
        self.eval()

    def decode(self, latents):
        x = latents["a"] + 0.5 * latents["b"]
        return torch.sigmoid(self.scale * x)[:, :, None, None].expand(-1, 3, 8, 8).contiguous()


class PointwiseGenerator(MLVGM):
    """A generator whose decode is per sample by construction (elementwise IEEE operations only,
    no matmul, no transcendental function): a sample's image does not depend on its batch, so the
    pipe's own exactness (latents, classes, augmentation) can be tested bit for bit."""

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("top", (3,)), LatentGroup("map", (1, 8, 8))])
        self.image_shape = (3, 8, 8)
        self.num_classes = num_classes
        self.eval()

    def _decode(self, latents, classes):
        top = latents["top"][:, :, None, None]
        x = 0.5 + 0.1 * top + 0.05 * latents["map"]
        if classes is not None:
            x = x + 0.01 * classes.to(x.dtype)[:, None, None, None]
        return x.clamp(0.0, 1.0)


class BatchNormGenerator(TinyGenerator):
    """TinyGenerator with a batch norm on its output, in train mode (as BigBiGAN ports come)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(3)
        self.train()

    def _decode(self, latents, classes):
        return torch.sigmoid(self.norm(torch.logit(super()._decode(latents, classes), eps=1e-6)))


class CountingGenerator(TinyGenerator):
    """Counts its decodes in shared memory (DataLoader workers included)."""

    def __init__(self) -> None:
        super().__init__()
        self.decodes = torch.zeros(1, dtype=torch.int64).share_memory_()

    def _decode(self, latents, classes):
        self.decodes += 1
        return super()._decode(latents, classes)


def producer_threads() -> list[threading.Thread]:
    # Loops like torchdata's Loader hold their iterator in a reference cycle: collect those first.
    gc.collect()
    return [t for t in threading.enumerate() if t.name == "mlvgm-data-producer"]


def producer_threads_after_gc(deadline_s: float = 30.0) -> list[threading.Thread]:
    """The producer threads left once a dropped iterator's producer has reached its step boundary
    (garbage collection tells it to stop without waiting for it; the deadline only guards a hang)."""
    deadline = time.monotonic() + deadline_s
    while (left := producer_threads()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left
