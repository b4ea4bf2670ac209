"""The training skeleton every trainer shares (as torchvision's ``references/`` share one
``train_one_epoch``): build the model under the run's seed, resume, run the steps with a progress
bar, a log and periodic checkpoints. A trainer says only what is its own: what it builds and
what one step does (a :class:`Training`); it then evaluates the returned model and saves it
(:func:`~.outputs.save_outputs`).

The order of the random draws is part of the contract (the shipped weights are reproduced by
their README commands): the build runs first under ``torch.manual_seed(opts.seed)``, a resumed
checkpoint then restores torch's RNG state, and the steps draw in order; the caller's RNG is
restored afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Collection, Iterator

import torch
from torch import nn
from tqdm import tqdm

from ..._io import open_append
from .checkpoint import check_resumed_options, checkpoint_path, out_dir, resume, run_options, save_checkpoint


@dataclass
class Training:
    """What a trainer builds for :func:`run_training` (under the run's seed).

    ``modules`` and ``optimizers`` are checkpointed and restored on ``--resume``; ``step(k)``
    trains step ``k`` (0-based) and returns its statistics; ``output`` is the model the run
    yields (put in eval mode at the end); ``extra`` goes into every checkpoint; ``shown``: the
    prefixes of the statistics in the progress bar (all when empty)."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    step: Callable[[int], dict[str, float]]
    output: nn.Module
    extra: dict[str, Any] = field(default_factory=dict)
    shown: tuple[str, ...] = ()


@dataclass
class Trained:
    """What :func:`run_training` gives back: the ``output`` model, the training ``seconds`` over
    all sessions of the run, and this session's running averages of the step statistics."""

    output: nn.Module
    seconds: float
    smoothed: dict[str, float]

    def rounded(self) -> dict[str, float]:
        """The running averages to 4 decimals (for a summary)."""
        return {k: round(v, 4) for k, v in self.smoothed.items()}


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeds torch's global RNG inside the block; the caller's RNG state is restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def progress(opts: argparse.Namespace, start_step: int, desc: str) -> tqdm:
    """The run's tqdm bar (``opts.steps`` total, starting at ``start_step``)."""
    return tqdm(total=opts.steps, initial=start_step, desc=desc, unit="step", dynamic_ncols=True)


def run_training(opts: argparse.Namespace, build: Callable[[], Training], *, desc: str,
                 changeable: Collection[str] = (), log_every: int = 0) -> Trained:
    """Builds (seeded by ``opts.seed``), resumes from ``OUT/checkpoint.pt`` with ``--resume``
    (refused when the options other than ``changeable`` differ), then trains steps up to
    ``opts.steps``, checkpointing every ``opts.checkpoint_every`` steps and at the last one;
    ``log_every`` > 0 also appends the statistics of every such step (and the last) to
    ``OUT/log.jsonl``."""
    options = run_options(opts, changeable)
    out_dir(opts).mkdir(parents=True, exist_ok=True)
    with seeded(opts.seed):
        training = build()
        start, extra = resume(opts, training.modules, training.optimizers)
        check_resumed_options(opts, extra, options)
        seconds, began = float(extra.get("seconds", 0.0)), time.time()
        smoothed: dict[str, float] = {}
        with progress(opts, start, desc) as bar, _step_log(opts, log_every) as log:
            for step in range(start, opts.steps):
                stats = training.step(step)
                done = step + 1
                for k, v in stats.items():  # running averages; 0.02, not 1 - 0.98 (another float)
                    smoothed[k] = v if k not in smoothed else 0.98 * smoothed[k] + 0.02 * v
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in smoothed.items()
                                 if not training.shown or k.startswith(training.shown)})
                if log is not None and (done % log_every == 0 or done == opts.steps):
                    log.write(json.dumps({"step": done, **stats}) + "\n")
                    log.flush()
                if done % opts.checkpoint_every == 0 or done == opts.steps:
                    save_checkpoint(checkpoint_path(opts), done, training.modules, training.optimizers,
                                    {"seconds": seconds + time.time() - began, "options": options, **training.extra})
        seconds += time.time() - began
    training.output.eval()
    return Trained(training.output, seconds, smoothed)


def _step_log(opts: argparse.Namespace, log_every: int) -> contextlib.AbstractContextManager[IO[str] | None]:
    if log_every <= 0:
        return contextlib.nullcontext()
    return open_append(out_dir(opts) / "log.jsonl", "log", root=out_dir(opts))
