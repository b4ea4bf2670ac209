"""Judges for the view-quality report: a classifier the user trusts, run on anchors and views.

A judge is any ``nn.Module`` or callable ``images [N, C, H, W] in [0, 1] → logits [N, K]``. Its
features are ``judge.features(images)`` when it has that method (the shipped Fashion-MNIST
classifier does: its 128-d penultimate layer), a ``feature_fn`` the caller gives, or else its
logits (the report says which). By name: ``builtin:NAME`` (:data:`BUILTIN_JUDGES`), a saved
classifier ``STEM`` (``STEM.pt`` + ``STEM.json``, weights-only, as the shipped ones are stored),
or ``module:factory`` (a zero-argument callable returning the judge).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..generators.base import eval_mode
from ..generators.registry import call_factory, is_factory_name

BUILTIN_JUDGES: dict[str, str] = {
    "fashion-classifier": "mlvgm_data.models.fashion_classifier:load_classifier",
    "shapes-classifier": "mlvgm_data.models.shapes_classifier:load_classifier",
}
"""``builtin:NAME -> "module:function"``: a function that returns the shipped classifier when
called without arguments and a saved one of its architecture when given a stem. The one place a
judge's module is named (imported only when asked for)."""


def judge_names() -> list[str]:
    """The built-in judges' names (``builtin:NAME``)."""
    return sorted(f"builtin:{n}" for n in BUILTIN_JUDGES)


def _loader(target: str) -> Callable[..., nn.Module]:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _from_stem(name: str) -> nn.Module:
    """A saved classifier: the first of the built-in architectures whose weights match the file."""
    stem = Path(name)
    stem = stem.with_suffix("") if stem.suffix in (".pt", ".json") else stem
    if not (stem.with_suffix(".pt").is_file() and stem.with_suffix(".json").is_file()):
        raise ValueError(f"judge {name!r} is neither {' nor '.join(judge_names())}, a module:factory, nor a saved "
                         f"classifier ({stem}.pt and {stem}.json not found)")
    mismatches = []
    for builtin, target in BUILTIN_JUDGES.items():
        try:
            return _loader(target)(stem)
        except ValueError as e:  # the weights belong to another architecture
            mismatches.append(f"{builtin}: {str(e).splitlines()[0][:120]}")
    raise ValueError(f"judge {name!r}: the saved weights fit none of the known classifier architectures "
                     f"({'; '.join(mismatches)})")


def load_judge(name: str | Path, device: torch.device | str | None = None) -> object:
    """The judge ``name`` names (``builtin:NAME``, a saved classifier's stem, or ``module:factory``),
    in eval mode; an ``nn.Module`` is moved to ``device`` when given."""
    if not isinstance(name, (str, Path)):
        raise TypeError(f"judge name must be a string, got {type(name).__name__}")
    s = str(name)
    if s.startswith("builtin:"):
        key = s[len("builtin:"):]
        if key not in BUILTIN_JUDGES:
            raise ValueError(f"judge {s!r} is not a built-in judge; available: {judge_names()}")
        judge = _loader(BUILTIN_JUDGES[key])()
    elif is_factory_name(s):
        judge = call_factory(s, "judge", "the judge")
    else:
        judge = _from_stem(s)
    if not callable(judge):
        raise ValueError(f"judge {s!r} gave a {type(judge).__name__}, which is not callable")
    if isinstance(judge, nn.Module):
        judge = judge.eval() if device is None else judge.to(device).eval()
    return judge


def _module_device(judge: object) -> torch.device | None:
    if isinstance(judge, nn.Module):
        for t in list(judge.parameters()) + list(judge.buffers()):
            return t.device
    return None


class Judge:
    """A judge made ready to score images on ``device``: ``judge`` (a callable, or a name for
    :func:`load_judge`), its features from ``feature_fn``, ``judge.features`` or the logits.
    Every output is checked (``[N, K]`` logits with K ≥ 2, ``[N, D]`` features, finite, on
    ``device``); a module whose weights are on another device is refused."""

    def __init__(self, judge: object, device: torch.device, feature_fn: Callable | None = None) -> None:
        self.name = str(judge) if isinstance(judge, (str, Path)) else type(judge).__name__
        if isinstance(judge, (str, Path)):
            judge = load_judge(judge, device)
        if not callable(judge):
            raise ValueError(f"judge must be an nn.Module, a callable images -> logits [N, classes] or a judge name, "
                             f"got {type(judge).__name__}")
        if feature_fn is not None and not callable(feature_fn):
            raise ValueError(f"feature_fn must be a callable images -> features [N, D], "
                             f"got {type(feature_fn).__name__}")
        where = _module_device(judge)
        if where is not None and where != device:
            raise ValueError(f"judge's weights are on {where}, the generator's images on {device}: move the judge "
                             f"(judge.to({str(device)!r}))")
        self.judge, self.device = judge, device
        own = getattr(judge, "features", None)
        self.features_of = feature_fn or (own if callable(own) else None)
        self.feature_source = ("feature_fn" if feature_fn is not None else "judge.features" if self.features_of
                               else "logits (the judge exposes no features)")
        # A judge whose ``head`` maps its ``features`` to its logits (the shipped Fashion-MNIST
        # classifier) runs once per image instead of twice, once the first chunk shows it holds.
        head = getattr(judge, "head", None) if feature_fn is None and self.features_of else None
        self.head = head if callable(head) else None
        self.one_pass: bool | None = None if self.head else False
        self.classes: int | None = None

    def _checked(self, out: object, n: int, what: str, who: str, shape: str) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != n:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{who} must return {what} of shape {shape} for N = {n} images, got {got}")
        if out.device != self.device:
            raise ValueError(f"{who} returned its {what} on {out.device}, the images are on {self.device}")
        if not out.is_floating_point() or not bool(torch.isfinite(out).all()):
            raise ValueError(f"{who} returned {what} that are not finite floating-point numbers")
        return out.float()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, K], features [N, D])`` of ``images``, in chunks of ``batch_size``."""
        logits, feats = [], []
        with eval_mode(self.judge):  # batch norm in train mode would mix the images of a chunk
            for i in range(0, images.shape[0], batch_size):
                x = images[i:i + batch_size]
                out, feat = self._logits_features(x)
                if out.shape[1] < 2:
                    raise ValueError(f"judge must return logits of shape [N, classes] with 2 or more classes, "
                                     f"got {list(out.shape)}")
                if self.classes is not None and out.shape[1] != self.classes:
                    raise ValueError(f"judge returned {out.shape[1]} classes after {self.classes} before")
                self.classes = out.shape[1]
                logits.append(out)
                feats.append(feat)
        return torch.cat(logits), torch.cat(feats)

    def _logits_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def logits(out: object) -> torch.Tensor:
            return self._checked(out, x.shape[0], "logits", "judge", "[N, classes]")

        if self.features_of is None:
            out = logits(self.judge(x))
            return out, out
        feat = self._checked(self.features_of(x), x.shape[0], "features", self.feature_source, "[N, D]")
        if self.one_pass:
            return logits(self.head(feat)), feat
        out = logits(self.judge(x))
        if self.one_pass is None:
            via_head = self.head(feat)
            self.one_pass = (isinstance(via_head, torch.Tensor) and via_head.shape == out.shape
                             and torch.allclose(via_head.float(), out, rtol=1e-4, atol=1e-5))
        return out, feat
