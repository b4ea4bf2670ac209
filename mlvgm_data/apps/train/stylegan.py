"""The GAN trainer of the built-in StyleGAN (``mlvgm-data train --model stylegan``).

Non-saturating logistic loss, lazy R1 penalty on reals, style-mixing regularisation, Adam
(β = 0, 0.99), an EMA copy of the generator (what is saved), and a running ``w_avg`` for
truncation. On labelled data the discriminator scores by projection onto a class embedding,
takes its minibatch stddev within each class and has an auxiliary class head (see
:class:`Discriminator`). Checkpoints (``OUT/checkpoint.pt``) resume exactly. ``OUT/samples.png``
shows a grid of samples at the end (one row per class for a class-conditional model).
"""

from __future__ import annotations

import argparse
import copy
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...generators.adapters import StyleGANAdapter
from ...models.stylegan import (
    DEFAULT_CONFIG,
    FAMILY,
    EqualConv,
    EqualLinear,
    Network,
    StyleGANGenerator,
    channels_at,
    check_config,
    check_onehot,
    lrelu,
)
from ..classifiers.shapes import recognizability
from ..viz import save_image_grid
from .checkpoint import out_dir
from .data import ImageSource, add_conditional_argument, batch_at, class_count, image_source
from .loop import Training, run_training
from .options import Trainer
from .outputs import grid_classes, save_outputs

# --- discriminator ---------------------------------------------------------------------------


