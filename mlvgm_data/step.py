"""One step of the pipe: ``ViewBatch`` and ``StepWork`` (views → augmentation → the batch).

A step is a pure function of its step number: :func:`~mlvgm_data.generators.base.decode_views`
makes the views, the augmentation draws its parameters from the same counter streams, and the
target is the anchors' class (or −1). The producers run ``StepWork`` ahead of the consumer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .anchors import AnchorSource, positions, stream_indices
from .generators.base import decode_views
from .latents import LatentSpec
from .policy import ViewPolicy

Augment = Callable[..., torch.Tensor]
"""``aug(views[V, B, C, H, W], seed, step, stream, sample_offset) -> views`` (a ViewAugment, DALI …)."""


class ViewBatch(tuple):
    """``(views, target)`` — or ``(views, target, latents)`` with ``return_latents`` — so that
    ``(x0, x1), y = batch`` works as with an image dataset of view pairs.

    ``views`` is a tuple of ``[B, C, H, W]`` tensors, ``target`` ``[B]`` int64 (class labels of a
    class-conditional generator, else −1), ``latents`` the ``ops.resample`` dict
    ``{group: [V, B, *shape]}``.
    """

    def __new__(cls, views: tuple[torch.Tensor, ...], target: torch.Tensor,
                latents: dict[str, torch.Tensor] | None = None) -> "ViewBatch":
        return super().__new__(cls, (views, target) if latents is None else (views, target, latents))

    def __getnewargs__(self) -> tuple:
        return tuple(self)

    @property
    def views(self) -> tuple[torch.Tensor, ...]:
        return self[0]

    @property
    def target(self) -> torch.Tensor:
        return self[1]

    @property
    def latents(self) -> dict[str, torch.Tensor] | None:
        return self[2] if len(self) > 2 else None

    # The namedtuple protocol, so that what rebuilds a namedtuple field by field keeps a ViewBatch:
    # torch's default_convert/collate and pin_memory, Lightning's and Fabric's device moves and
    # precision casts (they would otherwise call ViewBatch(list_of_fields) and fail).
    @property
    def _fields(self) -> tuple[str, ...]:
        return ("views", "target", "latents")[: len(self)]

    def _asdict(self) -> dict[str, object]:
        return dict(zip(self._fields, self))


@dataclass(frozen=True, kw_only=True)
class RealAnchors:
    """The real anchors of one rank's steps: ``per_rank`` images per step from the anchor stream
    (:mod:`.anchors`), inverted by ``inverter.invert``; with ``real_view`` view 0 of those samples
    is the real image instead of its reconstruction."""

    source: AnchorSource
    inverter: torch.nn.Module
    per_rank: int
    rank: int
    world_size: int
    seed: int
    philox_stream: int
    real_view: bool = False

    def indices(self, step: int) -> torch.Tensor:
        first, count = positions(step, self.rank, self.world_size, self.per_rank)
        return stream_indices(first, count, self.source.length, self.seed, self.philox_stream)

    def invert(self, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(images, labels, latents)`` of the step's real anchors, on ``device``."""
        images, labels = self.source.read(self.indices(step))
        images, labels = images.to(device), labels.to(device)
        conditional = bool(getattr(self.inverter, "num_classes", None))
        with torch.no_grad():
            latents = self.inverter.invert(images, labels) if conditional else self.inverter.invert(images)
        return images, labels, dict(latents)


@dataclass(frozen=True, kw_only=True)
class StepWork:
    """What one step computes, as a pure function of the step number: the views of
    ``batch_size`` anchors (sample ids ``sample_offset …``), their augmentation, the targets."""

    generator: torch.nn.Module
    policy: ViewPolicy
    batch_size: int
    num_views: int
    seed: int
    sample_offset: int
    augment: Augment | None
    device: torch.device
    return_latents: bool = False
    autocast: torch.dtype | None = None
    philox_stream: int = 0
    real: RealAnchors | None = None

    @property
    def spec(self) -> LatentSpec:
        return self.generator.latent_spec

    def __call__(self, step: int, latent_out: torch.Tensor | None = None) -> ViewBatch:
        counters = dict(seed=self.seed, step=step, device=self.device, stream=self.philox_stream,
                        sample_offset=self.sample_offset, autocast=self.autocast)
        target = torch.full((self.batch_size,), -1, dtype=torch.int64, device=self.device)
        if self.real is None:
            made = decode_views(self.generator, self.policy, self.batch_size, self.num_views, latent_out=latent_out,
                                **counters)
            images = made.images
        else:
            real, labels, latents = self.real.invert(step, self.device)
            n = real.shape[0]
            # real_view: the real image itself is view 0 of its sample; with every sample real (and a
            # view besides it to decode), view 0 is not decoded at all (a third of the step at two views)
            skip = self.real.real_view and n == self.batch_size and self.num_views > 1
            made = decode_views(self.generator, self.policy, self.batch_size, self.num_views, anchors=latents,
                                anchor_classes=labels, views=range(1, self.num_views) if skip else None, **counters)
            images = torch.cat([real.to(made.images.dtype)[None], made.images]) if skip else made.images
            target[:n] = labels
            if self.real.real_view and not skip:
                images[0, :n] = real
        if made.classes is not None:
            target = made.classes if self.real is None else torch.cat([target[:n], made.classes[n:]])
        with torch.no_grad():
            out = (self.augment(images, self.seed, step, self.philox_stream, self.sample_offset)
                   if self.augment is not None else images)
        return ViewBatch(tuple(out.unbind(0)), target, made.latents if self.return_latents else None)
