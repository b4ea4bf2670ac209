"""Pictures: the image grid writer and anchor/view sets (also for class-conditional generators)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TinyGenerator
from PIL import Image

from mlvgm_data import Keep, ViewPolicy
from mlvgm_data.apps.viz import save_image_grid, save_view_grid, view_sets
from mlvgm_data.generators import draw_classes


def test_grid_places_every_image(tmp_path):
    images = torch.zeros(5, 3, 4, 4)
    images[3] = 1.0
    path = save_image_grid(images, tmp_path / "g.png", nrow=2, pad=1)
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (3 * 5 + 1, 2 * 5 + 1, 3)
    assert (pixels[6:10, 6:10] == 255).all() and (pixels[6:10, 1:5] == 0).all()  # image 3 = row 1, col 1
    with pytest.raises(ValueError, match=r"\[N, 1 or 3, H, W\]"):
        save_image_grid(torch.zeros(2, 4, 4), tmp_path / "bad.png")


def test_views_of_an_anchor_share_its_class():
    gen = TinyGenerator(num_classes=5).eval()
    sets = view_sets(gen, ViewPolicy({"top": Keep(), "map": Keep()}), anchors=6, num_views=3, seed=2)
    assert sets.shape == (6, 3, 3, 16, 16)
    # every group kept: a view equals its anchor only if the class is the anchor's too
    assert torch.equal(sets[:, 1], sets[:, 0]) and torch.equal(sets[:, 2], sets[:, 0])
    classes = draw_classes(gen, 6, 2, 0)
    assert classes is not None and len(set(classes.tolist())) > 1


def test_view_grid_file(tmp_path):
    path = save_view_grid(TinyGenerator(), ViewPolicy({}), tmp_path / "v.png", anchors=2, num_views=4)
    assert Image.open(path).size == (4 * 18 + 2, 2 * 18 + 2)
