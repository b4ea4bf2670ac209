"""Augmentation presets built from the ops: SimCLR, BYOL, the MI paper's crop-and-flip (lightly /
solo-learn defaults) and the Fashion-MNIST demo's recipe."""

from __future__ import annotations

from typing import Callable, Sequence

from .functional import default_blur_kernel
from .ops import (
    ColorJitter,
    GaussianBlur,
    Normalize,
    Op,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomSolarize,
)
from .view import ViewAugment

IMAGENET_NORMALIZE: tuple[tuple[float, ...], tuple[float, ...]] = (
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
)
"""ImageNet mean/std, for encoders that expect normalised inputs: ``simclr(32, IMAGENET_NORMALIZE)``."""

NormalizeStats = tuple[Sequence[float], Sequence[float]] | None
"""A preset's ``normalize`` argument: (mean, std) per channel, or None (outputs stay in [0, 1])."""


def _normalized(ops: list[Op], normalize: NormalizeStats) -> list[Op]:
    return ops if normalize is None else [*ops, Normalize(*normalize)]


def simclr(size: int, normalize: NormalizeStats = None) -> ViewAugment:
    """SimCLR: crop 0.08–1, flip 0.5, jitter (0.8, 0.8, 0.8, 0.2) @ 0.8, grey 0.2, blur 0.5 σ 0.1–2."""
    return ViewAugment(_normalized([
        RandomResizedCrop(size, scale=(0.08, 1.0)), RandomHorizontalFlip(0.5), ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8),
        RandomGrayscale(0.2), GaussianBlur(default_blur_kernel(size), sigma=(0.1, 2.0), p=0.5),
    ], normalize))


def byol(size: int, normalize: NormalizeStats = None) -> ViewAugment:
    """BYOL: crop 0.08–1, flip 0.5, jitter (0.4, 0.4, 0.2, 0.1) @ 0.8, grey 0.2, σ 0.1–2;
    blur p 1.0 / 0.1 and solarize p 0 / 0.2 for view 0 / view 1 (later views alternate)."""
    def view(blur_p: float, solarize_p: float) -> list[Op]:
        return _normalized([
            RandomResizedCrop(size, scale=(0.08, 1.0)), RandomHorizontalFlip(0.5),
            ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), RandomGrayscale(0.2),
            GaussianBlur(default_blur_kernel(size), sigma=(0.1, 2.0), p=blur_p), RandomSolarize(0.5, p=solarize_p),
        ], normalize)

    return ViewAugment([view(1.0, 0.0), view(0.1, 0.2)])


def crop_flip(size: int, normalize: NormalizeStats = None) -> ViewAugment:
    """The MI paper's light option: crop 0.2–1 and flip 0.5 only."""
    return ViewAugment(_normalized([RandomResizedCrop(size, scale=(0.2, 1.0)), RandomHorizontalFlip(0.5)], normalize))


def fashion(size: int, normalize: NormalizeStats = None) -> ViewAugment:
    """Grey clothes (the Fashion-MNIST demo's recipe): crop 0.3–1, flip 0.5, brightness and
    contrast jitter 0.4 @ 0.8 — SimCLR's crop is too aggressive for 28² garments."""
    return ViewAugment(_normalized([RandomResizedCrop(size, scale=(0.3, 1.0)), RandomHorizontalFlip(0.5),
                                    ColorJitter(0.4, 0.4, p=0.8)], normalize))


PRESETS: dict[str, Callable[..., ViewAugment]] = {"simclr": simclr, "byol": byol, "crop_flip": crop_flip,
                                                  "fashion": fashion}
"""Preset name → ``preset(size, normalize=None)``; the pipe's ``augment="simclr"`` etc."""


def preset(name: str, size: int, normalize: NormalizeStats = None) -> ViewAugment:
    """The preset called ``name`` (see :data:`PRESETS`) at output ``size``."""
    if name not in PRESETS:
        raise ValueError(f"unknown augment preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name](size, normalize)
