"""A run's checkpoint (``OUT/checkpoint.pt``): modules' and optimizers' state dicts, the step,
torch's RNG state and the options that define the run, so that ``--resume`` continues exactly
where the run stopped and refuses a checkpoint written with other options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Collection

import torch
from torch import nn

from ..._io import save_torch
from ...generators.registry import load_state

BOOKKEEPING = frozenset({"model", "out", "resume", "checkpoint_every", "export", "threads"})
"""Options a resumed run may always change: they do not enter the numbers."""


def save_checkpoint(
    path: str | Path, step: int, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
    extra: dict | None = None,
) -> Path:
    """Writes modules' and optimizers' state dicts, ``step``, torch's RNG state and ``extra``
    (tensors, numbers, strings, lists, dicts) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "rng": torch.get_rng_state(),
        "extra": extra or {},
    }
    return save_torch(state, path, "checkpoint", root=path.parent)


def load_checkpoint(
    path: str | Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]
) -> tuple[int, dict]:
    """Restores what :func:`save_checkpoint` wrote (weights-only load); returns ``(step, extra)``."""
    state = load_state(Path(path))
    for key in ("step", "modules", "optimizers", "rng"):
        if key not in state:
            raise ValueError(f"{path} is not a training checkpoint (no {key!r})")
    for k, m in modules.items():
        if k not in state["modules"]:
            raise ValueError(f"{path} has no state for module {k!r}")
        try:
            m.load_state_dict(state["modules"][k])
        except RuntimeError as e:
            raise ValueError(f"{path}: module {k!r} does not match the checkpoint (other options?): {e}") from None
    for k, o in optimizers.items():
        if k not in state["optimizers"]:
            raise ValueError(f"{path} has no state for optimizer {k!r}")
        o.load_state_dict(state["optimizers"][k])
    torch.set_rng_state(state["rng"])
    return int(state["step"]), state.get("extra", {})


def out_dir(opts: argparse.Namespace) -> Path:
    """The run folder (``--out``)."""
    return Path(opts.out)


def checkpoint_path(opts: argparse.Namespace) -> Path:
    """``OUT/checkpoint.pt``."""
    return out_dir(opts) / "checkpoint.pt"


def resume(opts: argparse.Namespace, modules: dict[str, nn.Module],
           optimizers: dict[str, torch.optim.Optimizer]) -> tuple[int, dict]:
    """With ``--resume`` and an existing ``OUT/checkpoint.pt``: loads it → ``(step, extra)``;
    otherwise ``(0, {})``."""
    path = checkpoint_path(opts)
    if opts.resume and path.exists():
        return load_checkpoint(path, modules, optimizers)
    return 0, {}


def run_options(opts: argparse.Namespace, changeable: Collection[str] = ()) -> str:
    """The options that define a run, as JSON (sorted): all but :data:`BOOKKEEPING` and the
    trainer's ``changeable`` ones, which a resumed run may change."""
    skip = BOOKKEEPING | set(changeable)
    return json.dumps({k: v for k, v in sorted(vars(opts).items()) if k not in skip})


def check_resumed_options(opts: argparse.Namespace, extra: dict, options: str) -> None:
    """Refuses to resume a checkpoint (its ``extra``) written with other ``options`` than
    :func:`run_options` gives now; a fresh run (empty ``extra``) passes."""
    if extra and extra.get("options") != options:
        raise ValueError(f"--resume: {checkpoint_path(opts)} was written with other options "
                         f"({extra.get('options')}); use the same options or another --out")
