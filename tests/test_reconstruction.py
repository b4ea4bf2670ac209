"""The reconstruction report of an inverting generator (``python -m mlvgm_data.apps.classifiers.fashion
reconstruct``), on Fashion-MNIST files the test writes and a generator with an exact inverse."""

from __future__ import annotations

import json

import torch
from helpers import write_split

from mlvgm_data.apps.classifiers import fashion as fq
from mlvgm_data.generators.base import MLVGM
from mlvgm_data.latents import LatentGroup, LatentSpec
from mlvgm_data.policy import Perturb, ViewPolicy


class GreyIdentity(MLVGM):
    """1×32×32 images = sigmoid(z), with invert = logit: reconstructions are the images."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("z", (1, 32, 32))])
        self.image_shape = (1, 32, 32)
        self.eval()

    def _decode(self, latents, classes):
        return torch.sigmoid(latents["z"])

    def invert(self, images, classes=None):
        return {"z": torch.logit(images.clamp(1e-4, 1 - 1e-4))}


def test_an_exact_inverse_reconstructs_and_keeps_the_classifiers_labels(tmp_path, monkeypatch) -> None:
    write_split(tmp_path, n=40, train=False)
    monkeypatch.setenv("MLVGM_DATA", str(tmp_path))
    out = fq.reconstruction_quality(GreyIdentity(), n=30, policy=ViewPolicy({"z": Perturb(3.0)}), batch_size=16)
    assert out["n"] == 30 and out["pixel_rmse"] < 2e-3  # logit/sigmoid round trip (clamped at 1e-4)
    assert out["reconstruction_accuracy"] == out["real_accuracy"]
    assert 0 <= out["view_accuracy"] <= 1 and out["policy"]["rules"]["z"]["sigma"] == 3.0
    plain = fq.reconstruction_quality(GreyIdentity(), n=30, batch_size=7)  # batches do not change the figures
    assert "view_accuracy" not in plain and abs(plain["pixel_mse"] - out["pixel_mse"]) < 1e-12


def test_the_command_writes_its_report_with_the_command(tmp_path, monkeypatch) -> None:
    write_split(tmp_path, n=24, train=False)
    monkeypatch.setenv("MLVGM_DATA", str(tmp_path))
    path = tmp_path / "r.json"
    result = fq.main(["reconstruct", "builtin:fashion", "--n", "8", "--json", str(path)])
    saved = json.loads(path.read_text())
    assert saved["n"] == 8 and saved["command"].endswith("--n 8 --policy recommended --seed 0 --threads 1")
    assert 0 <= saved["view_accuracy"] <= 1 and saved == json.loads(json.dumps(result))
