"""Grey images in the hvae, the trainer on Fashion-MNIST files, and the Fashion-MNIST classifier's
quality score (the Fréchet distance against its closed form), on tiny IDX files the tests write."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlvgm_data.apps.classifiers import fashion as fq
from mlvgm_data.apps.train import hvae as hvae_train
from mlvgm_data.apps.train.outputs import save_width_model
from mlvgm_data.apps.train.registry import train
from mlvgm_data.data import fashion_mnist as fm
from mlvgm_data.generators import MLVGM, load_generator
from mlvgm_data.latents import LatentGroup, LatentSpec
from mlvgm_data.models import fashion_classifier as fc
from mlvgm_data.models.assets import load_width_model
from mlvgm_data.models.hvae import HierarchicalVAE, make_config

TINY = {"channels": [16, 8, 8], "blocks": [1, 1, 0], "enc_channels": [4, 8, 8, 16],
        "groups": [["z1", 6, 1], ["z2", 3, 4], ["z3", 2, 8]]}
TINY_TRAIN = dict(channels="8,8,8", blocks="1,0,0", enc_channels="4,4,8,8", groups="z1:4:1,z2:2:4",
                  kl_weights="1,1", batch_size=4, eval_images=3, threads=1)


def test_grey_hvae_decodes_encodes_and_trains():
    torch.manual_seed(0)
    m = HierarchicalVAE({**TINY, "image_channels": 1})
    assert m.image_shape == (1, 32, 32)
    x = torch.rand(3, 1, 32, 32)
    out = m(x)
    assert out["recon"].shape == (3, 1, 32, 32) and out["nll"].shape == (3,)
    assert m.encode(x)["z3"][0].shape == (3, 2, 8, 8)
    with torch.no_grad():
        y = m.eval().decode({g.name: torch.randn(2, *g.shape) for g in m.latent_spec})
    assert y.shape == (2, 1, 32, 32) and 0 <= float(y.min()) and float(y.max()) <= 1
    with pytest.raises(ValueError, match=r"images must be a \[N, 1, 32, 32\] tensor"):
        m.encode(torch.rand(3, 3, 32, 32))
    plain = HierarchicalVAE({**TINY, "image_channels": 1, "skip": False})  # the Skip-VAE comparison's other arm
    assert plain(x)["recon"].shape == (3, 1, 32, 32)
    vmi = HierarchicalVAE({**TINY, "image_channels": 1, "vmi_weight": 1.0, "vmi_groups": ["z2"]})
    assert set(vmi.vmi_terms(2)) == {"z2"}
    cond = HierarchicalVAE({**TINY, "image_channels": 1, "num_classes": 10})
    assert cond(x, classes=torch.tensor([0, 3, 9]))["class_nll"].shape == (3,)


def test_image_channels_is_checked_and_defaults_to_rgb():
    assert make_config({})["image_channels"] == 3
    for bad in (2, 0, True, "1"):
        with pytest.raises(ValueError, match="image_channels must be 1 .grey. or 3"):
            make_config({"image_channels": bad})


def test_train_on_fashion_files_is_unconditional_and_grey(fashion_files, tmp_path):
    summary = train("hvae", data="fashion-mnist", out=str(tmp_path / "run"), steps=2, **TINY_TRAIN)
    assert summary["eval_data"] == "Fashion-MNIST test split" and "encoder_class_accuracy" not in summary
    gen = load_generator(tmp_path / "run")
    assert gen.num_classes is None and gen.image_shape == (1, 32, 32)
    assert gen.config["image_channels"] == 1
    assert ("quality" in summary) == fc.classifier_available()  # scored when the classifier ships
    cond = train("hvae", data="fashion-mnist", out=str(tmp_path / "cond"), steps=1, conditional=True,
                        **TINY_TRAIN)
    assert 0.0 <= cond["encoder_class_accuracy"] <= 1.0
    assert load_generator(tmp_path / "cond").num_classes == 10
    with pytest.raises(ValueError, match="--probe needs --data fashion-mnist and an unconditional model"):
        train("hvae", data="fashion-mnist", out=str(tmp_path / "c2"), steps=1, conditional=True, probe=True,
                     **TINY_TRAIN)
    with pytest.raises(ValueError, match="--probe needs --data fashion-mnist"):
        train("hvae", data="shapes", out=str(tmp_path / "c3"), steps=1, probe=True, **TINY_TRAIN)


def test_posterior_probe_on_the_means_of_every_group(fashion_files, tmp_path):
    summary = train("hvae", data="fashion-mnist", out=str(tmp_path / "run"), steps=2, probe=True,
                           **TINY_TRAIN)
    acc = summary["probe_accuracy"]
    assert set(acc) == {"all", "z1", "z2"} and all(0.0 <= v <= 1.0 for v in acc.values())
    gen = load_generator(tmp_path / "run")
    x = fm.FashionMNIST(train=False, pad_to=32).batch(range(5))[0]
    means = hvae_train.posterior_means(gen, x, batch_size=2)  # batches give the same means as one pass
    assert means["z1"].shape == (5, 4) and means["z2"].shape == (5, 2 * 4 * 4)
    assert torch.allclose(means["z2"], gen.encode(x)["z2"][0].flatten(1), atol=1e-6)
    # Labels that a group's means separate perfectly are found by its probe.
    labels = (means["z1"][:, 0] > means["z1"][:, 0].median()).long()
    assert hvae_train.posterior_probe(gen, x, labels, x, labels)["z1"] == 1.0


def test_train_command_accepts_data_fashion_mnist(fashion_files, tmp_path, capsys):
    from mlvgm_data.apps.cli import main

    argv = ["train", "--model", "hvae", "--data", "fashion-mnist", "--steps", "1", "--out", str(tmp_path / "run")]
    for k, v in TINY_TRAIN.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    assert main(argv) == 0  # through the CLI, with its own --json/--debug options beside the trainer's
    assert "data: fashion-mnist" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "'fashion-mnist'" in capsys.readouterr().out


# --- the classifier and the quality score -----------------------------------------------------

class Replay(MLVGM):
    """A stand-in generator whose samples are given images, picked by its noise."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images = images
        self.latent_spec = LatentSpec([LatentGroup("z", (1,))])
        self.image_shape = tuple(images.shape[1:])

    def _decode(self, latents, classes):
        u = torch.special.ndtr(latents["z"][:, 0])
        return self.images[(u * len(self.images)).long().clamp(max=len(self.images) - 1)]


