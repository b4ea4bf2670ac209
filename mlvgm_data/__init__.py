"""mlvgm-data: positive view pairs from multiple-latent-variable generative models."""

import importlib
from typing import Any

import torch  # noqa: F401  (must precede the compiled extension)

from . import ops
from .datasets import AugmentedViews, GeneratedViews
from .generators import load_generator, recommended_policy
from .latents import LatentGroup, LatentSpec
from .pipe import ViewBatch, ViewPairPipe
from .policy import Keep, Perturb, Resample, ViewPolicy

__version__ = "0.1.0"

__all__ = [
    "AugmentedViews",
    "GeneratedViews",
    "Keep",
    "LatentGroup",
    "LatentSpec",
    "Perturb",
    "Resample",
    "ViewBatch",
    "ViewPairPipe",
    "ViewPolicy",
    "load_generator",
    "ops",
    "recommended_policy",
]

_LAZY = {"mi", "augment", "nodes", "data", "models"}


def __getattr__(name: str) -> Any:
    # Submodules with optional or heavier dependencies load on first use: mlvgm_data.mi.estimate(...)
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'mlvgm_data' has no attribute {name!r}")
