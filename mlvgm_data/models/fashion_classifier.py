"""The Fashion-MNIST classifier, trained on the real train split, which judges a generator's
samples (its training and the sample-quality scores: :mod:`mlvgm_data.apps.classifiers.fashion`).
It ships as ``assets/fashion_classifier.{pt,json}`` (a plain state dict, loaded with
``weights_only=True``). Images are 28² or the generators' zero-padded 32², whose 2-pixel border is
cropped away."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.fashion_mnist import CLASS_NAMES, SIZE
from ..generators.registry import ASSETS
from .assets import asset_available, load_width_model

CLASSIFIER_STEM = ASSETS / "fashion_classifier"
FEATURES = 128


def crop_to_28(x: torch.Tensor) -> torch.Tensor:
    """``[N, 1, R, R]`` images → the centred ``[N, 1, 28, 28]`` (R = 28, or more with a border)."""
    if (not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1
            or x.shape[2] != x.shape[3] or x.shape[2] < SIZE):
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"images must be grey [N, 1, R, R] with R >= {SIZE}, got {shape}")
    lo = (x.shape[-1] - SIZE) // 2
    return x[:, :, lo:lo + SIZE, lo:lo + SIZE]


class FashionClassifier(nn.Module):
    """Two conv blocks (``width``, then 2·``width`` channels, each two 3×3 convs with batch norm
    and a 2× max pool), a 128-d hidden layer (the features of :meth:`features`) and a linear
    layer onto the 10 classes."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, w), *block(w, w), nn.MaxPool2d(2),
            *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, len(CLASS_NAMES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``[N, 128]`` penultimate features of images in [0, 1]."""
        return self.body(crop_to_28(x).float() * 2.0 - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def classifier_available(stem: Path = CLASSIFIER_STEM) -> bool:
    return asset_available(stem)


def load_classifier(stem: str | Path = CLASSIFIER_STEM) -> FashionClassifier:
    """The shipped (or a saved) classifier, in eval mode; weights-only loading."""
    return load_width_model(FashionClassifier, stem)


@lru_cache(maxsize=1)
def _shipped() -> FashionClassifier:
    return load_classifier(CLASSIFIER_STEM)


@torch.no_grad()
def classify(images: torch.Tensor, classifier: FashionClassifier | None = None,
             batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softmax probabilities [N, 10], penultimate features [N, 128])`` of grey images in [0, 1]."""
    clf = classifier or _shipped()
    crop_to_28(images[:1])  # the shape check, before any batch runs
    probs, feats = [], []
    for i in range(0, len(images), batch_size):
        f = clf.features(images[i:i + batch_size])
        feats.append(f.double())
        probs.append(F.softmax(clf.head(f), dim=1))
    return torch.cat(probs), torch.cat(feats)
