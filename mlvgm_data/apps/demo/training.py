"""The demo's encoder training and its evaluation (linear probe and k-NN on frozen features)."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Iterable

import torch

from ..._threads import torch_threads
from ...step import ViewBatch
from ..ssl import ConvEncoder, embed, knn_accuracy, linear_probe, make_method
from .config import DemoConfig
from .sources import DemoData, epoch_order

FEW_LABEL_STREAM = 3


def encoder_for(cfg: DemoConfig, channels: int, seed: int) -> ConvEncoder:
    """The encoder every run starts from (the same initial weights for a seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvEncoder(cfg.width, in_channels=channels)


def train_encoder(batches: Iterable[ViewBatch], cfg: DemoConfig, seed: int, channels: int, desc: str,
                  evaluate_at: Callable[[int, torch.nn.Module], None] | None = None) -> tuple[torch.nn.Module, dict]:
    """Trains ``ConvEncoder`` with ``cfg.method`` on ``cfg.steps`` batches; ``evaluate_at(step,
    encoder)`` runs every ``cfg.eval_every`` steps. Returns the encoder and its training stats."""
    from tqdm import tqdm

    device = torch.device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_method(cfg.method, encoder_for(cfg, channels, seed), cfg.temperature).to(device)
    # channels_last: oneDNN's faster convolution layout on CPUs (1.8x per step here)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    losses: list[float] = []
    bar = tqdm(total=cfg.steps, desc=desc, disable=not cfg.progress, unit="step", leave=False)
    train_seconds, pairs = 0.0, 0
    it = iter(batches)
    try:
        t0 = time.perf_counter()
        for step, batch in enumerate(it, start=1):
            x0, x1 = (v.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                      for v in batch.views[:2])
            loss = model.loss(x0, x1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if hasattr(model, "update_target"):
                model.update_target()
            losses.append(loss.item())
            pairs += len(x0)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if evaluate_at is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                train_seconds += time.perf_counter() - t0
                evaluate_at(step, model.encoder)
                model.train()
                t0 = time.perf_counter()
            if step == cfg.steps:
                break
        train_seconds += time.perf_counter() - t0
    finally:
        # Stop the source's producer before the caller evaluates on more threads: a decode
        # running then would run on that thread count (and give other bits).
        close = getattr(it, "close", None)
        if close is not None:
            close()
    bar.close()
    if len(losses) != cfg.steps:
        raise RuntimeError(f"{desc}: the data source ended after {len(losses)} of {cfg.steps} steps")
    final = statistics.fmean(losses[-max(1, cfg.steps // 10):])
    return model.encoder, {"pairs_per_s": pairs / train_seconds, "train_seconds": train_seconds, "final_loss": final}


def evaluate(features: Callable[[torch.Tensor], torch.Tensor], data: DemoData, cfg: DemoConfig, threads: int,
             probe: tuple[int, int] | None = None, dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """Linear-probe and k-NN accuracy of ``features`` (a frozen map of images to vectors) on
    ``threads`` torch threads: fitted on the real probe train images, tested on the real probe
    test images (the first ``probe`` ``(train, test)`` of each when given)."""
    (xtr, ytr), (xte, yte) = data.probe_train, data.probe_test
    if probe is not None:
        xtr, ytr, xte, yte = xtr[:probe[0]], ytr[:probe[0]], xte[:probe[1]], yte[:probe[1]]
    with torch_threads(threads):
        ftr, fte = features(xtr), features(xte)
        out = {"probe_accuracy": linear_probe(ftr, ytr, fte, yte, max_iter=cfg.probe_iters, dtype=dtype).accuracy,
               "knn_accuracy": knn_accuracy(ftr, ytr, fte, yte, k=min(cfg.knn_k, len(ftr)))}
        if probe is None and cfg.few_labels:
            few = few_label_subset(ytr, cfg.few_labels)
            out["few_label_accuracy"] = linear_probe(ftr[few], ytr[few], fte, yte, max_iter=cfg.probe_iters,
                                                     dtype=dtype).accuracy
        return out


def few_label_subset(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of ``per_class`` labelled images of each class (fewer if a class has fewer): the
    first of each class in a fixed counter-based order, the same for every run and seed."""
    order = epoch_order(len(labels), 0, 0, FEW_LABEL_STREAM)
    ordered = labels[order]
    picks = [order[ordered == c][:per_class] for c in labels.unique().tolist()]
    return torch.cat(picks).sort().values


def encoder_features(encoder: torch.nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The frozen map of images to the encoder's pooled features."""
    encoder = encoder.to(device, memory_format=torch.channels_last)
    return lambda images: embed(encoder, images.to(device).contiguous(memory_format=torch.channels_last)).cpu()
