"""``GeneratedViews``: a map-style, torchvision-style dataset of generated positive views."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from . import ops
from .augment import ViewAugment
from .generators.base import checked_decode
from .pipe import generator_device
from .views import ViewPolicy


class GeneratedViews(Dataset):
    """``ds[i] -> ((v0, v1, …), target)``: item i is a deterministic function of ``(seed, i)``.

    A drop-in for an image dataset of view pairs: works with ``DataLoader`` (any
    ``num_workers``; CPU generators only when workers > 0), ``DistributedSampler`` and shuffling.
    ``__getitems__`` makes one generator forward per DataLoader batch. ``transform`` is any
    callable on a ``[C, H, W]`` tensor (torchvision v2 transforms work), applied to each view; a
    :class:`~mlvgm_data.augment.ViewAugment` (e.g. ``augment.simclr(32)``) is applied to the
    whole batch at once with counter-based parameters, so items replay exactly. ``target`` is the
    class of a class-conditional generator, else −1 (then ``target_transform``).
    """

    def __init__(self, generator: torch.nn.Module, policy: ViewPolicy, length: int, seed: int = 0,
                 transform: Callable[[torch.Tensor], Any] | ViewAugment | None = None,
                 target_transform: Callable[[int], Any] | None = None, num_views: int = 2, stream: int = 0) -> None:
        if not hasattr(generator, "latent_spec") or not callable(getattr(generator, "decode", None)):
            raise ValueError("generator must have a latent_spec and a decode(latents) method (see MLVGMProtocol)")
        if not isinstance(policy, ViewPolicy):
            raise ValueError(f"policy must be a ViewPolicy, got {type(policy).__name__}")
        policy.check(generator.latent_spec)
        for value, name, low, high in ((length, "length", 1, 1 << 32), (num_views, "num_views", 1, 256),
                                       (seed, "seed", 0, 1 << 32), (stream, "stream", 0, 1 << 32)):
            ops._int_in(value, name, low, high)
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable, got {type(transform).__name__}")
        if target_transform is not None and not callable(target_transform):
            raise ValueError(f"target_transform must be callable, got {type(target_transform).__name__}")
        self.generator = generator
        self.policy = policy
        self.length = length
        self.seed = seed
        self.transform = transform
        self.target_transform = target_transform
        self.num_views = num_views
        self.stream = stream

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[tuple[Any, ...], Any]:
        return self.__getitems__([index])[0]

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        out = []
        for i in indices:
            i = int(i)
            if not 0 <= i < self.length:
                raise IndexError(f"index {i} out of range for GeneratedViews of length {self.length}")
            out.append(i)
        return out

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[tuple[Any, ...], Any]]:
        """Items ``indices`` with one batched generator forward (used by DataLoader)."""
        idx = self._check_indices(indices)
        if not idx:
            return []
        device = generator_device(self.generator)
        n, v = len(idx), self.num_views
        ids = torch.tensor(idx, dtype=torch.int64)
        # Step 0 for every item: the counter's sample id is the dataset index.
        latents = ops.resample(self.generator.latent_spec, self.policy, n, v, self.seed, 0, device, self.stream,
                               sample_ids=ids)
        classes = None
        num_classes = getattr(self.generator, "num_classes", None)
        if num_classes:
            u = ops.uniform(n, 1, self.seed, 0, device, self.stream, domain=ops.DOMAIN_CLASS, sample_ids=ids)
            classes = (u[:, 0] * num_classes).long().clamp_(max=num_classes - 1)
        with torch.no_grad():
            # no_grad rather than inference_mode: items may be transformed in place by users.
            flat = {name: z.reshape(v * n, *z.shape[2:]) for name, z in latents.items()}
            images = checked_decode(self.generator, flat, None if classes is None else classes.repeat(v))
            images = images.float().reshape(v, n, *images.shape[1:])
            if isinstance(self.transform, ViewAugment):
                images = self.transform(images, self.seed, 0, self.stream, sample_ids=ids)
        items = []
        for j in range(n):
            views = tuple(images[k, j] for k in range(v))
            if self.transform is not None and not isinstance(self.transform, ViewAugment):
                views = tuple(self.transform(x) for x in views)
            target: Any = int(classes[j]) if classes is not None else -1
            if self.target_transform is not None:
                target = self.target_transform(target)
            items.append((views, target))
        return items