def test_frechet_distance_matches_the_closed_form():
    from scipy import linalg

    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    b = torch.randn(300, 5, generator=g, dtype=torch.float64) * 2 + 1
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    expected = float(((a.mean(0) - b.mean(0)) ** 2).sum()) + np.trace(ca + cb - 2 * linalg.sqrtm(ca @ cb).real)
    assert fq.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert fq.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="two \\[N, D\\] feature sets"):
        fq.frechet_distance(a, b[:, :4])
    with pytest.raises(ValueError, match="N >= 2"):
        fq.frechet_distance(a[:1], b)


def test_classifier_crops_the_padding_and_checks_shapes():
    torch.manual_seed(0)
    clf = fc.FashionClassifier(4).eval()
    x = torch.rand(2, 1, 28, 28)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=0.7)  # the border is ignored
    with torch.no_grad():
        assert torch.equal(clf(x), clf(padded))
        assert clf.features(x).shape == (2, fc.FEATURES)
    for bad in (torch.rand(2, 3, 32, 32), torch.rand(2, 1, 20, 20), torch.rand(1, 28, 28)):
        with pytest.raises(ValueError, match=r"grey \[N, 1, R, R\] with R >= 28"):
            fc.classify(bad, clf)


def test_training_scoring_and_the_score_command(fashion_files, tmp_path, monkeypatch):
    model, meta = fq.train_classifier(epochs=1, batch_size=4, width=4)
    assert meta["test_images"] == 5 and 0.0 <= meta["test_accuracy"] <= 1.0 and meta["steps"] == 3
    stem = tmp_path / "clf"
    save_width_model(model, stem, meta)
    loaded = fc.load_classifier(stem)
    x = torch.rand(3, 1, 32, 32)
    assert torch.equal(fc.classify(x, loaded)[0], fc.classify(x, model)[0])
    monkeypatch.setattr(fc, "_shipped", lambda: loaded)
    real = fm.FashionMNIST(train=False, pad_to=32).batch(range(5))[0]
    quality = fq.sample_quality(Replay(real), n=40, seed=0)
    assert quality["n"] == 40 and sum(quality["class_counts"].values()) == 40
    assert set(quality["class_fractions"]) == set(fm.CLASS_NAMES) and 0 < quality["mean_confidence"] <= 1
    assert quality["frechet_distance"] >= 0 and fq.quality_floor(4) >= 0
    assert quality == fq.sample_quality(Replay(real), n=40, seed=0)  # deterministic given the seed
    assert "frechet_distance" not in fq.sample_quality(Replay(real), n=3, frechet=False)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        fq.sample_quality(Replay(real), n=0)

    import mlvgm_data.generators as generators

    monkeypatch.setattr(generators, "load_generator", lambda name: Replay(real))
    out = tmp_path / "q.json"
    result = fq.main(["score", "fake", "--n", "20", "--json", str(out)])
    assert json.loads(out.read_text())["n"] == 20 and result["frechet_vs_floor"] >= 0


