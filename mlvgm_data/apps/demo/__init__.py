"""The main job: self-supervised learning on generated views, measured against real images.

``run_demo`` (what ``mlvgm-data demo`` and ``make demo`` run) takes a shipped generator —
``builtin:fashion`` (unconditional, trained on Fashion-MNIST without labels) or
``builtin:shapes`` — and its MI-recommended view policy, then trains the same small encoder
with the same objective, optimiser, augmentations, steps and batch on:

(a) ``generated``: views from the pipe, the MI-recommended policy, fresh latents every step
    (Continuous Sampling);
(b) ``real``: the real training images, shuffled every epoch;
(c) ``baseline_policy``: generated, σ = 0.2 added to every group (mi_ml_gen's "gaussian" views);
(d) ``augment_only``: generated, no latent change (views differ by the augmentation only);
(e) ``fixed_set``: generated with the recommended policy from a fixed set of anchors (as many as
    real training images), reused every epoch: an offline generated dataset;

and keeps (f) ``random``, a randomly initialised encoder, and (g) ``pixels``, the raw pixels.
Evaluation is the usual linear protocol: frozen features of the real train split, a linear
classifier (L-BFGS) tested on the real test split, plus k-NN accuracy (k = 20, cosine); mean ± sd
over seeds. Pictures: anchor/view grids of (a), (c), (d), the MI chart, and probe accuracy against
SSL steps for (a), (b), (e).

The pieces: :mod:`.config` (the runs and the knobs), :mod:`.sources` (what each run trains on),
:mod:`.training` (encoder training, probes), :mod:`.report` and :mod:`.run` (the named steps).
"""

from .config import DATA, DEFAULT_RUNS, LABELS, RUNS, DemoConfig, RunResult
from .context import SOURCES, DemoContext
from .run import prepare, run_demo, run_one, write_report
from .sources import DemoData, FixedSetViews, RealViews, epoch_order, load_data

__all__ = [
    "DATA",
    "DEFAULT_RUNS",
    "DemoConfig",
    "DemoContext",
    "DemoData",
    "FixedSetViews",
    "LABELS",
    "RUNS",
    "RealViews",
    "RunResult",
    "SOURCES",
    "epoch_order",
    "load_data",
    "prepare",
    "run_demo",
    "run_one",
    "write_report",
]
