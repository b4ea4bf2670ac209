"""A generator whose decode runs under :func:`torch.compile` (the pipe's ``compile=True``)."""

from __future__ import annotations

from typing import Mapping

import torch

from .base import MLVGM, MLVGMProtocol


class CompiledDecode(MLVGM):
    """``generator`` with its decoding compiled by :func:`torch.compile` (inductor;
    ``dynamic=False``: the pipe decodes batches of one size, and each new size compiles again).

    For an :class:`MLVGM` the model's own ``_decode`` is compiled and the protocol's checks run
    around it in eager mode: inside the compiled region their host syncs (``bool(isfinite(x)
    .all())``) would break the graph in two at every call. Any other generator has its ``decode``
    compiled whole.

    The first call compiles — tens of seconds for a small model on a CPU — and later calls run
    the compiled code. The images equal eager ``decode``'s to float tolerance, not bit for bit:
    inductor fuses and reorders the arithmetic (the tests allow 1e-4 on [0, 1] images). Compiled
    code does not pickle: build this in the process that decodes.
    """

    def __init__(self, generator: MLVGMProtocol) -> None:
        super().__init__()
        self.generator = generator  # a submodule: parameters() and the device come from it
        self.latent_spec = generator.latent_spec
        self.image_shape = tuple(generator.image_shape)
        self.num_classes = getattr(generator, "num_classes", None)
        self.train(bool(getattr(generator, "training", False)))
        # An MLVGM's own _decode is compiled: its decode would run the checks inside the graph.
        own = generator._decode if isinstance(generator, MLVGM) else None
        self._compiled_own = None if own is None else torch.compile(own, dynamic=False)
        self._compiled_decode = None if own is not None else torch.compile(generator.decode, dynamic=False)

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        if self._compiled_own is not None:
            return self._compiled_own(latents, classes)
        # The protocol's one-argument form for an unconditional generator.
        return self._compiled_decode(latents) if classes is None else self._compiled_decode(latents, classes)
