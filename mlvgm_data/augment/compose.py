"""``Compose``: a pipeline of ops applied in order, and the batched runner it shares with ``ViewAugment``.

A user-composed pipeline is a list of ops (:mod:`.ops`), e.g.::

    from mlvgm_data.augment import (Compose, RandomResizedCrop, RandomHorizontalFlip, ColorJitter,
                                    RandomErasing, ViewAugment)
    pipeline = Compose([RandomResizedCrop(32, scale=(0.2, 1.0)), RandomHorizontalFlip(),
                        ColorJitter(0.4, 0.4, p=0.8), RandomErasing(p=0.25, value=0.5)])
    out = pipeline(images, seed=0, step=7)       # images [N, C, H, W] in [0, 1] -> [N, C, 32, 32]
    views = ViewAugment(pipeline)(views, 0, 7)   # every view of [V, B, C, H, W] (view v draws as view v)

Each op draws from its own counter slot (a pipeline's k-th op of one class from ``slot +
k·SLOT_STRIDE``), so one op's parameters never depend on which other ops the pipeline has.

Running: every op is one batched call over all views' images (views whose ops differ in a
setting the application reads run view by view, with the same bits); a position that no view's
op can change is skipped; a crop applies a flip that follows it in its own kernel; the images are
clamped to [0, 1] once, before the first op that does not keep that range (``Normalize``,
``RandomErasing``) or at the end — interpolation and blur weights sum to 1 only up to rounding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .._checks import check_counter, check_images, check_int
from .functional import Workspace
from .ops.base import SLOT_STRIDE, Draw, Op, op_from_dict


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample parameters of a pipeline over a batch of views: ``ops[i]`` holds op i's
    parameters, ``{name: Tensor[V, B, ...]}``; ``params["box"]`` is the one parameter so named."""

    ops: tuple[dict[str, torch.Tensor], ...]

    def __getitem__(self, name: str) -> torch.Tensor:
        hits = [p[name] for p in self.ops if name in p]
        if len(hits) != 1:
            names = sorted({k for p in self.ops for k in p})
            raise KeyError(f"{name!r} is a parameter of {len(hits)} ops here (parameters: {names}); use .ops[i]")
        return hits[0]

    def check(self, ops: Sequence[Op], num_views: int, batch_size: int) -> None:
        """Raise ValueError unless there is one dict per op with every parameter of shape ``[V, B, ...]``."""
        if len(self.ops) != len(ops):
            raise ValueError(f"params holds {len(self.ops)} ops' parameters, the pipeline has {len(ops)} ops")
        for op, p in zip(ops, self.ops):
            for key, trailing in op.param_shapes.items():
                t, want = p.get(key), (num_views, batch_size, *trailing)
                if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                    got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                    raise ValueError(f"params.{key} must have shape {list(want)}, got {got}")


