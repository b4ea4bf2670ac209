"""Small self-supervised learning pieces used by the demo and the examples: a conv encoder,
SimCLR (NT-Xent), SimSiam and BYOL objectives, and linear probes on frozen features."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class ConvEncoder(nn.Module):
    """A 4-block conv net (stride 1, 2, 2, 2) with global average pooling: images → ``dim``-d."""

    def __init__(self, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class SmallResNet(nn.Module):
    """A CIFAR-style ResNet (3×3 stem, one basic block per stage at widths w, 2w, 4w, 8w)."""

    def __init__(self, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.Sequential(*(BasicBlock(widths[max(i - 1, 0)], w, 1 if i == 0 else 2)
                                      for i, w in enumerate(widths)))
        self.dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


def mlp(in_dim: int, hidden: int, out_dim: int, bn_last: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                               nn.Linear(hidden, out_dim, bias=not bn_last)]
    if bn_last:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


def nt_xent(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy over the 2B embeddings of B positive pairs."""
    if z0.shape != z1.shape or z0.dim() != 2:
        raise ValueError(f"nt_xent expects two [B, D] tensors of one shape, got {list(z0.shape)} and {list(z1.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = z0.shape[0]
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, targets)


class SimCLR(nn.Module):
    """Encoder + projection head trained with NT-Xent."""

    def __init__(self, encoder: nn.Module, proj_dim: int = 128, temperature: float = 0.2) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = mlp(encoder.dim, encoder.dim, proj_dim)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections of ``x`` (what NT-Xent compares)."""
        return self.head(self.encoder(x))

    def loss(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        # One forward over both views: batch-norm statistics see the whole 2B batch.
        z = self(torch.cat([x0, x1]))
        return nt_xent(z[: len(x0)], z[len(x0):], self.temperature)


class SimSiam(nn.Module):
    """SimSiam: symmetric negative cosine between predictor output and stop-gradient projection."""

    def __init__(self, encoder: nn.Module, proj_dim: int = 256, pred_dim: int = 64) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = mlp(encoder.dim, encoder.dim, proj_dim, bn_last=True)
        self.predictor = mlp(proj_dim, pred_dim, proj_dim)

    def loss(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        z0, z1 = self.projector(self.encoder(x0)), self.projector(self.encoder(x1))
        p0, p1 = self.predictor(z0), self.predictor(z1)
        return -(F.cosine_similarity(p0, z1.detach()).mean() + F.cosine_similarity(p1, z0.detach()).mean()) / 2


class BYOL(nn.Module):
    """BYOL: online network predicts an EMA target network's projection (call ``update_target``)."""

    def __init__(self, encoder: nn.Module, proj_dim: int = 128, momentum: float = 0.99) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = mlp(encoder.dim, 2 * encoder.dim, proj_dim)
        self.predictor = mlp(proj_dim, 2 * encoder.dim, proj_dim)
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.momentum = momentum

    def loss(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        p0 = self.predictor(self.projector(self.encoder(x0)))
        p1 = self.predictor(self.projector(self.encoder(x1)))
        with torch.no_grad():
            t0 = self.target_projector(self.target_encoder(x0))
            t1 = self.target_projector(self.target_encoder(x1))
        return (2 - 2 * F.cosine_similarity(p0, t1).mean()) + (2 - 2 * F.cosine_similarity(p1, t0).mean())

    @torch.no_grad()
    def update_target(self) -> None:
        for online, target in ((self.encoder, self.target_encoder), (self.projector, self.target_projector)):
            for po, pt in zip(online.parameters(), target.parameters()):
                pt.mul_(self.momentum).add_(po.detach(), alpha=1 - self.momentum)
            for bo, bt in zip(online.buffers(), target.buffers()):
                bt.copy_(bo)


METHODS = {"simclr": SimCLR, "simsiam": SimSiam, "byol": BYOL}


def make_method(name: str, encoder: nn.Module, temperature: float = 0.2) -> nn.Module:
    """The SSL objective called ``name`` around ``encoder``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return SimCLR(encoder, temperature=temperature) if name == "simclr" else METHODS[name](encoder)


# --- probes ------------------------------------------------------------------------------------

@torch.no_grad()
def embed(encoder: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Frozen features of ``images`` (eval mode restored afterwards)."""
    was_training = encoder.training
    encoder.eval()
    try:
        return torch.cat([encoder(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    finally:
        encoder.train(was_training)


def _standardize(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


@dataclass
class ProbeResult:
    accuracy: float
    train_accuracy: float


def _check_probe_inputs(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor
) -> None:
    if train_x.dim() != 2 or test_x.dim() != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be [N, D] with one D, got {list(train_x.shape)} and {list(test_x.shape)}")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("features and labels must have the same number of rows")
    if not (torch.isfinite(train_x).all() and torch.isfinite(test_x).all()):
        raise ValueError("features must be finite")


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 weight_decay: float = 1e-4, max_iter: int = 200, dtype: torch.dtype = torch.float64) -> ProbeResult:
    """Multinomial logistic regression on standardised frozen features (full-batch L-BFGS,
    deterministic on a given machine); returns held-out and training accuracy. ``dtype=float32``
    halves the cost on wide features (raw pixels)."""
    _check_probe_inputs(train_x, train_y, test_x, test_y)
    xtr, xte = _standardize(train_x.to(dtype), test_x.to(dtype))
    classes = int(max(train_y.max(), test_y.max())) + 1
    w = torch.zeros(xtr.shape[1], classes, dtype=dtype, requires_grad=True)
    b = torch.zeros(classes, dtype=dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ w + b, train_y) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        acc = float(((xte @ w + b).argmax(1) == test_y).double().mean())
        train_acc = float(((xtr @ w + b).argmax(1) == train_y).double().mean())
    return ProbeResult(acc, train_acc)


def ridge_r2(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
             alpha: float = 1.0) -> float:
    """Held-out R² of a closed-form ridge regression of ``y`` on standardised features.

    For circular targets pass ``[cos, sin]`` columns; R² is then pooled over the columns.
    """
    _check_probe_inputs(train_x, train_y, test_x, test_y)
    xtr, xte = _standardize(train_x.double(), test_x.double())
    ytr, yte = train_y.double().reshape(len(train_y), -1), test_y.double().reshape(len(test_y), -1)
    mean = ytr.mean(0)
    a = xtr.t() @ xtr + alpha * torch.eye(xtr.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(a, xtr.t() @ (ytr - mean))
    pred = xte @ w + mean
    ss_res = ((yte - pred) ** 2).sum()
    ss_tot = ((yte - yte.mean(0)) ** 2).sum()
    return float(1 - ss_res / ss_tot) if ss_tot > 0 else math.nan


@torch.no_grad()
def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, chunk: int = 1024) -> float:
    """Held-out accuracy of a k-nearest-neighbour vote on cosine similarity: each test feature takes
    the majority class of its ``k`` most similar training features (ties go to the class whose
    neighbours are more similar)."""
    _check_probe_inputs(train_x, train_y, test_x, test_y)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(train_x):
        raise ValueError(f"k must be an int in [1, {len(train_x)}], got {k!r}")
    train = F.normalize(train_x.float(), dim=1)
    classes = int(max(train_y.max(), test_y.max())) + 1
    correct = 0
    for start in range(0, len(test_x), chunk):
        sims, idx = (F.normalize(test_x[start:start + chunk].float(), dim=1) @ train.t()).topk(k, dim=1)
        votes = F.one_hot(train_y[idx], classes).float()  # [n, k, classes]
        # A count is an integer and k similarities sum to less than k·1e-3 < 1: they only break ties.
        score = votes.sum(1) + 1e-3 / k * (votes * sims[..., None]).sum(1)
        correct += int((score.argmax(1) == test_y[start:start + chunk]).sum())
    return correct / len(test_x)
