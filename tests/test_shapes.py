"""Shapes (procedural data) and FolderImages (a user's image folder)."""

from __future__ import annotations

import pytest
import torch

from mlvgm_data.data import FACTOR_NAMES, SHAPE_NAMES, FolderImages, Shapes, export_jpeg, factors_to_dict, num_classes
from mlvgm_data.data.shapes import render_factors


def test_item_is_deterministic_and_independent_of_batch_composition():
    ds = Shapes(1000, seed=3)
    img, cls, f = ds[17]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32
    assert isinstance(cls, int) and f.shape == (len(FACTOR_NAMES),)
    again = Shapes(1000, seed=3)[17]
    assert torch.equal(img, again[0]) and cls == again[1] and torch.equal(f, again[2])
    for batch in ([17], [3, 17, 999], [999, 500, 17, 0]):
        images, classes, factors = ds.render(batch)
        k = batch.index(17)
        assert torch.equal(images[k], img) and int(classes[k]) == cls and torch.equal(factors[k], f)


def test_getitems_matches_getitem_and_negative_index():
    ds = Shapes(50)
    items = ds.__getitems__([4, 9])
    assert torch.equal(items[1][0], ds[9][0]) and items[0][1] == ds[4][1]
    assert torch.equal(ds[-1][0], ds[49][0])
    with pytest.raises(IndexError):
        ds.render([50])


def test_seeds_give_different_datasets():
    a = Shapes(64, seed=0).render(range(64))[0]
    b = Shapes(64, seed=1).render(range(64))[0]
    assert not torch.allclose(a, b)


def test_factor_ranges_and_images_in_unit_range():
    ds = Shapes(4000)
    images, classes, f = ds.render(range(4000))
    assert images.min() >= 0 and images.max() <= 1
    d = factors_to_dict(f)
    assert torch.equal(d["class"], classes) and classes.dtype == torch.int64
    assert set(classes.tolist()) == set(range(num_classes))
    for name, high in (("hue", 0.85), ("scale", 1), ("rotation", 60), ("bg_hue", 0.85), ("bg_value", 1)):
        assert 0 <= d[name].min() < 0.01 * high and 0.99 * high < d[name].max() < high, name
    for name in ("x", "y"):
        assert -1 < d[name].min() < -0.9 and 0.9 < d[name].max() < 1, name


def test_classes_are_balanced():
    classes = Shapes(6000).render(range(6000))[1]
    counts = torch.bincount(classes, minlength=num_classes).float() / 6000
    assert torch.all((counts - 1 / num_classes).abs() < 0.03), counts


def test_shape_is_drawn_where_the_factors_say():
    # A big circle in the centre on a dark background: centre pixel is the foreground colour,
    # the corner the background; the foreground covers about π·0.85²·r²/4 of the image.
    f = torch.tensor([[0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.5, 0.0]])
    img = render_factors(f, 64)[0]
    assert img[0, 32, 32] > 0.9 and img[1, 32, 32] < 0.3  # hue 0 = red
    assert img[:, 0, 0].max() < 0.1
    coverage = float((img[0] > 0.5).float().mean())
    r = 0.85 * 0.65
    assert abs(coverage - torch.pi * r * r / 4) < 0.02


def test_every_class_renders_a_distinct_silhouette():
    f = torch.zeros(num_classes, len(FACTOR_NAMES))
    f[:, 0] = torch.arange(num_classes)
    f[:, 2] = 1.0
    masks = render_factors(f, 64)[:, 0] > 0.5
    for i in range(num_classes):
        for j in range(i + 1, num_classes):
            assert (masks[i] ^ masks[j]).float().mean() > 0.03, (SHAPE_NAMES[i], SHAPE_NAMES[j])


def test_resolution_64_matches_32_when_downsampled():
    a = Shapes(16, 32).render(range(16))[0]
    b = Shapes(16, 64).render(range(16))[0]
    down = torch.nn.functional.avg_pool2d(b, 2)
    assert (down - a).abs().mean() < 0.02


def test_bad_arguments():
    with pytest.raises(ValueError, match="length"):
        Shapes(0)
    with pytest.raises(ValueError, match="resolution"):
        Shapes(10, resolution=4)
    with pytest.raises(ValueError, match="seed"):
        Shapes(10, seed=-1)
    with pytest.raises(ValueError, match="factors"):
        render_factors(torch.zeros(3, 4))


def test_export_jpeg_writes_a_loadable_image_folder(tmp_path):
    root = export_jpeg(tmp_path / "shapes", 30, resolution=32, seed=2)
    files = sorted(root.rglob("*.jpg"))
    assert len(files) == 30
    classes = Shapes(30, seed=2).render(range(30))[1]
    for path in files:
        index = int(path.stem)
        assert path.parent.name == SHAPE_NAMES[int(classes[index])]
    folder = FolderImages(root, 32)
    assert len(folder) == 30
    img = folder[0]
    assert img.shape == (3, 32, 32) and 0 <= img.min() and img.max() <= 1
    first = files[0]
    original = Shapes(30, seed=2)[int(first.stem)][0]
    assert (folder[folder.paths.index(first)] - original).abs().mean() < 0.03


def test_folder_images_resize_crop_nesting_and_formats(tmp_path):
    from PIL import Image

    (tmp_path / "a" / "b").mkdir(parents=True)
    wide = Image.new("RGB", (120, 60), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 30, 60))  # blue strip on the left, cropped away
    wide.save(tmp_path / "a" / "b" / "wide.PNG")
    Image.new("L", (20, 40), 128).save(tmp_path / "grey.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = FolderImages(tmp_path, 16)
    assert len(ds) == 2
    batch = ds.load([0, 1])
    assert batch.shape == (2, 3, 16, 16)
    wide_img = ds[[p.name for p in ds.paths].index("wide.PNG")]
    assert wide_img[0].min() > 0.9 and wide_img[2].max() < 0.1
    grey = ds[[p.name for p in ds.paths].index("grey.jpg")]
    assert torch.allclose(grey, torch.full_like(grey, 128 / 255), atol=0.02)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="contains no images"):
        FolderImages(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FolderImages(tmp_path / "missing")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    ds = FolderImages(tmp_path)
    with pytest.raises(ValueError, match="cannot read image"):
        ds[0]
