"""``RandomGrayscale``: replace an image by its grey level in every channel with probability ``p``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch

from ..._checks import check_prob
from .. import functional as F
from .base import Draw, Op, register, set_fields


@register
@dataclass(frozen=True)
class RandomGrayscale(Op):
    """torchvision's ``RandomGrayscale(p)`` (weights :data:`~mlvgm_data.augment.GRAY_WEIGHTS`;
    single-channel images pass unchanged). Parameters: ``grayscale`` ``[B]``."""

    p: float = 0.1

    slot: ClassVar[int] = 3
    param_shapes: ClassVar[Mapping[str, tuple[int, ...]]] = {"grayscale": ()}

    def __post_init__(self) -> None:
        set_fields(self, p=check_prob(self.p, "p"))

    @property
    def active(self) -> bool:
        return self.p > 0

    def sample(self, draw: Draw, height: int, width: int) -> dict[str, torch.Tensor]:
        return {"grayscale": draw.coin(self.p)}

    def apply_(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], workspace: F.Workspace | None = None
               ) -> torch.Tensor:
        return F.grayscale_(images, params["grayscale"], workspace=workspace)
