"""The public contract on the models users bring (issue 25): every public entry point on every
shipped generator (looked up from the registry, so a new built-in is covered without editing this
file), on real third-party generator code (tests/real_models.py) and on the zoo of awkward modules
(tests/zoo.py). A failure's test id names the model and the entry point, e.g.
``biggan-hf/state_dict_resume``.

What "exact" means here: a resumed or worker-split stream is compared byte for byte (``torch.equal``)
with one uninterrupted run on a copy of the model built the same way; a resumed pipe always runs on a
fresh copy (a new process loads the weights again), never on the object the first run used.

The whole module runs torch on one thread, as DataLoader workers do (they set one thread each): a
model's own kernels may round differently on two threads (measured: 1 ulp in the zoo's linear and
convolution layers, none in the shipped generators), which is torch's business, not the pipe's; with
one thread everywhere, the workers' batches are compared with the reference bit for bit.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Callable

import pytest
import real_models
import torch
import zoo
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchdata.nodes import Loader
from torchdata.stateful_dataloader import StatefulDataLoader

from mlvgm_data import GeneratedViews, Perturb, ViewPairPipe, ViewPolicy, ops
from mlvgm_data.apps.cli import main
from mlvgm_data.generators import builtin_names, load_generator
from mlvgm_data.generators.base import decode_views
from mlvgm_data.mi import analyze
from mlvgm_data.nodes import ViewPairNode
from mlvgm_data.step import ViewBatch

BATCH, STEPS, TAKEN, SEED = 2, 4, 2, 3
pytestmark = pytest.mark.usefixtures("one_thread")


def _builtin(name: str) -> Callable[[], nn.Module]:
    def load() -> nn.Module:
        return load_generator(name)
    load.cli = name  # type: ignore[attr-defined]
    return load


MODELS: dict[str, Callable[[], nn.Module]] = {
    **{name.replace(":", "-"): _builtin(name) for name in builtin_names()},
    **real_models.FACTORIES,
    **{f"zoo-{name}": factory for name, factory in zoo.FACTORIES.items()},
}
"""Model name (the first half of a test id) → a factory that builds a fresh copy."""


def cli_name(model: str) -> str:
    """The CLI's GENERATOR argument for ``model``: ``builtin:NAME`` or ``module:factory``."""
    factory = MODELS[model]
    return getattr(factory, "cli", f"{factory.__module__}:{factory.__name__}")


@functools.cache
def shared(model: str) -> nn.Module:
    """One copy per model for the entry points that do not need a fresh one."""
    return MODELS[model]()


@functools.cache
def _pristine(model: str) -> nn.Module:
    return MODELS[model]()


def fresh(model: str) -> nn.Module:
    """A new copy with the weights as built (what a resumed process loads): a copy of one that never
    decoded, cheaper than loading or building it again."""
    return copy.deepcopy(_pristine(model))


def policy_for(generator: nn.Module) -> ViewPolicy:
    return ViewPolicy.uniform(generator.latent_spec, Perturb(0.5))


def pipe(generator: nn.Module, prefetch: int = 0, **kw) -> ViewPairPipe:
    return ViewPairPipe(generator, policy_for(generator), batch_size=BATCH, seed=SEED, prefetch=prefetch,
                        steps=STEPS, return_latents=True, **kw)


@functools.cache
def reference(model: str) -> tuple[ViewBatch, ...]:
    """One uninterrupted epoch, synchronous, in this process: what every other way must give."""
    return tuple(pipe(shared(model)))


def assert_same(got: list, want: tuple[ViewBatch, ...], what: str) -> None:
    """``got`` equals ``want`` bit for bit (views, targets, latents); else says where it differs first."""
    got = [ViewBatch(*b) for b in got]
    assert len(got) == len(want), f"{what}: {len(got)} batches, expected {len(want)}"
    for i, (p, q) in enumerate(zip(got, want)):
        pairs = [(f"view {v}", x, y) for v, (x, y) in enumerate(zip(p.views, q.views))]
        pairs += [("target", p.target, q.target)] + [(f"latents[{k!r}]", p.latents[k], q.latents[k]) for k in q.latents]
        assert len(p.views) == len(q.views) and p.latents.keys() == q.latents.keys(), f"{what}: batch {i}'s layout"
        for field, x, y in pairs:
            if not torch.equal(x, y):
                diff = (x.double() - y.double()).abs().max() if x.shape == y.shape else f"shape {tuple(x.shape)}"
                raise AssertionError(f"{what}: batch {i}, {field} differs from the reference ({diff})")


