"""``AugmentConfig``: the augmentation of one view, and the sampling of its per-sample parameters.

Parameters are drawn from the counter-based Philox streams of :func:`mlvgm_data.ops.uniform`
(domain ``DOMAIN_AUGMENT``, counter view = the view index, one slot per augmentation kind), so
the same ``(seed, step, stream, sample ids)`` gives the same parameters on every run, device and
batch composition. The only transcendental function involved (the crop's log-uniform aspect
ratio) goes through :mod:`.exact`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .. import ops
from .._checks import check_int, check_number, check_prob, check_range
from . import exact
from .functional import default_blur_kernel

SLOT_CROP, SLOT_FLIP, SLOT_JITTER, SLOT_GRAY, SLOT_BLUR, SLOT_SOLARIZE = range(6)
"""Counter slots of the augmentation kinds (a kind's draws never depend on another's settings)."""
CROP_TRIES = 10


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation of one view. Probabilities are per sample; ranges are (low, high).

    ``crop_scale=None`` skips the crop (the whole image is resized to ``size``); ``jitter`` =
    (brightness, contrast, saturation, hue) as in torchvision's ``ColorJitter`` (factors uniform
    in [max(0, 1 − b), 1 + b], hue shift in [−h, h] turns, h ≤ 0.5), applied with ``jitter_p``;
    ``blur_kernel=None`` uses :func:`default_blur_kernel`; ``normalize`` = (mean, std) or None
    (outputs stay in [0, 1]).
    """

    size: int
    crop_scale: tuple[float, float] | None = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    jitter_p: float = 0.0
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    antialias: bool = True

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        put("size", check_int(self.size, "size", 1))
        if self.crop_scale is not None:
            put("crop_scale", check_range(self.crop_scale, "crop_scale", 0.0, 1.0, strict=True))
        put("crop_ratio", check_range(self.crop_ratio, "crop_ratio", 0.0, strict=True))
        put("flip_p", check_prob(self.flip_p, "flip_p"))
        if not isinstance(self.jitter, (tuple, list)) or len(self.jitter) != 4:
            raise ValueError(f"jitter must be (brightness, contrast, saturation, hue), got {self.jitter!r}")
        names = ("jitter.brightness", "jitter.contrast", "jitter.saturation", "jitter.hue")
        put("jitter", tuple(check_number(v, f, 0.0, 0.5 if f == "jitter.hue" else None) for v, f in zip(self.jitter, names)))
        put("jitter_p", check_prob(self.jitter_p, "jitter_p"))
        put("grayscale_p", check_prob(self.grayscale_p, "grayscale_p"))
        put("blur_p", check_prob(self.blur_p, "blur_p"))
        put("blur_sigma", check_range(self.blur_sigma, "blur_sigma", 0.0, strict=True))
        if self.blur_kernel is None:
            put("blur_kernel", default_blur_kernel(self.size))
        elif isinstance(self.blur_kernel, bool) or not isinstance(self.blur_kernel, int) or self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd int, got {self.blur_kernel!r}")
        if self.blur_p > 0 and self.blur_kernel // 2 >= self.size:
            raise ValueError(f"blur_kernel {self.blur_kernel} is too large for size {self.size}")
        put("solarize_p", check_prob(self.solarize_p, "solarize_p"))
        put("solarize_threshold", check_number(self.solarize_threshold, "solarize_threshold"))
        if self.normalize is not None:
            if not isinstance(self.normalize, (tuple, list)) or len(self.normalize) != 2:
                raise ValueError(f"normalize must be (mean, std), got {self.normalize!r}")
            mean, std = (tuple(check_number(v, f"normalize.{f}") for v in seq) if isinstance(seq, (tuple, list)) else seq
                         for seq, f in zip(self.normalize, ("mean", "std")))
            if not isinstance(mean, tuple) or not isinstance(std, tuple) or len(mean) != len(std) or not mean:
                raise ValueError(f"normalize must be (mean, std) sequences of equal length, got {self.normalize!r}")
            if min(std) <= 0:
                raise ValueError(f"normalize.std must be > 0, got {std}")
            put("normalize", (mean, std))
        if not isinstance(self.antialias, bool):
            raise ValueError(f"antialias must be a bool, got {self.antialias!r}")

    @property
    def jitter_enabled(self) -> bool:
        """Whether any sample can be jittered (a nonzero factor range with jitter_p > 0)."""
        return self.jitter_p > 0 and any(self.jitter)

    def to_dict(self) -> dict:
        """JSON-safe fields (tuples become lists)."""
        return _lists(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> "AugmentConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, Mapping) or set(d) - fields:
            raise ValueError(f"unknown AugmentConfig fields: {sorted(set(d) - fields) if isinstance(d, Mapping) else d!r}")
        return cls(**d)

    def sample(
        self, batch_size: int, height: int, width: int, seed: int, step: int, stream: int = 0, *,
        view: int = 0, sample_offset: int = 0, sample_ids: torch.Tensor | Sequence[int] | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample parameters of one view (the fields of :class:`AugmentParams`, ``[B, ...]``)."""
        dev = torch.device("cpu") if device is None else torch.device(device)

        def draw(slot: int, n: int) -> torch.Tensor:
            return ops.uniform(batch_size, n, seed, step, dev, stream, domain=ops.DOMAIN_AUGMENT, view=view,
                               slot=slot, sample_offset=sample_offset, sample_ids=sample_ids)

        never = torch.zeros(batch_size, dtype=torch.bool, device=dev)
        if self.crop_scale is None:
            box = torch.tensor([0.0, 0.0, height, width], device=dev).expand(batch_size, 4).clone()
        else:
            box = _sample_box(draw(SLOT_CROP, 2 * CROP_TRIES + 2), height, width, self.crop_scale, self.crop_ratio)
        flip = draw(SLOT_FLIP, 1)[:, 0] < self.flip_p if self.flip_p > 0 else never
        factors = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev).expand(batch_size, 4).clone()
        jitter = never
        if self.jitter_enabled:
            u = draw(SLOT_JITTER, 5)
            jitter = u[:, 0] < self.jitter_p
            lo = torch.tensor([max(0.0, 1.0 - j) for j in self.jitter[:3]] + [-self.jitter[3]], device=dev)
            hi = torch.tensor([1.0 + j for j in self.jitter[:3]] + [self.jitter[3]], device=dev)
            factors = torch.where(jitter[:, None], lo + (hi - lo) * u[:, 1:], factors)
        gray = draw(SLOT_GRAY, 1)[:, 0] < self.grayscale_p if self.grayscale_p > 0 else never
        blur, sigma = never, torch.full((batch_size,), self.blur_sigma[0], device=dev)
        if self.blur_p > 0:
            u = draw(SLOT_BLUR, 2)
            blur = u[:, 0] < self.blur_p
            sigma = self.blur_sigma[0] + (self.blur_sigma[1] - self.blur_sigma[0]) * u[:, 1]
        sol = draw(SLOT_SOLARIZE, 1)[:, 0] < self.solarize_p if self.solarize_p > 0 else never
        return dict(box=box, flip=flip, jitter=jitter, jitter_factors=factors, grayscale=gray, blur=blur,
                    blur_sigma=sigma, solarize=sol)


def _lists(value: object) -> object:
    """Tuples → lists, recursively (for ``to_dict``)."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    return value


def _sample_box(u: torch.Tensor, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]) -> torch.Tensor:
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


