"""mlvgm-data: positive view pairs from multiple-latent-variable generative models."""

import torch  # noqa: F401  (must precede the compiled extension)

from . import ops
from .latents import LatentGroup, LatentSpec
from .views import Keep, Perturb, Resample, ViewPolicy

__version__ = "0.1.0"

__all__ = [
    "Keep",
    "LatentGroup",
    "LatentSpec",
    "Perturb",
    "Resample",
    "ViewPolicy",
    "ops",
]
