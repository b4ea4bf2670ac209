"""Pictures: image grids and grids of anchor/view sets."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .._io import atomic_writer
from ..anchors import AnchorSource
from ..datasets import GeneratedViews
from ..generators.base import decode_views, eval_mode
from ..policy import ViewPolicy


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, pad: int = 2) -> Path:
    """Writes ``[N, C, H, W]`` images in [0, 1] (C = 1 or 3) as a PNG grid, ``nrow`` per row."""
    from PIL import Image

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1 or 3, H, W], got {list(images.shape)}")
    images = images.detach().float().cpu().expand(-1, 3, -1, -1)
    n, _, h, w = images.shape
    rows = math.ceil(n / nrow)
    grid = torch.ones(3, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for k in range(n):
        r, q = divmod(k, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[k]
    pixels = (grid.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "image grid") as f:
        Image.fromarray(pixels).save(f, format="PNG")
    return path


@torch.no_grad()
def view_sets(generator: torch.nn.Module, policy: ViewPolicy, anchors: int = 8, num_views: int = 6,
              seed: int = 0, augment=None) -> torch.Tensor:
    """Images ``[anchors, num_views, C, H, W]``: row a holds the views of anchor a (view 0 is the
    anchor itself when ``policy.include_anchor``); optionally augmented."""
    with eval_mode(generator):
        images = decode_views(generator, policy, anchors, num_views, seed=seed, step=0).images
    if augment is not None:
        images = augment(images, seed, 0)
    return images.transpose(0, 1).cpu()


def save_view_grid(generator: torch.nn.Module, policy: ViewPolicy, path: str | Path, anchors: int = 8,
                   num_views: int = 6, seed: int = 0, augment=None) -> Path:
    """A PNG with one row per anchor and one column per view."""
    sets = view_sets(generator, policy, anchors, num_views, seed, augment)
    return save_image_grid(sets.reshape(-1, *sets.shape[2:]), path, nrow=num_views)


@torch.no_grad()
def save_real_view_grid(generator: torch.nn.Module, policy: ViewPolicy, anchors: Dataset, path: str | Path,
                        rows: int = 8, num_views: int = 5, seed: int = 0) -> Path:
    """A PNG of real images and their generated variants: per row the real image, its
    reconstruction (the inverted anchor decoded) and ``num_views − 1`` views under ``policy``."""
    data = GeneratedViews(generator, policy, None, seed=seed, anchors=anchors, num_views=num_views)
    count = min(rows, len(data))
    originals, _ = AnchorSource(anchors, getattr(generator, "image_shape", None)).read(torch.arange(count))
    images = []
    with eval_mode(generator):
        for original, (views, _) in zip(originals, data.__getitems__(range(count))):
            images += [original, *(v.cpu() for v in views)]
    return save_image_grid(torch.stack(images), path, nrow=num_views + 1)
