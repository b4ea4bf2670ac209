"""What a finished run writes: the final generator (``OUT/model.{pt,json}`` and ``--export``),
``OUT/summary.json``, the size and classes of its sample grid, and a classifier's weights."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..._io import save_torch, write_text
from ...generators.registry import file_sha256, save_generator
from .checkpoint import out_dir


def save_outputs(model: nn.Module, opts: argparse.Namespace, family: str, config: dict, summary: dict) -> dict:
    """Saves the final generator (``OUT/model`` and ``--export``) and ``OUT/summary.json``;
    returns ``summary`` with the written paths added."""
    out = out_dir(opts)
    extra = {"training": {k: v for k, v in summary.items() if _json_safe(v)}}
    paths = [str(save_generator(model, out / "model", family, config, extra))]
    if opts.export:
        paths.append(str(save_generator(model, opts.export, family, config, extra)))
    summary = dict(summary, generator=paths)
    write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n", "summary",
               root=out)
    return summary


def _json_safe(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return not (isinstance(v, float) and not math.isfinite(v))


def grid_classes(num_classes: int | None, rows: int) -> tuple[int, torch.Tensor | None]:
    """The size and classes of a sample grid ``rows`` wide: ``rows × rows`` samples, or for a
    class-conditional model one row per class (``classes`` ``[n]``, else None)."""
    if not num_classes:
        return rows * rows, None
    n = rows * num_classes
    return n, torch.arange(n) // rows


def save_width_model(model: nn.Module, stem: str | Path, meta: dict) -> None:
    """Writes what :func:`~mlvgm_data.models.assets.load_width_model` reads: ``STEM.pt`` and
    ``STEM.json`` (``meta`` with the weights' sha256, which loading verifies)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = stem.with_suffix(".pt")
    save_torch({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights, "classifier")
    meta = {**meta, "weights_sha256": file_sha256(weights)}
    write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True) + "\n", "classifier config")