def test_classifier_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="classifier config"):
        fc.load_classifier(tmp_path / "none")
    save_width_model(fc.FashionClassifier(4), tmp_path / "c", {"width": 8})
    with pytest.raises(ValueError, match="does not match its config"):
        fc.load_classifier(tmp_path / "c")
    assert not fc.classifier_available(tmp_path / "none") and fc.classifier_available(tmp_path / "c")
    save_width_model(fc.FashionClassifier(8), tmp_path / "ok", {"width": 8})
    loaded = load_width_model(fc.FashionClassifier, tmp_path / "ok")  # the helper both classifiers use
    assert isinstance(loaded, fc.FashionClassifier) and not loaded.training


def test_mi_encoder_data_fashion_mnist_reads_the_test_split(fashion_files, tmp_path, capsys, one_thread):
    from mlvgm_data.apps.cli import main
    from mlvgm_data.generators import save_generator

    torch.manual_seed(0)
    model = HierarchicalVAE({**TINY, "image_channels": 1})
    save_generator(model, tmp_path / "grey", "hvae", model.config)
    argv = ["mi", str(tmp_path / "grey"), "--samples", "128", "--steps", "2", "--no-progress",
            "--encoder-data", "fashion-mnist", "--json", "-"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Encoder metrics on 5 images (fashion-mnist)" in out  # all 5 test images, none of the 9 train ones
    doc = json.loads(out[out.index("{\n  \"candidates\""):])
    assert doc["encoder"]["n"] == 5 and set(doc["encoder"]["groups"]) == {"z1", "z2", "z3"}
    fm_root = fashion_files
    for f in fm_root.glob("t10k-*"):
        f.unlink()
    assert main(argv) == 2
    err = capsys.readouterr()
    assert "apt-get install dataset-fashion-mnist" in err.err and "| z1 |" not in err.out


def test_the_shipped_fashion_generator_is_unconditional_grey_and_draws_every_class(one_thread):
    """Regression test on builtin:fashion's own samples (300, seed 0: mean confidence 0.809, every
    class 6.7–14.7 % when shipped); bounds leave room for other CPUs' rounding."""
    from mlvgm_data import load_generator, recommended_policy
    from mlvgm_data.generators.base import prior_samples

    gen = load_generator("builtin:fashion")
    assert gen.num_classes is None and gen.image_shape == (1, 32, 32) and len(gen.latent_spec) >= 3
    assert gen.config["image_channels"] == 1 and gen.config["num_classes"] == 0  # no labels anywhere
    quality = fq.score_images(prior_samples(gen, 300, seed=0))
    assert quality["mean_confidence"] > 0.75
    assert 0.03 < quality["min_fraction"] and quality["max_fraction"] < 0.25
    policy = recommended_policy("builtin:fashion")
    assert policy.rules and set(policy.rules) <= set(gen.latent_spec.names)
