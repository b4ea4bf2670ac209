"""The research code's synchronous Continuous Sampling step (mi_ml_gen), re-implemented as the
baseline, and the bare resample → decode → augment loop the pipe is measured against."""

from __future__ import annotations

import itertools
import math
from typing import Callable

import torch
from torch import nn

from ...augment import ViewAugment
from ...generators.base import checked_decode, decode_views, draw_classes
from ...policy import Keep, Perturb, Resample, ViewPolicy


class ResearchStep:
    """The research code's Continuous Sampling data step, faithfully: ``step()`` → ``(x0, x1)``.

    Per call: three seeds ``(randint(2**10, 2**24) + rank) // (epoch + 1)`` from NumPy's global
    generator; anchors ``truncnorm.rvs`` ``[B, D]`` (D = all groups flattened; ±anchor_trunc) with
    ``RandomState(seed_anchor)``; for every group a policy perturbs, a full ``[B, D]`` truncated
    normal draw with the *same* positive seed of which the group's columns are added (resampled
    groups are replaced by such a draw, kept groups untouched); ``torch.from_numpy``; one decode of
    the 2B latents; the augmentation of both halves. Nothing runs ahead of the step.
    """

    def __init__(self, generator: nn.Module, policy: ViewPolicy, batch_size: int, augment: ViewAugment,
                 rank: int = 0, epoch: int = 0) -> None:
        import numpy as np
        from scipy.stats import truncnorm

        self._np, self._truncnorm = np, truncnorm
        self.generator, self.policy, self.batch_size, self.augment = generator, policy, batch_size, augment
        self.rank, self.epoch = rank, epoch
        self.groups = list(generator.latent_spec)
        self.dim = sum(g.numel for g in self.groups)
        self.calls = 0

    def _noise(self, mean: float, std: float, trunc: float | None, seed: int):
        t = math.inf if trunc is None else trunc
        return self._truncnorm.rvs(-t, t, loc=mean, scale=std, size=(self.batch_size, self.dim),
                                   random_state=self._np.random.RandomState(seed)).astype(self._np.float32)

    def latents(self) -> dict[str, torch.Tensor]:
        """``{group: [2B, *shape]}``: anchors then positives, as the research code packs them."""
        np = self._np
        seeds = (np.random.randint(2**10, 2**24, 3) + self.rank) // (self.epoch + 1)
        anchor = self._noise(0.0, 1.0, self.policy.anchor_trunc, int(seeds[0]))
        positive = anchor.copy()
        start = 0
        for g in self.groups:
            cols = slice(start, start + g.numel)
            start += g.numel
            rule = self.policy.rule(g.name)
            if isinstance(rule, Keep) or (isinstance(rule, Perturb) and rule.sigma == 0.0):
                continue
            if isinstance(rule, Perturb):
                positive[:, cols] += self._noise(rule.mu, rule.sigma, rule.trunc, int(seeds[1]))[:, cols]
            elif isinstance(rule, Resample):
                positive[:, cols] = self._noise(0.0, 1.0, rule.trunc, int(seeds[1]))[:, cols]
        both = torch.from_numpy(np.concatenate([anchor, positive]))
        out, start = {}, 0
        for g in self.groups:
            out[g.name] = both[:, start:start + g.numel].reshape(2 * self.batch_size, *g.shape)
            start += g.numel
        return out

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.latents()
        with torch.no_grad():
            classes = draw_classes(self.generator, self.batch_size, 0, self.calls)
            images = checked_decode(self.generator, latents, None if classes is None else classes.repeat(2)).float()
            views = self.augment(images.view(2, self.batch_size, *images.shape[1:]), 0, self.calls)
        self.calls += 1
        return views[0], views[1]


def bare_loop(generator: nn.Module, policy: ViewPolicy, batch_size: int, augment: ViewAugment,
              seed: int = 0) -> Callable[[], torch.Tensor]:
    """resample → decode → augment in the caller's thread with nothing around it: the floor the
    pipe's machinery is measured against."""
    steps = itertools.count()

    def step() -> torch.Tensor:
        s = next(steps)
        return augment(decode_views(generator, policy, batch_size, 2, seed=seed, step=s).images, seed, s)

    return step


# --- real-image loaders ----------------------------------------------------------------------
