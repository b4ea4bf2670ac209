"""What the demo's runs train on: the real images (:class:`DemoData`) and the sources of view
batches that are not a pipe (:class:`RealViews`, :class:`FixedSetViews`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ... import ops
from ...augment import ViewAugment, fashion
from ...generators.base import decode_views
from ...policy import ViewPolicy
from ...producers import ThreadProducer
from ...step import ViewBatch
from .config import DemoConfig


@dataclass
class DemoData:
    """The real images of one dataset: SSL training images, probe splits, the augmentation."""

    name: str
    train_images: torch.Tensor  # [N, C, 32, 32] in [0, 1]
    train_labels: torch.Tensor  # [N]: what a class-conditional generator inverts with (SSL never sees them)
    probe_train: tuple[torch.Tensor, torch.Tensor]  # images, labels
    probe_test: tuple[torch.Tensor, torch.Tensor]
    augment: ViewAugment
    num_classes: int

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])


def load_data(cfg: DemoConfig, size: int) -> DemoData:
    """Fashion-MNIST (train split for SSL and the probe's training set, test split for the probe's
    test), padded to the generator's size; or procedural Shapes (disjoint index ranges)."""
    if cfg.data == "fashion-mnist":
        from ...data import fashion_mnist_tensors

        train_x, train_y = fashion_mnist_tensors(True, pad_to=size)
        test_x, test_y = fashion_mnist_tensors(False, pad_to=size)
        n_ssl = cfg.real_train or len(train_x)
        ptr, pte = cfg.probe_train or len(train_x), cfg.probe_test or len(test_x)
        return DemoData(cfg.data, train_x[:n_ssl], train_y[:n_ssl], (train_x[:ptr], train_y[:ptr]),
                        (test_x[:pte], test_y[:pte]), fashion(size), 10)
    from ...augment import simclr
    from ...data.shapes import Shapes, num_classes

    n_ssl = cfg.real_train or 20_000
    ptr, pte = cfg.probe_train or 5_000, cfg.probe_test or 2_000
    shapes = Shapes(n_ssl + ptr + pte, resolution=size, seed=0)
    images, labels, _ = shapes.render(torch.arange(n_ssl + ptr + pte))
    return DemoData(cfg.data, images[:n_ssl], labels[:n_ssl], (images[n_ssl:n_ssl + ptr], labels[n_ssl:n_ssl + ptr]),
                    (images[n_ssl + ptr:], labels[n_ssl + ptr:]), simclr(size), num_classes)


def epoch_order(n: int, seed: int, epoch: int, stream: int) -> torch.Tensor:
    """A permutation of ``range(n)`` from the counter streams (the same on every machine)."""
    keys = ops.uniform(n, 1, seed, epoch, stream=stream, domain=ops.DOMAIN_DATA)[:, 0]
    return torch.argsort(keys, stable=True)


class ProducedBatches:
    """Batches made ahead by the pipe's own thread producer (so every source pays the same)."""

    def __init__(self, steps: int, prefetch: int) -> None:
        self.steps, self.prefetch = steps, prefetch

    def work(self, step: int) -> ViewBatch:
        raise NotImplementedError

    def __iter__(self) -> Iterator[ViewBatch]:
        producer = ThreadProducer(self.work, iter(range(self.steps)), self.prefetch)
        try:
            while True:
                try:
                    yield producer.get()
                except StopIteration:
                    return
        finally:
            producer.close()


class RealViews(ProducedBatches):
    """Augmented views of the real training images, reshuffled every epoch."""

    STREAM = 1

    def __init__(self, images: torch.Tensor, augment: ViewAugment, batch_size: int, seed: int, steps: int,
                 prefetch: int) -> None:
        super().__init__(steps, prefetch)
        self.images, self.augment, self.batch_size, self.seed = images, augment, batch_size, seed
        self.per_epoch = len(images) // batch_size

    def work(self, step: int) -> ViewBatch:
        epoch, k = divmod(step, self.per_epoch)
        order = epoch_order(len(self.images), self.seed, epoch, self.STREAM)
        idx = order[k * self.batch_size:(k + 1) * self.batch_size]
        views = self.augment(self.images[idx].unsqueeze(0).expand(2, -1, -1, -1, -1), self.seed, step,
                             stream=self.STREAM, sample_ids=idx)
        return ViewBatch(tuple(views.unbind(0)), torch.full((len(idx),), -1))


class FixedSetViews(ProducedBatches):
    """An offline generated dataset: ``size`` fixed anchors with fixed views (the latents of item
    i are the same every time), reshuffled every epoch; only the pixel augmentation is fresh. With
    ``exported`` the view pairs are an export's (``mlvgm-data export``), read, not decoded."""

    STREAM = 2

    def __init__(self, generator: torch.nn.Module, policy: ViewPolicy, size: int, augment: ViewAugment,
                 batch_size: int, seed: int, steps: int, prefetch: int, exported: torch.Tensor | None = None) -> None:
        super().__init__(steps, prefetch)
        self.generator, self.policy, self.size, self.augment = generator, policy, size, augment
        self.batch_size, self.seed = batch_size, seed
        self.exported = exported  # uint8 [N, 2, C, H, W]: the view pairs of an export, read instead of decoded
        self.per_epoch = size // batch_size

    def work(self, step: int) -> ViewBatch:
        epoch, k = divmod(step, self.per_epoch)
        idx = epoch_order(self.size, self.seed, epoch, self.STREAM)[k * self.batch_size:(k + 1) * self.batch_size]
        if self.exported is not None:
            images = self.exported[idx].transpose(0, 1).float().div_(255.0)
        else:  # counter step 0 for every draw: item i is one fixed anchor and its fixed views
            images = decode_views(self.generator, self.policy, len(idx), 2, seed=self.seed, step=0,
                                  stream=self.STREAM, sample_ids=idx).images
        views = self.augment(images, self.seed, step, stream=self.STREAM, sample_ids=idx)
        return ViewBatch(tuple(views.unbind(0)), torch.full((len(idx),), -1))
