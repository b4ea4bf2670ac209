"""Real anchors: a dataset of images inverted by the generator, the policy applied around them, in
the pipe (every image once per data epoch over ranks and workers, exact resume) and the dataset."""

from __future__ import annotations

import pytest
import torch
from helpers import InvertibleGenerator, TinyGenerator, labelled_images
from torch.utils.data import DataLoader, TensorDataset

from mlvgm_data import GeneratedViews, Keep, Perturb, Resample, ViewPairPipe, ViewPolicy
from mlvgm_data.anchors import permute, stream_indices

POLICY = ViewPolicy({"coarse": Keep(), "fine": Perturb(0.5)})


def pipe(data=None, **kw) -> ViewPairPipe:
    args = dict(generator=InvertibleGenerator(), policy=POLICY, batch_size=4, seed=3,
                anchors=data or labelled_images(40), prefetch=0)
    args.update(kw)
    return ViewPairPipe(**args)


# --- the permutation --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 17, 64, 1000, 60_001])
def test_each_epoch_is_a_permutation_that_changes_with_the_epoch(n: int) -> None:
    first, second = permute(torch.arange(n), n, 0, 0, 0), permute(torch.arange(n), n, 0, 0, 1)
    assert torch.equal(first.sort().values, torch.arange(n)) and torch.equal(second.sort().values, torch.arange(n))
    if n >= 17:
        assert not torch.equal(first, second)
        assert not torch.equal(first, permute(torch.arange(n), n, 1, 0, 0))  # another seed
        assert not torch.equal(first, permute(torch.arange(n), n, 0, 1, 0))  # another stream


def test_a_window_of_the_stream_straddles_two_epochs_without_losing_an_image() -> None:
    n = 10
    whole = stream_indices(0, 3 * n, n, 5, 0)
    for e in range(3):
        assert sorted(whole[e * n:(e + 1) * n].tolist()) == list(range(n))
    assert torch.equal(stream_indices(7, 6, n, 5, 0), whole[7:13])  # any window is the same stream


# --- the pipe -----------------------------------------------------------------------------------

def test_view_zero_is_the_reconstruction_and_the_target_the_real_label() -> None:
    data = labelled_images(40)
    batch = next(iter(pipe(data, augment=None)))
    images = torch.stack([data[int(t)][0] for t in batch.target])
    assert torch.allclose(batch.views[0], images, atol=1e-5)  # decode(invert(x)) = x for this generator
    assert not torch.allclose(batch.views[1], images, atol=1e-2)  # Perturb(0.5) on "fine" changes it


def test_real_view_makes_view_zero_the_real_image_itself() -> None:
    data = labelled_images(40)
    batch = next(iter(pipe(data, augment=None, real_view=True)))
    assert torch.equal(batch.views[0], torch.stack([data[int(t)][0] for t in batch.target]))


