"""Saving and loading generators: round trip, built-ins, and files that must be refused."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from mlvgm_data.generators import builtin_names, load_generator, save_generator
from mlvgm_data.generators.registry import ASSETS
from mlvgm_data.models.hvae import HierarchicalVAE

TINY = {"channels": [8, 8, 8], "blocks": [1, 0, 0], "enc_channels": [4, 4, 8, 8],
        "groups": [["z1", 4, 1], ["z2", 2, 4]]}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = HierarchicalVAE(TINY).eval()
    save_generator(model, tmp_path / "gen", "hvae", model.config)
    return model, tmp_path / "gen"


def test_round_trip_by_stem_and_by_file(saved):
    model, stem = saved
    eps = {g.name: torch.randn(2, *g.shape) for g in model.latent_spec}
    for name in (stem, stem.with_suffix(".pt"), str(stem.with_suffix(".json"))):
        loaded = load_generator(name)
        with torch.no_grad():
            assert torch.equal(loaded.decode(eps), model.decode(eps))
    cfg = json.loads(stem.with_suffix(".json").read_text())
    assert cfg["family"] == "hvae" and cfg["format"] == "mlvgm-data/1"


class _Evil:
    """Unpickling this would run ``os.system`` — the loader must refuse it without running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _drop_checksum(stem):
    """A config without the weights' checksum (as written before checksums): loading still refuses
    what weights_only=True refuses."""
    js = stem.with_suffix(".json")
    cfg = json.loads(js.read_text())
    del cfg["weights_sha256"]
    js.write_text(json.dumps(cfg))


def test_malicious_pickle_is_refused_and_executes_nothing(saved, tmp_path):
    _, stem = saved
    marker = tmp_path / "pwned"
    with open(stem.with_suffix(".pt"), "wb") as f:
        pickle.dump({"model": _Evil(marker)}, f, protocol=2)
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_generator(stem)
    _drop_checksum(stem)
    with pytest.raises(ValueError, match="refused.*nothing was executed"):
        load_generator(stem)
    assert not marker.exists()
    # The same payload inside a torch.save zip archive is refused too.
    torch.save({"model": _Evil(marker)}, stem.with_suffix(".pt"))
    with pytest.raises(ValueError, match="refused"):
        load_generator(stem)
    assert not marker.exists()


def test_corrupt_and_mismatched_files_give_clear_errors(saved, tmp_path):
    model, stem = saved
    _drop_checksum(stem)
    pt = stem.with_suffix(".pt")
    good = pt.read_bytes()
    pt.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated|refused"):
        load_generator(stem)
    pt.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError):
        load_generator(stem)
    pt.write_bytes(good)
    js = stem.with_suffix(".json")
    js.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_generator(stem)
    js.write_text(json.dumps({"format": "mlvgm-data/1", "family": "hvae", "config": {**TINY, "channels": [16, 8, 8]}}))
    with pytest.raises(ValueError, match="does not match its config"):
        load_generator(stem)
    js.write_text(json.dumps({"format": "mlvgm-data/1", "family": "nope", "config": {}}))
    with pytest.raises(ValueError, match="unknown generator family"):
        load_generator(stem)
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "missing")


def test_builtins_are_registered():
    names = builtin_names()
    assert "builtin:shapes" in names
    with pytest.raises(ValueError, match="unknown built-in"):
        load_generator("builtin:nope")


def test_builtin_shapes_loads_decodes_and_has_a_policy():
    from mlvgm_data import recommended_policy

    gen = load_generator("builtin:shapes")
    assert gen.image_shape == (3, 32, 32) and gen.num_classes == 6 and not gen.training
    eps = {g.name: torch.randn(4, *g.shape) for g in gen.latent_spec}
    with torch.no_grad():
        x = gen.decode(eps, torch.tensor([0, 1, 2, 3]))
    assert x.shape == (4, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert (ASSETS / "shapes_hvae.pt").stat().st_size <= 5 * 2**20
    policy = recommended_policy("builtin:shapes")
    assert set(policy.rules) <= set(gen.latent_spec.names)


def test_builtin_shapes_prior_samples_are_recognisable():
    from mlvgm_data.apps.classifiers import shapes as recognize

    # Guards the shipped asset against a regression: these 300 seeded samples score 0.918 with
    # classes 12.7–20.7 % (the README's 0.906 is on 2,000); the margin allows other CPUs' rounding.
    score = recognize.recognizability(load_generator("builtin:shapes"), n=300)
    assert score["mean_confidence"] > 0.85
    assert score["min_fraction"] > 0.03 and score["max_fraction"] < 0.3


def test_builtin_shapes_stylegan_draws_every_class():
    from mlvgm_data import recommended_policy
    from mlvgm_data.apps.classifiers import shapes as recognize

    gen = load_generator("builtin:shapes-stylegan")
    assert gen.num_classes == 6 and gen.latent_spec.names == ("w0", "w1", "w2", "w3")
    assert sorted(recommended_policy("builtin:shapes-stylegan").rules) == ["w1", "w2", "w3"]  # keeps w0
    # Guards the shipped GAN against a regression: these 300 seeded samples score 0.904 with
    # classes 6.3 % (cross) – 23.7 % (the README's 0.907 is on 2,000); the margin allows other
    # CPUs' rounding.
    score = recognize.recognizability(gen, n=300)
    assert score["mean_confidence"] > 0.85
    assert score["min_fraction"] > 0.03 and score["max_fraction"] < 0.35
