"""The critics of the learned MI estimators and how they are trained and evaluated: a shared
embedding network (conv trunk for images, MLP otherwise), Gaussian heads for Barber–Agakov, dot
products for InfoNCE, train/validation/held-out splits, early stopping and bootstrap intervals.
All randomness from local ``torch.Generator`` objects."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

# --- critics ------------------------------------------------------------------------------------

class Standardize(nn.Module):
    """Fixed per-feature (vectors) or per-channel (images) scaling fitted on the training split."""

    def __init__(self, data: torch.Tensor) -> None:
        super().__init__()
        dims = [0] if data.dim() == 2 else [0, *range(2, data.dim())]
        mean = data.mean(dim=dims, keepdim=True)[:1]
        std = data.std(dim=dims, keepdim=True)[:1].clamp_min(1e-6)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _is_image(shape: Sequence[int]) -> bool:
    return len(shape) == 3 and min(shape[1], shape[2]) > 4


class _Residual(nn.Module):
    """An MLP plus a linear path: the linear part of a relation is learnt fast and early stopping
    can keep it before the MLP starts to overfit."""

    def __init__(self, mlp: nn.Module, linear: nn.Module) -> None:
        super().__init__()
        self.mlp, self.linear = mlp, linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + self.linear(x.flatten(1))


def embedding_net(
    sample_shape: Sequence[int], out_dim: int, width: int = 16, hidden: int = 128, image_res: int = 16
) -> nn.Module:
    """A small critic trunk. Images ``[C, H, W]`` are average-pooled to at most ``image_res``
    pixels a side (a function of the image, so every bound stays valid; it only bounds what fine
    detail the critic can see), then non-overlapping 2×2 convs halve them down to ≤ 4² (cheap on
    a CPU) before an MLP; anything else is flattened into an MLP. Both add a linear path."""
    shape = tuple(sample_shape)
    head = lambda flat: [nn.Linear(flat, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),  # noqa: E731
                         nn.Linear(hidden, out_dim)]
    if not _is_image(shape):
        flat = math.prod(shape)
        return _Residual(nn.Sequential(nn.Flatten(), *head(flat)), nn.Linear(flat, out_dim))
    layers: list[nn.Module] = []
    c, h, w = shape
    if max(h, w) > image_res:
        scale = image_res / max(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
        layers.append(nn.AdaptiveAvgPool2d((h, w)))
    pool = nn.Sequential(*layers)
    pixels = c * h * w
    convs: list[nn.Module] = []
    ch = width
    while min(h, w) > 4:
        convs += [nn.Conv2d(c, ch, 2, stride=2), nn.SiLU()]
        c, h, w = ch, h // 2, w // 2
        ch = min(2 * ch, 4 * width)
    # The linear path from the (pooled) pixels lets the critic match near-identical images at once.
    return nn.Sequential(pool, _Residual(nn.Sequential(*convs, nn.Flatten(), *head(c * h * w)),
                                         nn.Linear(pixels, out_dim)))


def _init_(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """PyTorch's default Linear/Conv init, drawn from ``gen`` instead of the global RNG."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            with torch.no_grad():
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                if m.bias is not None:
                    nn.init.uniform_(m.bias, -bound, bound, generator=gen)
    return module


def build_critic(factory: Callable[[], nn.Module], gen: torch.Generator, device: torch.device) -> nn.Module:
    # Built on the meta device so constructing the layers draws nothing from the global RNG.
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device="cpu")
    _init_(module, gen)
    for m in module.modules():
        if isinstance(m, _GaussianHead):
            m.reset()
    return module.to(device)