class CountingGenerator(InvertibleGenerator):
    """Records how many images each decode call makes."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded: list[int] = []

    def _decode(self, latents, classes):
        self.decoded.append(next(iter(latents.values())).shape[0])
        return super()._decode(latents, classes)


def test_real_view_decodes_only_the_views_it_keeps() -> None:
    # The real image is view 0: decoding it too was a third of a real_view step at two views.
    data = labelled_images(40)
    counted = CountingGenerator()
    batch = next(iter(pipe(data, generator=counted, augment=None, real_view=True, num_views=3)))
    plain = next(iter(pipe(data, augment=None, num_views=3)))
    assert counted.decoded == [2 * 4]  # views 1 and 2 of the 4 samples, one forward
    assert torch.equal(batch.views[0], torch.stack([data[int(t)][0] for t in batch.target]))
    for v in (1, 2):  # the same views as without real_view (the same counters)
        torch.testing.assert_close(batch.views[v], plain.views[v], rtol=0, atol=1e-6)
    mixed = CountingGenerator()  # half prior anchors: their view 0 is decoded, so every view is
    next(iter(pipe(data, generator=mixed, augment=None, real_view=True, prior_fraction=0.5)))
    assert mixed.decoded == [2 * 4]
    dataset = CountingGenerator()
    (v0, v1), target = GeneratedViews(dataset, POLICY, None, anchors=data, real_view=True)[3]
    assert dataset.decoded == [1] and torch.equal(v0, data[3][0]) and target == data[3][1]
    # one view: the real image alone, as before the decode was skipped
    single = next(iter(pipe(data, augment=None, real_view=True, num_views=1)))
    assert len(single.views) == 1
    assert torch.equal(single.views[0], torch.stack([data[int(t)][0] for t in single.target]))
    (only,), _ = GeneratedViews(InvertibleGenerator(), POLICY, None, num_views=1, anchors=data, real_view=True)[3]
    assert torch.equal(only, data[3][0])


def test_a_prior_fraction_mixes_prior_anchors_with_the_plain_pipes_numbers() -> None:
    mixed = next(iter(pipe(batch_size=8, prior_fraction=0.5, return_latents=True, augment=None)))
    plain = next(iter(ViewPairPipe(InvertibleGenerator(), POLICY, 8, seed=3, prefetch=0, return_latents=True)))
    assert (mixed.target[:4] >= 0).all() and (mixed.target[4:] == -1).all()
    for group in ("coarse", "fine"):  # the prior rows have the plain pipe's counters (sample ids 4…7)
        assert torch.equal(mixed.latents[group][:, 4:], plain.latents[group][:, 4:])
    assert torch.equal(mixed.views[1][4:], plain.views[1][4:])


def _targets(p: ViewPairPipe, steps: int, workers: int) -> list[list[int]]:
    loader = DataLoader(p, batch_size=None, num_workers=workers)
    return [b.target.tolist() for _, b in zip(range(steps), loader)]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_image_once_per_data_epoch_over_two_ranks_and_workers(workers: int) -> None:
    data = labelled_images(40)  # 2 ranks x 4 anchors = 8 per step: a data epoch is 5 steps
    ranks = [_targets(pipe(data, rank=r, world_size=2, steps=None), 15, workers) for r in range(2)]
    stream = [t for step in zip(*ranks) for per_rank in step for t in per_rank]  # step by step, rank 0 first
    assert len(stream) == 120
    epochs = [stream[i:i + 40] for i in range(0, 120, 40)]
    assert all(sorted(e) == list(range(40)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert ranks[0] == _targets(pipe(data, rank=0, world_size=2, steps=None), 15, 0)  # workers change nothing


def test_an_epoch_of_the_pipe_continues_the_anchor_stream() -> None:
    data = labelled_images(12)
    p = pipe(data, steps=2)  # pipe epochs of 2 steps (8 anchors), data epochs of 12
    seen = [t for _ in range(3) for b in p for t in b.target.tolist()]
    assert sorted(seen[:12]) == list(range(12))
    assert sorted(seen[12:]) == sorted(stream_indices(12, 12, 12, 3, 0).tolist())


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.views, b.views)) and torch.equal(a.target, b.target)


def test_exact_resume_in_o1_from_the_pipes_state() -> None:
    reference = [b for _, b in zip(range(7), pipe(steps=None))]
    first = pipe(steps=None)
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    resumed = pipe(steps=None)
    resumed.load_state_dict(state)
    tail = [b for _, b in zip(range(4), resumed)]
    assert all(_same(a, b) for a, b in zip(reference[3:], tail))


def test_exact_resume_with_a_stateful_dataloader_and_two_workers() -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    reference = list(StatefulDataLoader(pipe(steps=6), batch_size=None, num_workers=2))
    loader = StatefulDataLoader(pipe(steps=6), batch_size=None, num_workers=2)
    it = iter(loader)
    head = [next(it) for _ in range(3)]
    state = loader.state_dict()
    del it
    again = StatefulDataLoader(pipe(steps=6), batch_size=None, num_workers=2)
    again.load_state_dict(state)
    tail = list(again)
    assert len(head) + len(tail) == 6 and all(_same(a, b) for a, b in zip(head + tail, reference))


def test_a_state_over_another_dataset_is_refused() -> None:
    state = pipe(labelled_images(40)).state_dict()
    with pytest.raises(ValueError, match="other real anchors"):
        pipe(labelled_images(40, seed=1)).load_state_dict(state)
    with pytest.raises(ValueError, match="other real anchors"):
        pipe(labelled_images(41)).load_state_dict(state)
    with pytest.raises(ValueError, match="other real anchors"):
        pipe(labelled_images(40), real_view=True).load_state_dict(state)


def test_a_class_conditional_generator_inverts_with_the_real_labels() -> None:
    data = TensorDataset(labelled_images(20)[:][0], torch.arange(20) % 3)
    batch = next(iter(pipe(data, generator=InvertibleGenerator(num_classes=3), augment=None)))
    index = [int(t) for t in batch.target]
    assert all(0 <= c < 3 for c in index)


# --- the dataset ----------------------------------------------------------------------------------

def test_generated_views_over_real_anchors_item_i_is_image_i() -> None:
    data = labelled_images(12)
    ds = GeneratedViews(InvertibleGenerator(), POLICY, None, seed=1, anchors=data)
    assert len(ds) == 12
    (v0, v1), target = ds[5]
    assert target == 5 and torch.allclose(v0, data[5][0], atol=1e-5)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch[1].tolist() == [0, 1, 2, 3]
    assert torch.equal(batch[0][1][1], ds[1][0][1])  # a batched forward gives the item's own views
    real = GeneratedViews(InvertibleGenerator(), POLICY, None, anchors=data, real_view=True)
    assert torch.equal(real[3][0][0], data[3][0])


# --- the HVAE's inversion ---------------------------------------------------------------------------

def test_the_hvae_inverts_to_its_own_reconstruction() -> None:
    from mlvgm_data import load_generator
    from mlvgm_data.data import Shapes

    g = load_generator("builtin:shapes")  # class-conditional: inverted and decoded with the class
    x, y, _ = Shapes(6, 32, seed=7).render(range(6))
    with torch.no_grad():
        z = g.invert(x, y)
        assert torch.allclose(g.decode(z, y), g.reconstruct(x, y), atol=1e-5)
        drawn = g.invert(x, y, sample=True, generator=torch.Generator().manual_seed(0))
    assert set(z) == set(g.latent_spec.names) and not torch.equal(drawn["z1"], z["z1"])


# --- bad input --------------------------------------------------------------------------------------

class _Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _bad_images(value: float):
    data = labelled_images(16)[:][0].clone()
    data[9, 0, 0, 0] = value
    return TensorDataset(data, torch.arange(16))


BAD = [
    ("not a dataset", dict(anchors=42), TypeError, "map-style dataset"),
    ("empty", dict(anchors=TensorDataset(torch.zeros(0, 3, 4, 4))), ValueError, "empty dataset"),
    ("wrong shape", dict(anchors=labelled_images(8, shape=(1, 4, 4))), ValueError,
     r"shape \[1, 4, 4\] but the generator makes \[3, 4, 4\].*transform"),
    ("uint8 images", dict(anchors=_Items([(torch.zeros(3, 4, 4, dtype=torch.uint8), 0)] * 8)), ValueError,
     "torch.uint8 tensor.*transform"),
    ("not tensors", dict(anchors=_Items([("a picture", 0)] * 8)), ValueError, "is a str, not an image tensor"),
    ("prior_fraction > 1", dict(prior_fraction=1.5), ValueError, "prior_fraction"),
    ("prior_fraction < 0", dict(prior_fraction=-0.1), ValueError, "prior_fraction"),
    ("real_view keeping everything", dict(policy=ViewPolicy({}), real_view=True), ValueError, "real_view"),
    ("real_view without the anchor", dict(policy=ViewPolicy({"fine": Resample()}, include_anchor=False),
                                          real_view=True), ValueError, "include_anchor"),
    ("real_view not a bool", dict(real_view="yes"), TypeError, "real_view"),
    ("no invert", dict(generator=TinyGenerator(), policy=ViewPolicy({})), ValueError, "TinyGenerator has no invert"),
    ("unlabelled, conditional", dict(generator=InvertibleGenerator(num_classes=3),
                                     anchors=TensorDataset(labelled_images(8)[:][0])), ValueError, "(image, label)"),
]


@pytest.mark.parametrize("label, kw, error, match", BAD, ids=[b[0] for b in BAD])
def test_bad_anchors_are_refused_naming_them(label: str, kw: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        pipe(**kw)


def test_options_without_anchors_and_datasets_too_short_are_refused() -> None:
    with pytest.raises(ValueError, match="need real anchors"):
        ViewPairPipe(InvertibleGenerator(), POLICY, 4, real_view=True)
    with pytest.raises(ValueError, match="need real anchors"):
        ViewPairPipe(InvertibleGenerator(), POLICY, 4, prior_fraction=0.5)
    with pytest.raises(ValueError, match="fewer than the 8 real anchors of one step"):
        next(iter(pipe(labelled_images(6), rank=0, world_size=2)))
    with pytest.raises(ValueError, match="length"):
        GeneratedViews(InvertibleGenerator(), POLICY, 13, anchors=labelled_images(12))
    with pytest.raises(ValueError, match="length must be a positive int"):
        GeneratedViews(InvertibleGenerator(), POLICY, None)


def test_a_non_finite_image_fails_the_step_that_reads_it() -> None:
    with pytest.raises(ValueError, match=r"anchors\[9\] holds NaN"):
        for _ in pipe(_bad_images(float("nan")), steps=4):
            pass


# --- adapters invert through a user's encoder ----------------------------------------------------

def test_adapters_invert_through_the_users_encoder() -> None:
    from torch import nn

    from mlvgm_data.generators import BigGANAdapter, CallableGenerator, HierarchicalAdapter
    from mlvgm_data.latents import LatentGroup, LatentSpec

    class Gen(nn.Module):  # z [N, 12] -> tanh images [N, 3, 2, 2], BigBiGAN-style range
        z_dim = 12

        def forward(self, z, truncation):  # pytorch-pretrained-BigGAN's truncation argument
            return torch.tanh(z.view(-1, 3, 2, 2))

    def atanh_encoder(x):  # exact inverse in the model's [-1, 1] range
        return torch.atanh(x.clamp(-0.999999, 0.999999)).flatten(1)

    gan = BigGANAdapter(Gen(), chunks=3, truncation=0.5, image_shape=(3, 2, 2), encoder=atanh_encoder)
    x = 0.1 + 0.8 * torch.rand(4, 3, 2, 2)
    z = gan.invert(x)
    assert set(z) == {"c0", "c1", "c2"} and torch.allclose(gan.decode(z), x, atol=1e-5)
    assert torch.allclose(gan.latent_spec.join(z), torch.atanh(x * 2 - 1).flatten(1) / 0.5, atol=1e-4)

    def sampler(eps, t):
        return torch.sigmoid(t * torch.cat([e.flatten(1) for e in eps], 1)).view(-1, 1, 2, 2)

    hier = HierarchicalAdapter(sampler, shapes=[(2,), (2,)], temperature=0.8, image_shape=(1, 2, 2),
                               encoder=lambda y: list(torch.logit(y).flatten(1).split(2, 1)))
    y = 0.1 + 0.8 * torch.rand(4, 1, 2, 2)
    assert torch.allclose(hier.decode(hier.invert(y)), y, atol=1e-5)  # ε over the temperature

    spec = LatentSpec([LatentGroup("a", (3,))])
    plain = CallableGenerator(lambda lat: torch.sigmoid(lat["a"])[:, :, None, None], spec, image_shape=(3, 1, 1))
    assert not plain.invertible
    with pytest.raises(ValueError, match="without encoder="):
        plain.invert(torch.rand(2, 3, 1, 1))
    with pytest.raises(ValueError, match="CallableGenerator has no invert"):
        ViewPairPipe(plain, ViewPolicy({}), 2, anchors=labelled_images(4, shape=(3, 1, 1)))
    bad = CallableGenerator(lambda lat: lat["a"][:, :, None, None], spec, encoder=lambda v: v.flatten(1))
    with pytest.raises(ValueError, match="encoder must return a dict"):
        bad.invert(torch.rand(2, 3, 1, 1))
    with pytest.raises(ValueError, match="encoder must be callable"):
        CallableGenerator(lambda lat: lat["a"], spec, encoder=3)


def test_the_mlvae_inverts_to_the_decoding_of_its_posterior_means() -> None:
    from mlvgm_data.models.mlvae import MLVAE

    torch.manual_seed(0)
    model = MLVAE(resolution=16, content_dim=4, style_dim=3, width=8, temperature=0.5).eval()
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        z = model.invert(x)
        post = model.encode(x)
        expected = torch.sigmoid(model.decoder(torch.cat([post["content"][0], post["style"][0]], 1)))
        assert torch.allclose(model.decode(z), expected, atol=1e-6)
        pooled = model.invert(x, groups=torch.tensor([0, 0, 1, 1, 1]))
    assert torch.equal(pooled["content"][0], pooled["content"][1]) and torch.equal(pooled["style"], z["style"])
