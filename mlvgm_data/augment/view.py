"""``ViewAugment``: all views of a batch augmented at once, with replayable per-sample parameters.

As in kornia, the two halves are apart: :meth:`ViewAugment.sample_params` draws every sample's
parameters from the counter streams (:class:`~mlvgm_data.augment.AugmentParams`, small
tensors; each op from its own slot, view v with counter view = v), and :meth:`ViewAugment.apply`
is a pure batched function of the images and those parameters (one pass per op over all V·B
images, :func:`~mlvgm_data.augment.compose.apply_views`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .._checks import check_counter, check_images
from .compose import AugmentParams, Compose, apply_views, check_aligned
from .config import AugmentConfig
from .ops.base import Draw, Op

ViewSpec = AugmentConfig | Compose | Sequence[Op]
"""One view's augmentation: a config, a :class:`~mlvgm_data.augment.Compose` or a list of ops."""


class ViewAugment:
    """Augments all views of a batch at once: ``aug(views, seed, step)`` with ``views`` =
    ``Tensor[V, B, C, H, W]`` → ``Tensor[V, B, C, size, size]``.

    ``views`` is one view's augmentation shared by every view (a list of ops, a
    :class:`~mlvgm_data.augment.Compose` or an :class:`AugmentConfig`), or a sequence of them:
    view v uses entry ``v mod len(views)`` (BYOL's asymmetric pair; more views alternate). The
    views must list the same op types in the same order — an op one view does not use is given
    with ``p=0``, as BYOL's first view has ``RandomSolarize(p=0.0)``::

        ViewAugment([[RandomResizedCrop(32), RandomHorizontalFlip(), GaussianBlur(3, p=1.0), RandomSolarize(p=0.0)],
                     [RandomResizedCrop(32), RandomHorizontalFlip(), GaussianBlur(3, p=0.1), RandomSolarize(p=0.2)]])

    View v draws its parameters with counter view = v, so views differ, and the same ``(seed,
    step, stream, sample ids)`` replays exactly; ``sample_params`` / ``apply`` expose the halves.
    """

    def __init__(self, views: ViewSpec | Sequence[ViewSpec]):
        self.views: tuple[Compose, ...] = _pipelines(views)
        check_aligned(self.views)
        if len({p.size for p in self.views}) != 1:
            raise ValueError(f"all views must share size, got {[p.size for p in self.views]}")

    @property
    def size(self) -> int | None:
        """The output size (None: the input's, when no op resizes)."""
        return self.views[0].size

    def pipeline(self, view: int) -> Compose:
        """The ops of view ``view``."""
        return self.views[view % len(self.views)]

    def config(self, view: int) -> AugmentConfig:
        """The :class:`AugmentConfig` describing view ``view`` (ValueError when its ops have none)."""
        return AugmentConfig.from_ops(self.pipeline(view).ops)

    def _pipelines(self, num_views: int) -> list[Compose]:
        if num_views > 256:
            raise ValueError(f"at most 256 views, got {num_views}")
        return [self.pipeline(v) for v in range(num_views)]

    def sample_params(
        self, shape: Sequence[int], seed: int, step: int, stream: int = 0, *, sample_offset: int = 0,
        sample_ids: torch.Tensor | Sequence[int] | None = None, device: torch.device | str | None = None,
    ) -> AugmentParams:
        """Parameters for views of ``shape`` = (V, B, C, H, W) (only V, B, H, W are used)."""
        if len(shape) != 5 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"shape must be (V, B, C, H, W) positive ints, got {tuple(shape)!r}")
        seed, step, stream = check_counter(seed, step, stream)
        v, b, _, h, w = shape
        dev = torch.device("cpu") if device is None else torch.device(device)
        per_view = [p.sample(Draw(b, seed, step, stream, view=i, sample_offset=sample_offset, sample_ids=sample_ids,
                                  device=dev), h, w)
                    for i, p in enumerate(self._pipelines(v))]
        return AugmentParams(tuple({k: torch.stack([pv[i][k] for pv in per_view]) for k in op_params}
                                   for i, op_params in enumerate(per_view[0])))

    def apply(self, views: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment ``views`` ``[V, B, C, H, W]`` with ``params``: one batched pass over all V·B images."""
        x = check_images(views, "views", 5)
        return apply_views(self._pipelines(x.shape[0]), views, params, self.views[0].workspace())

    def __call__(
        self, views: torch.Tensor, seed: int, step: int, stream: int = 0, sample_offset: int = 0,
        sample_ids: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        x = check_images(views, "views", 5)
        params = self.sample_params(tuple(x.shape), seed, step, stream, sample_offset=sample_offset,
                                    sample_ids=sample_ids, device=x.device)
        return self.apply(views, params)

    def to_dict(self) -> dict:
        """JSON-safe: ``{"views": [[op dict, ...], ...]}``."""
        return {"views": [p.to_dict() for p in self.views]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ViewAugment":
        """The augmentation :meth:`to_dict` described (a list of :class:`AugmentConfig` dicts is also read)."""
        if not isinstance(d, Mapping) or not isinstance(d.get("views"), list) or not d["views"]:
            raise ValueError(f"expected {{'views': [[op, ...], ...]}}, got {d!r}")
        return cls([Compose.from_dict(v) if isinstance(v, list) else AugmentConfig.from_dict(v) for v in d["views"]])

    def __repr__(self) -> str:
        return f"ViewAugment({list(self.views)!r})"


def _pipelines(views: object) -> tuple[Compose, ...]:
    """``views`` as one :class:`Compose` per entry."""
    def one(spec: object) -> Compose | None:
        if isinstance(spec, Compose):
            return spec
        if isinstance(spec, AugmentConfig):
            return Compose(spec.ops())
        if isinstance(spec, (list, tuple)) and all(isinstance(op, Op) for op in spec):
            return Compose(list(spec))
        return None

    single = one(views)
    if single is not None and not (isinstance(views, (list, tuple)) and not views):
        return (single,)
    entries = tuple(one(v) for v in views) if isinstance(views, (list, tuple)) else ()
    if not entries or any(e is None for e in entries):
        raise ValueError("views must be an AugmentConfig, a Compose, a list of ops, or a non-empty sequence of them "
                         f"(one per view), got {views!r}")
    return entries  # type: ignore[return-value]