def check_images(images: torch.Tensor, generator: nn.Module, n: int) -> None:
    assert images.shape == (n, *generator.image_shape), images.shape
    assert images.dtype == torch.float32 and bool(torch.isfinite(images).all())
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


# --- the entry points ---------------------------------------------------------------------------

def decode(model: str, tmp_path: Path) -> None:
    g = shared(model)
    latents = {k: v[0] for k, v in ops.resample(g.latent_spec, policy_for(g), 3, 1, SEED, 0, "cpu").items()}
    classes = getattr(g, "num_classes", None)
    args = (latents, torch.arange(3) % classes) if classes else (latents,)
    with torch.no_grad():
        first, again = g.decode(*args), g.decode(*args)
    check_images(first, g, 3)
    assert torch.equal(first, again), "two decodes of the same latents differ"


def _pipe_epoch(model: str, prefetch: int) -> None:
    got = list(pipe(shared(model), prefetch=prefetch))
    assert len(got) == STEPS
    for batch in got:
        (x0, x1), y = batch.views, batch.target
        check_images(x0, shared(model), BATCH)
        check_images(x1, shared(model), BATCH)
        assert y.shape == (BATCH,) and y.dtype == torch.int64
    assert_same(got, reference(model), f"prefetch={prefetch}")


def pipe_prefetch0(model: str, tmp_path: Path) -> None:
    _pipe_epoch(model, 0)


def pipe_prefetch2(model: str, tmp_path: Path) -> None:
    _pipe_epoch(model, 2)


def state_dict_resume(model: str, tmp_path: Path) -> None:
    first = pipe(fresh(model), prefetch=2)
    it = iter(first)
    taken = [next(it) for _ in range(TAKEN)]
    state = first.state_dict()
    it.close()
    torch.save(state, tmp_path / "state.pt")  # as a checkpoint holds it
    resumed = pipe(fresh(model), prefetch=2)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    rest = list(resumed)
    assert_same(taken, reference(model)[:TAKEN], "before the state was saved")
    assert_same(rest, reference(model)[TAKEN:], "after the state was loaded")


def _stateful_loader(model: str, workers: int) -> None:
    def loader() -> StatefulDataLoader:
        return StatefulDataLoader(pipe(fresh(model)), batch_size=None, num_workers=workers,
                                  multiprocessing_context="fork" if workers else None)

    first = loader()
    it = iter(first)
    taken = [next(it) for _ in range(TAKEN)]
    state = first.state_dict()
    del it
    resumed = loader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert_same(taken, reference(model)[:TAKEN], "before the state was saved")
    assert_same(rest, reference(model)[TAKEN:], "after the state was loaded")


def stateful_loader_0_workers(model: str, tmp_path: Path) -> None:
    _stateful_loader(model, 0)


def stateful_loader_2_workers(model: str, tmp_path: Path) -> None:
    _stateful_loader(model, 2)


def dataloader_2_workers_2_epochs(model: str, tmp_path: Path) -> None:
    loader = DataLoader(pipe(shared(model), prefetch=1), batch_size=None, num_workers=2,
                        multiprocessing_context="fork")
    epochs = [list(loader) for _ in range(2)]
    assert_same(epochs[0], reference(model), "epoch 0 through the workers")
    for name in shared(model).latent_spec.names:
        anchors = torch.cat([ViewBatch(*b).latents[name][0].flatten(1) for e in epochs for b in e])
        assert anchors.shape[0] == 2 * STEPS * BATCH
        assert torch.unique(anchors, dim=0).shape[0] == anchors.shape[0], f"an anchor of {name} came twice"