class _GaussianHead(nn.Module):
    """q(y|x) = N(μ(h), D(h) L Lᵀ D(h)) over a flattened y: a heteroscedastic diagonal scale D
    times a learned input-independent correlation L (full when y is small, identity otherwise)."""

    def __init__(self, hidden: int, dim: int, full: bool) -> None:
        super().__init__()
        self.dim, self.full = dim, full
        self.out = nn.Linear(hidden, 2 * dim)
        if full:
            self.tril = nn.Parameter(torch.empty(dim, dim))

    def reset(self) -> None:
        with torch.no_grad():
            self.out.weight[self.dim:].mul_(0.1)
            self.out.bias[self.dim:].zero_()
            if self.full:
                self.tril.zero_()

    def log_prob(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, log_s = self.out(h).chunk(2, dim=-1)
        log_s = log_s.clamp(-7.0, 5.0)
        r = (y - mu) * torch.exp(-log_s)
        logdet = log_s.sum(-1)
        if self.full:
            diag = self.tril.diagonal().clamp(-7.0, 5.0)
            lower = torch.tril(self.tril, -1) + torch.diag(torch.exp(diag))
            r = torch.linalg.solve_triangular(lower, r.T, upper=False).T
            logdet = logdet + diag.sum()
        return -0.5 * (r * r).sum(-1) - logdet - self.dim * 0.5 * math.log(2 * math.pi)


class BACritic(nn.Module):
    def __init__(self, x_shape: Sequence[int], y_dims: Mapping[str, int], width: int, hidden: int, full_cov_max: int,
                 image_res: int) -> None:
        super().__init__()
        self.trunk = embedding_net(x_shape, hidden, width, hidden, image_res)
        self.heads = nn.ModuleDict({k: _GaussianHead(hidden, d, d <= full_cov_max) for k, d in y_dims.items()})

    def forward(self, x: torch.Tensor, ys: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {k: head.log_prob(h, ys[k]) for k, head in self.heads.items()}


class NCECritic(nn.Module):
    """Separable critic f(x, y) = g(x)·h(y)/√dim (g = h when ``shared``)."""

    def __init__(self, x_shape: Sequence[int], y_shape: Sequence[int], dim: int, width: int, hidden: int, shared: bool,
                 image_res: int) -> None:
        super().__init__()
        self.g = embedding_net(x_shape, dim, width, hidden, image_res)
        self.h = self.g if shared else embedding_net(y_shape, dim, width, hidden, image_res)
        self.scale = 1.0 / math.sqrt(dim)

    def embed(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.g(x), self.h(y) * self.scale


def nce_terms(gx: torch.Tensor, hy: torch.Tensor) -> torch.Tensor:
    """Per-pair symmetric InfoNCE terms log B + ½(log softmax_row + log softmax_col) on the diagonal."""
    scores = gx @ hy.T
    b = scores.shape[0]
    diag = scores.diagonal()
    rows = diag - torch.logsumexp(scores, dim=1)
    cols = diag - torch.logsumexp(scores, dim=0)
    return math.log(b) + 0.5 * (rows + cols)


# --- training -----------------------------------------------------------------------------------

@dataclass
class _Split:
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


def split_pairs(n: int, eval_fraction: float, gen: torch.Generator) -> _Split:
    perm = torch.randperm(n, generator=gen)
    n_test = max(int(round(n * eval_fraction)), 16)
    n_val = max(int(round((n - n_test) * 0.15)), 16)
    return _Split(perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test])


def train_critic(
    model: nn.Module,
    loss_on: Callable[[torch.Tensor], torch.Tensor],
    split: _Split,
    steps: int,
    batch_size: int,
    lr: float,
    gen: torch.Generator,
    deadline: float | None,
    progress: bool,
    desc: str,
) -> tuple[int, bool]:
    """Adam with cosine decay; keeps the weights with the best validation loss.

    Returns the steps run and whether the deadline stopped training early.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n_train = split.train.numel()
    batch = min(batch_size, n_train)
    check_every = max(steps // 10, 20)
    best, best_state = math.inf, None
    order = torch.randperm(n_train, generator=gen)
    pos, done, truncated = 0, 0, False
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    try:
        for step in range(steps):
            if deadline is not None and time.monotonic() > deadline:
                truncated = True
                break
            if pos + batch > n_train:
                order, pos = torch.randperm(n_train, generator=gen), 0
            idx = split.train[order[pos:pos + batch]]
            pos += batch
            for group in opt.param_groups:
                group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            loss = loss_on(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done = step + 1
            bar.update(1)
            if done % check_every == 0 or done == steps:
                model.eval()
                with torch.no_grad():
                    val = float(loss_on(split.val))
                model.train()
                bar.set_postfix(val=f"{val:.3f}")
                if val < best:
                    best, best_state = val, copy.deepcopy(model.state_dict())
    finally:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return done, truncated


def bootstrap_interval(
    terms: torch.Tensor, gen: torch.Generator, n_boot: int = 1000, level: float = 0.95
) -> tuple[float, float]:
    terms = terms.double().cpu()
    n = terms.numel()
    means = torch.empty(n_boot, dtype=torch.float64)
    for start in range(0, n_boot, 100):
        idx = torch.randint(n, (min(100, n_boot - start), n), generator=gen)
        means[start:start + idx.shape[0]] = terms[idx].mean(dim=1)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(means, q).tolist()
    return low, high


def critic_device(x: torch.Tensor, device: object) -> torch.device:
    return x.device if device is None else torch.device(device)
