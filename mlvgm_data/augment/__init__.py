"""Batched view augmentations with replayable per-sample parameters.

As in kornia, every augmentation is split into *parameter sampling* (:mod:`.config`: per-sample
tensors drawn from the counter-based Philox streams of :func:`mlvgm_data.ops.uniform`) and
*application* (:mod:`.functional`: pure batched functions of images and parameters, no
per-sample Python loops); :class:`ViewAugment` (:mod:`.view`) composes them over all views of a
batch and :mod:`.presets` holds SimCLR, BYOL and crop-and-flip.

Exactness: a sample's augmented views depend only on its pixels and its counter ``(seed, step,
stream, sample id, view)`` — bit for bit, whatever else is in its batch, on every CPU capability
and thread count — because the kernels use elementwise IEEE operations only and the few
transcendental functions are computed by :mod:`.exact`.

As torchvision: crop boxes (ten tries at a uniform scale and log-uniform ratio, integer sizes,
centre-crop fallback), bilinear resize with ``antialias=True`` (a triangle filter widened by the
downscale factor), the jitter factor ranges, greyscale weights, blur kernel and solarize rule.
Deviations, on purpose:

* colour jitter applies its four factors in a fixed order (torchvision shuffles it per call);
* hue is a rotation of the chroma plane in YIQ space (a per-sample 3×3 matrix, luma preserved)
  instead of a shift in HSV space, which needs ~20 elementwise passes; a shift ``h`` (in turns,
  sampled in [−hue, hue]) rotates by 2πh, positive turning red towards green as in HSV.
"""

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
from .presets import IMAGENET_NORMALIZE, PRESETS, Normalize, byol, crop_flip, fashion, preset, simclr
from .view import AugmentParams, ViewAugment

__all__ = [
    "GRAY_WEIGHTS",
    "IMAGENET_NORMALIZE",
    "PRESETS",
    "AugmentConfig",
    "AugmentParams",
    "Normalize",
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
]
