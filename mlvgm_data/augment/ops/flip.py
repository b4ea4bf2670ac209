"""``RandomHorizontalFlip``: mirror each image left to right with probability ``p``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch

from ..._checks import check_per_sample, check_prob
from ..functional import Workspace
from .base import Draw, Op, register, set_fields


@register
@dataclass(frozen=True)
class RandomHorizontalFlip(Op):
    """torchvision's ``RandomHorizontalFlip(p)``. Right after a :class:`RandomResizedCrop` the crop
    applies it by mirroring its sampling taps (no second pass; the same bits as flipping after)."""

    p: float = 0.5

    slot: ClassVar[int] = 1
    param_shapes: ClassVar[Mapping[str, tuple[int, ...]]] = {"flip": ()}

    def __post_init__(self) -> None:
        set_fields(self, p=check_prob(self.p, "p"))

    @property
    def active(self) -> bool:
        return self.p > 0

    def sample(self, draw: Draw, height: int, width: int) -> dict[str, torch.Tensor]:
        return {"flip": draw.coin(self.p)}

    def apply_(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], workspace: Workspace | None = None
               ) -> torch.Tensor:
        flip = check_per_sample(params["flip"], images.shape[0], "flip").to(images.device)
        return torch.where(flip[:, None, None, None], images.flip(-1), images, out=images)
