"""Augmentation presets: SimCLR, BYOL and the MI paper's crop-and-flip (lightly / solo-learn defaults)."""

from __future__ import annotations

from typing import Callable, Sequence

from .config import AugmentConfig
from .view import ViewAugment

IMAGENET_NORMALIZE: tuple[tuple[float, ...], tuple[float, ...]] = (
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
)
"""ImageNet mean/std, for encoders that expect normalised inputs: ``simclr(32, IMAGENET_NORMALIZE)``."""

Normalize = tuple[Sequence[float], Sequence[float]] | None


def simclr(size: int, normalize: Normalize = None) -> ViewAugment:
    """SimCLR: crop 0.08–1, flip 0.5, jitter (0.8, 0.8, 0.8, 0.2) @ 0.8, grey 0.2, blur 0.5 σ 0.1–2."""
    return ViewAugment(AugmentConfig(
        size, crop_scale=(0.08, 1.0), flip_p=0.5, jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.8,
        grayscale_p=0.2, blur_p=0.5, blur_sigma=(0.1, 2.0), normalize=normalize,
    ))


def byol(size: int, normalize: Normalize = None) -> ViewAugment:
    """BYOL: crop 0.08–1, flip 0.5, jitter (0.4, 0.4, 0.2, 0.1) @ 0.8, grey 0.2, σ 0.1–2;
    blur p 1.0 / 0.1 and solarize p 0 / 0.2 for view 0 / view 1 (later views alternate)."""
    common = dict(crop_scale=(0.08, 1.0), flip_p=0.5, jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8,
                  grayscale_p=0.2, blur_sigma=(0.1, 2.0), normalize=normalize)
    return ViewAugment([AugmentConfig(size, blur_p=1.0, solarize_p=0.0, **common),
                        AugmentConfig(size, blur_p=0.1, solarize_p=0.2, **common)])


def crop_flip(size: int, normalize: Normalize = None) -> ViewAugment:
    """The MI paper's light option: crop 0.2–1 and flip 0.5 only."""
    return ViewAugment(AugmentConfig(size, crop_scale=(0.2, 1.0), flip_p=0.5, normalize=normalize))


def fashion(size: int, normalize: Normalize = None) -> ViewAugment:
    """Grey clothes (the Fashion-MNIST demo's recipe): crop 0.3–1, flip 0.5, brightness and
    contrast jitter 0.4 @ 0.8 — SimCLR's crop is too aggressive for 28² garments."""
    return ViewAugment(AugmentConfig(size, crop_scale=(0.3, 1.0), flip_p=0.5, jitter=(0.4, 0.4, 0.0, 0.0),
                                     jitter_p=0.8, normalize=normalize))


PRESETS: dict[str, Callable[..., ViewAugment]] = {"simclr": simclr, "byol": byol, "crop_flip": crop_flip,
                                                  "fashion": fashion}
"""Preset name → ``preset(size, normalize=None)``; the pipe's ``augment="simclr"`` etc."""


def preset(name: str, size: int, normalize: Normalize = None) -> ViewAugment:
    """The preset called ``name`` (see :data:`PRESETS`) at output ``size``."""
    if name not in PRESETS:
        raise ValueError(f"unknown augment preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name](size, normalize)
