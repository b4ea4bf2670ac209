"""The DALI augmentation backend (CPU mode); skipped when DALI is not installed."""

import pytest
import torch

from mlvgm_data import augment as A
from mlvgm_data.augment.dali import DaliAugment, has_dali

needs_dali = pytest.mark.skipif(not has_dali(), reason="NVIDIA DALI not installed (pip install nvidia-dali-cuda120)")


def _views(v=2, b=8, c=3, h=24, w=20):
    return torch.rand(v, b, c, h, w, generator=torch.Generator().manual_seed(0))


@needs_dali
@pytest.mark.parametrize("name", ["simclr", "byol", "crop_flip"])
def test_presets_shape_range_and_dtype(name):
    aug = DaliAugment(name, size=16, batch_size=8, num_views=2, seed=1)
    y = aug(_views(), seed=0, step=0)
    assert y.shape == (2, 8, 3, 16, 16) and y.dtype == torch.float32 and y.device.type == "cpu"
    assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6
    assert not torch.equal(y[0], y[1])  # views differ


@needs_dali
def test_deterministic_for_a_seed_and_call_sequence():
    x = _views()
    a, b = (DaliAugment("simclr", 16, 8, 2, seed=5) for _ in range(2))
    first = [a(x), a(x)]
    assert torch.equal(first[0], b(x)) and torch.equal(first[1], b(x))
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[0], DaliAugment("simclr", 16, 8, 2, seed=6)(x))


@needs_dali
def test_smaller_batches_and_a_view_augment():
    aug = DaliAugment(A.byol(12), batch_size=8, num_views=3, seed=0)
    assert aug(_views(v=3, b=5)).shape == (3, 5, 3, 12, 12)


@needs_dali
def test_disabled_augmentation_is_a_resize_and_normalize():
    cfg = A.AugmentConfig(20, crop_scale=None, flip_p=0.0, normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    x = _views(h=20, w=20)
    y = DaliAugment(A.ViewAugment(cfg), batch_size=8, seed=0)(x)
    torch.testing.assert_close(y, (x - 0.5) / 0.25, atol=1e-5, rtol=0)


@needs_dali
def test_matches_torch_backend_statistics():
    # same preset, different random streams: the augmented batches agree in distribution
    x = torch.rand(1, 1, 3, 32, 32).expand(2, 512, 3, 32, 32).contiguous()
    dali_out = DaliAugment("simclr", 32, 512, 2, seed=0)(x)
    torch_out = A.simclr(32)(x, seed=0, step=0)
    for out in (dali_out, torch_out):
        grey = (out.std(dim=2) < 1e-6).flatten(2).all(-1).float().mean()
        assert abs(float(grey) - 0.2) < 0.06  # greyscale p=0.2 (saturation 0.2..1.8 rarely grey)
    torch.testing.assert_close(dali_out.mean(), torch_out.mean(), atol=0.03, rtol=0)
    torch.testing.assert_close(dali_out.std(), torch_out.std(), atol=0.03, rtol=0)


@needs_dali
def test_bad_inputs():
    aug = DaliAugment("crop_flip", 8, batch_size=4, num_views=2)
    with pytest.raises(ValueError, match="5-d tensor"):
        aug(torch.rand(2, 4, 3, 8))
    with pytest.raises(ValueError, match="floating point"):
        aug(torch.zeros(2, 4, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_views=2"):
        aug(torch.rand(3, 4, 3, 8, 8))
    with pytest.raises(ValueError, match="batch_size=4"):
        aug(torch.rand(2, 5, 3, 8, 8))
    with pytest.raises(ValueError, match="3 channels"):
        DaliAugment("simclr", 8, 4)(torch.rand(2, 4, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown augment preset"):
        DaliAugment("moco", 8)
    with pytest.raises(ValueError, match="preset"):
        DaliAugment(3, 8)
    with pytest.raises(ValueError, match="batch_size"):
        DaliAugment("simclr", 8, batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        DaliAugment("simclr", 8, seed=2**31)
    with pytest.raises(ValueError, match="device"):
        DaliAugment("simclr", 8, device="tpu")
    with pytest.raises(ValueError, match="DaliAugment translates the ops an AugmentConfig describes"):
        DaliAugment(A.ViewAugment([A.RandomResizedCrop(8), A.RandomErasing()]), batch_size=4)
    assert "DaliAugment" in repr(aug)


def test_missing_dali_gives_install_hint(monkeypatch):
    import sys

    from mlvgm_data.augment import dali

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    assert not dali.has_dali()
    with pytest.raises(ImportError, match="pip install nvidia-dali-cuda120"):
        DaliAugment("simclr", 8)
