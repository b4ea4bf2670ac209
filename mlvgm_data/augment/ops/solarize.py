"""``RandomSolarize``: invert the pixels at or above a threshold with probability ``p``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch

from ..._checks import check_number, check_prob
from .. import functional as F
from .base import Draw, Op, register, set_fields


@register
@dataclass(frozen=True)
class RandomSolarize(Op):
    """torchvision's ``RandomSolarize(threshold, p)``: ``x ≥ threshold`` becomes ``1 − x``.
    Parameters: ``solarize`` ``[B]``."""

    threshold: float = 0.5
    p: float = 0.5

    slot: ClassVar[int] = 5
    param_shapes: ClassVar[Mapping[str, tuple[int, ...]]] = {"solarize": ()}
    apply_fields: ClassVar[tuple[str, ...]] = ("threshold",)

    def __post_init__(self) -> None:
        set_fields(self, threshold=check_number(self.threshold, "threshold"), p=check_prob(self.p, "p"))

    @property
    def active(self) -> bool:
        return self.p > 0

    def sample(self, draw: Draw, height: int, width: int) -> dict[str, torch.Tensor]:
        return {"solarize": draw.coin(self.p)}

    def apply_(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], workspace: F.Workspace | None = None
               ) -> torch.Tensor:
        return F.solarize_(images, params["solarize"], self.threshold, workspace=workspace)
