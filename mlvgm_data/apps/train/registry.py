"""The trainers of ``mlvgm-data train --model NAME`` and ``train(name, **options)``, which runs one
from Python with the CLI's defaults.

A trainer module declares a module-level ``TRAINER`` (:data:`TRAINER_MODULES` lists the built-in
ones; :func:`register_trainer` adds others at run time)::

    TRAINER = Trainer("hvae", add_arguments, train_fn, help="...", defaults={"steps": 20000})

- ``add_arguments(parser)`` declares the model's own options with ``parser.add_argument`` (the
  usual argparse keywords; give every option a ``default``). Two trainers may declare the same
  option (same flags and type): the CLI shows it once and each trainer gets its own default.
- ``defaults`` overrides the common options' defaults for this model (see ``COMMON_DEFAULTS``).
- ``train_fn(opts) -> dict`` trains and returns a JSON-safe summary. ``opts`` is an
  ``argparse.Namespace`` with the common options (``data``, ``out``, ``steps``, ``batch_size``,
  ``lr``, ``seed``, ``resolution``, ``resume``, ``checkpoint_every``, ``export``, ``threads``)
  and the model's own, all resolved to values.

Building blocks for ``train_fn``, layered below the trainers (this module sits above them):
:mod:`.loop` (``run_training``: the seeded build, resume, the step loop with its progress bar,
log and periodic checkpoint), :mod:`.data` (sources, the batch of each step, real images for
evaluation, ``--conditional``), :mod:`.checkpoint` (save / load / resume, the options a resumed
run must keep) and :mod:`.outputs` (the final generator and ``summary.json``).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any, Callable

import torch

from ..._checks import check_int, check_number
from ..._io import check_output_path
from .options import Trainer

TRAINER_MODULES = {"hvae": "mlvgm_data.apps.train.hvae", "stylegan": "mlvgm_data.apps.train.stylegan",
                   "mlvae": "mlvgm_data.apps.train.mlvae"}
"""The built-in trainers: each module's ``TRAINER``, imported when the trainers are listed."""
_TRAINERS: dict[str, Trainer] = {}


def register_trainer(
    name: str, add_arguments: Callable[[Any], None], train_fn: Callable[[argparse.Namespace], dict],
    help: str = "", defaults: dict[str, Any] | None = None,
) -> None:
    """Makes ``mlvgm-data train --model name`` run ``train_fn`` (see the module docstring)."""
    _TRAINERS[name] = Trainer(name, add_arguments, train_fn, help, dict(defaults or {}))


def trainers() -> dict[str, Trainer]:
    """The built-in trainers and those registered at run time."""
    builtin = {name: importlib.import_module(module).TRAINER for name, module in TRAINER_MODULES.items()}
    return {**builtin, **_TRAINERS}


def get_trainer(name: str) -> Trainer:
    """The trainer ``name``; a ValueError naming the available ones otherwise."""
    found = trainers()
    if name not in found:
        raise ValueError(f"unknown model {name!r}; available: {sorted(found)}")
    return found[name]


def resolve_options(name: str, given: dict[str, Any]) -> argparse.Namespace:
    """The ``opts`` of a run: ``given`` over the trainer's defaults; unknown keys are an error."""
    trainer = get_trainer(name)
    opts = trainer.option_defaults()
    unknown = sorted(set(given) - set(opts))
    if unknown:
        raise ValueError(f"unknown options for --model {name}: {unknown}; known: {sorted(opts)}")
    opts.update(given)
    if opts["out"] is None:
        opts["out"] = str(Path("runs") / f"{name}-{Path(str(opts['data'])).name}-{opts['resolution']}")
    for key in ("steps", "batch_size", "resolution", "checkpoint_every"):
        opts[key] = check_int(opts[key], key, 1)
    opts["seed"] = check_int(opts["seed"], "seed", 0, 1 << 32)
    opts["lr"] = check_number(opts["lr"], "lr", 0.0, 10.0, strict_low=True)
    if opts["threads"] is not None:
        opts["threads"] = check_int(opts["threads"], "threads", 1, 1025)
    _check_paths(opts)
    return argparse.Namespace(model=name, **opts)


def _check_paths(opts: dict[str, Any]) -> None:
    if opts["out"] is not None:
        target = Path(opts["out"])
        if target.exists() and not target.is_dir():
            raise ValueError(f"out {str(target)!r} is a file, not a run folder")
    if opts["export"] is not None:
        target = Path(opts["export"])
        target.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(target.with_name(target.name + ".pt"), "--export")


def train(name: str, **options: Any) -> dict:
    """Runs the trainer ``name`` with ``options`` (the CLI's option names, underscores) → summary."""
    opts = resolve_options(name, options)
    threads = opts.threads
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return get_trainer(name).train_fn(opts)
    finally:
        torch.set_num_threads(previous)
