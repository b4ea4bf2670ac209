"""Mutual-information estimators for paired samples: Barber–Agakov, InfoNCE and KSG.

All values are in nats. The learned estimators train a small critic on one split of the pairs
and evaluate on a held-out split, so a critic that memorises its training pairs cannot inflate
the number; the interval is a percentile bootstrap over the held-out per-sample terms. All
randomness comes from local ``torch.Generator`` objects: the user's global RNG is left alone,
and the same seed gives the same numbers on the same machine and thread count.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from .._checks import check_int
from dataclasses import asdict, dataclass, fields
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

METHODS = ("ba", "infonce", "ksg")

MIN_SAMPLES = {"ba": 64, "infonce": 64}
"""Fewest pairs a learned estimator accepts (train, validation and held-out splits need some)."""

KSG_MAX_DIM = 64
"""KSG is a k-NN estimator: beyond a few dozen joint dimensions its bias makes it useless."""

KSG_WARN_DIM = 6
"""Above this many joint dimensions KSG is measurably biased low (≈ −20 % at 4 + 4 dims, −40 %
at 8 + 8 on correlated Gaussians with a few thousand samples); it warns."""

SATURATION_MARGIN = 1.0
"""An InfoNCE value within this many nats of its ceiling log B may be far below the true MI."""


@dataclass(frozen=True)
class MIEstimate:
    """An MI estimate in nats with a 95 % interval ``[low, high]``.

    ``ceiling`` is InfoNCE's log B (it can never report more); ``entropy`` is the H(y) a
    Barber–Agakov bound used and ``entropy_source`` where it came from. ``truncated`` says the
    time budget stopped critic training early (the value is then still a valid held-out bound,
    but depends on machine speed).
    """

    value: float
    low: float
    high: float
    method: str = ""
    n: int = 0
    n_eval: int = 0
    ceiling: float | None = None
    entropy: float | None = None
    entropy_source: str | None = None
    steps: int = 0
    truncated: bool = False
    seconds: float = 0.0

    @property
    def saturated(self) -> bool:
        """InfoNCE only: the value is within ``SATURATION_MARGIN`` nats of log B."""
        return self.ceiling is not None and self.value > self.ceiling - SATURATION_MARGIN

    def to_dict(self) -> dict:
        d = asdict(self)
        d["saturated"] = self.saturated
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "MIEstimate":
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as e:
            raise ValueError(f"MIEstimate.from_dict: malformed estimate {dict(d)!r} ({e})") from None

    def __str__(self) -> str:
        s = f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] nats ({self.method}"
        if self.ceiling is not None:
            s += f", ceiling {self.ceiling:.2f}" + (", saturated" if self.saturated else "")
        return s + ")"


# --- input checks ------------------------------------------------------------------------------

def _as_samples(a: object, name: str) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    elif not isinstance(a, torch.Tensor):
        try:
            a = torch.as_tensor(a)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name} must be a tensor or array of samples, got {type(a).__name__}") from None
    if a.dim() == 0:
        raise ValueError(f"{name} must have a leading sample dimension, got a scalar")
    if a.is_complex() or a.dtype == torch.bool:
        raise ValueError(f"{name} must be real-valued, got {a.dtype}")
    a = a.detach().float()
    if a.dim() == 1:
        a = a[:, None]
    if a[0].numel() == 0:
        raise ValueError(f"{name} has empty samples, shape {list(a.shape)}")
    return a


def _check_pairs(x: object, y: object, method: str, min_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of paired samples, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < min_samples:
        raise ValueError(f"method {method!r} needs at least {min_samples} paired samples, got {x.shape[0]}")
    for name, a in (("x", x), ("y", y)):
        bad = ~torch.isfinite(a).reshape(a.shape[0], -1).all(dim=1)
        if bool(bad.any()):
            raise ValueError(f"{name} has non-finite values in {int(bad.sum())} samples (first: index {int(bad.nonzero()[0])})")
    return x, y


def _budget(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"budget must be a positive number of seconds or None, got {value!r}")
    return float(value)


# --- entropy of y (Barber–Agakov) ---------------------------------------------------------------

_HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)


def truncnormal_entropy(trunc: float) -> float:
    """Differential entropy (nats) of N(0, 1) truncated to [−t, t]."""
    z = math.erf(trunc / math.sqrt(2.0))
    phi = math.exp(-0.5 * trunc * trunc) / math.sqrt(2 * math.pi)
    return _HALF_LOG_2PI_E + math.log(z) - trunc * phi / z


@dataclass(frozen=True)
class Reference:
    """The marginal density p(y) a Barber–Agakov bound is taken against.

    ``entropy`` = H(y) = −E log p(y); ``log_prob`` evaluates log p(y) on flattened samples. The
    bound is computed as the mean of log q(y|x) − log p(y), which has the same expectation as
    H(y) + E log q(y|x) and a much smaller variance (the fluctuation of y cancels).
    """

    entropy: float
    source: str
    log_prob: Callable[[torch.Tensor], torch.Tensor]


def reference_of(y: torch.Tensor, y_dist: object) -> Reference:
    """The reference density for ``y`` ([n, ...]) as ``y_dist`` describes it.

    ``y_dist``: ``"normal"`` (i.i.d. N(0, 1), closed form), a float t or ``("truncnormal", t)``
    (N(0, 1) truncated to ±t, closed form), or ``"gaussian"`` (a full-covariance Gaussian fitted
    to y: exact for Gaussian y, otherwise its entropy over-estimates H(y), so the BA value is then
    no longer a guaranteed lower bound).
    """
    y = y.detach().cpu()
    d = y[0].numel()
    log_norm = 0.5 * math.log(2 * math.pi)
    if y_dist == "normal":
        return Reference(d * _HALF_LOG_2PI_E, "closed form, N(0, I)",
                         lambda f: -0.5 * (f * f).sum(-1) - d * log_norm)
    trunc = None
    if isinstance(y_dist, tuple) and len(y_dist) == 2 and y_dist[0] == "truncnormal":
        trunc = y_dist[1]
    elif isinstance(y_dist, (int, float)) and not isinstance(y_dist, bool):
        trunc = y_dist
    if trunc is not None:
        if isinstance(trunc, bool) or not isinstance(trunc, (int, float)) or not trunc > 0 or not math.isfinite(trunc):
            raise ValueError(f"y_dist truncation must be a positive number, got {trunc!r}")
        t = float(trunc)
        if float(y.abs().max()) > t * (1 + 1e-5):
            raise ValueError(f"y_dist says N(0, 1) truncated to ±{t:g}, but y has values up to {float(y.abs().max()):.3g}")
        log_z = math.log(math.erf(t / math.sqrt(2.0)))
        return Reference(d * truncnormal_entropy(t), f"closed form, N(0, I) truncated to ±{t:g}",
                         lambda f: -0.5 * (f * f).sum(-1) - d * (log_norm + log_z))
    if y_dist == "gaussian":
        flat = y.reshape(y.shape[0], -1).double()
        if flat.shape[0] <= d:
            raise ValueError(
                f"y_dist='gaussian' fits a {d}-dimensional covariance and needs more than {d} samples, "
                f"got {flat.shape[0]}; pass y_dist='normal' if y is standard normal"
            )
        mean = flat.mean(0)
        cov = torch.cov(flat.T).reshape(d, d)
        cov = cov + 1e-9 * cov.diagonal().mean() * torch.eye(d, dtype=torch.float64)
        try:
            chol = torch.linalg.cholesky(cov)
        except RuntimeError:
            raise ValueError("y_dist='gaussian': the covariance of y is singular (a constant component?)") from None
        half_logdet = float(chol.diagonal().log().sum())

        def log_prob(f: torch.Tensor) -> torch.Tensor:
            r = torch.linalg.solve_triangular(chol, (f.double() - mean).T, upper=False).T
            return -0.5 * (r * r).sum(-1) - half_logdet - d * log_norm

        return Reference(d * _HALF_LOG_2PI_E + half_logdet, "Gaussian fit (exact only for Gaussian y)", log_prob)
    raise ValueError(f"y_dist must be 'normal', 'gaussian', a truncation t or ('truncnormal', t), got {y_dist!r}")


# --- critics ------------------------------------------------------------------------------------

class _Standardize(nn.Module):
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


def _build(factory: Callable[[], nn.Module], gen: torch.Generator, device: torch.device) -> nn.Module:
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


class _BACritic(nn.Module):
    def __init__(self, x_shape: Sequence[int], y_dims: Mapping[str, int], width: int, hidden: int, full_cov_max: int,
                 image_res: int) -> None:
        super().__init__()
        self.trunk = embedding_net(x_shape, hidden, width, hidden, image_res)
        self.heads = nn.ModuleDict({k: _GaussianHead(hidden, d, d <= full_cov_max) for k, d in y_dims.items()})

    def forward(self, x: torch.Tensor, ys: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {k: head.log_prob(h, ys[k]) for k, head in self.heads.items()}


class _NCECritic(nn.Module):
    """Separable critic f(x, y) = g(x)·h(y)/√dim (g = h when ``shared``)."""

    def __init__(self, x_shape: Sequence[int], y_shape: Sequence[int], dim: int, width: int, hidden: int, shared: bool,
                 image_res: int) -> None:
        super().__init__()
        self.g = embedding_net(x_shape, dim, width, hidden, image_res)
        self.h = self.g if shared else embedding_net(y_shape, dim, width, hidden, image_res)
        self.scale = 1.0 / math.sqrt(dim)

    def embed(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.g(x), self.h(y) * self.scale


def _nce_terms(gx: torch.Tensor, hy: torch.Tensor) -> torch.Tensor:
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


def _split(n: int, eval_fraction: float, gen: torch.Generator) -> _Split:
    perm = torch.randperm(n, generator=gen)
    n_test = max(int(round(n * eval_fraction)), 16)
    n_val = max(int(round((n - n_test) * 0.15)), 16)
    return _Split(perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test])


def _train(
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


def _bootstrap(terms: torch.Tensor, gen: torch.Generator, n_boot: int = 1000, level: float = 0.95) -> tuple[float, float]:
    terms = terms.double().cpu()
    n = terms.numel()
    means = torch.empty(n_boot, dtype=torch.float64)
    for start in range(0, n_boot, 100):
        idx = torch.randint(n, (min(100, n_boot - start), n), generator=gen)
        means[start:start + idx.shape[0]] = terms[idx].mean(dim=1)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(means, q).tolist()
    return low, high


def _device_of(x: torch.Tensor, device: object) -> torch.device:
    return x.device if device is None else torch.device(device)


# --- the estimators -----------------------------------------------------------------------------

def ba_multi(
    x: torch.Tensor,
    ys: Mapping[str, torch.Tensor],
    y_dists: Mapping[str, object],
    *,
    steps: int = 400,
    batch_size: int = 256,
    lr: float = 1e-3,
    width: int = 16,
    hidden: int = 128,
    image_res: int = 16,
    full_cov_max: int = 32,
    eval_fraction: float = 1 / 3,
    seed: int = 0,
    budget: float | None = None,
    device: object = None,
    progress: bool = True,
    desc: str = "MI (ba)",
) -> dict[str, MIEstimate]:
    """Barber–Agakov bounds I(x; y_k) ≥ H(y_k) + E log q(y_k|x) for several targets at once.

    One trunk embeds x and one Gaussian head per target gives q(y_k|x); training minimises the
    summed negative log-likelihood. Each head is a valid critic on its own, so every value is a
    lower bound (given an exact H(y_k)). ``analyze`` uses this for all groups of a generator.
    """
    start = time.monotonic()
    if not ys:
        raise ValueError("ba needs at least one target y")
    checked = {k: _check_pairs(x, y, "ba", MIN_SAMPLES["ba"]) for k, y in ys.items()}
    xt = next(iter(checked.values()))[0]
    targets = {k: xy[1].reshape(xy[1].shape[0], -1).cpu() for k, xy in checked.items()}
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 2)
    budget = _budget(budget)
    refs = {k: reference_of(targets[k], y_dists.get(k, "gaussian")) for k in checked}
    n = xt.shape[0]
    gen = torch.Generator().manual_seed(seed)
    split = _split(n, eval_fraction, gen)
    dev = _device_of(xt, device)
    xt = xt.to(dev)
    norm_x = _Standardize(xt[split.train.to(dev)])
    y_mean = {k: t[split.train].mean(0) for k, t in targets.items()}
    y_std = {k: t[split.train].std(0).clamp_min(1e-6) for k, t in targets.items()}
    ty = {k: ((t - y_mean[k]) / y_std[k]).to(dev) for k, t in targets.items()}
    log_jac = {k: float(torch.log(y_std[k]).sum()) for k in targets}
    dims = {k: t.shape[1] for k, t in targets.items()}
    critic = _build(lambda: _BACritic(xt.shape[1:], dims, width, hidden, full_cov_max, image_res), gen, dev)
    model = nn.Sequential(norm_x.to(dev), critic)

    def scores(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = idx.to(dev)
        return critic(model[0](xt[idx]), {k: t[idx] for k, t in ty.items()})

    def loss_on(idx: torch.Tensor) -> torch.Tensor:
        return -sum(s.mean() for s in scores(idx).values())

    deadline = None if budget is None else start + budget
    done, truncated = _train(model, loss_on, split, steps, batch_size, lr, gen, deadline, progress, desc)
    with torch.no_grad():
        test = {k: [] for k in ty}
        for i in range(0, split.test.numel(), 1024):
            for k, s in scores(split.test[i:i + 1024]).items():
                test[k].append(s)
    seconds = time.monotonic() - start
    out = {}
    for k in ty:
        ref = refs[k]
        terms = torch.cat(test[k]).double().cpu() - log_jac[k] - ref.log_prob(targets[k][split.test].double())
        low, high = _bootstrap(terms, gen)
        out[k] = MIEstimate(
            float(terms.mean()), low, high, "ba", n, split.test.numel(), None, ref.entropy, ref.source, done,
            truncated, seconds,
        )
    return out


def infonce(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 400,
    batch_size: int = 256,
    eval_batch: int = 1024,
    lr: float = 3e-3,
    width: int = 16,
    hidden: int = 128,
    image_res: int = 16,
    embed_dim: int = 64,
    shared: bool = False,
    eval_fraction: float = 1 / 3,
    seed: int = 0,
    budget: float | None = None,
    device: object = None,
    progress: bool = True,
    desc: str = "MI (infonce)",
) -> MIEstimate:
    """InfoNCE on checked samples (``estimate(..., method="infonce")``; ``analyze`` calls it
    directly with ``shared=True`` for image pairs)."""
    start = time.monotonic()
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 2)
    check_int(eval_batch, "eval_batch", 2)
    budget = _budget(budget)
    if shared and x.shape[1:] != y.shape[1:]:
        raise ValueError(f"shared=True needs x and y of one sample shape, got {list(x.shape[1:])} and {list(y.shape[1:])}")
    n = x.shape[0]
    gen = torch.Generator().manual_seed(seed)
    split = _split(n, eval_fraction, gen)
    dev = _device_of(x, device)
    x, y = x.to(dev), y.to(dev)
    train = split.train.to(dev)
    norm_x = _Standardize(torch.cat([x[train], y[train]]) if shared else x[train]).to(dev)
    norm_y = norm_x if shared else _Standardize(y[train]).to(dev)
    critic = _build(lambda: _NCECritic(x.shape[1:], y.shape[1:], embed_dim, width, hidden, shared, image_res), gen, dev)
    model = nn.ModuleList([norm_x, norm_y, critic])

    def embed(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(dev)
        return critic.embed(norm_x(x[idx]), norm_y(y[idx]))

    def loss_on(idx: torch.Tensor) -> torch.Tensor:
        if idx.numel() > batch_size:  # validation: score in training-size batches
            return -torch.cat([_nce_terms(*embed(idx[i:i + batch_size])) - math.log(batch_size)
                               for i in range(0, idx.numel() - batch_size + 1, batch_size)]).mean()
        return -(_nce_terms(*embed(idx)) - math.log(idx.numel())).mean()

    deadline = None if budget is None else start + budget
    done, truncated = _train(model, loss_on, split, steps, batch_size, lr, gen, deadline, progress, desc)
    n_test = split.test.numel()
    b = min(eval_batch, n_test)
    with torch.no_grad():
        gx, hy = (torch.cat(t) for t in zip(*(embed(split.test[i:i + 1024]) for i in range(0, n_test, 1024))))
        # Every held-out pair is scored in a few random batches of b; its term is the average.
        repeats = max(1, min(8, (4 * n_test) // b)) if b < n_test else 1
        total = torch.zeros(n_test, dtype=torch.float64, device=dev)
        count = torch.zeros(n_test, dtype=torch.float64, device=dev)
        for _ in range(repeats):
            perm = torch.randperm(n_test, generator=gen).to(dev)
            for i in range(0, n_test - b + 1, b):
                idx = perm[i:i + b]
                total[idx] += _nce_terms(gx[idx], hy[idx]).double()
                count[idx] += 1
        seen = count > 0
        terms = (total[seen] / count[seen]).cpu()
    low, high = _bootstrap(terms, gen)
    return MIEstimate(
        float(terms.mean()), low, high, "infonce", n, n_test, math.log(b), None, None, done, truncated,
        time.monotonic() - start,
    )


def _digamma(t: torch.Tensor) -> torch.Tensor:
    return torch.special.digamma(t.double())


def _ksg(x: torch.Tensor, y: torch.Tensor, *, k: int = 3, seed: int = 0, device: object = None) -> MIEstimate:
    start = time.monotonic()
    check_int(k, "k", 1)
    n = x.shape[0]
    if n < 2 * k + 2:
        raise ValueError(f"method 'ksg' with k={k} needs at least {2 * k + 2} paired samples, got {n}")
    xf, yf = x.reshape(n, -1).double(), y.reshape(n, -1).double()
    if xf.shape[1] + yf.shape[1] > KSG_MAX_DIM:
        raise ValueError(
            f"method 'ksg' is for low-dimensional vectors (x and y together at most {KSG_MAX_DIM} dims), "
            f"got {xf.shape[1]} + {yf.shape[1]}; use 'ba' or 'infonce'"
        )
    if xf.shape[1] + yf.shape[1] > KSG_WARN_DIM:
        warnings.warn(
            f"ksg on {xf.shape[1]} + {yf.shape[1]} dimensions is biased low (k-NN balls are far from uniform "
            f"beyond ~{KSG_WARN_DIM} joint dimensions); prefer 'ba' or 'infonce' there",
            UserWarning,
            stacklevel=3,
        )
    gen = torch.Generator().manual_seed(seed)
    dev = _device_of(x, device)

    def prep(a: torch.Tensor) -> torch.Tensor:
        a = (a - a.mean(0)) / a.std(0).clamp_min(1e-12)
        # Tiny jitter breaks ties (discrete or repeated values), as Kraskov et al. recommend.
        return (a + 1e-10 * torch.randn(a.shape, generator=gen, dtype=torch.float64)).to(dev)

    xf, yf = prep(xf), prep(yf)
    nx = torch.empty(n, dtype=torch.float64, device=dev)
    ny = torch.empty(n, dtype=torch.float64, device=dev)
    rows = max(1, 4_000_000 // n)
    for i in range(0, n, rows):
        dx = torch.cdist(xf[i:i + rows], xf, p=float("inf"))
        dy = torch.cdist(yf[i:i + rows], yf, p=float("inf"))
        dz = torch.maximum(dx, dy)
        ar = torch.arange(dz.shape[0], device=dev)
        dz[ar, ar + i] = math.inf
        eps = dz.kthvalue(k, dim=1, keepdim=True).values
        # Strictly closer than the k-th joint neighbour, the point itself excluded (KSG algorithm 1).
        nx[i:i + rows] = (dx < eps).sum(1) - 1
        ny[i:i + rows] = (dy < eps).sum(1) - 1
    terms = (_digamma(torch.tensor(float(k))) + _digamma(torch.tensor(float(n)))
             - _digamma(nx + 1) - _digamma(ny + 1)).cpu()
    low, high = _bootstrap(terms, gen)
    return MIEstimate(float(terms.mean()), low, high, "ksg", n, n, None, None, None, 0, False, time.monotonic() - start)


def estimate(x: object, y: object, method: str = "ba", **kw) -> MIEstimate:
    """Estimates I(x; y) in nats from paired samples (``x[i]`` with ``y[i]``), with a 95 % interval.

    Samples may have any shape: ``[n, C, H, W]`` images go through a small conv critic, anything
    else is flattened for an MLP. Methods:

    - ``"ba"``: Barber–Agakov / VMI bound H(y) + E log q(y|x) with a Gaussian q (heteroscedastic
      scale, full correlation for y up to ``full_cov_max`` dims). State y's distribution with
      ``y_dist`` (``"normal"``, a truncation t, or the default ``"gaussian"``: a Gaussian fit,
      exact only for Gaussian y). A lower bound when H(y) is exact.
    - ``"infonce"``: log B − L with a learned separable critic g(x)·h(y), reported raw; it can
      never exceed ``ceiling`` = log B (B = ``eval_batch``, capped by the held-out size), and a
      value near the ceiling (``.saturated``) says only "at least this much".
    - ``"ksg"``: Kraskov–Stögbauer–Grassberger k-NN estimator (``k=3``) for low-dimensional
      vectors; not a bound, nearly unbiased at small MI, biased low at high MI.

    Common keywords: ``seed`` (default 0), ``max_samples`` (subsample to this many pairs),
    ``device``, ``progress`` (tqdm). Learned methods also take ``steps``, ``batch_size``, ``lr``,
    ``width``/``hidden`` (critic size), ``eval_fraction`` (held-out share, default 1/3) and
    ``budget`` (seconds of training; stopping early sets ``truncated``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    max_samples = kw.pop("max_samples", None)
    xt, yt = _check_pairs(x, y, method, MIN_SAMPLES.get(method, 1))
    if max_samples is not None:
        check_int(max_samples, "max_samples", 1)
        if xt.shape[0] > max_samples:
            gen = torch.Generator().manual_seed(kw.get("seed", 0) + 7919)
            keep = torch.randperm(xt.shape[0], generator=gen)[:max_samples]
            xt, yt = _check_pairs(xt[keep.to(xt.device)], yt[keep.to(yt.device)], method, MIN_SAMPLES.get(method, 1))
    if method == "ksg":
        unknown = set(kw) - {"k", "seed", "device", "progress"}
        if unknown:
            raise ValueError(f"method 'ksg' does not take {sorted(unknown)}")
        kw.pop("progress", None)
        return _ksg(xt, yt, **kw)
    if method == "ba":
        y_dist = kw.pop("y_dist", "gaussian")
        return ba_multi(xt, {"y": yt}, {"y": y_dist}, **kw)["y"]
    return infonce(xt, yt, **kw)
