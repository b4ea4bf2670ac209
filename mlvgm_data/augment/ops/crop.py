"""``RandomResizedCrop``: torchvision's crop boxes, batched, resized by
:func:`~mlvgm_data.augment.functional.resized_crop`.

The only transcendental functions (the log-uniform aspect ratio) go through :mod:`..exact`, and
the box arithmetic is float64 ``sqrt`` (correctly rounded everywhere) and ``round``, so a sample's
box is the same on every CPU path and in any batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch

from ..._checks import check_int, check_range
from .. import exact
from .. import functional as F
from .base import Draw, Op, register, set_fields
from .flip import RandomHorizontalFlip

CROP_TRIES = 10


@register
@dataclass(frozen=True)
class RandomResizedCrop(Op):
    """A random box of ``scale`` × the area and aspect ``ratio`` (log-uniform), resized to ``size × size``
    (bilinear, antialiased when shrinking), as torchvision: ten tries, integer sizes, else the
    centre crop at the clamped ratio. ``scale=None`` takes the whole image (a plain resize).

    Parameters: ``box`` ``[B, 4]`` = (top, left, height, width) in input pixels.
    """

    size: int
    scale: tuple[float, float] | None = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    antialias: bool = True

    slot: ClassVar[int] = 0
    param_shapes: ClassVar[Mapping[str, tuple[int, ...]]] = {"box": (4,)}
    apply_fields: ClassVar[tuple[str, ...]] = ("size", "antialias")
    in_place: ClassVar[bool] = False
    absorbs: ClassVar[tuple[type, ...]] = (RandomHorizontalFlip,)

    def __post_init__(self) -> None:
        set_fields(self, size=check_int(self.size, "size", 1), ratio=check_range(self.ratio, "ratio", 0.0, strict=True))
        if self.scale is not None:
            set_fields(self, scale=check_range(self.scale, "scale", 0.0, 1.0, strict=True))
        if not isinstance(self.antialias, bool):
            raise ValueError(f"antialias must be a bool, got {self.antialias!r}")

    def output_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        return self.size, self.size

    def sample(self, draw: Draw, height: int, width: int) -> dict[str, torch.Tensor]:
        if self.scale is None:
            box = torch.tensor([0.0, 0.0, height, width], device=draw.device).expand(draw.batch_size, 4).clone()
        else:
            box = _sample_box(draw(2 * CROP_TRIES + 2), height, width, self.scale, self.ratio)
        return {"box": box}

    def apply_(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], workspace: F.Workspace | None = None
               ) -> torch.Tensor:
        """A new ``[N, C, size, size]``; mirrored where ``params["flip"]`` is set (an absorbed flip)."""
        return F.resized_crop(images, params["box"], self.size, params.get("flip"), self.antialias,
                              workspace=workspace)


def _sample_box(u: torch.Tensor, height: int, width: int, scale: tuple[float, float],
                ratio: tuple[float, float]) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop.get_params``, batched: ten tries of (scale, log-ratio),
    the first whose rounded box fits wins, else the centre crop at the clamped ratio."""
    t = CROP_TRIES
    area = float(height * width)
    s = scale[0] + (scale[1] - scale[0]) * u[:, :t]
    lr0, lr1 = exact.log_scalar(ratio[0]), exact.log_scalar(ratio[1])
    aspect = exact.exp(lr0 + (lr1 - lr0) * u[:, t : 2 * t].double())
    area_s = area * s.double()
    # float64 square roots are correctly rounded on every path; round() then gives integers.
    w = torch.round(torch.sqrt(area_s * aspect)).float()
    h = torch.round(torch.sqrt(area_s / aspect)).float()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)
    found = ok.any(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    w = torch.where(found, w.gather(1, first)[:, 0], float(fw))
    h = torch.where(found, h.gather(1, first)[:, 0], float(fh))
    top = torch.minimum(torch.floor(u[:, 2 * t] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(u[:, 2 * t + 1] * (width - w + 1)), width - w)
    top = torch.where(found, top, float((height - fh) // 2))
    left = torch.where(found, left, float((width - fw) // 2))
    return torch.stack([top, left, h, w], 1)
