"""The trainers' images: sources addressed by an integer index, the batch of each step (a pure
function of data, seed and step, so a resumed run sees exactly the batches it would have seen),
real images for evaluation, and the class labels a run conditions on."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm

from ...data.fashion_mnist import SIZE as FASHION_SIZE
from ...data.fashion_mnist import FashionMNIST
from ...data.folder import FolderImages
from ...data.shapes import SHAPE_NAMES, Shapes

DATA_CHOICES = "'shapes', 'fashion-mnist' or a folder of images"


class ImageSource:
    """Training images addressed by an integer index: ``batch(indices) -> [N, C, R, R]`` in [0, 1].

    ``length`` is ``None`` for an unbounded procedural source; ``num_classes`` is set for a
    labelled one, which also gives ``labelled_batch(indices) -> (images, classes)``;
    ``conditional_default``: whether a trainer conditions on those labels unless told otherwise.
    ``channels`` is 3 (RGB) or 1 (grey).
    """

    name: str
    resolution: int
    seed: int
    length: int | None
    num_classes: int | None = None
    conditional_default: bool = False
    channels: int = 3

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def labelled_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError(f"{self.name} has no class labels (class-conditional training needs shapes or fashion-mnist)")


class ShapesSource(ImageSource):
    """Fresh procedural Shapes for every step (item ``k`` of ``Shapes(2**32, R, seed)``)."""

    def __init__(self, resolution: int, seed: int) -> None:
        self.name, self.resolution, self.seed, self.length = "shapes", resolution, seed, None
        self.dataset = Shapes(1 << 32, resolution, seed)
        self.num_classes = len(SHAPE_NAMES)
        self.conditional_default = True

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.dataset.render(indices % (1 << 32))[0]

    def labelled_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, classes, _ = self.dataset.render(indices % (1 << 32))
        return images, classes


class FolderSource(ImageSource):
    """A folder of images, decoded once into memory (uint8 at the model resolution) when it fits
    in ``cache_bytes``, else read from disk per batch."""

    def __init__(self, root: str | Path, resolution: int, seed: int, cache_bytes: int = 2 << 30) -> None:
        self.dataset = FolderImages(root, resolution)
        self.name, self.resolution, self.seed = str(root), resolution, seed
        self.length = len(self.dataset)
        self.cache: torch.Tensor | None = None
        if self.length * 3 * resolution * resolution <= cache_bytes:
            self.cache = torch.stack(
                [self.dataset.load_uint8(i) for i in tqdm(range(self.length), desc="load images", unit="img")]
            )

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[indices].float().div_(255.0)
        return self.dataset.load(indices)


class FashionSource(ImageSource):
    """The Fashion-MNIST train split (60,000 grey images, labelled; see
    :class:`~mlvgm_data.data.FashionMNIST`), at 28² or zero-padded to ``resolution`` (32 for the
    generators, whose stages double from 4²). Unconditional by default: its labels are used only
    when a trainer is asked to (``--conditional``)."""

    def __init__(self, resolution: int, seed: int, channels: int = 1, train: bool = True) -> None:
        if resolution not in (FASHION_SIZE, 32):
            raise ValueError(f"fashion-mnist images are {FASHION_SIZE}²: use --resolution 32 (zero-padded) "
                             f"or {FASHION_SIZE}, not {resolution}")
        self.dataset = FashionMNIST(train=train, pad_to=None if resolution == FASHION_SIZE else resolution)
        self.name, self.resolution, self.seed = "fashion-mnist", resolution, seed
        self.length = len(self.dataset)
        self.num_classes = len(self.dataset.classes)
        self.channels = channels

    def labelled_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.dataset.batch(indices)
        return (images.expand(-1, self.channels, -1, -1).contiguous() if self.channels != 1 else images), labels

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.labelled_batch(indices)[0]


def image_source(data: str, resolution: int, seed: int, channels: int | None = 3) -> ImageSource:
    """``"shapes"`` → procedural Shapes; ``"fashion-mnist"`` → the Fashion-MNIST train split;
    anything else is a path to a folder of images. ``channels``: 3 gives RGB batches (grey data
    repeated to three channels), ``None`` the data's own channels (1 for Fashion-MNIST)."""
    if channels not in (None, 3):
        raise ValueError(f"channels must be 3 or None (the data's own), got {channels!r}")
    if data == "shapes":
        return ShapesSource(resolution, seed)
    if data == "fashion-mnist":
        return FashionSource(resolution, seed, channels=channels or 1)
    path = Path(data)
    if not path.is_dir():
        raise ValueError(f"--data must be {DATA_CHOICES}; {data!r} is none of them")
    return FolderSource(path, resolution, seed)


