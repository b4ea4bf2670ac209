"""A small NVAE-like hierarchical VAE (top-down latent groups) with Skip-VAE and VMI-VAE options.

Groups, coarse to fine (default at 32²): ``z1`` a 32-d vector (global: what, where, which
colours), ``z2`` ``[8, 4, 4]`` and ``z3`` ``[4, 8, 8]`` (spatial detail). Every group is
expressed in standard-normal *noise* space ε: the top group is z₁ = μ₀ + σ₀·ε₁ with a learned
diagonal prior (per class for a class-conditional model); a lower group has a
conditional prior N(μ_l, σ_l²) computed from the decoder state above it and
z_l = μ_l + σ_l·ε_l. ``decode`` takes ε at temperature ``t`` (``config["temperature"]``, default
0.8): z_l = μ_l(z_<l) + σ_l(z_<l)·t·ε_l.

The posterior q(ε_l | x, z_<l) is a Gaussian in that same noise space (the relative
parameterisation of NVAE), so the KL of group l is KL(q(ε_l)‖N(0, I)) and ``encode(x)`` returns
exactly those Gaussians.

Options (config keys):
- ``skip`` (Skip-VAE, Dieng et al. 2019): every decoder block receives a projection of every
  latent group already sampled, not only the block where the group enters.
- ``vmi_weight`` / ``vmi_groups`` (VMI-VAE, Serdega 2020), training only: an auxiliary network
  q_aux(ε|x̂) predicts the chosen groups' noise from a generated image x̂ = decode(ε); the
  objective adds −λ·Σ_g E log q_aux(ε_g|x̂), a variational lower bound on I(ε_g; x̂) up to the
  constant H(ε_g).
- ``num_classes`` (a class-conditional VAE): the top prior gets a per-class offset, the decoder a
  class code, and ``decode``/``forward`` need ``classes``; a small CNN head q(class | x), trained
  on its own (its loss reaches no other weight), lets ``encode(x)`` run without labels.

- ``image_channels``: 3 (RGB, the default) or 1 (grey: ``--data fashion-mnist``).

The likelihood is a Gaussian with fixed standard deviation ``sigma`` around the decoder's mean
image; ELBO figures are in nats per image.

Why one file (over 450 lines): its blocks, latent skips, encoder and heads exist only for
:class:`HierarchicalVAE` and share its config checks; the trainer is in :mod:`mlvgm_data.apps.train.hvae`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..generators.base import MLVGM, check_classes
from ..latents import LatentGroup, LatentSpec

DEFAULT_CONFIG: dict = {
    "resolution": 32,
    # 3 (RGB) or 1 (grey, e.g. Fashion-MNIST)
    "image_channels": 3,
    # decoder widths and residual blocks at 4², 8², … up to resolution/2 (the last stage's output
    # is pixel-shuffled to full size, so no layer runs at full resolution)
    "channels": [48, 32, 24],
    "blocks": [1, 1, 1],
    # per-pixel (1×1) residual blocks after them: a cheap spatial-broadcast-style renderer
    "point_blocks": [0, 0, 1],
    # the top group is mapped densely onto every stage up to this resolution
    "sketch_res": 8,
    "groups": [["z1", 32, 1], ["z2", 8, 4], ["z3", 4, 8]],
    # encoder widths at full resolution, /2, … down to 4²
    "enc_channels": [16, 32, 48, 64],
    "skip": True,
    "sigma": 0.1,
    "temperature": 0.8,
    "vmi_weight": 0.0,
    "vmi_groups": [],
    # > 0: a class-conditional model (a CVAE): class-dependent top prior, class input to the
    # decoder, and a small classifier q(class | x) so ``encode(x)`` works without labels
    "num_classes": 0,
}

_LOG_2PI = math.log(2.0 * math.pi)
VECTOR_FEATURES = 256


def make_config(overrides: Mapping | None = None) -> dict:
    """``DEFAULT_CONFIG`` with ``overrides``; checks the keys and the group layout."""
    cfg = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULT_CONFIG.items()}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"unknown hvae config keys {unknown}; known: {sorted(cfg)}")
    cfg.update(overrides)
    _check_types(cfg)
    res = cfg["resolution"]
    stages = _stage_resolutions(res, len(cfg["channels"]))
    if stages[-1] * 2 != res:
        raise ValueError(
            f"hvae: {len(cfg['channels'])} decoder stages from 4² end at {stages[-1]}², which must be "
            f"resolution/2 = {res // 2} (give one width per stage in 'channels')"
        )
    for key in ("blocks", "point_blocks"):
        if len(cfg[key]) != len(cfg["channels"]):
            raise ValueError(f"hvae: {key!r} needs one count per decoder stage ({len(cfg['channels'])}), "
                             f"got {cfg[key]}")
    names = [g[0] for g in cfg["groups"]]
    if not cfg["groups"] or cfg["groups"][0][2] != 1:
        raise ValueError("hvae: the first group must be a vector group (resolution 1)")
    for name, ch, r in cfg["groups"][1:]:
        if r != 1 and r not in stages:
            raise ValueError(f"hvae: group {name!r} at {r}² is not a decoder stage resolution {stages}")
    last = [g[2] for g in cfg["groups"]]
    if last != sorted(last):
        raise ValueError(f"hvae: groups must go from coarse to fine, got resolutions {last}")
    for g in cfg["vmi_groups"]:
        if g not in names:
            raise ValueError(f"hvae: vmi_groups names unknown group {g!r}; groups are {names}")
    if cfg["vmi_weight"] < 0:
        raise ValueError(f"hvae: vmi_weight must be >= 0, got {cfg['vmi_weight']}")
    if cfg["temperature"] <= 0 or cfg["sigma"] <= 0:
        raise ValueError("hvae: temperature and sigma must be > 0")
    if cfg["image_channels"] not in (1, 3) or isinstance(cfg["image_channels"], bool):
        raise ValueError(f"hvae: image_channels must be 1 (grey) or 3 (RGB), got {cfg['image_channels']!r}")
    if not isinstance(cfg["num_classes"], int) or cfg["num_classes"] < 0 or cfg["num_classes"] == 1:
        raise ValueError(f"hvae: num_classes must be 0 (unconditional) or >= 2, got {cfg['num_classes']!r}")
    return cfg


def _int_list(value: object, key: str, low: int, high: int) -> None:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value):
        raise ValueError(f"hvae: {key!r} must be a non-empty list of ints in [{low}, {high}], got {value!r}")


def _check_types(cfg: dict) -> None:
    """Types and ranges of every key, before any arithmetic on them (a config is a user file)."""
    res = cfg["resolution"]
    if isinstance(res, bool) or not isinstance(res, int) or res < 8 or res > 512 or res & (res - 1):
        raise ValueError(f"hvae: 'resolution' must be a power of two in [8, 512], got {res!r}")
    for key, low, high in (("channels", 1, 1024), ("blocks", 0, 16), ("point_blocks", 0, 16),
                           ("enc_channels", 1, 1024)):
        _int_list(cfg[key], key, low, high)
    sketch = cfg["sketch_res"]
    if isinstance(sketch, bool) or not isinstance(sketch, int) or not 1 <= sketch <= res:
        raise ValueError(f"hvae: 'sketch_res' must be an int in [1, {res}], got {sketch!r}")
    groups = cfg["groups"]
    if not isinstance(groups, list) or not groups or not all(
            isinstance(g, list) and len(g) == 3 and isinstance(g[0], str) and g[0].isidentifier()
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024 for v in g[1:]) for g in groups):
        raise ValueError(f"hvae: 'groups' must be a list of [name, channels, resolution] (an identifier and two "
                         f"ints in [1, 1024]), got {groups!r}")
    for key in ("sigma", "temperature"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 100:
            raise ValueError(f"hvae: {key!r} must be a finite number in (0, 100], got {v!r}")
    v = cfg["vmi_weight"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"hvae: 'vmi_weight' must be a finite number >= 0, got {v!r}")
    if not isinstance(cfg["vmi_groups"], list) or not all(isinstance(g, str) for g in cfg["vmi_groups"]):
        raise ValueError(f"hvae: 'vmi_groups' must be a list of group names, got {cfg['vmi_groups']!r}")
    if not isinstance(cfg["skip"], bool):
        raise ValueError(f"hvae: 'skip' must be true or false, got {cfg['skip']!r}")


def _stage_resolutions(resolution: int, n: int) -> list[int]:
    return [4 * 2**i for i in range(n)]


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) ‖ N(0, 1)) summed over all but the batch dimension."""
    return 0.5 * (mu * mu + logvar.exp() - logvar - 1.0).flatten(1).sum(1)


