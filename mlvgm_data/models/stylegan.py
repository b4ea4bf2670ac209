"""A small StyleGAN2-like generator (its GAN trainer: :mod:`mlvgm_data.apps.train.stylegan`).

The network follows the NVlabs StyleGAN2 layout at a small size: an 8→4-layer mapping MLP
(equalised learning rate, lr multiplier 0.01) to ``w``; a synthesis network from a learned 4²
constant with two modulated 3×3 convolutions per resolution (weight demodulation, per-layer
noise, bilinear upsampling) and skip-connected toRGB layers; ``num_ws = 2·log2(R) − 2`` per-layer
styles (8 at 32²). The generator is the :class:`~mlvgm_data.generators.StyleGANAdapter` around
that network, so its latent groups are the same tied W+ layer groups (default 4: at 32², ws
0–1 → 4², 2–3 → 8², 4–5 → 16², 6–7 → 32²) and "perturb one group" is style mixing.

On labelled data (``--data shapes``) the model is class-conditional by default, as in
StyleGAN2-ADA: the mapping embeds the one-hot class beside z, and the discriminator scores by
projection onto a class embedding, takes its minibatch stddev within each class and has an
auxiliary class head (see :class:`Discriminator` for why), so every class is learned (an
unconditional GAN on Shapes dropped half the shapes); ``--no-conditional`` trains without labels.

"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..generators.adapters import StyleGANAdapter

FAMILY = "stylegan"
DEFAULT_CONFIG: dict[str, Any] = {
    "resolution": 32,
    "z_dim": 64,
    "w_dim": 128,
    "mapping_layers": 4,
    "channel_base": 512,
    # 32 channels (170 k parameters with a class input) train at ~8 steps/s on one CPU core;
    # 128 took 7.5 s a step.
    "channel_max": 32,
    "layer_groups": 4,
    "truncation_psi": 1.0,
    "c_dim": 0,
}


def lrelu(x: torch.Tensor) -> torch.Tensor:
    # sqrt(2) keeps the activations' scale through leaky ReLU (StyleGAN's gain).
    return F.leaky_relu(x, 0.2) * math.sqrt(2.0)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights scaled at run time)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init) / lr_mul))
        self.gain = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.gain, self.bias * self.lr_mul)


class EqualConv(nn.Module):
    """Conv layer with equalised learning rate."""

    def __init__(self, cin: int, cout: int, k: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.gain = 1.0 / math.sqrt(cin * k * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.gain, self.bias, padding=self.weight.shape[-1] // 2)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


def check_onehot(c: torch.Tensor | None, n: int, c_dim: int, owner: str) -> None:
    if c is None or c.shape != (n, c_dim):
        raise ValueError(f"this {owner} is class-conditional: c must be one-hot [{n}, {c_dim}], "
                         f"got {None if c is None else list(c.shape)}")


class Mapping(nn.Module):
    """(z, c) → w MLP; ``forward`` broadcasts w to all ``num_ws`` layers (the NVlabs mapping call).

    A class-conditional mapping (``c_dim > 0``) embeds the one-hot class to ``w_dim`` and feeds
    the normalised z and embedding side by side, as StyleGAN2-ADA does."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, layers: int, c_dim: int = 0) -> None:
        super().__init__()
        self.num_ws, self.c_dim = num_ws, c_dim
        self.embed = EqualLinear(c_dim, w_dim) if c_dim else None
        dims = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * layers
        self.net = nn.ModuleList(EqualLinear(a, b, lr_mul=0.01) for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def w(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = _normalize(z)
        if self.embed is not None:
            check_onehot(c, z.shape[0], self.c_dim, "mapping")
            x = torch.cat([x, _normalize(self.embed(c))], dim=1)
        for layer in self.net:
            x = lrelu(layer(x))
        return x

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.w(z, c).unsqueeze(1).expand(-1, self.num_ws, -1)


class ModulatedConv(nn.Module):
    """Style-modulated conv (StyleGAN2's non-fused path: scale inputs, conv, demodulate)."""

    def __init__(self, cin: int, cout: int, w_dim: int, res: int, k: int = 3, up: bool = False,
                 rgb: bool = False) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain = 1.0 / math.sqrt(cin * k * k)
        self.up, self.rgb = up, rgb
        if not rgb:
            self.noise_strength = nn.Parameter(torch.zeros(()))
            self.register_buffer("noise_const", torch.randn(res, res))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        s = self.affine(w)
        weight = self.weight * self.gain
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = F.conv2d(x * s[:, :, None, None], weight, padding=weight.shape[-1] // 2)
        if self.rgb:
            return x + self.bias[None, :, None, None]
        demod = (s.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()
        x = x * demod[:, :, None, None]
        if noise_mode == "random":
            x = x + torch.randn_like(x[:, :1]) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None])


def channels_at(res: int, base: int, cap: int) -> int:
    return max(1, min(base // res, cap))


class Synthesis(nn.Module):
    """Const 4² → two modulated convs per resolution → skip-summed RGB, in ≈[-1, 1]."""

    def __init__(self, resolution: int, w_dim: int, channel_base: int, channel_max: int) -> None:
        super().__init__()
        log2 = int(math.log2(resolution))
        self.resolutions = [2 ** i for i in range(2, log2 + 1)]
        ch = {r: channels_at(r, channel_base, channel_max) for r in self.resolutions}
        self.const = nn.Parameter(torch.randn(ch[4], 4, 4))
        self.convs = nn.ModuleList()
        self.torgbs = nn.ModuleList()
        for r in self.resolutions:
            if r > 4:
                self.convs.append(ModulatedConv(ch[r // 2], ch[r], w_dim, r, up=True))
            self.convs.append(ModulatedConv(ch[r], ch[r], w_dim, r))
            self.torgbs.append(ModulatedConv(ch[r], 3, w_dim, r, k=1, rgb=True))
        self.num_ws = len(self.convs) + 1

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        # ws index of each layer as in NVlabs: a block's toRGB shares its index with the next
        # block's first conv.
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], noise_mode)
        img = self.torgbs[0](x, ws[:, 1], noise_mode)
        for b in range(1, len(self.resolutions)):
            i = 2 * b - 1
            x = self.convs[i](x, ws[:, i], noise_mode)
            x = self.convs[i + 1](x, ws[:, i + 1], noise_mode)
            img = F.interpolate(img, scale_factor=2.0, mode="bilinear", align_corners=False)
            img = img + self.torgbs[b](x, ws[:, i + 2], noise_mode)
        return img


class Network(nn.Module):
    """The generator network with the NVlabs attributes the adapter reads."""

    def __init__(self, resolution: int, z_dim: int, w_dim: int, mapping_layers: int, channel_base: int,
                 channel_max: int, c_dim: int = 0) -> None:
        super().__init__()
        self.synthesis = Synthesis(resolution, w_dim, channel_base, channel_max)
        self.z_dim, self.w_dim, self.c_dim = z_dim, w_dim, c_dim
        self.num_ws = self.synthesis.num_ws
        self.img_resolution, self.img_channels = resolution, 3
        self.mapping = Mapping(z_dim, w_dim, self.num_ws, mapping_layers, c_dim)


def check_config(config: dict) -> dict:
    """``DEFAULT_CONFIG`` updated with ``config``; unknown keys or bad values are a ValueError."""
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown stylegan config keys {unknown}; known: {sorted(DEFAULT_CONFIG)}")
    cfg = dict(DEFAULT_CONFIG, **config)
    res = cfg["resolution"]
    if not isinstance(res, int) or res < 8 or res & (res - 1):
        raise ValueError(f"stylegan resolution must be a power of two >= 8, got {res!r}")
    for key in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"stylegan {key} must be a positive int, got {cfg[key]!r}")
    c_dim = cfg["c_dim"]
    if isinstance(c_dim, bool) or not isinstance(c_dim, int) or c_dim < 0 or c_dim == 1:
        raise ValueError(f"stylegan c_dim must be 0 (unconditional) or the number of classes (>= 2), got {c_dim!r}")
    psi = cfg["truncation_psi"]
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not math.isfinite(psi) or not 0 < psi <= 1:
        raise ValueError(f"stylegan truncation_psi must be a number in (0, 1], got {psi!r}")
    return cfg


class StyleGANGenerator(StyleGANAdapter):
    """The built-in StyleGAN-like MLVGM: :class:`StyleGANAdapter` around a :class:`Network`.

    Latent groups ``w0 … w{k-1}`` (``(z_dim,)``, tied to ``z``); ``decode`` uses the constant
    per-layer noise, so images are a function of the latents. With ``c_dim > 0`` the generator is
    class-conditional (``num_classes = c_dim``) and ``decode`` needs ``classes``.
    """

    def __init__(self, **config: Any) -> None:
        cfg = check_config(config)
        net = Network(cfg["resolution"], cfg["z_dim"], cfg["w_dim"], cfg["mapping_layers"],
                      cfg["channel_base"], cfg["channel_max"], cfg["c_dim"])
        groups = cfg["layer_groups"]
        super().__init__(net, layer_groups=groups if isinstance(groups, int) else [tuple(g) for g in groups],
                         truncation_psi=cfg["truncation_psi"], noise_mode="const", output_range=(-1.0, 1.0))
        self.config = cfg


def build(config: dict) -> StyleGANGenerator:
    """The generator of a saved ``stylegan`` config (the registry's builder for this family)."""
    return StyleGANGenerator(**config)
