"""GeneratedViews: a torchvision-style map dataset of generated view pairs."""

from __future__ import annotations

import pytest
import torch
from helpers import TinyGenerator
from torch.utils.data import DataLoader, DistributedSampler

from mlvgm_data import Perturb, Resample, ViewPolicy
from mlvgm_data.augment import simclr
from mlvgm_data.datasets import AugmentedViews, GeneratedViews

POLICY = ViewPolicy({"top": Perturb(0.3), "map": Resample()})


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # Latents and augmentation parameters are bit-identical whatever the batch; the generator's
    # batched matmuls may round differently for different batch sizes.
    return torch.allclose(a, b, rtol=0, atol=1e-5)


def make(**kw) -> GeneratedViews:
    args = dict(generator=TinyGenerator(), policy=POLICY, length=40, seed=3)
    args.update(kw)
    return GeneratedViews(**args)


def test_items_are_deterministic_and_independent_of_batching() -> None:
    ds = make()
    (v0, v1), target = ds[5]
    assert v0.shape == (3, 16, 16) and target == -1
    assert not torch.equal(v0, v1)
    assert torch.equal(make()[5][0][0], v0)
    batch = ds.__getitems__([9, 5, 0])
    assert close(batch[1][0][0], v0) and close(batch[1][0][1], v1)
    assert not torch.equal(ds[6][0][0], v0)
    assert not torch.equal(make(seed=4)[5][0][0], v0)
    assert len(ds) == 40


def test_dataloader_with_workers_matches_direct_indexing() -> None:
    ds = make(transform=simclr(12))
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    seen = 0
    for (x0, x1), targets in loader:
        assert x0.shape == (8, 3, 12, 12) and targets.shape == (8,)
        seen += len(x0)
    assert seen == 40
    ordered = DataLoader(ds, batch_size=8, num_workers=2)
    for k, ((x0, x1), _) in enumerate(ordered):
        for j in range(8):
            (a, b), _ = ds[8 * k + j]
            assert close(x0[j], a) and close(x1[j], b)


def test_distributed_sampler_shards_the_dataset() -> None:
    ds = make()
    shards = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=1)
        idx = list(sampler)
        loader = DataLoader(ds, batch_size=5, sampler=sampler)
        got = torch.cat([x0 for (x0, _), _ in loader])
        want = torch.stack([ds[i][0][0] for i in idx])
        assert close(got, want)
        shards.append(set(idx))
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(40))


def test_per_view_callable_transform_and_target_transform() -> None:
    ds = make(transform=lambda x: x.flip(-1), target_transform=lambda t: t + 10)
    plain = make()
    (v0, v1), target = ds[2]
    assert torch.equal(v0, plain[2][0][0].flip(-1))
    assert target == 9


def test_class_conditional_targets_and_more_views() -> None:
    ds = make(generator=TinyGenerator(num_classes=4), num_views=3, length=200)
    targets = [ds[i][1] for i in range(0, 200, 7)]
    assert set(targets) <= {0, 1, 2, 3} and len(set(targets)) > 1
    views, _ = ds[0]
    assert len(views) == 3


def test_torchvision_v2_transforms_work() -> None:
    v2 = pytest.importorskip("torchvision.transforms.v2")
    ds = make(transform=v2.Compose([v2.RandomHorizontalFlip(), v2.Resize(8)]))
    (v0, v1), _ = ds[0]
    assert v0.shape == (3, 8, 8)


def test_index_errors_and_bad_input() -> None:
    ds = make()
    with pytest.raises(IndexError, match="out of range"):
        ds[40]
    with pytest.raises(IndexError, match="out of range"):
        ds[-1]
    for kwargs, match in [(dict(length=0), "length"), (dict(num_views=0), "num_views"), (dict(seed=-2), "seed"),
                          (dict(transform=3), "transform"), (dict(target_transform="x"), "target_transform"),
                          (dict(policy=ViewPolicy({"zz": Resample()})), "unknown groups"),
                          (dict(generator=torch.nn.ReLU()), "latent_spec")]:
        with pytest.raises(ValueError, match=match):
            make(**kwargs)


def test_set_epoch_gives_fresh_items() -> None:
    ds = make()
    first = ds[3][0][0]
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0][0], first)
    ds.set_epoch(0)
    assert torch.equal(ds[3][0][0], first)
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)


class Images(torch.utils.data.Dataset):
    def __init__(self, n: int, labelled: bool = True) -> None:
        self.x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return (self.x[i], i % 3) if self.labelled else self.x[i]


def test_augmented_views_of_real_images() -> None:
    ds = AugmentedViews(Images(20), simclr(12))
    (v0, v1), target = ds[4]
    assert v0.shape == (3, 12, 12) and target == 1
    assert not torch.equal(v0, v1)
    # Counter-based augmentation: the same item whatever batch it is in, new views each epoch.
    batch = ds.__getitems__([7, 4])
    assert torch.equal(batch[1][0][0], v0)
    ds.set_epoch(2)
    assert not torch.equal(ds[4][0][0], v0)
    loader = DataLoader(AugmentedViews(Images(20, labelled=False), simclr(12)), batch_size=5, num_workers=2)
    (x0, x1), targets = next(iter(loader))
    assert x0.shape == (5, 3, 12, 12) and targets.tolist() == [-1] * 5


def test_augmented_views_with_a_per_view_callable() -> None:
    def inplace_flip(x: torch.Tensor) -> torch.Tensor:
        x.copy_(x.flip(-1))
        return x

    images = Images(4)
    (v0, v1), _ = AugmentedViews(images, inplace_flip)[1]
    assert torch.equal(v0, images.x[1].flip(-1)) and torch.equal(v1, v0)
    assert not torch.equal(images.x[1], v0)  # the source image was not modified


def test_augmented_views_bad_input() -> None:
    with pytest.raises(ValueError, match="augment"):
        AugmentedViews(Images(3), augment=3)
    with pytest.raises(ValueError, match="num_views"):
        AugmentedViews(Images(3), simclr(8), num_views=0)
    with pytest.raises(IndexError, match="out of range"):
        AugmentedViews(Images(3), simclr(8))[3]
