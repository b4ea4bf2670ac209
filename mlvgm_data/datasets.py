"""Map-style, torchvision-style datasets of positive views: ``GeneratedViews`` (from a generator)
and ``AugmentedViews`` (augmentations of a dataset of real images), with the same item format so
either drops into the same training script."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from . import ops
from .augment import ViewAugment
from .generators.base import check_generator, checked_decode, draw_classes
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
        check_generator(generator, policy)
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
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Items of epoch e use counter step e: fresh latents and augmentations every epoch
        (continuous sampling); without calls every epoch sees the same items."""
        self.epoch = ops._int_in(epoch, "epoch", 0, 1 << 32)

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
        # The counter's step is the epoch and its sample id the dataset index.
        latents = ops.resample(self.generator.latent_spec, self.policy, n, v, self.seed, self.epoch, device,
                               self.stream, sample_ids=ids)
        classes = draw_classes(self.generator, n, self.seed, self.epoch, device, self.stream, sample_ids=ids)
        with torch.no_grad():
            # no_grad rather than inference_mode: items may be transformed in place by users.
            flat = {name: z.reshape(v * n, *z.shape[2:]) for name, z in latents.items()}
            images = checked_decode(self.generator, flat, None if classes is None else classes.repeat(v))
            images = images.float().reshape(v, n, *images.shape[1:])
            if isinstance(self.transform, ViewAugment):
                images = self.transform(images, self.seed, self.epoch, self.stream, sample_ids=ids)
        targets = classes.tolist() if classes is not None else [-1] * n
        per_view = None if isinstance(self.transform, ViewAugment) else self.transform
        return _items(images, targets, per_view, self.target_transform)


def _items(images: torch.Tensor, targets: list[Any], transform: Callable | None,
           target_transform: Callable | None) -> list[tuple[tuple[Any, ...], Any]]:
    """``[V, N, C, H, W]`` views and N targets → N items ``((v0, v1, …), target)``."""
    items = []
    for j, target in enumerate(targets):
        views = tuple(images[k, j] for k in range(images.shape[0]))
        if transform is not None:
            views = tuple(transform(x) for x in views)
        items.append((views, target_transform(target) if target_transform is not None else target))
    return items


class AugmentedViews(Dataset):
    """``ds[i] -> ((v0, v1, …), target)`` from a dataset of real images: ``num_views``
    augmentations of image i (SimCLR's two-crops transform), the real-data twin of
    :class:`GeneratedViews`.

    ``images[i]`` is an image ``[C, H, W]`` in [0, 1] or a tuple ``(image, label, …)``. A
    :class:`~mlvgm_data.augment.ViewAugment` runs batched per DataLoader batch with parameters from
    the counter streams (step = epoch, sample id = index), so items replay exactly; any other
    callable is applied to each view of each image.
    """

    def __init__(self, images: Dataset, augment: ViewAugment | Callable[[torch.Tensor], Any], num_views: int = 2,
                 seed: int = 0, target_transform: Callable[[int], Any] | None = None, stream: int = 0) -> None:
        if not callable(augment):
            raise ValueError(f"augment must be a ViewAugment or a callable, got {type(augment).__name__}")
        for value, name, low, high in ((num_views, "num_views", 1, 256), (seed, "seed", 0, 1 << 32),
                                       (stream, "stream", 0, 1 << 32)):
            ops._int_in(value, name, low, high)
        self.images, self.augment, self.num_views = images, augment, num_views
        self.seed, self.stream, self.target_transform = seed, stream, target_transform
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Epoch e draws its augmentations with counter step e (fresh views every epoch)."""
        self.epoch = ops._int_in(epoch, "epoch", 0, 1 << 32)

    def __getitem__(self, index: int) -> tuple[tuple[Any, ...], Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[tuple[Any, ...], Any]]:
        idx = [int(i) for i in indices]
        for i in idx:
            if not 0 <= i < len(self):
                raise IndexError(f"index {i} out of range for AugmentedViews of length {len(self)}")
        if not idx:
            return []
        getitems = getattr(self.images, "__getitems__", None)
        raw = getitems(idx) if getitems is not None else [self.images[i] for i in idx]
        pairs = [(r, -1) if isinstance(r, torch.Tensor) else (r[0], r[1] if len(r) > 1 else -1) for r in raw]
        images = torch.stack([img for img, _ in pairs])
        if images.dim() != 4 or not images.is_floating_point():
            raise ValueError(f"images must be float [C, H, W] tensors, got {images.dtype} {list(images.shape[1:])}")
        targets = [int(t) for _, t in pairs]
        if isinstance(self.augment, ViewAugment):
            with torch.no_grad():
                views = self.augment(images.unsqueeze(0).expand(self.num_views, *images.shape), self.seed, self.epoch,
                                     self.stream, sample_ids=torch.tensor(idx, dtype=torch.int64))
            return _items(views, targets, None, self.target_transform)
        # A per-view callable gets its own copy of each image (it may work in place).
        views = images.unsqueeze(0).repeat(self.num_views, 1, 1, 1, 1)
        return _items(views, targets, self.augment, self.target_transform)
