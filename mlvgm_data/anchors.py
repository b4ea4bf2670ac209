"""Real anchors: a map-style dataset of images walked as a stream of per-epoch permutations.

Position ``p`` of the stream is image ``π_e(p mod N)`` of data epoch ``e = p // N``, where
``π_e`` is a permutation of ``range(N)`` keyed by ``(seed, stream, e)``: every image appears
exactly once in each data epoch. The permutation is a balanced Feistel network on the smallest
even number of bits that covers ``N``, walked in cycles until it lands in ``range(N)``, so any
position is found in O(1) (no pass over the dataset when an epoch starts) and with integer
arithmetic only (the same indices on every machine). The pipe's step ``s`` of rank ``r`` takes
positions ``s·G + r·n … s·G + r·n + n − 1`` (``n`` real anchors per rank and step, ``G = n·world``):
ranks and DataLoader workers (which split steps) never read the same position, and a batch may
straddle two data epochs (no image is dropped or padded).

:class:`AnchorSource` reads such images from a dataset whose items are an image tensor
``[C, H, W]`` in [0, 1], or a tuple whose first field is one (and whose second, if it is an
integer, is the label).
"""

from __future__ import annotations

import hashlib
import numbers
from typing import Any, Sequence

import torch
from torch.utils.data import TensorDataset

from ._checks import U32, check_int, check_number
from .policy import ViewPolicy

_ROUNDS = 4
_M32 = 0xFFFFFFFF
_MAX_ITEMS = 1 << 40


def _mix(x: torch.Tensor, key: int) -> torch.Tensor:
    """A 32-bit integer hash of ``x ^ key`` (int64 arithmetic, no overflow: factors < 2^27)."""
    h = (x ^ key) & _M32
    h = (h * 0x45D9F3B) & _M32
    h = h ^ (h >> 16)
    h = (h * 0x45D9F3B) & _M32
    return h ^ (h >> 16)


def _round_keys(seed: int, stream: int, epoch: int) -> list[int]:
    digest = hashlib.sha256(f"mlvgm-data/anchors/{seed}/{stream}/{epoch}".encode()).digest()
    return [int.from_bytes(digest[4 * i:4 * i + 4], "little") for i in range(_ROUNDS)]


def permute(offsets: torch.Tensor, n: int, seed: int, stream: int, epoch: int) -> torch.Tensor:
    """``π_epoch(offsets)``: a permutation of ``range(n)`` keyed by ``(seed, stream, epoch)``,
    applied to int64 ``offsets`` in ``[0, n)``."""
    n = check_int(n, "n", 1, _MAX_ITEMS + 1)
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    keys = _round_keys(seed, stream, epoch)

    def feistel(x: torch.Tensor) -> torch.Tensor:
        left, right = x >> half, x & mask
        for key in keys:
            left, right = right, left ^ (_mix(right, key) & mask)
        return (left << half) | right

    out = feistel(offsets.to(torch.int64))
    outside = out >= n
    while bool(outside.any()):  # cycle walking: a permutation of [0, 4^half) returns to [0, n)
        out[outside] = feistel(out[outside])
        outside = out >= n
    return out


def stream_indices(first: int, count: int, n: int, seed: int, stream: int) -> torch.Tensor:
    """The dataset indices at stream positions ``first … first + count − 1``."""
    positions = torch.arange(first, first + count, dtype=torch.int64)
    epochs = positions // n
    out = torch.empty_like(positions)
    for epoch in epochs.unique().tolist():
        at = epochs == epoch
        out[at] = permute(positions[at] - epoch * n, n, seed, stream, int(epoch))
    return out


