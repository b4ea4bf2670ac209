"""The adapters on real third-party code (tests/real_models.py): what they read off the model, what
they refuse, and that ``decode`` calls the model as its own sampling code does (images equal to a
direct call). The public contract on the same models is tests/test_contract.py."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import real_models
import torch
from torch.nn import functional as F

from mlvgm_data.generators import BigGANAdapter, StyleGANAdapter


@pytest.fixture(scope="module")
def biggan() -> BigGANAdapter:
    return real_models.biggan()


@pytest.fixture(scope="module")
def stylegan2() -> StyleGANAdapter:
    return real_models.stylegan2()


def test_biggan_adapter_reads_z_classes_and_size_off_the_config(biggan: BigGANAdapter) -> None:
    config = biggan.model.config
    assert type(biggan.model).__module__ == "pytorch_pretrained_biggan.model"
    assert biggan.latent_spec.numel == config.z_dim and len(biggan.latent_spec.names) == 6
    assert biggan.num_classes == config.num_classes == real_models.BIGGAN_CLASSES
    assert biggan.image_shape == (3, config.output_dim, config.output_dim)


def test_biggan_decode_is_the_models_own_call(biggan: BigGANAdapter) -> None:
    g = torch.Generator().manual_seed(0)
    latents = {n: torch.randn(3, *biggan.latent_spec[n].shape, generator=g) for n in biggan.latent_spec.names}
    classes = torch.tensor([0, 4, 2])
    with torch.no_grad():
        images = biggan.decode(latents, classes)
        # the package's sampling: z = truncation · truncnorm, one-hot classes, (−1, 1) images
        own = biggan.model(0.4 * biggan.latent_spec.join(latents), F.one_hot(classes, 5).float(), 0.4)
    assert torch.equal(images, ((own + 1) / 2).clamp(0, 1))


def test_biggan_adapter_refuses_a_call_or_a_number_the_model_contradicts(biggan: BigGANAdapter) -> None:
    with pytest.raises(ValueError, match=r"takes \(z, class_label, truncation\).*truncation="):
        BigGANAdapter(biggan.model)  # its forward needs the truncation
    with pytest.raises(ValueError, match=r"num_classes=7 contradicts the model's config.num_classes \(5\)"):
        BigGANAdapter(biggan.model, truncation=0.4, num_classes=7)
    with pytest.raises(ValueError, match="z_dim=12 cannot be split into 5 equal chunks"):
        BigGANAdapter(biggan.model, truncation=0.4, chunks=5)


def test_stylegan_adapter_reads_layers_and_size_off_lucidrains_generator(stylegan2: StyleGANAdapter) -> None:
    parts = stylegan2.generator
    assert type(parts.G).__module__ == "stylegan2_pytorch.stylegan2_pytorch"
    assert parts.num_ws == parts.G.num_layers == 3 and stylegan2.layer_ranges == [(0, 1), (1, 2), (2, 3)]
    assert stylegan2.image_shape == (3, real_models.STYLEGAN_SIZE, real_models.STYLEGAN_SIZE)
    assert {g.tie for g in stylegan2.latent_spec} == {"z"}


def test_stylegan_decode_is_lucidrains_own_style_mixing(stylegan2: StyleGANAdapter) -> None:
    parts = stylegan2.generator
    g = torch.Generator().manual_seed(1)
    z = [torch.randn(2, 16, generator=g) for _ in range(3)]
    with torch.no_grad():
        images = stylegan2.decode({f"w{i}": z[i] for i in range(3)})
        # lucidrains' styles_def_to_tensor: one w per block, here each from its own z (style mixing),
        # mapped in one batch as the adapter does (a batched matmul rounds by its batch)
        styles = torch.stack(parts.S(torch.cat(z)).split(2), dim=1)
        own = parts.G(styles, parts.noise_const.expand(2, -1, -1, -1))
    assert torch.equal(images, own.clamp(0, 1))


def test_the_import_stand_ins_stay_out_of_every_other_test(stylegan2: StyleGANAdapter) -> None:
    stubs = str(real_models.STUBS)
    assert stubs not in sys.path
    assert not [m for m, mod in list(sys.modules.items()) if str(getattr(mod, "__file__", "")).startswith(stubs)]
    spec = importlib.util.find_spec("torchvision")  # a real one, or none
    assert spec is None or not str(spec.origin).startswith(stubs)
