"""Map-style, torchvision-style datasets of positive views: ``GeneratedViews`` (from a generator)
and ``AugmentedViews`` (augmentations of a dataset of real images), with the same item format so
either drops into the same training script."""

from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from ._checks import U32, check_int
from .anchors import check_real_anchors
from .augment import ViewAugment
from .generators.base import (
    check_eval_mode,
    check_generator,
    decode_views,
    generator_device,
    set_eval_mode,
)
from .policy import ViewPolicy
from .progress import SharedEpoch


def _check_index(index: object, length: int, who: str) -> int:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"{who} indices must be integers, got {index!r}")
    i = int(index)
    if not 0 <= i < length:
        raise IndexError(f"index {i} out of range for {who} of length {length}")
    return i


class GeneratedViews(Dataset):
    """``ds[i] -> ((v0, v1, …), target)``: item i is a deterministic function of ``(seed, epoch, i)``.

    A drop-in for an image dataset of view pairs: works with ``DataLoader`` (any
    ``num_workers``; CPU generators only when workers > 0), ``DistributedSampler`` and shuffling.
    ``__getitems__`` makes one generator forward per DataLoader batch (a subclass that overrides
    ``__getitem__``, e.g. solo-learn's ``dataset_with_index``, is called item by item instead).
    ``transform`` is any callable on a ``[C, H, W]`` tensor (torchvision v2 transforms work),
    applied to each view; a :class:`~mlvgm_data.augment.ViewAugment` (e.g. ``augment.simclr(32)``)
    is applied to the whole batch at once with counter-based parameters, so items replay exactly.
    ``target`` is the class of a class-conditional generator, else −1 (then ``target_transform``).
    ``with_index=True`` gives solo-learn's format, ``(i, (v0, v1, …), target)``.

    The dataset is fixed within an epoch (a generated dataset of ``length`` items);
    ``set_epoch(e)`` draws fresh ones, and reaches persistent DataLoader workers too.

    With ``anchors`` (a map-style dataset of images, or ``(image, label)``; ``length`` then defaults
    to its length and may not exceed it), item i is real image i inverted by ``generator.invert``
    and the policy applied around it, target = its label; ``real_view=True`` makes view 0 the real
    image itself.
    """

    def __init__(self, generator: torch.nn.Module, policy: ViewPolicy, length: int | None, seed: int = 0,
                 transform: Callable[[torch.Tensor], Any] | ViewAugment | None = None,
                 target_transform: Callable[[int], Any] | None = None, num_views: int = 2, stream: int = 0,
                 with_index: bool = False, anchors: Any = None, real_view: bool = False) -> None:
        check_generator(generator, policy)
        set_eval_mode(generator, "GeneratedViews")
        self.anchors, self.real_view, _, self._anchor_source = check_real_anchors(generator, policy, anchors,
                                                                                 real_view)
        source = self._anchor_source
        if length is None and source is None:
            raise ValueError("length must be a positive int (None only with anchors=)")
        self.length = check_int(source.length if length is None else length, "length", 1,
                                U32 if source is None else source.length + 1)
        self.num_views = check_int(num_views, "num_views", 1, 256)
        self.seed = check_int(seed, "seed", 0, U32)
        self.stream = check_int(stream, "stream", 0, U32)
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable, got {type(transform).__name__}")
        if target_transform is not None and not callable(target_transform):
            raise ValueError(f"target_transform must be callable, got {type(target_transform).__name__}")
        if not isinstance(with_index, bool):
            raise ValueError(f"with_index must be a bool, got {with_index!r}")
        self.generator = generator
        self.policy = policy
        self.transform = transform
        self.target_transform = target_transform
        self.with_index = with_index
        self._epoch = SharedEpoch()

    def __len__(self) -> int:
        return self.length

    @property
    def epoch(self) -> int:
        """The epoch whose items ``ds[i]`` returns (the counter step of their draws)."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Items of epoch e use counter step e: fresh latents and augmentations every epoch
        (continuous sampling); without calls every epoch sees the same items."""
        self._epoch.set(check_int(epoch, "epoch", 0, U32))

    def __getitem__(self, index: int) -> tuple:
        return self._make([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple]:
        """Items ``indices`` with one batched generator forward (used by DataLoader); a subclass's
        own ``__getitem__`` is honoured."""
        if type(self).__getitem__ is not GeneratedViews.__getitem__:
            return [self[i] for i in indices]
        return self._make(indices)

    def _make(self, indices: Sequence[int]) -> list[tuple]:
        idx = [_check_index(i, self.length, "GeneratedViews") for i in indices]
        if not idx:
            return []
        check_eval_mode(self.generator, "GeneratedViews")
        ids = torch.tensor(idx, dtype=torch.int64)
        epoch = self.epoch
        # The counter's step is the epoch and its sample id the dataset index.
        counters = dict(seed=self.seed, step=epoch, stream=self.stream, sample_ids=ids)
        if self._anchor_source is None:
            made = decode_views(self.generator, self.policy, len(idx), self.num_views, **counters)
            images, targets = made.images, (made.classes.tolist() if made.classes is not None else [-1] * len(idx))
        else:
            images, targets = self._real(ids, counters)
        if isinstance(self.transform, ViewAugment):
            with torch.no_grad():
                images = self.transform(images, self.seed, epoch, self.stream, sample_ids=ids)
        per_view = None if isinstance(self.transform, ViewAugment) else self.transform
        items = _items(images, targets, per_view, self.target_transform)
        return [(i, *item) for i, item in zip(idx, items)] if self.with_index else items

    def _real(self, ids: torch.Tensor, counters: dict) -> tuple[torch.Tensor, list[int]]:
        """The views of real images ``ids`` (inverted anchors) and their labels."""
        real, labels = self._anchor_source.read(ids)
        device = generator_device(self.generator)
        real = real.to(device)
        with torch.no_grad():
            latents = (self.generator.invert(real, labels.to(device)) if getattr(self.generator, "num_classes", None)
                       else self.generator.invert(real))
        # real_view: the real image itself is view 0 of every item, so view 0 is not decoded at all
        # (unless it is the only view)
        skip = self.real_view and self.num_views > 1
        made = decode_views(self.generator, self.policy, len(ids), self.num_views, anchors=dict(latents),
                            anchor_classes=labels, views=range(1, self.num_views) if skip else None, **counters)
        images = torch.cat([real.to(made.images.dtype)[None], made.images]) if skip else made.images
        if self.real_view and not skip:
            images[0] = real
        return images, labels.tolist()


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
        self.images, self.augment = images, augment
        self.num_views = check_int(num_views, "num_views", 1, 256)
        self.seed = check_int(seed, "seed", 0, U32)
        self.stream = check_int(stream, "stream", 0, U32)
        self.target_transform = target_transform
        self._epoch = SharedEpoch()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def epoch(self) -> int:
        """The epoch whose augmentations ``ds[i]`` draws (the counter step)."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Epoch e draws its augmentations with counter step e (fresh views every epoch); reaches
        persistent DataLoader workers too."""
        self._epoch.set(check_int(epoch, "epoch", 0, U32))

    def __getitem__(self, index: int) -> tuple[tuple[Any, ...], Any]:
        return self._make([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple]:
        """Items ``indices``, augmented as one batch (used by DataLoader); a subclass's own
        ``__getitem__`` is honoured."""
        if type(self).__getitem__ is not AugmentedViews.__getitem__:
            return [self[i] for i in indices]
        return self._make(indices)

    def _make(self, indices: Sequence[int]) -> list[tuple[tuple[Any, ...], Any]]:
        idx = [_check_index(i, len(self), "AugmentedViews") for i in indices]
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
