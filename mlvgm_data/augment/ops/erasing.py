"""``RandomErasing``: fill a random rectangle of each selected image with a value (Zhong et al. 2017).

This op is one file plus its import line in ``ops/__init__.py``: nothing else in the package
names it. Its draws come from its own counter slot, so adding it to a pipeline leaves every
other op's parameters, and the images it does not erase, bit for bit as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import torch

from ..._checks import check_images, check_number, check_per_sample, check_prob, check_range
from .. import exact
from ..functional import Workspace
from .base import Draw, Op, register, set_fields

ERASE_TRIES = 10


@register
@dataclass(frozen=True)
class RandomErasing(Op):
    """torchvision's ``RandomErasing(p, scale, ratio, value)``: with probability ``p``, a rectangle
    of ``scale`` × the image area and aspect ratio (height / width) log-uniform in ``ratio``, at
    a uniform position, is filled with ``value`` (one number, or one per channel); ten tries,
    and an image where no try fits (height and width strictly inside) is left unerased.
    ``value="random"`` (torchvision's per-pixel normal noise) is not offered.

    Parameters: ``erase_box`` ``[B, 4]`` = (top, left, height, width); all 0 where nothing is erased.
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float | tuple[float, ...] = 0.0

    slot: ClassVar[int] = 6
    param_shapes: ClassVar[Mapping[str, tuple[int, ...]]] = {"erase_box": (4,)}
    apply_fields: ClassVar[tuple[str, ...]] = ("value",)
    keeps_range: ClassVar[bool] = False  # the value is written as given: a pipeline clamps before this op

    def __post_init__(self) -> None:
        value = self.value
        if isinstance(value, (tuple, list)):
            if not value:
                raise ValueError("value must be a number or a non-empty sequence of numbers (one per channel), got []")
            value = tuple(check_number(v, "value") for v in value)
        else:
            value = check_number(value, "value")
        set_fields(self, p=check_prob(self.p, "p"), scale=check_range(self.scale, "scale", 0.0, 1.0),
                   ratio=check_range(self.ratio, "ratio", 0.0, strict=True), value=value)

    @property
    def active(self) -> bool:
        return self.p > 0

    def sample(self, draw: Draw, height: int, width: int) -> dict[str, torch.Tensor]:
        if self.p == 0:
            return {"erase_box": torch.zeros(draw.batch_size, 4, device=draw.device)}
        return {"erase_box": _sample_erase_box(draw(2 * ERASE_TRIES + 3), height, width, self.p, self.scale,
                                               self.ratio)}

    def apply_(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], workspace: Workspace | None = None
               ) -> torch.Tensor:
        return erase_(images, params["erase_box"], self.value)


def _sample_erase_box(u: torch.Tensor, height: int, width: int, p: float, scale: tuple[float, float],
                      ratio: tuple[float, float]) -> torch.Tensor:
    """torchvision's ``RandomErasing.get_params``, batched: the coin, ten tries of (scale,
    log-ratio) whose rounded box must fit strictly, the position of the first that fits."""
    t = ERASE_TRIES
    s = scale[0] + (scale[1] - scale[0]) * u[:, 1 : 1 + t]
    lr0, lr1 = exact.log_scalar(ratio[0]), exact.log_scalar(ratio[1])
    aspect = exact.exp(lr0 + (lr1 - lr0) * u[:, 1 + t : 1 + 2 * t].double())
    area_s = float(height * width) * s.double()
    # float64 square roots are correctly rounded on every path; round() then gives integers.
    h = torch.round(torch.sqrt(area_s * aspect)).float()
    w = torch.round(torch.sqrt(area_s / aspect)).float()
    ok = (h < height) & (w < width)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)
    erase = ok.any(1) & (u[:, 0] < p)
    h = torch.where(erase, h.gather(1, first)[:, 0], 0.0)
    w = torch.where(erase, w.gather(1, first)[:, 0], 0.0)
    top = torch.minimum(torch.floor(u[:, 1 + 2 * t] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(u[:, 2 + 2 * t] * (width - w + 1)), width - w)
    return torch.where(erase[:, None], torch.stack([top, left, h, w], 1), 0.0)


def erase_(images: torch.Tensor, box: torch.Tensor, value: float | Sequence[float]) -> torch.Tensor:
    """:func:`erase` in place on ``images`` (float32)."""
    x = check_images(images, "images", 4)
    n, c, h, w = x.shape
    box = check_per_sample(box, n, "box", 4).to(device=x.device, dtype=torch.float32)
    fill = torch.tensor(value if isinstance(value, (tuple, list)) else (value,), dtype=torch.float32, device=x.device)
    if fill.numel() not in (1, c):
        raise ValueError(f"value must have 1 or {c} numbers (one per channel), got {fill.numel()}")
    top, left, bh, bw = box.unbind(1)
    rows = torch.arange(h, device=x.device, dtype=torch.float32)
    cols = torch.arange(w, device=x.device, dtype=torch.float32)
    in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])  # [N, H]
    in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])  # [N, W]
    inside = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return torch.where(inside, fill.view(1, -1, 1, 1), x, out=x)


def erase(images: torch.Tensor, box: torch.Tensor, value: float | Sequence[float] = 0.0) -> torch.Tensor:
    """Fill ``box`` = ``[N, 4]`` (top, left, height, width in pixels) of each image ``[N, C, H, W]``
    with ``value`` (a number or one per channel); a 0 × 0 box leaves its image unchanged."""
    return erase_(check_images(images, "images", 4).clone(), box, value)
