"""Mutual-information estimators for paired samples: Barber–Agakov, InfoNCE and KSG.

All values are in nats. The learned estimators train a small critic on one split of the pairs
and evaluate on a held-out split, so a critic that memorises its training pairs cannot inflate
the number; the interval is a percentile bootstrap over the held-out per-sample terms. All
randomness comes from local ``torch.Generator`` objects: the user's global RNG is left alone,
and the same seed gives the same numbers on the same machine and thread count.

Why one file (over 450 lines): the three estimators share the input checks, the held-out split,
the reference entropies and the bootstrap interval of :class:`MIEstimate`, and :func:`estimate`
dispatches among them; split apart, each would import the others' private helpers.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from .._checks import check_int
from .critics import (
    BACritic,
    NCECritic,
    Standardize,
    bootstrap_interval,
    build_critic,
    critic_device,
    nce_terms,
    split_pairs,
    train_critic,
)

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
            raise ValueError(f"{name} has non-finite values in {int(bad.sum())} samples "
                             f"(first: index {int(bad.nonzero()[0])})")
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
            raise ValueError(f"y_dist says N(0, 1) truncated to ±{t:g}, "
                             f"but y has values up to {float(y.abs().max()):.3g}")
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
    split = split_pairs(n, eval_fraction, gen)
    dev = critic_device(xt, device)
    xt = xt.to(dev)
    norm_x = Standardize(xt[split.train.to(dev)])
    ty, log_jac = _standardized_targets(targets, split.train, dev)
    dims = {k: t.shape[1] for k, t in targets.items()}
    critic = build_critic(lambda: BACritic(xt.shape[1:], dims, width, hidden, full_cov_max, image_res), gen, dev)
    model = nn.Sequential(norm_x.to(dev), critic)

    def scores(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = idx.to(dev)
        return critic(model[0](xt[idx]), {k: t[idx] for k, t in ty.items()})

    def loss_on(idx: torch.Tensor) -> torch.Tensor:
        return -sum(s.mean() for s in scores(idx).values())

    deadline = None if budget is None else start + budget
    done, truncated = train_critic(model, loss_on, split, steps, batch_size, lr, gen, deadline, progress, desc)
    with torch.no_grad():
        chunks = [scores(split.test[i:i + 1024]) for i in range(0, split.test.numel(), 1024)]
    info = dict(n=n, done=done, truncated=truncated, seconds=time.monotonic() - start)
    return {k: _ba_estimate(torch.cat([c[k] for c in chunks]), targets[k][split.test], log_jac[k], refs[k], gen, **info)
            for k in ty}


def _ba_estimate(scores: torch.Tensor, y_test: torch.Tensor, log_jac: float, ref: object, gen: torch.Generator, *,
                 n: int, done: int, truncated: bool, seconds: float) -> MIEstimate:
    """The bound from one head's held-out log-likelihoods: H(y) + E log q(y|x), with its interval."""
    terms = scores.double().cpu() - log_jac - ref.log_prob(y_test.double())
    low, high = bootstrap_interval(terms, gen)
    return MIEstimate(float(terms.mean()), low, high, "ba", n, y_test.shape[0], None, ref.entropy, ref.source, done,
                      truncated, seconds)


def _standardized_targets(targets: Mapping[str, torch.Tensor], train: torch.Tensor, dev: torch.device
                          ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Targets standardised with their training split's moments, on ``dev``, and the log-Jacobian
    of that change of variables (added back to the bound)."""
    y_mean = {k: t[train].mean(0) for k, t in targets.items()}
    y_std = {k: t[train].std(0).clamp_min(1e-6) for k, t in targets.items()}
    ty = {k: ((t - y_mean[k]) / y_std[k]).to(dev) for k, t in targets.items()}
    return ty, {k: float(torch.log(y_std[k]).sum()) for k in targets}


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
        raise ValueError("shared=True needs x and y of one sample shape, "
                         f"got {list(x.shape[1:])} and {list(y.shape[1:])}")
    n = x.shape[0]
    gen = torch.Generator().manual_seed(seed)
    split = split_pairs(n, eval_fraction, gen)
    dev = critic_device(x, device)
    x, y = x.to(dev), y.to(dev)
    train = split.train.to(dev)
    norm_x = Standardize(torch.cat([x[train], y[train]]) if shared else x[train]).to(dev)
    norm_y = norm_x if shared else Standardize(y[train]).to(dev)
    critic = build_critic(lambda: NCECritic(x.shape[1:], y.shape[1:], embed_dim, width, hidden, shared, image_res),
                          gen, dev)
    model = nn.ModuleList([norm_x, norm_y, critic])

    def embed(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(dev)
        return critic.embed(norm_x(x[idx]), norm_y(y[idx]))

    def loss_on(idx: torch.Tensor) -> torch.Tensor:
        if idx.numel() > batch_size:  # validation: score in training-size batches
            return -torch.cat([nce_terms(*embed(idx[i:i + batch_size])) - math.log(batch_size)
                               for i in range(0, idx.numel() - batch_size + 1, batch_size)]).mean()
        return -(nce_terms(*embed(idx)) - math.log(idx.numel())).mean()

    deadline = None if budget is None else start + budget
    done, truncated = train_critic(model, loss_on, split, steps, batch_size, lr, gen, deadline, progress, desc)
    n_test = split.test.numel()
    b = min(eval_batch, n_test)
    terms = _held_out_nce_terms(embed, split.test, b, gen, dev)
    low, high = bootstrap_interval(terms, gen)
    return MIEstimate(float(terms.mean()), low, high, "infonce", n, n_test, math.log(b), None, None, done, truncated,
                      time.monotonic() - start)


def _held_out_nce_terms(embed: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], test: torch.Tensor,
                        b: int, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    """Every held-out pair is scored in a few random batches of ``b``; its term is the average."""
    n_test = test.numel()
    with torch.no_grad():
        gx, hy = (torch.cat(t) for t in zip(*(embed(test[i:i + 1024]) for i in range(0, n_test, 1024))))
        repeats = max(1, min(8, (4 * n_test) // b)) if b < n_test else 1
        total = torch.zeros(n_test, dtype=torch.float64, device=dev)
        count = torch.zeros(n_test, dtype=torch.float64, device=dev)
        for _ in range(repeats):
            perm = torch.randperm(n_test, generator=gen).to(dev)
            for i in range(0, n_test - b + 1, b):
                idx = perm[i:i + b]
                total[idx] += nce_terms(gx[idx], hy[idx]).double()
                count[idx] += 1
        seen = count > 0
        return (total[seen] / count[seen]).cpu()


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
    dev = critic_device(x, device)

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
    low, high = bootstrap_interval(terms, gen)
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