class DBlock(nn.Module):
    """Residual discriminator block: conv, downsample, conv; skip = downsample + 1×1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = EqualConv(cin, cin, 3)
        self.conv1 = EqualConv(cin, cout, 3)
        self.skip = EqualConv(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(lrelu(self.conv0(x)), 2)
        y = lrelu(self.conv1(y))
        return (y + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2.0)


class Discriminator(nn.Module):
    """ResNet discriminator ending with minibatch-stddev, a 3×3 conv and two linear layers.

    A class-conditional one (``c_dim > 0``) scores with a projection, as StyleGAN2-ADA does: the
    last layer gives a ``cmap_dim`` feature whose dot product with an embedding of the class is
    the logit, so each class's images are judged against that class's reals. Its minibatch
    stddev is taken over the samples of the same class (:func:`classwise_std`): over groups of
    mixed classes the spread is large whether or not the generator varies within a class, and a
    generator trained that way ignored z (one image per class). It also has an auxiliary class
    head on the same features (AC-GAN; ``class_logits=True``), which the trainer fits on reals
    and the generator is asked to satisfy: with the projection alone, after 8,000 steps every
    class still came out as a round blob."""

    def __init__(self, resolution: int, channel_base: int, channel_max: int, mbstd_group: int = 4,
                 c_dim: int = 0) -> None:
        super().__init__()
        log2 = int(math.log2(resolution))
        ch = {2 ** i: channels_at(2 ** i, channel_base, channel_max) for i in range(2, log2 + 1)}
        self.fromrgb = EqualConv(3, ch[resolution], 1)
        self.blocks = nn.Sequential(*(DBlock(ch[2 ** i], ch[2 ** (i - 1)]) for i in range(log2, 2, -1)))
        self.mbstd_group = mbstd_group
        self.conv = EqualConv(ch[4] + 1, ch[4], 3)
        self.fc = EqualLinear(ch[4] * 16, ch[4])
        self.c_dim = c_dim
        self.cmap_dim = ch[4] if c_dim else 1
        self.out = EqualLinear(ch[4], self.cmap_dim)
        self.cmap = EqualLinear(c_dim, self.cmap_dim) if c_dim else None
        self.classifier = EqualLinear(ch[4], c_dim) if c_dim else None

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None,
                class_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[N]``; ``c``: one-hot classes ``[N, c_dim]`` for a class-conditional D, whose
        auxiliary class logits ``[N, c_dim]`` come second when ``class_logits``."""
        n = img.shape[0]
        if class_logits and self.classifier is None:
            raise ValueError("class_logits needs a class-conditional discriminator (c_dim > 0)")
        if self.cmap is not None:
            check_onehot(c, n, self.c_dim, "discriminator")
        x = self.blocks(lrelu(self.fromrgb(img)))
        _, ch, h, w = x.shape
        if self.cmap is None:
            g = math.gcd(self.mbstd_group, n)
            std = x.view(g, n // g, ch, h, w).var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
            std = std.repeat(g)
        else:
            std = classwise_std(x, c)
        x = torch.cat([x, std.view(-1, 1, 1, 1).expand(-1, 1, h, w)], dim=1)
        x = lrelu(self.conv(x))
        features = lrelu(self.fc(x.flatten(1)))
        out = self.out(features)
        if self.cmap is None:
            return out.squeeze(1)
        logits = (out * self.cmap(c)).sum(dim=1) / math.sqrt(self.cmap_dim)
        return (logits, self.classifier(features)) if class_logits else logits


def classwise_std(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Per sample, the stddev of ``x`` ``[N, …]`` over the samples of its class (one-hot ``c``
    ``[N, K]``), averaged over features: ``[N]``. A class seen once has stddev ≈ 0 (1e-4)."""
    flat = x.flatten(1)
    counts = c.sum(dim=0).clamp_min(1.0)
    mean = (c.t() @ flat) / counts[:, None]
    var = (c.t() @ (flat - c @ mean).square()) / counts[:, None]
    return c @ var.add(1e-8).sqrt().mean(dim=1)


# --- training --------------------------------------------------------------------------------


def random_classes(net: Network, n: int) -> torch.Tensor | None:
    """One-hot classes ``[n, c_dim]`` drawn uniformly for a class-conditional network, else None."""
    if not net.c_dim:
        return None
    return F.one_hot(torch.randint(net.c_dim, (n,)), net.c_dim).float()


def _mixed_ws(net: Network, z: torch.Tensor, mixing_prob: float, c: torch.Tensor | None = None) -> torch.Tensor:
    """W+ of ``z`` (and one-hot classes ``c``); with probability ``mixing_prob`` per sample, the
    layers from a random cut on come from a second z of the same class (style-mixing
    regularisation, which keeps the layer groups separable)."""
    n, num_ws = z.shape[0], net.num_ws
    ws = net.mapping(z, c).clone()
    if mixing_prob > 0:
        ws2 = net.mapping(torch.randn_like(z), c)
        cut = torch.randint(1, num_ws, (n,), device=z.device)
        cut = torch.where(torch.rand(n, device=z.device) < mixing_prob, cut, torch.full_like(cut, num_ws))
        later = torch.arange(num_ws, device=z.device)[None, :] >= cut[:, None]
        ws = torch.where(later[:, :, None], ws2, ws)
    return ws


def discriminator_step(G: Network, D: Discriminator, real: torch.Tensor, opt: torch.optim.Optimizer,
                       r1_gamma: float, r1_every: int, step: int, mixing_prob: float,
                       real_c: torch.Tensor | None = None, ac_weight: float = 0.0) -> dict[str, float]:
    """One D update (logistic loss; lazy R1 on reals every ``r1_every`` steps). Reals in [-1, 1];
    ``real_c``: their one-hot classes (a class-conditional G and D). The fakes get the reals'
    classes, so both batches have the same class counts and D's class-wise stddev cannot tell
    them apart by their class make-up. ``ac_weight`` > 0 adds the class head's cross-entropy on
    the reals."""
    use_ac = real_c is not None and ac_weight > 0
    with torch.no_grad():
        ws = _mixed_ws(G, torch.randn(real.shape[0], G.z_dim), mixing_prob, real_c)
        fake = G.synthesis(ws, noise_mode="random")
    do_r1 = r1_gamma > 0 and step % r1_every == 0
    real = real.detach().requires_grad_(do_r1)
    if use_ac:
        real_logits, real_cls = D(real, real_c, class_logits=True)
    else:
        real_logits = D(real, real_c)
    loss = F.softplus(D(fake, real_c)).mean() + F.softplus(-real_logits).mean()
    out = {"d_loss": float(loss.detach())}
    if use_ac:
        ce = F.cross_entropy(real_cls, real_c.argmax(dim=1))
        loss = loss + ac_weight * ce
        out["d_class"] = float(ce.detach())
    if do_r1:
        (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        r1 = grad.square().sum(dim=(1, 2, 3)).mean()
        loss = loss + r1 * (r1_gamma / 2) * r1_every
        out["r1"] = float(r1.detach())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return out


def generator_step(G: Network, D: Discriminator, batch_size: int, opt: torch.optim.Optimizer,
                   mixing_prob: float, w_avg_beta: float = 0.995, ac_weight: float = 0.0) -> dict[str, float]:
    """One G update (non-saturating loss; uniform classes for a class-conditional G, plus
    ``ac_weight`` × the cross-entropy of D's class head on the fakes); also tracks ``w_avg`` for
    truncation."""
    z = torch.randn(batch_size, G.z_dim)
    c = random_classes(G, batch_size)
    ws = _mixed_ws(G, z, mixing_prob, c)
    with torch.no_grad():
        G.mapping.w_avg.lerp_(ws[:, 0].mean(dim=0), 1.0 - w_avg_beta)
    for p in D.parameters():
        p.requires_grad_(False)
    fake = G.synthesis(ws, noise_mode="random")
    out: dict[str, float] = {}
    if c is not None and ac_weight > 0:
        logits, cls = D(fake, c, class_logits=True)
        ce = F.cross_entropy(cls, c.argmax(dim=1))
        out["g_class"] = float(ce.detach())
    else:
        logits, ce = D(fake, c), None
    loss = F.softplus(-logits).mean()
    out["g_loss"] = float(loss.detach())
    if ce is not None:
        loss = loss + ac_weight * ce
    for p in D.parameters():
        p.requires_grad_(True)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return out


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema ← beta·ema + (1 − beta)·model`` for parameters; buffers are copied."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1.0 - beta)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def sample_grid(generator: StyleGANAdapter, path: str, rows: int = 8, seed: int = 0) -> None:
    """Writes a PNG grid of prior samples (anchors: all groups share one z): ``rows × rows``, or for
    a class-conditional generator one row per class with ``rows`` samples each."""
    spec = generator.latent_spec
    n, classes = grid_classes(generator.num_classes, rows)
    z = torch.randn(n, spec.groups[0].shape[0], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        save_image_grid(generator.decode({name: z for name in spec.names}, classes), path, nrow=rows)


def add_arguments(parser: Any) -> None:
    """Declares the stylegan options (see ``mlvgm-data train --help``)."""
    parser.add_argument("--z-dim", type=int, default=DEFAULT_CONFIG["z_dim"], help="z (and group) size")
    parser.add_argument("--w-dim", type=int, default=DEFAULT_CONFIG["w_dim"], help="w size")
    parser.add_argument("--channel-max", type=int, default=DEFAULT_CONFIG["channel_max"],
                        help="most channels per layer")
    parser.add_argument("--channel-base", type=int, default=DEFAULT_CONFIG["channel_base"],
                        help="channels at resolution r: min(base / r, max)")
    parser.add_argument("--layer-groups", type=int, default=DEFAULT_CONFIG["layer_groups"],
                        help="number of contiguous W+ layer groups (latent groups)")
    parser.add_argument("--truncation-psi", type=float, default=DEFAULT_CONFIG["truncation_psi"],
                        help="truncation ψ stored in the saved generator (training ignores it)")
    parser.add_argument("--r1-gamma", type=float, default=0.1, help="R1 penalty weight on reals")
    parser.add_argument("--r1-every", type=int, default=16, help="lazy R1: steps between penalties")
    parser.add_argument("--mixing-prob", type=float, default=0.9, help="style-mixing regularisation probability")
    parser.add_argument("--ema-images", type=int, default=5000,
                        help="half-life of the generator EMA in images")
    add_conditional_argument(parser)
    parser.add_argument("--ac-weight", type=float, default=1.0,
                        help="class-conditional runs: weight of the auxiliary class loss (AC-GAN; 0 = projection only)")


def _check_opts(opts: argparse.Namespace) -> None:
    if not 0.0 <= opts.mixing_prob <= 1.0:
        raise ValueError(f"--mixing-prob must be in [0, 1], got {opts.mixing_prob}")
    if opts.r1_gamma < 0:
        raise ValueError(f"--r1-gamma must be >= 0, got {opts.r1_gamma}")
    if opts.ac_weight < 0:
        raise ValueError(f"--ac-weight must be >= 0, got {opts.ac_weight}")
    if opts.r1_every < 1 or opts.ema_images < 1:
        raise ValueError("--r1-every and --ema-images must be positive")


class _GANStep:
    """The generator (its EMA is the exported model), the discriminator, their optimisers, and
    one training step: a D update, a G update and the EMA with StyleGAN2's ramp-up."""

    def __init__(self, opts: argparse.Namespace, config: dict, source: ImageSource) -> None:
        self.opts, self.source, self.c_dim = opts, source, config["c_dim"]
        self.model = StyleGANGenerator(**config)
        self.G = copy.deepcopy(self.model.generator)
        self.D = Discriminator(opts.resolution, config["channel_base"], config["channel_max"], c_dim=self.c_dim)
        # R1 is lazy: scale D's Adam as StyleGAN2 does so the update size matches.
        ratio = opts.r1_every / (opts.r1_every + 1)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=opts.lr, betas=(0.0, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=opts.lr * ratio, betas=(0.0, 0.99 ** ratio))
        self.beta = 0.5 ** (opts.batch_size / opts.ema_images)

    def training(self) -> Training:
        """The parts :func:`run_training` needs."""
        return Training({"G": self.G, "D": self.D, "G_ema": self.model.generator},
                        {"G": self.opt_g, "D": self.opt_d}, self, self.model)

    def __call__(self, step: int) -> dict[str, float]:
        opts = self.opts
        if self.c_dim:
            real, classes = batch_at(self.source, opts.batch_size, step, labelled=True)
            real_c = F.one_hot(classes, self.c_dim).float()
        else:
            real, real_c = batch_at(self.source, opts.batch_size, step), None
        stats = discriminator_step(self.G, self.D, real * 2.0 - 1.0, self.opt_d, opts.r1_gamma, opts.r1_every, step,
                                   opts.mixing_prob, real_c, opts.ac_weight)
        stats.update(generator_step(self.G, self.D, opts.batch_size, self.opt_g, opts.mixing_prob,
                                    ac_weight=opts.ac_weight))
        # EMA ramp-up: early on the EMA follows G closely (StyleGAN2's ema_rampup).
        seen = (step + 1) * opts.batch_size
        update_ema(self.model.generator, self.G, min(self.beta, 0.5 ** (opts.batch_size / max(seen * 0.05, 1.0))))
        return stats


def train(opts: argparse.Namespace) -> dict:
    """Trains the StyleGAN-like generator; saves the EMA generator and returns a summary."""
    _check_opts(opts)
    source = image_source(opts.data, opts.resolution, opts.seed)
    config = check_config({
        "resolution": opts.resolution, "z_dim": opts.z_dim, "w_dim": opts.w_dim,
        "channel_base": opts.channel_base, "channel_max": opts.channel_max, "layer_groups": opts.layer_groups,
        "truncation_psi": opts.truncation_psi, "c_dim": class_count(opts, source),
    })
    # A resumed run may change --steps and the sampling option --truncation-psi (so a finished run
    # can be re-exported with another one).
    trained = run_training(opts, lambda: _GANStep(opts, config, source).training(), desc="stylegan",
                           changeable=("steps", "truncation_psi", "temperature"))
    model = trained.output
    sample_grid(model, str(out_dir(opts) / "samples.png"))
    summary: dict[str, Any] = {
        "model": "stylegan", "data": opts.data, "steps": opts.steps, "batch_size": opts.batch_size,
        "seed": opts.seed, "num_classes": config["c_dim"], "seconds": round(trained.seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()), **trained.rounded(),
    }
    if opts.data == "shapes" and opts.resolution == 32:  # the Shapes classifier's resolution
        summary["recognizability"] = recognizability(model)
    return save_outputs(model, opts, FAMILY, config, summary)


TRAINER = Trainer(
    "stylegan", add_arguments, train,
    help="StyleGAN2-like GAN (mapping + modulated convs, W+ layer groups as latent groups)",
    defaults={"lr": 2e-3, "batch_size": 16, "steps": 30000, "checkpoint_every": 500, "threads": 1},
)
