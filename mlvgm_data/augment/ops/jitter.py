"""``ColorJitter``: per-sample brightness, contrast, saturation and hue factors, applied with probability ``p``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch

from ..._checks import check_number, check_prob
from .. import functional as F
from .base import Draw, Op, register, set_fields


@register
@dataclass(frozen=True)
class ColorJitter(Op):
    """torchvision's ``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)``:
    factors uniform in [max(0, 1 − b), 1 + b] (hue: a shift in [−hue, hue] turns, hue ≤ 0.5),
    applied in that fixed order by :func:`~mlvgm_data.augment.functional.color_jitter`.

    Parameters: ``jitter`` ``[B]`` (the coin), ``jitter_factors`` ``[B, 4]`` ((1, 1, 1, 0) where
    the coin is False: samples still pass through the kernel, which clamps them to [0, 1]).
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    p: float = 1.0

    slot: ClassVar[int] = 2
    param_shapes: ClassVar[Mapping[str, tuple[int, ...]]] = {"jitter": (), "jitter_factors": (4,)}

    def __post_init__(self) -> None:
        for f in ("brightness", "contrast", "saturation"):
            set_fields(self, **{f: check_number(getattr(self, f), f, 0.0)})
        set_fields(self, hue=check_number(self.hue, "hue", 0.0, 0.5), p=check_prob(self.p, "p"))

    @property
    def factors(self) -> tuple[float, float, float, float]:
        """(brightness, contrast, saturation, hue)."""
        return self.brightness, self.contrast, self.saturation, self.hue

    @property
    def active(self) -> bool:
        return self.p > 0 and any(self.factors)

    def sample(self, draw: Draw, height: int, width: int) -> dict[str, torch.Tensor]:
        factors = torch.tensor([1.0, 1.0, 1.0, 0.0], device=draw.device).expand(draw.batch_size, 4).clone()
        jitter = draw.never()
        if self.active:
            u = draw(5)
            jitter = u[:, 0] < self.p
            lo = torch.tensor([max(0.0, 1.0 - j) for j in self.factors[:3]] + [-self.hue], device=draw.device)
            hi = torch.tensor([1.0 + j for j in self.factors[:3]] + [self.hue], device=draw.device)
            factors = torch.where(jitter[:, None], lo + (hi - lo) * u[:, 1:], factors)
        return {"jitter": jitter, "jitter_factors": factors}

    def apply_(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], workspace: F.Workspace | None = None
               ) -> torch.Tensor:
        return F.color_jitter_(images, params["jitter_factors"], workspace=workspace)
