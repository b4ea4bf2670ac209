"""``ViewAugment``: all views of a batch augmented at once, with replayable per-sample parameters.

As in kornia, the two halves are apart: :meth:`ViewAugment.sample_params` draws every sample's
parameters from the counter streams (:class:`AugmentParams`, small tensors), and
:meth:`ViewAugment.apply` is a pure batched function of the images and those parameters (the
kernels of :mod:`.functional`). Order of application (torchvision's SimCLR/BYOL order): random
resized crop with horizontal flip → colour jitter (brightness, contrast, saturation, hue) →
greyscale → Gaussian blur → solarize → normalize.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .._checks import check_counter, check_images
from . import functional as F
from .config import AugmentConfig


@dataclass
class AugmentParams:
    """Per-sample parameters of a batch of views, each a tensor with leading dims ``[V, B]``.

    ``box``: (top, left, height, width) crop in input pixels; ``jitter_factors``: (brightness,
    contrast, saturation, hue), (1, 1, 1, 0) where ``jitter`` is False; ``blur_sigma`` is drawn
    for every sample and used where ``blur`` is set.
    """

    box: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    jitter_factors: torch.Tensor
    grayscale: torch.Tensor
    blur: torch.Tensor
    blur_sigma: torch.Tensor
    solarize: torch.Tensor

    def check(self, num_views: int, batch_size: int) -> None:
        """Raise ValueError unless every field has the shape of ``num_views × batch_size`` samples."""
        for f in dataclasses.fields(self):
            t = getattr(self, f.name)
            want = (num_views, batch_size, 4) if f.name in ("box", "jitter_factors") else (num_views, batch_size)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"params.{f.name} must have shape {list(want)}, got {got}")


# --- the composed augmentation ---------------------------------------------------------------

class ViewAugment:
    """Augments all views of a batch at once: ``aug(views, seed, step)`` with ``views`` =
    ``Tensor[V, B, C, H, W]`` → ``Tensor[V, B, C, size, size]``.

    ``views`` is one :class:`AugmentConfig` shared by every view, or a sequence of them: view v
    uses config ``v mod len(views)`` (BYOL's asymmetric pair; more views alternate). View v draws
    its parameters with counter view = v, so views differ, and the same ``(seed, step, stream,
    sample ids)`` replays exactly. ``sample_params`` / ``apply`` expose the two halves for
    inspection and replay.
    """

    def __init__(self, views: AugmentConfig | Sequence[AugmentConfig]):
        configs = (views,) if isinstance(views, AugmentConfig) else tuple(views)
        if not configs or not all(isinstance(c, AugmentConfig) for c in configs):
            raise ValueError(f"views must be an AugmentConfig or a non-empty sequence of them, got {views!r}")
        for field in ("size", "antialias"):
            if len({getattr(c, field) for c in configs}) != 1:
                raise ValueError(f"all view configs must share {field}, got {[getattr(c, field) for c in configs]}")
        if len({c.blur_kernel for c in configs if c.blur_p > 0}) > 1:
            raise ValueError(f"all blurred views must share blur_kernel, got {[c.blur_kernel for c in configs]}")
        self.views = configs
        self._local = threading.local()

    def _workspace(self) -> F.Workspace:
        """This thread's scratch buffers (threads, e.g. two pipes' producers, never share one)."""
        ws = getattr(self._local, "workspace", None)
        if ws is None:
            ws = self._local.workspace = F.Workspace()
        return ws

    def __getstate__(self) -> dict:
        return {"views": self.views}

    def __setstate__(self, state: dict) -> None:
        self.views = state["views"]
        self._local = threading.local()

    @property
    def size(self) -> int:
        return self.views[0].size

    def config(self, view: int) -> AugmentConfig:
        """The config of view ``view``."""
        return self.views[view % len(self.views)]

    def _configs(self, num_views: int) -> list[AugmentConfig]:
        if num_views > 256:
            raise ValueError(f"at most 256 views, got {num_views}")
        return [self.config(v) for v in range(num_views)]

    def sample_params(
        self, shape: Sequence[int], seed: int, step: int, stream: int = 0, *, sample_offset: int = 0,
        sample_ids: torch.Tensor | Sequence[int] | None = None, device: torch.device | str | None = None,
    ) -> AugmentParams:
        """Parameters for views of ``shape`` = (V, B, C, H, W) (only V, B, H, W are used)."""
        if len(shape) != 5 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"shape must be (V, B, C, H, W) positive ints, got {tuple(shape)!r}")
        check_counter(seed, step, stream)
        v, b, _, h, w = shape
        per_view = [cfg.sample(b, h, w, seed, step, stream, view=i, sample_offset=sample_offset,
                               sample_ids=sample_ids, device=device)
                    for i, cfg in enumerate(self._configs(v))]
        return AugmentParams(**{k: torch.stack([p[k] for p in per_view]) for k in per_view[0]})

    def apply(self, views: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment ``views`` ``[V, B, C, H, W]`` with ``params``: one batched pass over all V·B images."""
        x = check_images(views, "views", 5)
        v, b, c, h, w = x.shape
        configs = self._configs(v)
        params.check(v, b)
        n = v * b
        flat = lambda t: t.reshape(n, *t.shape[2:]).to(x.device)  # noqa: E731
        per_view = lambda values: torch.tensor(values, dtype=torch.float32, device=x.device).repeat_interleave(b, 0)  # noqa: E731
        ws = self._workspace()
        out = F.resized_crop(x.reshape(n, c, h, w), flat(params.box), self.size, flat(params.flip),
                             configs[0].antialias, workspace=ws)
        if any(cfg.jitter_enabled for cfg in configs):
            F.color_jitter_(out, flat(params.jitter_factors), workspace=ws)
        if any(cfg.grayscale_p > 0 for cfg in configs):
            F.grayscale_(out, flat(params.grayscale), workspace=ws)
        blurs = [cfg for cfg in configs if cfg.blur_p > 0]
        if blurs:
            F.gaussian_blur_(out, flat(params.blur_sigma), blurs[0].blur_kernel, flat(params.blur), workspace=ws)
        if any(cfg.solarize_p > 0 for cfg in configs):
            thresholds = {cfg.solarize_threshold for cfg in configs}
            threshold = thresholds.pop() if len(thresholds) == 1 else per_view([cfg.solarize_threshold for cfg in configs])
            F.solarize_(out, flat(params.solarize), threshold, workspace=ws)
        # Interpolation, grey and blur weights sum to 1 only up to rounding: keep [0, 1] exact.
        out.clamp_(0.0, 1.0)
        if any(cfg.normalize is not None for cfg in configs):
            stats = [cfg.normalize or ((0.0,) * c, (1.0,) * c) for cfg in configs]
            if any(len(m) != c for m, _ in stats):
                raise ValueError(f"normalize mean/std must have {c} values (one per channel)")
            F.normalize_(out, per_view([m for m, _ in stats]), per_view([s for _, s in stats]))
        return out.view(v, b, c, self.size, self.size)

    def __call__(
        self, views: torch.Tensor, seed: int, step: int, stream: int = 0, sample_offset: int = 0,
        sample_ids: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        x = check_images(views, "views", 5)
        params = self.sample_params(tuple(x.shape), seed, step, stream, sample_offset=sample_offset,
                                    sample_ids=sample_ids, device=x.device)
        return self.apply(x, params)

    def to_dict(self) -> dict:
        return {"views": [cfg.to_dict() for cfg in self.views]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ViewAugment":
        if not isinstance(d, Mapping) or not isinstance(d.get("views"), list):
            raise ValueError(f"expected {{'views': [config, ...]}}, got {d!r}")
        return cls([AugmentConfig.from_dict(c) for c in d["views"]])

    def __repr__(self) -> str:
        return f"ViewAugment({list(self.views)!r})"


