"""What every run of the demo shares (:class:`DemoContext`) and :data:`SOURCES`, each trained
run's source of view batches as a named function of that context and a seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch.utils.data import TensorDataset

from ...augment import crop_flip
from ...pipe import ViewPairPipe
from ...policy import ViewPolicy
from ...step import ViewBatch
from .config import MIXED_PRIOR_FRACTION, POLICY_RUN, REAL_ANCHORED, DemoConfig
from .sources import DemoData, FixedSetViews, RealViews


@dataclass
class DemoContext:
    """What every run shares: the config, the generator, the real data, the view policies, the MI
    report (``None`` when none is stored) and what the runs produce."""

    cfg: DemoConfig
    name: str
    generator: torch.nn.Module
    data: DemoData
    policies: dict[str, ViewPolicy]
    report: Any
    out: Path
    exported: torch.Tensor | None = None  # the fixed set's view pairs from an export (uint8), if given
    pictures: dict[str, str] = field(default_factory=dict)
    per_seed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    curves: dict[str, list[list[tuple[int, float]]]] = field(default_factory=dict)

    @property
    def anchors(self) -> TensorDataset:
        """The real training images as the real-anchored runs' anchors (with their labels, which a
        class-conditional generator inverts and decodes with; the SSL objective never sees them)."""
        return TensorDataset(self.data.train_images, self.data.train_labels)

    @property
    def fixed_size(self) -> int:
        if self.exported is not None:
            return len(self.exported) if self.cfg.fixed_set is None else min(self.cfg.fixed_set, len(self.exported))
        return self.cfg.fixed_set or len(self.data.train_images)

    @property
    def curve_probe(self) -> tuple[int, int]:
        """Train and test images of each curve evaluation."""
        cfg, (xtr, _), (xte, _) = self.cfg, self.data.probe_train, self.data.probe_test
        return min(cfg.curve_probe, len(xtr)), min(cfg.curve_probe, len(xte))


def _pipe(ctx: DemoContext, key: str, seed: int) -> Iterable[ViewBatch]:
    cfg = ctx.cfg
    # mi_ml_gen's latent-chunk views use crop + flip only (its baselines the full augmentation)
    augment = crop_flip(ctx.data.train_images.shape[-1]) if key == "crop_flip_recipe" else ctx.data.augment
    return ViewPairPipe(ctx.generator, ctx.policies[key], cfg.batch_size, seed=seed, augment=augment,
                        steps=cfg.steps, prefetch=cfg.prefetch)


def _real(ctx: DemoContext, key: str, seed: int) -> Iterable[ViewBatch]:
    cfg = ctx.cfg
    return RealViews(ctx.data.train_images, ctx.data.augment, cfg.batch_size, seed, cfg.steps, cfg.prefetch)


def _fixed_set(ctx: DemoContext, key: str, seed: int) -> Iterable[ViewBatch]:
    cfg = ctx.cfg
    return FixedSetViews(ctx.generator, ctx.policies["generated"], ctx.fixed_size, ctx.data.augment, cfg.batch_size,
                         seed, cfg.steps, cfg.prefetch, exported=ctx.exported)


def _real_pipe(ctx: DemoContext, key: str, seed: int) -> Iterable[ViewBatch]:
    cfg = ctx.cfg
    return ViewPairPipe(ctx.generator, ctx.policies[key], cfg.batch_size, seed=seed, augment=ctx.data.augment,
                        steps=cfg.steps, prefetch=cfg.prefetch, anchors=ctx.anchors, real_view=key == "real_view",
                        prior_fraction=MIXED_PRIOR_FRACTION if key == "mixed" else 0.0)


SOURCES: dict[str, Callable[[DemoContext, str, int], Iterable[ViewBatch]]] = {
    "generated": _pipe,
    "real": _real,
    "baseline_policy": _pipe,
    "augment_only": _pipe,
    "fixed_set": _fixed_set,
    **{key: _real_pipe for key in REAL_ANCHORED},
    "crop_flip_recipe": _pipe,
    POLICY_RUN: _pipe,
}
"""``run -> source(ctx, run, seed)``: the batches a trained run sees with a seed (every extra policy's
run, ``policy:NAME``, under the key ``policy:``)."""