def generated_views(model: str, tmp_path: Path) -> None:
    g = shared(model)
    ds = GeneratedViews(g, policy_for(g), length=4, seed=SEED)
    batches = list(DataLoader(ds, batch_size=2))
    assert len(batches) == 2
    for b, ((v0, v1), target) in enumerate(batches):
        check_images(v0, g, 2)
        check_images(v1, g, 2)
        assert target.shape == (2,)
        for j in range(2):  # one batched forward per DataLoader batch, the items ds[i] alone
            (w0, w1), t = ds[2 * b + j]
            assert int(t) == int(target[j])
            torch.testing.assert_close(w0, v0[j], atol=1e-5, rtol=0)
            torch.testing.assert_close(w1, v1[j], atol=1e-5, rtol=0)
    first_views = batches[0][0][0]
    assert torch.equal(next(iter(DataLoader(ds, batch_size=2)))[0][0], first_views)
    ds.set_epoch(1)
    assert not torch.equal(next(iter(DataLoader(ds, batch_size=2)))[0][0], first_views), "epoch 1 repeated epoch 0"


def nodes_resume(model: str, tmp_path: Path) -> None:
    source = pipe(fresh(model), prefetch=1)
    first = Loader(ViewPairNode(source))
    it = iter(first)
    taken = [next(it) for _ in range(TAKEN)]
    state = first.state_dict()
    source.close()  # its producer thread ends now, before a later test forks workers
    resumed = Loader(ViewPairNode(pipe(fresh(model), prefetch=1)))
    resumed.load_state_dict(state)
    assert_same(taken, reference(model)[:TAKEN], "before the state was saved")
    assert_same(list(resumed), reference(model)[TAKEN:], "after the state was loaded")


def mi_analysis(model: str, tmp_path: Path) -> None:
    g = shared(model)
    groups = list(g.latent_spec.names)[:2]  # each group costs the same decodes again
    report = analyze(g, groups, samples=128, steps=2, batch_size=32, eval_batch=64, width=4, image_res=8,
                     decode_batch=64, candidates=False, progress=False, seed=SEED)
    assert list(report.groups) == groups
    for row in report.groups.values():
        for est in (row.latent_mi, row.image_mi):
            assert all(torch.isfinite(torch.tensor([est.value, est.low, est.high])))
    report.to_json(tmp_path / "mi.json")
    assert set(json.loads((tmp_path / "mi.json").read_text())["groups"]) == set(groups)
    assert set(report.recommend_policy().rules) <= set(g.latent_spec.names)


def cli_views(model: str, tmp_path: Path) -> None:
    out, doc = tmp_path / "grid.png", tmp_path / "views.json"
    code = main(["views", cli_name(model), "--policy", "sigma=0.5", "--anchors", "2", "--num-views", "2",
                 "--out", str(out), "--json", str(doc)])
    assert code == 0, f"mlvgm-data views {cli_name(model)} exited {code}"
    summary = json.loads(doc.read_text())
    assert out.stat().st_size > 0 and set(summary["latent_distance"]) == set(shared(model).latent_spec.names)


# --- real anchors, on every model that inverts images ---------------------------------------------

REAL_IMAGES = 8


@functools.cache
def anchors_for(model: str) -> TensorDataset:
    """``REAL_IMAGES`` images of the model's own making as "real" ones, with the classes a
    class-conditional model inverts them with (an index for the others)."""
    made = decode_views(shared(model), ViewPolicy({}), REAL_IMAGES, 1, seed=SEED + 1, step=0)
    labels = made.classes if made.classes is not None else torch.arange(REAL_IMAGES)
    return TensorDataset(made.images[0].clamp(0, 1), labels)


def real_pipe(generator: nn.Module, model: str, prefetch: int = 0) -> ViewPairPipe:
    return pipe(generator, prefetch=prefetch, anchors=anchors_for(model))


@functools.cache
def real_reference(model: str) -> tuple[ViewBatch, ...]:
    return tuple(real_pipe(shared(model), model))