class ResBlock(nn.Module):
    """x + conv(act(conv(act(x)))) with 3×3 convs, or 1×1 convs (hidden width 2×) if ``pointwise``."""

    def __init__(self, channels: int, pointwise: bool = False) -> None:
        super().__init__()
        hidden = 2 * channels if pointwise else channels
        self.conv1 = _conv(channels, hidden, 1 if pointwise else 3)
        self.conv2 = _conv(hidden, channels, 1 if pointwise else 3)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class LatentSkip(nn.Module):
    """Projects one latent group to a block's width, at the group's own resolution (the
    Skip-VAE connection; :func:`add_skips` brings it to the block's resolution)."""

    def __init__(self, group_channels: int, group_res: int, channels: int) -> None:
        super().__init__()
        self.vector = group_res == 1
        self.proj = nn.Linear(group_channels, channels) if self.vector else nn.Conv2d(group_channels, channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z)[:, :, None, None] if self.vector else self.proj(z)


def add_upsampled(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + nearest_upsample(b)`` for ``b`` at the same or an integer-times coarser resolution
    (or 1×1), by a broadcasting add: the upsampled ``b`` is never materialised."""
    n, c, r, _ = a.shape
    rb = b.shape[-1]
    if rb in (1, r):
        return a + b
    k = r // rb
    return (a.view(n, c, rb, k, rb, k) + b[:, :, :, None, :, None]).view(n, c, r, r)


def add_skips(h: torch.Tensor, skips: nn.ModuleDict, zs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``h + Σ_g upsample(skips[g](z_g))``, summed coarse to fine (nearest upsampling is linear,
    so this equals upsampling every term)."""
    total = None
    for name, skip in skips.items():  # coarse → fine
        y = skip(zs[name])
        total = y if total is None else add_upsampled(y, total)
    return h if total is None else add_upsampled(h, total)


class DecoderBlock(nn.Module):
    """A residual block; with skip connections, first adds ``skips[g](z_g)`` for each group g."""

    def __init__(self, channels: int, res: int, skip_groups: Sequence[tuple[str, int, int]],
                 pointwise: bool = False) -> None:
        super().__init__()
        self.block = ResBlock(channels, pointwise)
        self.skips = nn.ModuleDict({name: LatentSkip(ch, r, channels) for name, ch, r in skip_groups})

    def forward(self, h: torch.Tensor, zs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.block(add_skips(h, self.skips, zs))


class Encoder(nn.Module):
    """Bottom-up features at every resolution below the input's and the top group's posterior."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        widths = cfg["enc_channels"]
        res = cfg["resolution"]
        n_down = int(math.log2(res // 4))
        if len(widths) != n_down + 1:
            raise ValueError(f"hvae: enc_channels needs {n_down + 1} widths at {res}², got {len(widths)}")
        self.stem = nn.Sequential(_conv(cfg["image_channels"], widths[0]), nn.SiLU())
        self.downs = nn.ModuleList()
        self.stages = nn.ModuleList()
        for i in range(n_down):
            self.downs.append(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1))
            self.stages.append(ResBlock(widths[i + 1]))
        top_ch = cfg["groups"][0][1]
        self.vector = nn.Sequential(
            nn.SiLU(), nn.Conv2d(widths[-1], 32, 1), nn.Flatten(),
            nn.SiLU(), nn.Linear(32 * 16, VECTOR_FEATURES), nn.SiLU(),
        )
        self.top = nn.Linear(VECTOR_FEATURES, 2 * top_ch)
        self.resolutions = [res // 2 ** (i + 1) for i in range(n_down)]

    def forward(self, x: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
        """→ (features by resolution, with key 1 the global feature vector; top mu; top logvar)."""
        h = self.stem(x * 2.0 - 1.0)
        feats = {}
        for res, down, stage in zip(self.resolutions, self.downs, self.stages):
            h = stage(down(h))
            feats[res] = h
        feats[1] = self.vector(h)
        mu, logvar = self.top(feats[1]).chunk(2, dim=1)
        return feats, mu, logvar.clamp(-12.0, 6.0)


class HierarchicalVAE(MLVGM):
    """NVAE-like top-down VAE; an MLVGM whose ``decode`` maps noise groups to images in [0, 1].

    ``encode(x)`` → ``{group: (mu, logvar)}``, the posterior Gaussians in the noise space of
    ``latent_spec`` (each lower group conditioned on the posterior means of the groups above),
    so ``KL(q‖N(0, I))`` of a group is its KL term. ``reconstruct(x)`` decodes those means.
    """

    def __init__(self, config: Mapping | None = None) -> None:
        super().__init__()
        cfg = make_config(config)
        self.config = cfg
        res = cfg["resolution"]
        widths = cfg["channels"]
        self.stage_res = _stage_resolutions(res, len(widths))
        self.groups = [(g[0], int(g[1]), int(g[2])) for g in cfg["groups"]]
        self.latent_spec = LatentSpec(
            [LatentGroup(n, (c,) if r == 1 else (c, r, r)) for n, c, r in self.groups]
        )
        self.image_shape = (int(cfg["image_channels"]), res, res)
        self.temperature = float(cfg["temperature"])
        self.sigma = float(cfg["sigma"])
        self.skip = bool(cfg["skip"])

        top_name, top_ch, _ = self.groups[0]
        # The top group's prior N(top_mu, exp(top_logstd)²) is learned (diagonal): z₁ = μ₀ + σ₀·ε₁.
        self.top_mu = nn.Parameter(torch.zeros(top_ch))
        self.top_logstd = nn.Parameter(torch.zeros(top_ch))
        # The top group paints each stage up to sketch_res² directly, through an MLP and one
        # dense layer per stage: a vector → layout map that convolutions alone learn slowly.
        self.top_mlp = nn.Sequential(nn.Linear(top_ch, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU())
        self.num_classes = int(cfg["num_classes"]) or None
        if self.num_classes:
            # Per-class offsets of the top prior (zero at init: the shared prior) and a class
            # code added to the top features, so the class need not be carried by z₁.
            self.class_prior = nn.Embedding(self.num_classes, 2 * top_ch)
            nn.init.zeros_(self.class_prior.weight)
            self.class_embed = nn.Embedding(self.num_classes, 128)
        self.sketch = nn.ModuleList(
            [nn.Linear(128, w * r * r) for r, w in zip(self.stage_res, widths) if r <= cfg["sketch_res"]]
        )
        # Learned position features per stage: with the latents added per channel (skip
        # connections), blocks compute functions of (position, z) as a spatial broadcast decoder.
        self.pos = nn.ParameterList(
            [nn.Parameter(0.1 * torch.randn(1, w, r, r)) for r, w in zip(self.stage_res, widths)]
        )
        self._build_group_nets(cfg)
        self._build_stages(cfg)
        self.out_skip = nn.ModuleDict({n: LatentSkip(c, r, widths[-1]) for n, c, r in self.groups} if self.skip else {})
        # 4 sub-pixels per output pixel and channel (pixel shuffle to full resolution)
        self.to_rgb = _conv(widths[-1], 4 * self.image_shape[0])
        self.encoder = Encoder(cfg)
        # q(class | x) for encode() without labels: its own small CNN, since a CVAE's encoder is
        # trained to leave the class out of its features.
        self.class_head = ClassHead(self.num_classes, self.image_shape[0]) if self.num_classes else None
        self.vmi_groups = list(cfg["vmi_groups"])
        self.vmi_weight = float(cfg["vmi_weight"])
        self.aux = AuxEncoder(cfg, [g for g in self.groups if g[0] in self.vmi_groups]) if self.vmi_groups else None
        # channels_last conv weights make every conv run channels-last (≈1.5× faster on CPU).
        self.to(memory_format=torch.channels_last)

    # Built in this order (the module registration order fixes the state dict's and the random
    # initialisation's order, which the trainer's reproduction of the shipped weights relies on).

    def _build_group_nets(self, cfg: dict) -> None:
        """Prior, posterior and injection nets of every group below the top one."""
        res, widths = cfg["resolution"], cfg["channels"]
        self.inject = nn.ModuleDict()
        self.prior = nn.ModuleDict()
        self.posterior = nn.ModuleDict()
        enc_width = {res // 2**i: w for i, w in enumerate(cfg["enc_channels"])}
        for name, ch, r in self.groups[1:]:
            if r == 1:
                # A further vector group: MLPs on the flattened 4² decoder state.
                flat = widths[0] * 16
                self.prior[name] = nn.Sequential(nn.Flatten(), nn.Linear(flat, 256), nn.SiLU(), nn.Linear(256, 2 * ch))
                self.posterior[name] = nn.Sequential(
                    nn.Linear(flat + VECTOR_FEATURES, 256), nn.SiLU(), nn.Linear(256, 2 * ch)
                )
                self.inject[name] = nn.Linear(ch, flat)
            else:
                w = widths[self.stage_res.index(r)]
                self.prior[name] = nn.Sequential(_conv(w, w), nn.SiLU(), _conv(w, 2 * ch))
                self.posterior[name] = nn.Sequential(_conv(w + enc_width[r], w), nn.SiLU(), _conv(w, 2 * ch))
                self.inject[name] = nn.Conv2d(ch, w, 1)
            for net in (self.prior[name], self.posterior[name]):
                nn.init.zeros_(net[-1].weight)
                nn.init.zeros_(net[-1].bias)

    def _build_stages(self, cfg: dict) -> None:
        """The decoder's blocks per stage and the upsampling between stages."""
        widths = cfg["channels"]
        self.blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (r, w) in enumerate(zip(self.stage_res, widths)):
            known = [g for g in self.groups if g[2] <= r]
            stage = nn.ModuleList()
            # Without skip connections a group enters only at its own stage (via inject/sketch).
            for _ in range(cfg["blocks"][i]):
                stage.append(DecoderBlock(w, r, known if self.skip else []))
            for _ in range(cfg["point_blocks"][i]):
                stage.append(DecoderBlock(w, r, known if self.skip else [], pointwise=True))
            self.blocks.append(stage)
            if i + 1 < len(widths):
                # Sub-pixel upsampling: the conv runs at the lower resolution.
                self.ups.append(nn.Sequential(_conv(w, 4 * widths[i + 1]), nn.PixelShuffle(2), nn.SiLU()))

    # --- the top-down pass -------------------------------------------------------------------

    def _top_prior(self, classes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ₀, log σ₀) of the top group's prior, ``[C]`` or ``[N, C]`` per class."""
        if not self.num_classes:
            return self.top_mu, self.top_logstd
        if classes is None:
            raise ValueError(f"this hvae is class-conditional ({self.num_classes} classes): pass classes")
        mu, logstd = self.class_prior(classes).chunk(2, dim=1)
        return self.top_mu + mu, self.top_logstd + logstd

    def _top_down(
        self, first: torch.Tensor, sample_group, n: int, classes: torch.Tensor | None = None, latents_only: bool = False
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Runs the decoder from the top group's noise ``first`` (ε₁, already scaled by any
        temperature); ``sample_group(name, h, prior_mu, prior_logstd) -> z`` picks each lower
        group's z from the state ``h`` above it. Returns (mean image, {group: z}); with
        ``latents_only`` it stops once the last group is picked (its state needs no later stage)
        and returns no image."""
        top_name = self.groups[0][0]
        mu0, logstd0 = self._top_prior(classes)
        z1 = mu0 + logstd0.exp() * first
        zs = {top_name: z1}
        top = self.top_mlp(z1)
        if self.num_classes:
            top = top + self.class_embed(classes)
        h = self.pos[0]
        gi = 1
        for i, r in enumerate(self.stage_res):
            h = h + self.pos[i] if i else h
            if i < len(self.sketch):
                h = h + self.sketch[i](top).view(n, -1, r, r)
            while gi < len(self.groups) and self.groups[gi][2] <= r:
                name = self.groups[gi][0]
                mu_p, logstd_p = self.prior[name](h).chunk(2, dim=1)
                z = sample_group(name, h, mu_p, logstd_p.clamp(-7.0, 3.0))
                zs[name] = z
                h = h + self.inject[name](z).view_as(h)
                gi += 1
            if latents_only and gi == len(self.groups):
                return None, zs
            for block in self.blocks[i]:
                h = block(h, zs)
            if i < len(self.ups):
                h = self.ups[i](h)
        h = add_skips(h, self.out_skip, zs)
        rgb = torch.sigmoid(F.pixel_shuffle(self.to_rgb(F.silu(h)), 2))
        return rgb.contiguous(), zs

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        t = self.temperature
        top = self.groups[0][0]
        eps = {k: v.float() for k, v in latents.items()}
        n = eps[top].shape[0]

        def prior_sample(name, h, mu_p, logstd_p):
            return mu_p + logstd_p.exp() * (t * eps[name])

        return self._top_down(t * eps[top], prior_sample, n, classes)[0]

    # --- inference ---------------------------------------------------------------------------

    def _posterior_pass(
        self, x: torch.Tensor, sample: bool, top_only: bool = False, classes: torch.Tensor | None = None,
        latents_only: bool = False,
    ) -> tuple[torch.Tensor | None, dict, dict]:
        """Top-down pass with posterior noise (sampled, or the mean): (recon mean, {g: (m, logvar)}, {g: ε}).
        With ``top_only`` the lower groups sit at their prior means (ε = 0) and get no posterior.
        A class-conditional model without ``classes`` uses its encoder's class prediction."""
        feats, mu1, logvar1 = self.encoder(x)
        if self.num_classes and classes is None:
            classes = self.class_head(x).argmax(dim=1)
        # The encoder's Gaussian in z₁, expressed in the noise space of the learned top prior.
        mu0, logstd0 = self._top_prior(classes)
        mu1 = (mu1 - mu0) * torch.exp(-logstd0)
        logvar1 = logvar1 - 2.0 * logstd0
        top = self.groups[0][0]
        post = {top: (mu1, logvar1)}
        eps = {}

        def draw(mu, logvar):
            return mu + (0.5 * logvar).exp() * torch.randn_like(mu) if sample else mu

        eps[top] = draw(mu1, logvar1)

        def posterior_sample(name, h, mu_p, logstd_p):
            if top_only:
                return mu_p
            if mu_p.dim() == 2:  # a vector group
                inp = torch.cat([h.flatten(1), feats[1]], dim=1)
            else:
                inp = torch.cat([h, feats[h.shape[-1]]], dim=1)
            m, lv = self.posterior[name](inp).chunk(2, dim=1)
            lv = lv.clamp(-12.0, 6.0)
            post[name] = (m, lv)
            e = draw(m, lv)
            eps[name] = e
            return mu_p + logstd_p.exp() * e

        recon, _ = self._top_down(eps[top], posterior_sample, x.shape[0], classes, latents_only)
        return recon, post, eps

    def _check_images(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"images must be a [N, {', '.join(map(str, self.image_shape))}] tensor, got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"images must be floating point in [0, 1], got {x.dtype}")
        return x.float()

    def encode(
        self, x: torch.Tensor, classes: torch.Tensor | None = None
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{group: (mu, logvar)}`` of q(ε|x), shaped like the group's latents (a
        class-conditional model predicts the class of ``x`` when ``classes`` is not given)."""
        x = self._check_images(x)
        check_classes(self, classes, x.shape[0])
        return self._posterior_pass(x, sample=False, classes=classes, latents_only=True)[1]

    def invert(self, images: torch.Tensor, classes: torch.Tensor | None = None, *, sample: bool = False,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The noise ``decode`` takes to remake ``images``: each group's posterior ε (its mean, or a
        draw with ``sample=True`` from ``generator``) over the sampling temperature, since ``decode``
        scales ε by it — so ``decode(invert(x))`` is :meth:`reconstruct` ``(x)``."""
        posterior = self.encode(images, classes)
        out = {}
        for name, (mu, logvar) in posterior.items():
            eps = mu
            if sample:
                noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
                eps = mu + (0.5 * logvar).exp() * noise
            out[name] = eps / self.temperature
        return out

    def reconstruct(self, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Decodes the posterior means (temperature 1): the model's reconstruction of ``x``."""
        x = self._check_images(x)
        check_classes(self, classes, x.shape[0])
        return self._posterior_pass(x, sample=False, classes=classes)[0]

    def forward(
        self, x: torch.Tensor, top_only: bool = False, classes: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One training pass: ``{"recon": mean image, "nll": [N], "kl": {group: [N]}}``, and for a
        class-conditional model (which needs ``classes`` here) ``"class_nll"``: [N], the encoder
        class head's cross-entropy. With ``top_only`` only the top group is inferred (the others
        sit at their prior means and have no KL): a first phase that makes z₁ carry the content."""
        x = self._check_images(x)
        check_classes(self, classes, x.shape[0])
        if self.num_classes and classes is None:
            raise ValueError(f"this hvae is class-conditional ({self.num_classes} classes): training needs classes")
        recon, post, _ = self._posterior_pass(x, sample=True, top_only=top_only, classes=classes)
        d = x[0].numel()
        nll = (((x - recon) ** 2).flatten(1).sum(1) / (2 * self.sigma**2)
               + 0.5 * d * (_LOG_2PI + 2 * math.log(self.sigma)))
        out = {"recon": recon, "nll": nll, "kl": {g: gaussian_kl(m, lv) for g, (m, lv) in post.items()}}
        if self.num_classes:
            logits = self.class_head(x)
            out["class_nll"] = F.cross_entropy(logits, classes, reduction="none")
        return out

    def vmi_terms(self, batch_size: int) -> dict[str, torch.Tensor]:
        """The VMI-VAE term per chosen group: −E log q_aux(ε_g | x̂) on ``batch_size`` generated
        images at temperature 1 (mean over the batch, in nats). Empty without ``vmi_groups``."""
        if self.aux is None:
            return {}
        dev = self.pos[0].device
        eps = {g.name: torch.randn(batch_size, *g.shape, device=dev) for g in self.latent_spec}
        classes = torch.randint(self.num_classes, (batch_size,), device=dev) if self.num_classes else None
        top = self.groups[0][0]
        x_hat = self._top_down(eps[top], lambda name, h, mu, ls: mu + ls.exp() * eps[name], batch_size, classes)[0]
        out = {}
        for g, (m, lv) in self.aux(x_hat).items():
            nll = 0.5 * ((eps[g] - m) ** 2 * torch.exp(-lv) + lv + _LOG_2PI)
            out[g] = nll.flatten(1).sum(1).mean()
        return out


class ClassHead(nn.Module):
    """A small CNN classifier q(class | x) of a class-conditional model."""

    def __init__(self, num_classes: int, image_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((image_channels, 16), (16, 32), (32, 64)):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


class AuxEncoder(nn.Module):
    """q_aux(ε_g | x) for the VMI groups: a small CNN with one Gaussian head per group."""

    def __init__(self, cfg: dict, groups: Sequence[tuple[str, int, int]]) -> None:
        super().__init__()
        res = cfg["resolution"]
        layers: list[nn.Module] = [_conv(cfg["image_channels"], 32), nn.SiLU()]
        r, w = res, 32
        while r > 4:
            layers += [nn.Conv2d(w, min(2 * w, 128), 4, stride=2, padding=1), nn.SiLU()]
            w, r = min(2 * w, 128), r // 2
        self.body = nn.Sequential(*layers)
        self.width = w
        self.heads = nn.ModuleDict()
        for name, ch, gr in groups:
            if gr == 1:
                self.heads[name] = nn.Sequential(nn.Flatten(), nn.Linear(w * 16, 2 * ch))
            else:
                self.heads[name] = nn.Sequential(nn.Upsample(size=(gr, gr), mode="nearest"), _conv(w, 2 * ch))

    def forward(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        h = self.body(x * 2.0 - 1.0)
        out = {}
        for name, head in self.heads.items():
            m, lv = head(h).chunk(2, dim=1)
            out[name] = (m, lv.clamp(-8.0, 6.0))
        return out


def build(config: dict) -> HierarchicalVAE:
    """The model of a saved ``hvae`` config (the registry's builder for this family)."""
    return HierarchicalVAE(config)
