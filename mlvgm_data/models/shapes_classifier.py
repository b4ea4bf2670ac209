"""The Shapes classifier: a small CNN trained on real Shapes, which judges a generator's samples
(its training and scores: :mod:`mlvgm_data.apps.classifiers.shapes`). Its weights ship as
``assets/shapes_classifier.pt`` (a plain state dict, loaded with ``weights_only=True``) + ``.json``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.shapes import SHAPE_NAMES
from ..generators.registry import ASSETS
from .assets import asset_available, load_width_model

CLASSIFIER_STEM = ASSETS / "shapes_classifier"
RESOLUTION = 32


class ShapesClassifier(nn.Module):
    """A 4-conv CNN over 32² RGB images → logits for :data:`SHAPE_NAMES`."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * w, len(SHAPE_NAMES)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != RESOLUTION or x.shape[-2] != RESOLUTION:
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="area")
        return self.net(x * 2.0 - 1.0)


def classifier_available(stem: Path = CLASSIFIER_STEM) -> bool:
    return asset_available(stem)


def load_classifier(stem: str | Path = CLASSIFIER_STEM) -> ShapesClassifier:
    """The shipped (or a saved) classifier, in eval mode; weights-only loading."""
    return load_width_model(ShapesClassifier, stem)


@lru_cache(maxsize=1)
def _shipped() -> ShapesClassifier:
    return load_classifier(CLASSIFIER_STEM)


@torch.no_grad()
def classify(images: torch.Tensor, classifier: ShapesClassifier | None = None, batch_size: int = 500) -> torch.Tensor:
    """Softmax probabilities ``[N, num_classes]`` of ``[N, 3, H, W]`` images in [0, 1]."""
    clf = classifier or _shipped()
    return torch.cat([F.softmax(clf(images[i:i + batch_size].float()), dim=1)
                      for i in range(0, len(images), batch_size)])
