"""NVAE-style hierarchical generators: the adapter over a user sampler, and reference samplers for
NVAE and VDVAE that re-run their published sampling loops with given ε."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...latents import LatentGroup, LatentSpec
from .common import WrapsCallable, agree, check_image_shape, check_range, follow_mode, to_unit_range


class HierarchicalAdapter(WrapsCallable):
    """Wraps a top-down sampler of a hierarchical VAE (NVAE, VDVAE, …).

    ``sampler(eps_list, t)`` gets one standard-normal tensor ε per latent group, ``[N, *shape]``
    in ``shapes`` order, and the temperature ``t``, and returns images. It runs the model's own
    top-down loop with ε given: group k's value is ``z_k = μ_k + σ_k · t · ε_k``, with μ_k, σ_k
    from the conditional prior given the groups above. So the latent groups are the ε's, and
    ``Keep()`` keeps a group's ε, not its value: when an earlier group changes, a kept group's
    z still moves through the conditional prior (its standardised position in it is what is
    kept) — the same as drawing the model's own samples with that ε.

    :class:`NVAESampler` and :class:`VDVAESampler` are such samplers for NVAE and VDVAE; they say
    their ``latent_shapes`` and ``image_shape``, which ``shapes`` and ``image_shape`` then default
    to. ``names`` default ``z0, z1, …``; ``output_range`` defaults to [0, 1].

    ``encoder(x) -> [ε_0, ε_1, …]`` (images in ``output_range``; e.g. the model's own encoder
    giving each group's posterior mean standardised by its conditional prior, ε_k = (μ_q − μ_p)/σ_p
    along the top-down path) makes :meth:`invert` give real anchors: ε_k / ``temperature``, since
    ``decode`` scales ε by the temperature.
    """

    def __init__(
        self,
        sampler: Callable[[list[torch.Tensor], float], torch.Tensor],
        shapes: Sequence[Sequence[int]] | None = None,
        temperature: float = 1.0,
        names: Sequence[str] | None = None,
        output_range: Sequence[float] | None = None,
        image_shape: Sequence[int] | None = None,
        encoder: Callable[[torch.Tensor], Sequence[torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self._hold(sampler, "sampler")
        self._hold_encoder(encoder)
        own_shapes = getattr(sampler, "latent_shapes", None)
        shapes = [tuple(s) for s in (own_shapes if shapes is None else shapes) or []]
        if own_shapes is not None and shapes != [tuple(s) for s in own_shapes]:
            raise ValueError(f"shapes {shapes} contradict the sampler's latent_shapes {list(own_shapes)}; "
                             "leave shapes unset to take them from the sampler")
        if not shapes:
            raise ValueError("shapes must list at least one latent group shape")
        names = [f"z{i}" for i in range(len(shapes))] if names is None else list(names)
        if len(names) != len(shapes):
            raise ValueError(f"names {names} must match the {len(shapes)} shapes")
        self.latent_spec = LatentSpec([LatentGroup(n, s) for n, s in zip(names, shapes)])
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)
        self.output_range = check_range(output_range)
        self.image_shape = agree("image_shape", check_image_shape(image_shape),
                                  check_image_shape(getattr(sampler, "image_shape", None)), "sampler's image_shape")

    def _noise_of(self, out: Any) -> dict[str, torch.Tensor]:
        names = list(self.latent_spec.names)
        if isinstance(out, Mapping):
            out = [out[n] if n in out else None for n in names]
        if not isinstance(out, Sequence) or len(out) != len(names) or any(e is None for e in out):
            raise ValueError(f"the encoder must return one ε per group ({len(names)}: {names}), "
                             f"got {type(out).__name__}")
        return {n: e.float() / self.temperature for n, e in zip(names, out)}

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        eps = [latents[n] for n in self.latent_spec.names]
        return to_unit_range(self._run(eps, self.temperature), self.output_range, "the sampler")


def _require(model: object, attrs: Sequence[str], what: str) -> None:
    for attr in attrs:
        if not hasattr(model, attr):
            raise ValueError(f"{what} needs attribute {attr!r}; {type(model).__name__} has none")


def _soft_clamp5(x: torch.Tensor) -> torch.Tensor:
    return 5.0 * torch.tanh(x / 5.0)  # NVAE's soft_clamp5 (mean and log-scale kept within ±5)


class NVAESampler(nn.Module):
    """A :class:`HierarchicalAdapter` sampler for NVlabs NVAE's ``AutoEncoder``: the top-down
    loop of ``AutoEncoder.sample(num_samples, t)`` with each group's ε given.

    NVAE's ``Normal(mu, log_sigma, t)`` draws ``z = μ + σ · ε`` with ``μ = soft_clamp5(mu)`` and
    ``σ = (exp(soft_clamp5(log_sigma)) + 0.01) · t``; the top group has ``mu = log_sigma = 0``
    (``z_0 = 1.01 · t · ε_0``), group k > 0 takes ``mu, log_sigma`` from ``dec_sampler[k-1]`` on
    the decoder state. The images are ``decoder_output(logits)``'s mean (``output="mean"``:
    ``DiscMixLogistic.mean()``, ``Bernoulli.mean``; a pure function of the ε's) or
    ``.sample()`` (``output="sample"``: draws from torch's global generator, so two decodes of the
    same latents differ). ``latent_shapes`` and ``image_shape`` are read off one batch-1 pass.

    Give the model as NVAE samples with it: batch-norm statistics re-estimated
    (``--readjust_bn``), then ``eval()``; the pipe keeps generators in eval mode.

    >>> gen = HierarchicalAdapter(NVAESampler(model), temperature=0.8)
    """

    def __init__(self, model: nn.Module, output: str = "mean") -> None:
        super().__init__()
        _require(model, ("z0_size", "prior_ftr0", "dec_tower", "dec_sampler", "post_process",
                         "image_conditional", "decoder_output"), "an NVAE AutoEncoder")
        if output not in ("mean", "sample"):
            raise ValueError(f"output must be 'mean' or 'sample', got {output!r}")
        self.model = model
        self.output = output
        follow_mode(self, model)
        shapes: list[tuple[int, ...]] = []
        with torch.no_grad():
            images = self._top_down(None, 1.0, 1, shapes)
        self.latent_shapes = shapes
        self.image_shape = tuple(images.shape[1:])

    def forward(self, eps: list[torch.Tensor], t: float) -> torch.Tensor:
        if len(eps) != len(self.latent_shapes):
            raise ValueError(f"NVAESampler needs {len(self.latent_shapes)} ε tensors (one per group), got {len(eps)}")
        return self._top_down(eps, t, eps[0].shape[0], None)

    def _top_down(self, eps: list[torch.Tensor] | None, t: float, n: int,
                  shapes: list[tuple[int, ...]] | None) -> torch.Tensor:
        m = self.model

        def draw(k: int, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
            if shapes is not None:
                shapes.append(tuple(mu.shape[1:]))
            e = torch.zeros_like(mu) if eps is None else eps[k].to(mu.dtype)
            sigma = (torch.exp(_soft_clamp5(log_sigma)) + 1e-2) * t
            return _soft_clamp5(mu) + sigma * e

        s = m.prior_ftr0.unsqueeze(0).expand(n, -1, -1, -1)
        top = m.prior_ftr0.new_zeros(n, *m.z0_size)
        z = draw(0, top, top)
        k = 0
        for cell in m.dec_tower:
            if cell.cell_type == "combiner_dec":
                if k > 0:
                    mu, log_sigma = torch.chunk(m.dec_sampler[k - 1](s), 2, dim=1)
                    z = draw(k, mu, log_sigma)
                s = cell(s, z)
                k += 1
            else:
                s = cell(s)
        if getattr(m, "vanilla_vae", False):
            s = m.stem_decoder(z)
        for cell in m.post_process:
            s = cell(s)
        dist = m.decoder_output(m.image_conditional(s))
        if self.output == "sample":
            return dist.sample()
        mean = dist.mean
        return mean() if callable(mean) else mean


def dmol_mean(params: torch.Tensor, num_mix: int) -> torch.Tensor:
    """The deterministic image of a discretised mixture of logistics in VDVAE's layout
    (``[N, H, W, 10 · num_mix]``: mixture logits, then per RGB channel means, log-scales and
    coefficients): NVAE's ``DiscMixLogistic.mean()`` rule — softmax-weighted means, each channel
    conditioned on the ones before it — mapped to [0, 1], ``[N, 3, H, W]``."""
    n, h, w, _ = params.shape
    weights = torch.softmax(params[..., :num_mix], dim=-1).unsqueeze(3)      # N, H, W, 1, M
    rest = params[..., num_mix:].reshape(n, h, w, 3, 3 * num_mix)
    means = (rest[..., :num_mix] * weights).sum(-1)                            # N, H, W, 3
    coeffs = (torch.tanh(rest[..., 2 * num_mix:]) * weights).sum(-1)
    x0 = means[..., 0].clamp(-1, 1)
    x1 = (means[..., 1] + coeffs[..., 0] * x0).clamp(-1, 1)
    x2 = (means[..., 2] + coeffs[..., 1] * x0 + coeffs[..., 2] * x1).clamp(-1, 1)
    return torch.stack([x0, x1, x2], dim=1) / 2 + 0.5


class VDVAESampler(nn.Module):
    """A :class:`HierarchicalAdapter` sampler for openai VDVAE (its ``VAE`` or ``Decoder``): the
    loop of ``Decoder.forward_uncond(n, t)`` with each block's ε given.

    VDVAE's ``forward_samples_set_latents(n, latents, t)`` takes the latents' values z; drawing
    them from ε needs the prior of each block on the decoder state, so this re-runs the blocks
    (``DecBlock.forward_uncond``: mixin, ``prior`` → ``pm, pv, xpp``, ``z_fn``, ``resnet``) with
    ``z = exp(pv + log t) · ε + pm`` (``sample_uncond`` at temperature t). One group per decoder
    block, ``[zdim, res, res]``. The images are the discretised-mixture output's deterministic
    mean (``output="mean"``, see :func:`dmol_mean`) or ``out_net.sample(px_z)``
    (``output="sample"``: draws from torch's global generator; its uint8 pixels are scaled to
    [0, 1]).

    >>> gen = HierarchicalAdapter(VDVAESampler(ema_vae), temperature=0.9)
    """

    def __init__(self, vae: nn.Module, output: str = "mean") -> None:
        super().__init__()
        decoder = getattr(vae, "decoder", vae)  # the encoder plays no part in sampling
        _require(decoder, ("dec_blocks", "bias_xs", "final_fn", "out_net", "H"), "a VDVAE Decoder")
        if output not in ("mean", "sample"):
            raise ValueError(f"output must be 'mean' or 'sample', got {output!r}")
        self.decoder = decoder
        self.output = output
        follow_mode(self, decoder)
        self.latent_shapes = [(b.zdim, b.base, b.base) for b in decoder.dec_blocks]
        size = decoder.H.image_size
        self.image_shape = (int(getattr(decoder.H, "image_channels", 3)), size, size)

    def forward(self, eps: list[torch.Tensor], t: float) -> torch.Tensor:
        d = self.decoder
        if len(eps) != len(d.dec_blocks):
            raise ValueError(f"VDVAESampler needs {len(d.dec_blocks)} ε tensors (one per decoder block), "
                             f"got {len(eps)}")
        n = eps[0].shape[0]
        xs = {bias.shape[2]: bias.repeat(n, 1, 1, 1) for bias in d.bias_xs}
        for block, e in zip(d.dec_blocks, eps):
            x = xs.get(block.base)
            if x is None:
                ref = next(iter(xs.values()))
                x = ref.new_zeros(n, block.widths[block.base], block.base, block.base)
            if block.mixin is not None:
                x = x + F.interpolate(xs[block.mixin][:, :x.shape[1], ...], scale_factor=block.base // block.mixin)
            feats = block.prior(x)
            pm, pv, xpp = feats[:, :block.zdim], feats[:, block.zdim:2 * block.zdim], feats[:, 2 * block.zdim:]
            log_sigma = pv if t == 1 else pv + math.log(t)
            z = torch.exp(log_sigma) * e.to(pm.dtype) + pm
            x = x + xpp
            x = x + block.z_fn(z)
            xs[block.base] = block.resnet(x)
        px_z = d.final_fn(xs[d.H.image_size])
        if self.output == "sample":
            pixels = torch.from_numpy(d.out_net.sample(px_z)).to(px_z.device)   # N, H, W, C uint8
            return pixels.permute(0, 3, 1, 2).float() / 255
        return dmol_mean(d.out_net(px_z), d.H.num_mixtures)
