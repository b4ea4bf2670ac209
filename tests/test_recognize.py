"""The Shapes classifier and the recognisability score of a generator."""

from __future__ import annotations

import pytest
import torch

from mlvgm_data.apps.classifiers import shapes as recognize
from mlvgm_data.apps.train.outputs import save_width_model
from mlvgm_data.data import SHAPE_NAMES, Shapes
from mlvgm_data.data.shapes import render_factors
from mlvgm_data.generators import MLVGM
from mlvgm_data.latents import LatentGroup, LatentSpec
from mlvgm_data.models import shapes_classifier

needs_classifier = pytest.mark.skipif(not shapes_classifier.classifier_available(), reason="classifier asset not built")


class RealShapes(MLVGM):
    """A stand-in generator whose 'samples' are real Shapes drawn from its noise."""

    def __init__(self, resolution: int = 32, only_class: int | None = None) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("factors", (8,))])
        self.image_shape = (3, resolution, resolution)
        self.only_class = only_class

    def _decode(self, latents, classes):
        u = torch.special.ndtr(latents["factors"])
        f = u.clone()
        f[:, 0] = (u[:, 0] * len(SHAPE_NAMES)).floor().clamp(max=len(SHAPE_NAMES) - 1)
        if self.only_class is not None:
            f[:, 0] = self.only_class
        f[:, 3:5] = 2 * u[:, 3:5] - 1
        return render_factors(f, self.image_shape[1])


class Grey(MLVGM):
    def __init__(self) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("z", (2,))])
        self.image_shape = (3, 32, 32)

    def _decode(self, latents, classes):
        return torch.full((latents["z"].shape[0], 3, 32, 32), 0.5)


@needs_classifier
def test_shipped_classifier_is_accurate_on_held_out_shapes():
    x, y, _ = Shapes(600, seed=12345).render(range(600))
    probs = shapes_classifier.classify(x)
    assert float((probs.argmax(1) == y).float().mean()) >= 0.97
    meta = __import__("json").loads(shapes_classifier.CLASSIFIER_STEM.with_suffix(".json").read_text())
    assert meta["held_out_accuracy"] >= 0.98


@needs_classifier
def test_recognizability_of_real_shapes_is_high_and_balanced():
    score = recognize.recognizability(RealShapes(), n=600, seed=1)
    assert score["n"] == 600 and score["mean_confidence"] > 0.95
    assert sum(score["class_fractions"].values()) == pytest.approx(1.0)
    assert sum(score["class_counts"].values()) == 600
    assert 0.1 < score["min_fraction"] <= score["max_fraction"] < 0.25


@needs_classifier
def test_recognizability_sees_class_collapse_and_works_at_64():
    score = recognize.recognizability(RealShapes(64, only_class=3), n=200)
    assert score["class_fractions"]["star"] > 0.95 and score["min_fraction"] < 0.02


@needs_classifier
def test_recognizability_is_deterministic_given_the_seed():
    a = recognize.recognizability(RealShapes(), n=100, seed=4)
    b = recognize.recognizability(RealShapes(), n=100, seed=4)
    c = recognize.recognizability(RealShapes(), n=100, seed=5)
    assert a == b and a != c


@needs_classifier
def test_featureless_images_are_not_confident():
    assert recognize.recognizability(Grey(), n=50)["mean_confidence"] < 0.9


def test_classifier_training_runs_and_round_trips(tmp_path):
    # That training reaches >= 98 % is checked on the shipped asset's record above.
    model, meta = recognize.train_classifier(steps=3, batch_size=8, width=4, eval_images=50)
    assert 0.0 <= meta["held_out_accuracy"] <= 1.0 and meta["steps"] == 3
    save_width_model(model, tmp_path / "clf", meta)
    loaded = shapes_classifier.load_classifier(tmp_path / "clf")
    x = Shapes(8).render(range(8))[0]
    assert torch.allclose(shapes_classifier.classify(x, loaded), shapes_classifier.classify(x, model))


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="n must be"):
        recognize.recognizability(Grey(), n=0)
    with pytest.raises(FileNotFoundError):
        shapes_classifier.load_classifier(tmp_path / "missing")
