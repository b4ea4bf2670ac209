"""``GaussianBlur``: a separable Gaussian blur of per-sample sigma, applied with probability ``p``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch

from ..._checks import check_prob, check_range
from .. import functional as F
from .base import Draw, Op, register, set_fields


@register
@dataclass(frozen=True)
class GaussianBlur(Op):
    """torchvision's ``RandomApply([GaussianBlur(kernel_size, sigma)], p)``: sigma uniform in
    ``sigma``, reflect padding (:func:`~mlvgm_data.augment.functional.gaussian_blur`);
    :func:`~mlvgm_data.augment.default_blur_kernel` gives SimCLR's kernel for an image size.

    Parameters: ``blur`` ``[B]`` (the coin), ``blur_sigma`` ``[B]`` (drawn for every sample).
    """

    kernel_size: int
    sigma: tuple[float, float] = (0.1, 2.0)
    p: float = 1.0

    slot: ClassVar[int] = 4
    param_shapes: ClassVar[Mapping[str, tuple[int, ...]]] = {"blur": (), "blur_sigma": ()}
    apply_fields: ClassVar[tuple[str, ...]] = ("kernel_size",)

    def __post_init__(self) -> None:
        k = self.kernel_size
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {k!r}")
        set_fields(self, sigma=check_range(self.sigma, "sigma", 0.0, strict=True), p=check_prob(self.p, "p"))

    @property
    def active(self) -> bool:
        return self.p > 0

    def sample(self, draw: Draw, height: int, width: int) -> dict[str, torch.Tensor]:
        blur, sigma = draw.never(), torch.full((draw.batch_size,), self.sigma[0], device=draw.device)
        if self.p > 0:
            u = draw(2)
            blur = u[:, 0] < self.p
            sigma = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * u[:, 1]
        return {"blur": blur, "blur_sigma": sigma}

    def apply_(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], workspace: F.Workspace | None = None
               ) -> torch.Tensor:
        return F.gaussian_blur_(images, params["blur_sigma"], self.kernel_size, params["blur"], workspace=workspace)
