"""Real third-party generator code, tiny configs, random weights (nothing is downloaded): the models
the public-contract suite runs beside the shipped generators.

* ``biggan``: HF's pytorch-pretrained-BigGAN (``pytorch-pretrained-biggan==0.1.1``): its ``BigGAN``
  (class-conditional, hook-based spectral norm with ``weight_u``/``weight_v`` buffers, per-truncation
  batch-norm statistics) at 8×8, through :class:`~mlvgm_data.generators.BigGANAdapter`.
* ``stylegan2``: lucidrains' stylegan2-pytorch (``stylegan2-pytorch==1.9.0``, installed with
  ``--no-deps``): its ``StyleVectorizer`` (the mapping network) and ``Generator`` (modulated
  convolutions, one style per block, a noise image) at 16×16, through
  :class:`~mlvgm_data.generators.StyleGANAdapter` by way of :class:`LucidrainsParts`, the NVlabs
  calls the adapter makes put on lucidrains' API (which the adapter does not speak itself).

Importing lucidrains' module needs two things it does not use for generation: torchvision and
aim at module import (its data loading, image saving and experiment tracking), and an
``assert torch.cuda.is_available()`` at module import (its trainer moves everything to the GPU).
:func:`_import_lucidrains` gives the first two the import stand-ins under ``tests/stubs`` (on
``sys.path`` only during that import, and removed from ``sys.modules`` after it, so no other test
sees a torchvision) and answers the assert's question with yes during that import only; its real
dependencies (einops, kornia, vector_quantize_pytorch, fire, retry) are the installed packages.

Each factory builds the same weights on every call (the global random state is left alone): a
fresh copy is what a resumed process loads. Zero-argument, so the CLI takes them as
``real_models:biggan`` and ``real_models:stylegan2``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from unittest import mock

import torch
from torch import nn

from mlvgm_data.generators import BigGANAdapter, StyleGANAdapter

STUBS = Path(__file__).resolve().parent / "stubs"
BIGGAN_CLASSES = 5
STYLEGAN_SIZE = 16


def biggan() -> BigGANAdapter:
    """pytorch-pretrained-BigGAN at 8×8: z of 12 in the adapter's default 6 chunks, 5 classes."""
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig

    # 4×4 × 16·width channels, halved by each block down to width (its skip connections drop half)
    layers = [(True, 16, 8), (False, 8, 4), (False, 4, 2), (False, 2, 1)]
    config = BigGANConfig(output_dim=8, z_dim=12, class_embed_dim=12, channel_width=4, num_classes=BIGGAN_CLASSES,
                          layers=layers, attention_layer_position=1, n_stats=51)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BigGAN(config)
        with torch.no_grad():
            # Its last batch norm's affine weights are torch.Tensor(n) (uninitialised memory): the
            # checkpoint fills them. Give them, and the per-truncation statistics, seeded values.
            for module in model.modules():
                if type(module).__name__ == "BigGANBatchNorm":
                    module.running_means.normal_(0.0, 0.1)
                    module.running_vars.uniform_(0.5, 1.5)
                    if not module.conditional:
                        module.weight.normal_(1.0, 0.1)
                        module.bias.normal_(0.0, 0.1)
    # its samples are truncation · truncnorm(−2, 2) passed with the truncation (README of the package)
    return BigGANAdapter(model.eval(), truncation=0.4).eval()


def _import_lucidrains() -> ModuleType:
    """``stylegan2_pytorch.stylegan2_pytorch`` with the import stand-ins (see the module docs)."""
    name = "stylegan2_pytorch.stylegan2_pytorch"
    if name in sys.modules:
        return sys.modules[name]
    import einops  # noqa: F401  (its real dependencies, imported before the stand-ins go on the path)
    import fire  # noqa: F401
    import kornia.filters  # noqa: F401
    import retry  # noqa: F401
    import vector_quantize_pytorch  # noqa: F401

    stubbed = ("torchvision", "aim")
    present = {m for m in sys.modules if m.split(".")[0] in stubbed}
    sys.path.insert(0, str(STUBS))
    try:
        with mock.patch("torch.cuda.is_available", return_value=True):
            return importlib.import_module(name)
    finally:
        sys.path.remove(str(STUBS))
        for m in [m for m in sys.modules if m.split(".")[0] in stubbed and m not in present]:
            del sys.modules[m]


class LucidrainsParts(nn.Module):
    """The NVlabs API that :class:`StyleGANAdapter` calls, on lucidrains' mapping ``S`` and
    synthesis ``G``: ``mapping(z, c)`` is ``S(z)`` for each of ``G``'s ``num_layers`` styles,
    ``synthesis(ws, noise_mode)`` is ``G(ws, noise)``. lucidrains draws the noise image uniform in
    [0, 1) at each call (``noise_mode="random"``); ``"const"`` uses one such image drawn at build
    (a persistent buffer, as NVlabs' ``noise_const``), ``"none"`` zeros."""

    def __init__(self, mapping: nn.Module, synthesis: nn.Module) -> None:
        super().__init__()
        self.S, self.G = mapping, synthesis
        self.z_dim = self.w_dim = int(synthesis.latent_dim)
        self.c_dim = 0
        self.num_ws = int(synthesis.num_layers)
        self.img_resolution = int(synthesis.image_size)
        self.img_channels = 3
        g = torch.Generator().manual_seed(1)
        self.register_buffer("noise_const", torch.rand(1, self.img_resolution, self.img_resolution, 1, generator=g))

    def mapping(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        if truncation_psi != 1.0:
            raise ValueError("lucidrains' mapping has no w_avg: give StyleGANAdapter w_avg= for truncation")
        return self.S(z).unsqueeze(1).expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        n, size = ws.shape[0], self.img_resolution
        if noise_mode == "const":
            noise = self.noise_const.expand(n, -1, -1, -1)
        elif noise_mode == "none":
            noise = ws.new_zeros(n, size, size, 1)
        else:
            noise = torch.rand(n, size, size, 1, device=ws.device)
        return self.G(ws, noise)


def stylegan2() -> StyleGANAdapter:
    """lucidrains' StyleGAN2 at 16×16 (3 styles, latent 16, 2 mapping layers), one group per style;
    its images are in [0, 1] (its sampler clamps them so)."""
    lucidrains = _import_lucidrains()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        parts = LucidrainsParts(lucidrains.StyleVectorizer(16, 2, lr_mul=0.1),
                                lucidrains.Generator(STYLEGAN_SIZE, 16, network_capacity=2))
    return StyleGANAdapter(parts.eval(), layer_groups=3, output_range=(0.0, 1.0)).eval()


FACTORIES = {"biggan-hf": biggan, "stylegan2-lucidrains": stylegan2}
"""The real-code models by the name the contract suite's ids use."""
