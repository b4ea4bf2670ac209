"""Loading a shipped model's weights: ``STEM.pt`` (a plain state dict, ``weights_only=True``, its
sha256 verified when ``STEM.json`` records it) and ``STEM.json`` (the config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from torch import nn

from ..generators.registry import load_state


def asset_available(stem: Path) -> bool:
    """Whether a saved model's ``STEM.pt`` and ``STEM.json`` both exist."""
    return stem.with_suffix(".pt").exists() and stem.with_suffix(".json").exists()


def load_width_model(cls: Callable[[int], nn.Module], stem: str | Path) -> nn.Module:
    """A classifier saved as ``STEM.pt`` + ``STEM.json`` (``{"width": w, ...}``): built as
    ``cls(width)``, its weights loaded weights-only, in eval mode."""
    stem = Path(stem)
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"classifier config {stem.with_suffix('.json')} not found") from None
    model = cls(int(meta["width"]))
    try:
        model.load_state_dict(load_state(stem.with_suffix(".pt"), meta.get("weights_sha256")))
    except RuntimeError as e:
        raise ValueError(f"{stem}.pt does not match its config: {e}") from None
    return model.eval()
