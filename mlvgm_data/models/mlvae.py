"""ML-VAE (Bouchacourt & Tomioka 2017): a group content latent and a per-sample style latent.

Training data comes in groups whose members share something (the *content*). Each image's
encoder gives a Gaussian over content and one over style; the group's content posterior is the
product of its members' Gaussians (precision-weighted mean, summed precisions), so evidence
accumulates with group size, and one content sample is decoded with every member's own style.
The objective per group ``G`` is ``Σ_i E log p(x_i | c_G, s_i) − Σ_i KL(q(s_i|x_i) ‖ p) −
KL(q(c_G|X_G) ‖ p)``.

As a generator its latent groups are ``content`` and ``style`` (standard normal), so
``ViewPolicy({"style": Resample()})`` — keep content, resample style — gives views that share
what the training groups shared. ``encode(x, groups=None)`` returns the posteriors for the MI
utility's encoder metrics.

Groups in training (``mlvgm-data train --model mlvae``):

- ``--data shapes``: each group's members share the Shapes factors named by
  ``--group-factors`` (default ``class``: same shape kind, everything else independent; e.g.
  ``class,hue`` also shares the colour). Members are fresh Shapes items with those factor
  columns copied from the group's first member, so every factor keeps its Shapes distribution.
- ``--data FOLDER``: a group is images from the same sub-folder (an ImageFolder layout: one
  sub-folder per identity/class/object); sub-folders with fewer than ``--group-size`` images are
  skipped, and a folder without such sub-folders is rejected.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from ..generators.base import MLVGM
from ..latents import LatentGroup, LatentSpec

FAMILY = "mlvae"
DEFAULT_CONFIG: dict[str, Any] = {"resolution": 32, "content_dim": 16, "style_dim": 16, "width": 32,
                                  "temperature": 1.0}
_LOGVAR_RANGE = (-12.0, 8.0)


def product_of_gaussians(
    mu: torch.Tensor, logvar: torch.Tensor, groups: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The normalised product of the members' diagonal Gaussians, per group.

    ``mu``, ``logvar``: ``[N, D]``; ``groups``: ``[N]`` integer group ids (any values). Returns
    ``(mu_G [K, D], logvar_G [K, D], index [N])`` for the ``K`` distinct ids in sorted order;
    ``index[i]`` is member i's row. Precision ``1/σ²_G = Σ_i 1/σ²_i`` and mean
    ``μ_G = σ²_G · Σ_i μ_i/σ²_i``.
    """
    if mu.dim() != 2 or logvar.shape != mu.shape:
        raise ValueError(f"mu and logvar must both be [N, D], got {list(mu.shape)} and {list(logvar.shape)}")
    if groups.shape != mu.shape[:1] or groups.dtype.is_floating_point:
        raise ValueError(f"groups must be integer ids of shape [{mu.shape[0]}], "
                         f"got {groups.dtype} {list(groups.shape)}")
    ids, index = torch.unique(groups, return_inverse=True)
    precision = torch.exp(-logvar)
    total = mu.new_zeros(len(ids), mu.shape[1]).index_add_(0, index, precision)
    weighted = mu.new_zeros(len(ids), mu.shape[1]).index_add_(0, index, precision * mu)
    return weighted / total, -torch.log(total), index


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the last dimension."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def check_config(config: Mapping[str, Any]) -> dict:
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown mlvae config keys {unknown}; known: {sorted(DEFAULT_CONFIG)}")
    cfg = dict(DEFAULT_CONFIG, **config)
    for key in ("resolution", "content_dim", "style_dim", "width"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"mlvae {key} must be a positive int, got {cfg[key]!r}")
    t = cfg["temperature"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 10:
        raise ValueError(f"mlvae temperature must be a number in (0, 10], got {t!r}")
    res = cfg["resolution"]
    if res < 8 or res & (res - 1):
        raise ValueError(f"mlvae resolution must be a power of two >= 8, got {res}")
    return cfg


class MLVAE(MLVGM):
    """The ML-VAE: a conv encoder with content and style heads and a conv decoder of both.

    Latent groups ``content`` ``(content_dim,)`` and ``style`` ``(style_dim,)``; ``decode``
    returns the decoder's mean image in [0, 1] of the latents scaled by ``temperature``
    (below 1 keeps prior samples nearer the posteriors' bulk, as NVAE's sampling temperature).
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = check_config(config)
        self.config = cfg
        res, w, dc, ds = cfg["resolution"], cfg["width"], cfg["content_dim"], cfg["style_dim"]
        stages = int(math.log2(res)) - 2
        chans = [min(w * 2 ** i, 8 * w) for i in range(stages + 1)]
        enc: list[nn.Module] = []
        cin = 3
        for c in chans[:-1]:
            enc += [nn.Conv2d(cin, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = c
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(cin * 16, 4 * w), nn.LeakyReLU(0.2))
        self.content_head = nn.Linear(4 * w, 2 * dc)
        self.style_head = nn.Linear(4 * w, 2 * ds)
        top = chans[-2] if stages else w
        dec: list[nn.Module] = [nn.Linear(dc + ds, 4 * w), nn.LeakyReLU(0.2), nn.Linear(4 * w, top * 16),
                                nn.LeakyReLU(0.2), nn.Unflatten(1, (top, 4, 4))]
        cin = top
        for c in reversed([w] + chans[:-2]):
            dec += [nn.Upsample(scale_factor=2.0), nn.Conv2d(cin, c, 3, padding=1), nn.LeakyReLU(0.2)]
            cin = c
        self.decoder = nn.Sequential(*dec, nn.Conv2d(cin, 3, 3, padding=1))
        self.latent_spec = LatentSpec([LatentGroup("content", (dc,)), LatentGroup("style", (ds,))])
        self.image_shape = (3, res, res)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        cm, cl = self.content_head(h).chunk(2, dim=1)
        sm, sl = self.style_head(h).chunk(2, dim=1)
        return cm, cl.clamp(*_LOGVAR_RANGE), sm, sl.clamp(*_LOGVAR_RANGE)

    def _check_images(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"images must be [N, {', '.join(map(str, self.image_shape))}], got {got}")
        if not x.is_floating_point():
            raise ValueError(f"images must be floating point in [0, 1], got {x.dtype}")

    def encode(
        self, x: torch.Tensor, groups: torch.Tensor | None = None
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Posteriors ``{"content": (mu, logvar), "style": (mu, logvar)}``, each ``[N, dim]``.

        ``x``: images ``[N, 3, R, R]`` in [0, 1]. ``groups`` (``[N]`` integer ids) pools content
        over each group (product of Gaussians, repeated for every member); without it every
        image is its own group.
        """
        self._check_images(x)
        cm, cl, sm, sl = self._heads(x)
        if groups is not None:
            gm, gl, index = product_of_gaussians(cm, cl, torch.as_tensor(groups, device=x.device))
            cm, cl = gm[index], gl[index]
        return {"content": (cm, cl), "style": (sm, sl)}

    def invert(self, images: torch.Tensor, classes: torch.Tensor | None = None, *,
               groups: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The noise ``decode`` takes to remake ``images``: the posterior means over the
        temperature (``decode`` scales the latents by it); with ``groups`` the content is pooled
        over each group as in :meth:`encode`. ``classes`` is unused (the ML-VAE is unconditional)."""
        t = self.config["temperature"]
        return {name: mu / t for name, (mu, _) in self.encode(images, groups).items()}

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        z = torch.cat([latents["content"], latents["style"]], dim=1) * self.config["temperature"]
        return torch.sigmoid(self.decoder(z))

    def loss(self, x: torch.Tensor, groups: torch.Tensor, sigma: float, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """The negative ML-VAE ELBO per image (``loss``) and its parts, for images ``x`` in
        [0, 1] with group ids ``groups``; Gaussian likelihood with fixed ``sigma``; ``beta``
        weighs both KL terms (warm-up)."""
        self._check_images(x)
        cm, cl, sm, sl = self._heads(x)
        gm, gl, index = product_of_gaussians(cm, cl, groups)
        content = gm + torch.randn_like(gm) * (0.5 * gl).exp()
        style = sm + torch.randn_like(sm) * (0.5 * sl).exp()
        mean = torch.sigmoid(self.decoder(torch.cat([content[index], style], dim=1)))
        n = x.shape[0]
        pixels = x[0].numel()
        recon = ((x - mean).square().sum(dim=(1, 2, 3)) / (2 * sigma ** 2)
                 + pixels * (math.log(sigma) + 0.5 * math.log(2 * math.pi))).sum() / n
        kl_style = kl_standard_normal(sm, sl).sum() / n
        kl_content = kl_standard_normal(gm, gl).sum() / n
        return {"loss": recon + beta * (kl_style + kl_content), "recon": recon, "kl_style": kl_style,
                "kl_content": kl_content, "mse": (x - mean).square().mean()}


def build(config: dict) -> MLVAE:
    """The model of a saved ``mlvae`` config (the registry's builder for this family)."""
    return MLVAE(**config)
