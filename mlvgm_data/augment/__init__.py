"""Batched view augmentations with replayable per-sample parameters.

Each augmentation is one op in its own file (:mod:`.ops`: ``RandomResizedCrop``,
``RandomHorizontalFlip``, ``ColorJitter``, ``RandomGrayscale``, ``GaussianBlur``, ``RandomSolarize``,
``Normalize``, ``RandomErasing``), split as in kornia into *parameter sampling* (per-sample
tensors drawn from the counter-based Philox streams of :func:`mlvgm_data.ops.uniform`, each op
from its own counter slot) and *application* (pure batched functions of images and parameters,
the kernels of :mod:`.functional`, no per-sample Python loops). :class:`Compose` runs ops in
order; :class:`ViewAugment` (:mod:`.view`) runs one pipeline per view over all views of a batch;
:mod:`.presets` builds SimCLR, BYOL, crop-and-flip and the Fashion-MNIST recipe from the ops;
:class:`AugmentConfig` describes the common pipeline declaratively (the DALI backend reads it).

Exactness: a sample's augmented views depend only on its pixels and its counter ``(seed, step,
stream, sample id, view)`` — bit for bit, whatever else is in its batch, on every CPU capability
and thread count — because the kernels use elementwise IEEE operations only and the few
transcendental functions are computed by :mod:`.exact`.

As torchvision: crop boxes (ten tries at a uniform scale and log-uniform ratio, integer sizes,
centre-crop fallback), bilinear resize with ``antialias=True`` (a triangle filter widened by the
downscale factor), the jitter factor ranges, greyscale weights, blur kernel, solarize rule and
erasing boxes. Deviations, on purpose:

* colour jitter applies its four factors in a fixed order (torchvision shuffles it per call);
* hue is a rotation of the chroma plane in YIQ space (a per-sample 3×3 matrix, luma preserved)
  instead of a shift in HSV space, which needs ~20 elementwise passes; a shift ``h`` (in turns,
  sampled in [−hue, hue]) rotates by 2πh, positive turning red towards green as in HSV.
"""

from . import ops
from .compose import AugmentParams, Compose
from .config import AugmentConfig
from .functional import (
    GRAY_WEIGHTS,
    color_jitter,
    default_blur_kernel,
    gaussian_blur,
    grayscale,
    normalize,
    resized_crop,
    solarize,
)
from .ops import *  # noqa: F403  (every registered op: a new op needs no line here)
from .presets import IMAGENET_NORMALIZE, PRESETS, NormalizeStats, byol, crop_flip, fashion, preset, simclr
from .view import ViewAugment

__all__ = [
    "GRAY_WEIGHTS",
    "IMAGENET_NORMALIZE",
    "PRESETS",
    "AugmentConfig",
    "AugmentParams",
    "Compose",
    "NormalizeStats",
    "ViewAugment",
    "byol",
    "color_jitter",
    "crop_flip",
    "default_blur_kernel",
    "fashion",
    "gaussian_blur",
    "grayscale",
    "normalize",
    "preset",
    "resized_crop",
    "simclr",
    "solarize",
    *ops.__all__,
]