class Compose:
    """Ops applied in order to a batch of images: ``Compose(ops)(images, seed, step)`` with
    ``images`` ``[N, C, H, W]`` in [0, 1]; :meth:`sample` / :meth:`apply` are the two halves.
    See the module docstring for an example and how it runs."""

    def __init__(self, ops: Sequence[Op]):
        if not isinstance(ops, (list, tuple)):
            raise ValueError(f"ops must be a list of augmentation ops, got {type(ops).__name__}")
        for i, op in enumerate(ops):
            if not isinstance(op, Op):
                raise ValueError(f"ops[{i}] must be an augmentation op (mlvgm_data.augment.ops), got {op!r}")
        owner: dict[int, type] = {}
        for op in ops:
            cls = type(op)
            if cls.slot is not None and owner.setdefault(cls.slot, cls) is not cls:
                raise ValueError(f"ops {owner[cls.slot].__name__} and {cls.__name__} share counter slot {cls.slot}")
        self.ops: tuple[Op, ...] = tuple(ops)
        counts: dict[type, int] = {}
        # the counter slot each op draws from (None: it draws nothing)
        self.slots: tuple[int | None, ...] = tuple(
            None if op.slot is None else op.slot + SLOT_STRIDE * _bump(counts, type(op)) for op in self.ops)
        self._local = threading.local()

    @property
    def size(self) -> int | None:
        """The output size the ops fix (None: the input's)."""
        h: int | None = None
        for op in self.ops:
            h, _ = op.output_size(h, h)
        return h

    @property
    def clamp_index(self) -> int:
        """Where the images are clamped to [0, 1]: before this op (``len(ops)``: at the end)."""
        return next((i for i, op in enumerate(self.ops) if not op.keeps_range), len(self.ops))

    def workspace(self) -> Workspace:
        """This thread's scratch buffers (threads, e.g. two pipes' producers, never share one)."""
        ws = getattr(self._local, "workspace", None)
        if ws is None:
            ws = self._local.workspace = Workspace()
        return ws

    def sample(self, draw: Draw, height: int, width: int) -> list[dict[str, torch.Tensor]]:
        """Each op's parameters (``[B, ...]``) for inputs of ``height × width``, from its own slot of ``draw``."""
        params = []
        for op, slot in zip(self.ops, self.slots):
            params.append(op.sample(draw if slot is None else draw.at(slot), height, width))
            height, width = op.output_size(height, width)
        return params

    def apply(self, images: torch.Tensor, params: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
        """The ops on ``images`` ``[N, C, H, W]`` with ``params`` as :meth:`sample` returns them; a new tensor."""
        x = check_images(images, "images", 4)
        if not isinstance(params, (list, tuple)) or not all(isinstance(p, Mapping) for p in params):
            raise ValueError(f"params must be a list of dicts (one per op), got {type(params).__name__}")
        stacked = AugmentParams(tuple({k: t[None] if isinstance(t, torch.Tensor) else t for k, t in p.items()}
                                      for p in params))
        return apply_views([self], x[None], stacked, self.workspace())[0]

    def __call__(
        self, images: torch.Tensor, seed: int, step: int, stream: int = 0, *, view: int = 0, sample_offset: int = 0,
        sample_ids: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Sample and apply: the images as view ``view`` of counter ``(seed, step, stream)``."""
        x = check_images(images, "images", 4)
        seed, step, stream = check_counter(seed, step, stream)
        draw = Draw(x.shape[0], seed, step, stream, view=check_int(view, "view", 0, 256), sample_offset=sample_offset,
                    sample_ids=sample_ids, device=x.device)
        return self.apply(x, self.sample(draw, x.shape[2], x.shape[3]))

    def to_dict(self) -> list[dict]:
        """JSON-safe: one dict per op (:meth:`Op.to_dict`)."""
        return [op.to_dict() for op in self.ops]

    @classmethod
    def from_dict(cls, d: Sequence[Mapping]) -> "Compose":
        """The pipeline :meth:`to_dict` described."""
        if not isinstance(d, list):
            raise ValueError(f"expected a list of op dicts, got {d!r}")
        return cls([op_from_dict(op) for op in d])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Compose) and self.ops == other.ops

    __hash__ = None  # type: ignore[assignment]  (mutable scratch; equal by ops)

    def __len__(self) -> int:
        return len(self.ops)

    def __getstate__(self) -> dict:
        return {"ops": self.ops, "slots": self.slots}

    def __setstate__(self, state: dict) -> None:
        self.ops, self.slots = state["ops"], state["slots"]
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Compose({list(self.ops)!r})"


def _bump(counts: dict[type, int], cls: type) -> int:
    """How many ops of ``cls`` came before (and count this one)."""
    k = counts.get(cls, 0)
    counts[cls] = k + 1
    return k


def apply_views(pipelines: Sequence[Compose], views: torch.Tensor, params: AugmentParams,
                workspace: Workspace | None = None) -> torch.Tensor:
    """``views`` ``[V, B, C, H, W]`` through ``pipelines[v]`` for view v (the same op types in the
    same order) with ``params`` (``[V, B, ...]``): a new tensor; see the module docstring."""
    x = check_images(views, "views", 5)
    v, b, c, h, w = x.shape
    if len(pipelines) != v:
        raise ValueError(f"views has {v} views but {len(pipelines)} pipelines were given (one per view)")
    check_aligned(pipelines)
    first = pipelines[0].ops
    params.check(first, v, b)
    out = x.reshape(v * b, c, h, w)
    # the caller's tensor is never written: in-place ops run on a copy when nothing made one yet
    owned = out.untyped_storage().data_ptr() != views.untyped_storage().data_ptr()
    clamp, i = pipelines[0].clamp_index, 0
    while True:
        if i == clamp:
            out, owned = (out.clamp_(0.0, 1.0) if owned else out.clamp(0.0, 1.0)), True
        if i == len(first):
            return out.view(v, b, *out.shape[1:])
        ops, prm, step = [p.ops[i] for p in pipelines], params.ops[i], 1
        if not any(op.active for op in ops):
            i += 1
            continue
        if i + 1 < len(first) and i + 1 != clamp and isinstance(first[i + 1], first[i].absorbs):
            step = 2
            if any(p.ops[i + 1].active for p in pipelines):
                prm = {**prm, **params.ops[i + 1]}
        if first[i].in_place and not owned:
            out = out.clone()
        out, owned = _apply_position(ops, out, prm, b, workspace), True
        i += step


def check_aligned(pipelines: Sequence[Compose]) -> None:
    """Raise ValueError unless the views' pipelines list the same op types in the same order."""
    kinds = [type(op) for op in pipelines[0].ops]
    for v, p in enumerate(pipelines[1:], 1):
        if [type(op) for op in p.ops] != kinds:
            names = [type(op).__name__ for op in p.ops]
            raise ValueError(
                f"view {v}'s ops {names} differ from view 0's {[k.__name__ for k in kinds]}: every view must "
                "list the same op types in the same order (give an op a view does not use with p=0)")


def _apply_position(ops: Sequence[Op], out: torch.Tensor, params: Mapping[str, torch.Tensor], batch_size: int,
                    workspace: Workspace | None) -> torch.Tensor:
    """One position's ops (one per view) on ``out`` ``[V·B, ...]``: one call when they agree on
    what application reads, else view by view."""
    n = out.shape[0]
    flat = {k: t.reshape(n, *t.shape[2:]).to(out.device) for k, t in params.items()}
    op0 = ops[0]
    if all(op is op0 or op.apply_key == op0.apply_key for op in ops):
        return op0.apply_(out, flat, workspace)
    parts = []
    for j, op in enumerate(ops):
        rows = slice(j * batch_size, (j + 1) * batch_size)
        part = op.apply_(out[rows], {k: t[rows] for k, t in flat.items()}, workspace)
        if op.in_place and part.data_ptr() != out[rows].data_ptr():
            out[rows] = part
        parts.append(part)
    return out if op0.in_place else torch.cat(parts)