def real_images(data: str, resolution: int, train: bool = False, n: int | None = None,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Real images of ``data`` for evaluation → ``(images [N, C, R, R], labels [N] or None)``:
    Fashion-MNIST's test split (``train=False``) or train split, the first ``n``; held-out
    procedural Shapes (seed ``seed + 1``, never a training seed of the same run); or the first
    ``n`` images of a folder (no labels)."""
    if data == "shapes":
        count = 2000 if n is None else n
        images, classes, _ = Shapes(count, resolution, (seed + 1) % (1 << 32)).render(range(count))
        return images, classes
    if data == "fashion-mnist":
        ds = FashionSource(resolution, seed, train=train).dataset
        count = len(ds) if n is None else min(n, len(ds))
        return ds.batch(range(count))
    source = image_source(data, resolution, seed)
    count = source.length if n is None else min(n, source.length or n)
    return source.batch(torch.arange(count)), None


def add_conditional_argument(parser: Any) -> None:
    """Declares ``--conditional`` / ``--no-conditional`` (the same option for every trainer)."""
    parser.add_argument("--conditional", action=argparse.BooleanOptionalAction, default=None,
                        help="class-conditional model (on the data's classes); default: on for --data shapes, "
                             "off for fashion-mnist (an unconditional model, labels unused) and for an image "
                             "folder (which has no labels)")


def class_count(opts: argparse.Namespace, source: ImageSource) -> int:
    """The number of classes the model conditions on: ``source.num_classes`` when ``--conditional``
    is on (or unset and ``source.conditional_default``), else 0; a ValueError for ``--conditional``
    on unlabelled data."""
    conditional = source.conditional_default if opts.conditional is None else opts.conditional
    if conditional and not source.num_classes:
        raise ValueError(f"--conditional needs labelled data (shapes, fashion-mnist); "
                         f"{opts.data!r} has no class labels")
    return int(source.num_classes) if conditional else 0


def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (1 << 63))
    return torch.randperm(n, generator=g)


def step_indices(source: ImageSource, batch_size: int, step: int) -> torch.Tensor:
    """The item indices of ``step``'s batch: consecutive items of an unbounded source, or
    consecutive entries of a fresh permutation per epoch for a finite one."""
    k = step * batch_size + torch.arange(batch_size, dtype=torch.int64)
    if source.length is None:
        return k
    epochs, pos = k // source.length, k % source.length
    out = torch.empty_like(k)
    for e in epochs.unique().tolist():
        sel = epochs == e
        out[sel] = _permutation(source.length, source.seed, e)[pos[sel]]
    return out


def batch_at(source: ImageSource, batch_size: int, step: int,
             labelled: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The ``[B, C, R, R]`` batch of ``step`` (a pure function of the step); ``labelled``: the
    ``(images, classes)`` pair from ``source.labelled_batch``."""
    fetch = source.labelled_batch if labelled else source.batch
    return fetch(step_indices(source, batch_size, step))


def batches(source: ImageSource, batch_size: int, start_step: int = 0,
            labelled: bool = False) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless :func:`batch_at` batches from ``start_step`` on."""
    step = start_step
    while True:
        yield batch_at(source, batch_size, step, labelled)
        step += 1
