"""Encoder-side metrics of a VAE-like model (Skip-VAE, Dieng et al. 2019): KL per group, the
minibatch estimate of I_q(x; z), and active units.

Protocol: ``model.encode(x)`` (or ``model(x)`` for a plain callable) returns
``{group: (mu, logvar)}``, the Gaussian posterior q(z_g|x) in the standard-normal latent space,
so that KL(q‖N(0, I)) of a group is the model's KL term. The built-in hierarchical VAE and
ML-VAE follow it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping

import torch
from tqdm.auto import tqdm

ACTIVE_THRESHOLD = 0.01
"""A latent dimension is active when Cov_x E[z_d|x] exceeds this (Burda et al.; Dieng et al.)."""


@dataclass(frozen=True)
class EncoderGroupMetrics:
    """``kl``: E_x KL(q(z_g|x)‖N(0, I)) in nats; ``mi``: I_q(x; z_g) = E_x KL(q(z_g|x)‖p) −
    KL(q(z_g)‖p) by the minibatch estimator (at most ``log n``); ``active``: dimensions with
    Var_x E[z_d|x] > the threshold, out of ``dims``."""

    name: str
    dims: int
    kl: float
    mi: float
    active: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EncoderReport:
    groups: dict[str, EncoderGroupMetrics]
    total: EncoderGroupMetrics
    n: int
    threshold: float

    @property
    def mi_ceiling(self) -> float:
        """log n: the minibatch I_q estimate can never exceed it."""
        return math.log(self.n)

    def to_dict(self) -> dict:
        return {"groups": {k: g.to_dict() for k, g in self.groups.items()}, "total": self.total.to_dict(),
                "n": self.n, "mi_ceiling": self.mi_ceiling, "active_threshold": self.threshold}

    def to_markdown(self) -> str:
        lines = ["| group | dims | KL nats | I_q(x; z) nats | active units |", "|---|---:|---:|---:|---:|"]
        for g in [*self.groups.values(), self.total]:
            lines.append(f"| {g.name} | {g.dims} | {g.kl:.2f} | {g.mi:.2f} | {g.active} / {g.dims} |")
        lines += ["", f"{self.n} data points; I_q by the minibatch estimator (ceiling log n = {self.mi_ceiling:.2f} "
                      f"nats); active: Cov_x E[z|x] > {self.threshold:g}."]
        return "\n".join(lines)


def _encode_fn(model: object) -> Callable[[torch.Tensor], Mapping]:
    encode = getattr(model, "encode", None)
    if callable(encode):
        return encode
    if callable(model):
        return model  # type: ignore[return-value]
    raise ValueError(f"model must have an encode(x) method or be callable, got {type(model).__name__}")


def _first(batch: object) -> torch.Tensor:
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise ValueError(f"data must yield tensors or (tensor, ...) tuples, got {type(batch).__name__}")
    return batch


def _check_posterior(post: object, expected: list[str] | None, n: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    if not isinstance(post, Mapping) or not post:
        raise ValueError(f"encode(x) must return a non-empty dict {{group: (mu, logvar)}}, got {type(post).__name__}")
    if expected is not None and sorted(post) != sorted(expected):
        raise ValueError(f"encode(x) returned groups {sorted(post)}, earlier batches gave {sorted(expected)}")
    out = {}
    for name, pair in post.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"encode(x)[{name!r}] must be a (mu, logvar) pair")
        mu, logvar = pair
        if not isinstance(mu, torch.Tensor) or not isinstance(logvar, torch.Tensor) or mu.shape != logvar.shape:
            raise ValueError(f"encode(x)[{name!r}]: mu and logvar must be tensors of one shape")
        if mu.dim() < 1 or mu.shape[0] != n:
            raise ValueError(f"encode(x)[{name!r}] has {list(mu.shape)}, expected a leading batch dimension of {n}")
        mu, logvar = mu.detach().reshape(n, -1).double().cpu(), logvar.detach().reshape(n, -1).double().cpu()
        if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
            raise ValueError(f"encode(x)[{name!r}] has non-finite values")
        out[name] = (mu, logvar)
    return out


def _aggregate_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z_i) ≈ log (1/n) Σ_j N(z_i; μ_j, σ_j²) for every row z_i (chunked matrix products)."""
    n, d = mu.shape
    prec = torch.exp(-logvar)
    const = (mu * mu * prec).sum(1) + logvar.sum(1) + d * math.log(2 * math.pi)  # per j
    out = torch.empty(z.shape[0], dtype=torch.float64)
    rows = max(1, 2_000_000 // max(n, 1))
    for i in range(0, z.shape[0], rows):
        zi = z[i:i + rows]
        quad = (zi * zi) @ prec.T - 2 * zi @ (mu * prec).T  # [rows, n]
        log_q = -0.5 * (quad + const[None, :])
        out[i:i + rows] = torch.logsumexp(log_q, dim=1) - math.log(n)
    return out


def _group_metrics(
    name: str, mu: torch.Tensor, logvar: torch.Tensor, gen: torch.Generator, threshold: float
) -> EncoderGroupMetrics:
    n, d = mu.shape
    kl = 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(1).mean()
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, dtype=torch.float64)
    # log q(z_i|x_i) − log q(z_i) at the same sample: the sampling noise of z_i cancels, so a
    # posterior equal to the prior reads exactly 0.
    own = -0.5 * (((z - mu) ** 2 * torch.exp(-logvar)).sum(1) + logvar.sum(1) + d * math.log(2 * math.pi))
    mi = (own - _aggregate_log_density(z, mu, logvar)).mean()
    active = int((mu.var(0) > threshold).sum()) if n > 1 else 0
    return EncoderGroupMetrics(name, d, float(kl), float(mi), active)