class AnchorSource:
    """The images of a map-style dataset, checked against the generator's ``image_shape``."""

    FINGERPRINT_ITEMS = 4

    def __init__(self, dataset: Any, image_shape: Sequence[int] | None, who: str = "anchors") -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"{who} must be a map-style dataset (with __len__ and __getitem__), got "
                            f"{type(dataset).__name__}")
        self.dataset, self.who = dataset, who
        self.length = len(dataset)
        if self.length == 0:
            raise ValueError(f"{who} is an empty dataset")
        if self.length > _MAX_ITEMS:
            raise ValueError(f"{who} has {self.length} items, more than the {_MAX_ITEMS} the stream can index")
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        images, labels = self.read(torch.arange(min(self.FINGERPRINT_ITEMS, self.length)))
        h = hashlib.sha256(f"{self.length}".encode())
        h.update(images.contiguous().numpy().tobytes())
        h.update(labels.numpy().tobytes())
        self.fingerprint = h.hexdigest()[:32]

    def describe(self) -> dict[str, Any]:
        """What a resume state records of the dataset: its length and a digest of its first items."""
        return {"length": self.length, "fingerprint": self.fingerprint}

    def check_batch(self, per_step: int) -> None:
        """Refuses a dataset shorter than the real anchors of one global step."""
        if self.length < per_step:
            raise ValueError(f"{self.who} has {self.length} images, fewer than the {per_step} real anchors of one "
                             "step over all ranks: a step would read an image twice")

    def read(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [n, C, H, W] float32, labels [n] int64, −1 where an item has none)``."""
        idx = [int(i) for i in indices]
        if isinstance(self.dataset, TensorDataset) and self.dataset.tensors[0].dim() == 4:
            images, labels = self._tensor_rows(idx)  # one gather instead of n items
        else:
            getitems = getattr(self.dataset, "__getitems__", None)
            items = getitems(idx) if callable(getitems) else [self.dataset[i] for i in idx]
            parsed = [self._item(item, i) for item, i in zip(items, idx)]
            images = torch.stack([p[0] for p in parsed])
            labels = torch.tensor([p[1] for p in parsed], dtype=torch.int64)
        finite = torch.isfinite(images.flatten(1)).all(1)
        if not bool(finite.all()):
            raise ValueError(f"{self.who}[{idx[int((~finite).nonzero()[0])]}] holds NaN or infinite values")
        return images, labels

    def _tensor_rows(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        tensors = self.dataset.tensors
        rows = torch.tensor(idx, dtype=torch.int64)
        images = self._image(tensors[0][rows], idx[0], batch=True)
        labels = torch.full((len(idx),), -1, dtype=torch.int64)
        if len(tensors) > 1 and tensors[1].dim() == 1 and not tensors[1].is_floating_point():
            labels = tensors[1][rows].to(torch.int64)
        return images, labels

    def _item(self, item: Any, index: int) -> tuple[torch.Tensor, int]:
        label = -1
        if isinstance(item, (tuple, list)):
            if not item:
                raise ValueError(f"{self.who}[{index}] is an empty {type(item).__name__}")
            has_label = len(item) > 1 and isinstance(item[1], (numbers.Integral, torch.Tensor))
            if has_label and not isinstance(item[1], bool):
                if isinstance(item[1], torch.Tensor) and (item[1].numel() != 1 or item[1].is_floating_point()):
                    raise ValueError(f"{self.who}[{index}]'s label must be an integer, got a tensor {item[1]!r}")
                label = int(item[1])
            item = item[0]
        return self._image(item, index), label

    def _image(self, image: Any, index: int, batch: bool = False) -> torch.Tensor:
        """``image`` checked (type, dtype, shape) as a float32 CPU tensor; ``batch``: rows of images."""
        want = "" if self.image_shape is None else f" {list(self.image_shape)}"
        fix = (f"a transform that turns each image into a float tensor{want} in [0, 1] (e.g. "
               "mlvgm_data.data.FashionMNIST(pad_to=32) for builtin:fashion)")
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"{self.who}[{index}] is a {type(image).__name__}, not an image tensor: give the dataset "
                             f"{fix}")
        if not image.is_floating_point():
            raise ValueError(f"{self.who}[{index}] is a {image.dtype} tensor: give the dataset {fix}")
        shape = tuple(image.shape[1:] if batch else image.shape)
        if self.image_shape is not None and shape != self.image_shape:
            raise ValueError(f"{self.who}[{index}] has shape {list(shape)} but the generator makes "
                             f"{list(self.image_shape)}: give the dataset {fix}")
        return image.detach().float().cpu()


def check_prior_fraction(value: object, batch_size: int) -> tuple[float, int]:
    """``prior_fraction`` and the prior anchors per rank and step it gives."""
    fraction = check_number(value, "prior_fraction", 0.0, 1.0)
    return fraction, min(batch_size, round(fraction * batch_size))


def positions(step: int, rank: int, world_size: int, per_rank: int) -> tuple[int, int]:
    """``(first position, count)`` of rank ``rank``'s real anchors at ``step``."""
    first = (step * world_size + rank) * per_rank
    if first + per_rank > U32 * per_rank:  # far beyond any run; keeps the ids exact in int64
        raise ValueError("the anchor stream is past its last position")
    return first, per_rank


def check_real_anchors(generator: Any, policy: ViewPolicy, anchors: Any, real_view: object,
                       prior_fraction: object = 0.0) -> tuple[Any, bool, float, AnchorSource | None]:
    """Checks the real-anchor arguments of a pipe or dataset: ``(anchors, real_view, prior_fraction,
    source)`` (``source`` is ``None`` without anchors)."""
    if not isinstance(real_view, bool):
        raise TypeError(f"real_view must be True or False, got {real_view!r}")
    fraction = check_prior_fraction(prior_fraction, 1)[0]
    if anchors is None:
        if real_view or fraction:
            raise ValueError("real_view and prior_fraction need real anchors: pass anchors=dataset")
        return None, False, 0.0, None
    if not callable(getattr(generator, "invert", None)) or not getattr(generator, "invertible", True):
        raise ValueError(f"{type(generator).__name__} has no invert(images): real anchors need a generator that maps "
                         "images to its latents (a built-in HVAE or ML-VAE, or an adapter given encoder=)")
    if real_view and (not policy.include_anchor or policy.keeps_everything()):
        raise ValueError("real_view=True pairs the real image with a generated view: the policy must change at least "
                         "one group and keep the anchor as view 0 (include_anchor=True)")
    source = AnchorSource(anchors, getattr(generator, "image_shape", None))
    if getattr(generator, "num_classes", None):
        labels = source.read(torch.arange(min(AnchorSource.FINGERPRINT_ITEMS, source.length)))[1]
        if bool((labels < 0).any()):
            raise ValueError("a class-conditional generator inverts images with their class: anchors must be a "
                             "dataset of (image, label)")
    return anchors, real_view, fraction, source
