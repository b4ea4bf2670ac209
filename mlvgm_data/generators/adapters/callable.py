"""Any callable ``f(latents) -> images`` as an MLVGM."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from ..._checks import check_int
from ...latents import LatentSpec
from .common import WrapsCallable, check_image_shape, check_range, to_unit_range


class CallableGenerator(WrapsCallable):
    """Any callable ``fn(latents) -> images`` (``fn(latents, classes)`` when ``num_classes`` is
    set) with the :class:`LatentSpec` it takes. ``output_range`` is mapped to [0, 1] and clamped.
    ``encoder(images) -> {group: [N, *shape]}`` (images in ``output_range``) makes :meth:`invert`
    give real anchors.
    """

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        spec: LatentSpec,
        num_classes: int | None = None,
        image_shape: Sequence[int] | None = None,
        output_range: Sequence[float] | None = None,
        encoder: Callable[..., Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self._hold(fn, "fn")
        self._hold_encoder(encoder)
        if not isinstance(spec, LatentSpec):
            raise ValueError(f"spec must be a LatentSpec, got {type(spec).__name__}")
        self.latent_spec = spec
        self.num_classes = None if num_classes is None else check_int(num_classes, "num_classes", 1)
        self.image_shape = check_image_shape(image_shape)
        self.output_range = check_range(output_range)

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        if self.num_classes:
            if classes is None:
                raise ValueError(f"CallableGenerator is class-conditional ({self.num_classes} classes): pass classes")
            out = self._run(dict(latents), classes)
        else:
            out = self._run(dict(latents))
        return to_unit_range(out, self.output_range, "fn")
