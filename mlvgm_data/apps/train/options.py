"""A trainer's declaration (:class:`Trainer`) and the options every trainer shares
(:data:`COMMON_DEFAULTS`). Trainer modules import this and build their ``TRAINER``; the registry
(:mod:`.registry`) lists those modules, so this sits below both."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable

COMMON_DEFAULTS: dict[str, Any] = {
    "data": "shapes",
    "out": None,
    "steps": 2000,
    "batch_size": 64,
    "lr": 1e-3,
    "seed": 0,
    "resolution": 32,
    "resume": False,
    "checkpoint_every": 1000,
    "export": None,
    "threads": None,
}


class _Recorder:
    """Collects ``add_argument`` calls so option sets of several trainers can be merged."""

    def __init__(self) -> None:
        self.options: list[tuple[tuple[str, ...], dict]] = []

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        if "default" not in kwargs and kwargs.get("action") not in ("store_true", "store_false"):
            raise ValueError(f"trainer option {flags} needs a default")
        self.options.append((flags, kwargs))


@dataclass
class Trainer:
    """``mlvgm-data train --model NAME``: ``add_arguments(parser)`` declares the model's own
    options (``parser.add_argument`` with a ``default`` each), ``train_fn(opts) -> summary``
    trains, ``defaults`` overrides common options' defaults (keys of :data:`COMMON_DEFAULTS`)."""

    name: str
    add_arguments: Callable[[Any], None]
    train_fn: Callable[[argparse.Namespace], dict]
    help: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.defaults) - set(COMMON_DEFAULTS))
        if unknown:
            raise ValueError(f"trainer {self.name!r}: defaults for unknown common options {unknown}")

    def options(self) -> list[tuple[tuple[str, ...], dict]]:
        """The model's own options as ``(flags, add_argument keywords)``."""
        rec = _Recorder()
        self.add_arguments(rec)
        return rec.options

    def option_defaults(self) -> dict[str, Any]:
        """Every option's default for this model: common ones (with overrides) + its own."""
        out = dict(COMMON_DEFAULTS)
        out.update(self.defaults)
        for flags, kw in self.options():
            out[_dest(flags, kw)] = kw.get("default", kw.get("action") == "store_false")
        return out


def _dest(flags: tuple[str, ...], kw: dict) -> str:
    if "dest" in kw:
        return kw["dest"]
    long = [f for f in flags if f.startswith("--")]
    return (long[0] if long else flags[0]).lstrip("-").replace("-", "_")