def real_state_dict_resume(model: str, tmp_path: Path) -> None:
    first = real_pipe(fresh(model), model, prefetch=2)
    it = iter(first)
    taken = [next(it) for _ in range(TAKEN)]
    state = first.state_dict()
    it.close()
    resumed = real_pipe(fresh(model), model, prefetch=2)
    resumed.load_state_dict(state)
    assert_same(taken, real_reference(model)[:TAKEN], "real anchors, before the state was saved")
    assert_same(list(resumed), real_reference(model)[TAKEN:], "real anchors, after the state was loaded")


def real_stateful_loader_2_workers(model: str, tmp_path: Path) -> None:
    def loader() -> StatefulDataLoader:
        return StatefulDataLoader(real_pipe(fresh(model), model), batch_size=None, num_workers=2,
                                  multiprocessing_context="fork")

    first = loader()
    it = iter(first)
    taken = [next(it) for _ in range(TAKEN)]
    state = first.state_dict()
    del it
    resumed = loader()
    resumed.load_state_dict(state)
    assert_same(taken + list(resumed), real_reference(model), "real anchors through StatefulDataLoader")


def real_each_image_once_per_epoch(model: str, tmp_path: Path) -> None:
    generator = shared(model)
    images, labels = anchors_for(model).tensors
    conditional = bool(getattr(generator, "num_classes", None))
    with torch.no_grad():
        inverted = generator.invert(images, labels) if conditional else generator.invert(images)
    group = generator.latent_spec.names[0]
    keys = inverted[group].flatten(1)
    loader = DataLoader(real_pipe(shared(model), model, prefetch=1), batch_size=None, num_workers=2,
                        multiprocessing_context="fork")
    seen = []
    for _ in range(2):  # STEPS x BATCH = REAL_IMAGES: a pipe epoch is a data epoch here
        for batch in loader:
            for row in ViewBatch(*batch).latents[group][0]:
                # the nearest image's inversion (a batch of 2 and one of 8 round differently)
                distance, index = (keys - row.flatten()).norm(dim=1).min(0)
                assert distance < 1e-3, f"an anchor matches no image ({float(distance)})"
                seen.append(int(index))
    assert sorted(seen[:REAL_IMAGES]) == list(range(REAL_IMAGES)) == sorted(seen[REAL_IMAGES:])


REAL_ENTRY_POINTS: dict[str, Callable[[str, Path], None]] = {f.__name__: f for f in (
    real_state_dict_resume, real_stateful_loader_2_workers, real_each_image_once_per_epoch)}
INVERTING = [m for m in MODELS if m.startswith("builtin-") and callable(getattr(shared(m), "invert", None))
             and getattr(shared(m), "invertible", True)]
"""The shipped generators that invert images (the adapters invert only with a user's encoder)."""


@pytest.mark.parametrize("model,entry", [pytest.param(m, e, id=f"{m}/{e}") for m in INVERTING
                                         for e in REAL_ENTRY_POINTS])
def test_real_anchor_contract(model: str, entry: str, tmp_path: Path) -> None:
    REAL_ENTRY_POINTS[entry](model, tmp_path)


ENTRY_POINTS: dict[str, Callable[[str, Path], None]] = {f.__name__: f for f in (
    decode, pipe_prefetch0, pipe_prefetch2, state_dict_resume, stateful_loader_0_workers, stateful_loader_2_workers,
    dataloader_2_workers_2_epochs, generated_views, nodes_resume, mi_analysis, cli_views)}


@pytest.mark.parametrize("model,entry", [pytest.param(m, e, id=f"{m}/{e}") for m in MODELS for e in ENTRY_POINTS])
def test_contract(model: str, entry: str, tmp_path: Path) -> None:
    ENTRY_POINTS[entry](model, tmp_path)


def test_every_builtin_and_both_real_codebases_are_in_the_suite() -> None:
    assert {f"builtin-{n.removeprefix('builtin:')}" for n in builtin_names()} <= set(MODELS)
    assert len(builtin_names()) >= 3
    assert {"biggan-hf", "stylegan2-lucidrains"} <= set(MODELS)
    assert type(shared("biggan-hf").model).__module__ == "pytorch_pretrained_biggan.model"
    assert type(shared("stylegan2-lucidrains").generator.G).__module__ == "stylegan2_pytorch.stylegan2_pytorch"