def encoder_metrics(
    model: object,
    data: Iterable,
    *,
    max_samples: int = 2000,
    seed: int = 0,
    device: torch.device | str | None = None,
    threshold: float = ACTIVE_THRESHOLD,
    progress: bool = True,
) -> EncoderReport:
    """KL, I_q(x; z) and active units per latent group (and for all groups together) on
    ``data`` (an iterable of image batches, or of ``(images, ...)`` tuples; at most
    ``max_samples`` images are used). ``model.encode(x)`` must return ``{group: (mu, logvar)}``.
    The I_q estimate is bounded by log n, so a nearly deterministic encoder reads ≈ log n.
    """
    encode = _encode_fn(model)
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2:
        raise ValueError(f"max_samples must be an int >= 2, got {max_samples!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
    if device is None and isinstance(model, torch.nn.Module):
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dev = torch.device(device) if device is not None else None
    mus: dict[str, list[torch.Tensor]] = {}
    logvars: dict[str, list[torch.Tensor]] = {}
    names: list[str] | None = None
    n = 0
    bar = tqdm(total=max_samples, desc="encoding", disable=not progress, leave=False)
    with torch.inference_mode():
        for batch in data:
            x = _first(batch)
            x = x[: max_samples - n]
            if x.shape[0] == 0:
                break
            if dev is not None:
                x = x.to(dev)
            post = _check_posterior(encode(x), names, x.shape[0])
            names = names or list(post)
            for k, (mu, lv) in post.items():
                mus.setdefault(k, []).append(mu)
                logvars.setdefault(k, []).append(lv)
            n += x.shape[0]
            bar.update(x.shape[0])
            if n >= max_samples:
                break
    bar.close()
    if n < 2 or names is None:
        raise ValueError(f"data gave {n} samples; encoder metrics need at least 2")
    gen = torch.Generator().manual_seed(seed)
    mu = {k: torch.cat(v) for k, v in mus.items()}
    lv = {k: torch.cat(v) for k, v in logvars.items()}
    groups = {k: _group_metrics(k, mu[k], lv[k], gen, threshold) for k in names}
    total = _group_metrics("all", torch.cat([mu[k] for k in names], 1), torch.cat([lv[k] for k in names], 1),
                           gen, threshold)
    return EncoderReport(groups, total, n, float(threshold))
