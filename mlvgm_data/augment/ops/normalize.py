"""``Normalize``: ``(x − mean) / std`` per channel (no randomness)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import torch

from ..._checks import check_number
from .. import functional as F
from .base import Op, register, set_fields


@register
@dataclass(frozen=True)
class Normalize(Op):
    """torchvision's ``Normalize(mean, std)``; the images leave [0, 1], so a pipeline clamps
    its pixels to [0, 1] before this op, not after."""

    mean: Sequence[float]
    std: Sequence[float]

    apply_fields: ClassVar[tuple[str, ...]] = ("mean", "std")
    keeps_range: ClassVar[bool] = False

    def __post_init__(self) -> None:
        stats = []
        for name in ("mean", "std"):
            seq = getattr(self, name)
            if not isinstance(seq, (tuple, list)) or not seq:
                raise ValueError(f"{name} must be a non-empty sequence of numbers (one per channel), got {seq!r}")
            stats.append(tuple(check_number(v, name, 0.0 if name == "std" else None, strict_low=True) for v in seq))
        if len(stats[0]) != len(stats[1]):
            raise ValueError(f"mean and std must have one value per channel each, "
                             f"got {len(stats[0])} and {len(stats[1])}")
        set_fields(self, mean=stats[0], std=stats[1])

    def apply_(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], workspace: F.Workspace | None = None
               ) -> torch.Tensor:
        if len(self.mean) != images.shape[1]:
            raise ValueError(f"normalize mean/std must have {images.shape[1]} values (one per channel), "
                             f"got {len(self.mean)}")
        return F.normalize_(images, self.mean, self.std)
