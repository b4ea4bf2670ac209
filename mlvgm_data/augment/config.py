"""``AugmentConfig``: a declarative description of one view's augmentation, built into and from the ops.

The ops (:mod:`.ops`) are the one implementation: :meth:`AugmentConfig.ops` gives the pipeline a
config describes (crop, flip, colour jitter, greyscale, blur, solarize, normalize — every kind,
those with probability 0 included, so that views of different configs align), and
:meth:`AugmentConfig.from_ops` describes a pipeline of those ops in that order (what the DALI
backend and the PIL/torchvision comparisons of the bench read). The config samples nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

from .._checks import check_int, check_number, check_prob, check_range
from .functional import default_blur_kernel
from .ops import (
    ColorJitter,
    GaussianBlur,
    Normalize,
    Op,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomSolarize,
)
from .ops.base import lists

KINDS: tuple[type[Op], ...] = (RandomResizedCrop, RandomHorizontalFlip, ColorJitter, RandomGrayscale, GaussianBlur,
                               RandomSolarize, Normalize)
"""The ops a config describes, in its order of application."""


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
        put("jitter", tuple(check_number(v, f, 0.0, 0.5 if f == "jitter.hue" else None)
                            for v, f in zip(self.jitter, names)))
        put("jitter_p", check_prob(self.jitter_p, "jitter_p"))
        put("grayscale_p", check_prob(self.grayscale_p, "grayscale_p"))
        put("blur_p", check_prob(self.blur_p, "blur_p"))
        put("blur_sigma", check_range(self.blur_sigma, "blur_sigma", 0.0, strict=True))
        if self.blur_kernel is None:
            put("blur_kernel", default_blur_kernel(self.size))
        elif (isinstance(self.blur_kernel, bool) or not isinstance(self.blur_kernel, int) or self.blur_kernel < 1
              or self.blur_kernel % 2 == 0):
            raise ValueError(f"blur_kernel must be a positive odd int, got {self.blur_kernel!r}")
        if self.blur_p > 0 and self.blur_kernel // 2 >= self.size:
            raise ValueError(f"blur_kernel {self.blur_kernel} is too large for size {self.size}")
        put("solarize_p", check_prob(self.solarize_p, "solarize_p"))
        put("solarize_threshold", check_number(self.solarize_threshold, "solarize_threshold"))
        if self.normalize is not None:
            if not isinstance(self.normalize, (tuple, list)) or len(self.normalize) != 2:
                raise ValueError(f"normalize must be (mean, std), got {self.normalize!r}")
            mean, std = (tuple(check_number(v, f"normalize.{f}") for v in seq)
                         if isinstance(seq, (tuple, list)) else seq for seq, f in zip(self.normalize, ("mean", "std")))
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
        return lists(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> "AugmentConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, Mapping) or set(d) - fields:
            got = sorted(set(d) - fields) if isinstance(d, Mapping) else repr(d)
            raise ValueError(f"unknown AugmentConfig fields: {got}")
        return cls(**d)

    def ops(self) -> list[Op]:
        """The pipeline this config describes (every kind of :data:`KINDS`; Normalize when given)."""
        ops: list[Op] = [
            RandomResizedCrop(self.size, self.crop_scale, self.crop_ratio, self.antialias),
            RandomHorizontalFlip(self.flip_p),
            ColorJitter(*self.jitter, p=self.jitter_p),
            RandomGrayscale(self.grayscale_p),
            GaussianBlur(self.blur_kernel, self.blur_sigma, self.blur_p),
            RandomSolarize(self.solarize_threshold, self.solarize_p),
        ]
        if self.normalize is not None:
            ops.append(Normalize(*self.normalize))
        return ops

    @classmethod
    def from_ops(cls, ops: Sequence[Op]) -> "AugmentConfig":
        """The config of a pipeline of :data:`KINDS` in that order, each at most once, starting with
        the crop; an op left out is off (probability 0, no normalisation)."""
        kinds = [type(op) for op in ops]
        if not kinds or kinds[0] is not RandomResizedCrop or any(k not in KINDS for k in kinds) \
                or [KINDS.index(k) for k in kinds] != sorted({KINDS.index(k) for k in kinds}):
            raise ValueError(f"ops [{', '.join(k.__name__ for k in kinds)}] have no AugmentConfig: it describes "
                             f"[{', '.join(k.__name__ for k in KINDS)}] in this order, each at most once, "
                             "the crop first")
        by = {type(op): op for op in ops}
        crop = by[RandomResizedCrop]
        fields = dict(size=crop.size, crop_scale=crop.scale, crop_ratio=crop.ratio, antialias=crop.antialias,
                      flip_p=by[RandomHorizontalFlip].p if RandomHorizontalFlip in by else 0.0, jitter_p=0.0)
        if ColorJitter in by:
            fields.update(jitter=by[ColorJitter].factors, jitter_p=by[ColorJitter].p)
        if RandomGrayscale in by:
            fields.update(grayscale_p=by[RandomGrayscale].p)
        if GaussianBlur in by:
            blur = by[GaussianBlur]
            fields.update(blur_p=blur.p, blur_sigma=blur.sigma, blur_kernel=blur.kernel_size)
        if RandomSolarize in by:
            fields.update(solarize_p=by[RandomSolarize].p, solarize_threshold=by[RandomSolarize].threshold)
        if Normalize in by:
            fields.update(normalize=(by[Normalize].mean, by[Normalize].std))
        return cls(**fields)
