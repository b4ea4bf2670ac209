"""NVIDIA DALI backend for the view augmentations (the pipe's ``augment="dali"``).

DALI is an optional extra (``pip install nvidia-dali-cuda120``, ~425 MB wheel); it is imported
only when a :class:`DaliAugment` is built. The generated batch goes into a DALI pipeline through
``fn.external_source`` and comes back as torch tensors. On machines without a GPU the pipeline
runs in DALI's CPU mode (``device_id=None``) and is fed numpy arrays, so a CPU-only torch works.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from . import presets
from .config import AugmentConfig
from .view import ViewAugment

INSTALL_HINT = "pip install nvidia-dali-cuda120  (or: pip install 'mlvgm-data[dali]'); its CPU mode needs no GPU"


def import_dali():
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.math as dmath
        import nvidia.dali.types as types
    except ImportError as e:
        raise ImportError(f"augment='dali' needs NVIDIA DALI, which is not installed ({e}): {INSTALL_HINT}") from None
    return dali, fn, dmath, types


def has_dali() -> bool:
    """Whether NVIDIA DALI can be imported."""
    try:
        import_dali()
    except ImportError:
        return False
    return True


def view_ops(x, cfg: AugmentConfig, gpu: bool = False):
    """The DALI ops of one view's augmentation ``cfg`` applied to the node ``x`` (HWC float in
    [0, 1] on the CPU, or on the GPU with ``gpu``) → CHW float: the chain :class:`DaliAugment` runs
    on generated views, also used by the benchmark's file-reader pipeline on decoded JPEGs."""
    _, fn, dmath, types = import_dali()
    # Named argument inputs must stay on the CPU; arithmetic operands follow the data.
    data = (lambda node: node.gpu()) if gpu else (lambda node: node)  # noqa: E731
    coin = lambda p: fn.cast(fn.random.coin_flip(probability=p), dtype=types.FLOAT)  # noqa: E731
    uniform = lambda lo, hi: fn.random.uniform(range=[lo, hi])  # noqa: E731
    clamp = lambda node: dmath.clamp(node, 0.0, 1.0)  # noqa: E731
    size = [cfg.size, cfg.size]

    if cfg.crop_scale is None:
        x = fn.resize(x, size=size, interp_type=types.INTERP_LINEAR, antialias=cfg.antialias)
    else:
        x = fn.random_resized_crop(
            x, size=size, random_area=list(cfg.crop_scale), random_aspect_ratio=list(cfg.crop_ratio),
            num_attempts=10, interp_type=types.INTERP_LINEAR, antialias=cfg.antialias,
        )
    if cfg.jitter_enabled:
        on = coin(cfg.jitter_p)

        def factor(j: float):
            if j == 0:  # no jitter of this kind (DALI refuses an empty range)
                return 1.0
            return on * uniform(max(0.0, 1.0 - j), 1.0 + j) + (1.0 - on)

        b, c, s = (factor(j) for j in cfg.jitter[:3])
        x = clamp(x * data(b))
        channel_mean = fn.reductions.mean(x, axes=[0, 1])
        grey_mean = 0.2989 * channel_mean[0] + 0.587 * channel_mean[1] + 0.114 * channel_mean[2]
        x = clamp(x * data(c) + data(1.0 - c) * grey_mean)
        if cfg.jitter[2]:
            x = clamp(fn.hsv(x, saturation=s, dtype=types.FLOAT))
        if cfg.jitter[3]:
            hue_degrees = on * uniform(-360.0 * cfg.jitter[3], 360.0 * cfg.jitter[3])
            x = clamp(fn.hsv(x, hue=hue_degrees, dtype=types.FLOAT))
    if cfg.grayscale_p > 0:
        grey = data(coin(cfg.grayscale_p))
        level = 0.2989 * x[:, :, 0:1] + 0.587 * x[:, :, 1:2] + 0.114 * x[:, :, 2:3]
        x = grey * level + (1.0 - grey) * x
    if cfg.blur_p > 0:
        blur = coin(cfg.blur_p)
        blurred = fn.gaussian_blur(x, sigma=uniform(*cfg.blur_sigma), window_size=cfg.blur_kernel)
        x = data(blur) * blurred + data(1.0 - blur) * x
    if cfg.solarize_p > 0:
        solar = data(coin(cfg.solarize_p))
        x = x + solar * (x >= cfg.solarize_threshold) * (1.0 - 2.0 * x)
    mean, std = cfg.normalize or ((0.0,), (1.0,))
    mirror = fn.random.coin_flip(probability=cfg.flip_p) if cfg.flip_p > 0 else 0
    return fn.crop_mirror_normalize(x, mirror=mirror, mean=list(mean), std=list(std), output_layout="CHW",
                                    dtype=types.FLOAT)


class DaliAugment:
    """A view augmentation preset run by DALI ops: ``aug(views, seed, step)`` with ``views`` =
    ``Tensor[V, B, C, H, W]`` in [0, 1] → ``Tensor[V, B, C, size, size]`` (float32, on the views'
    device).

    ``preset`` is a preset name (``"simclr"``, ``"byol"``, ``"crop_flip"``) or a
    :class:`~mlvgm_data.augment.ViewAugment` whose views' ops an :class:`AugmentConfig` describes
    (:meth:`AugmentConfig.from_ops`; e.g. not ``RandomErasing``), translated into DALI ops:
    ``random_resized_crop`` (torchvision's ten tries, bilinear) → brightness → contrast around
    the mean grey level → saturation and hue (``fn.hsv``, which like the torch backend works in
    YIQ space) → greyscale (torchvision's weights) → ``gaussian_blur`` → solarize
    (arithmetic) → ``crop_mirror_normalize`` (the horizontal flip, normalisation and the
    HWC → CHW transpose; flipping last is equivalent since every step before it is pointwise or
    mirror-symmetric), with the same probabilities and ranges as the torch backend.

    Randomness: DALI's own generator, seeded once with ``seed`` here. Outputs are deterministic
    for a fixed seed and the same sequence of calls, but they do not follow the counter-based
    streams: ``__call__`` accepts ``seed``, ``step``, ``stream``, ``sample_offset`` and
    ``sample_ids`` only for signature compatibility with :class:`ViewAugment` and ignores them,
    so a resumed pipe does not replay the same augmentations (use the torch backend for that).
    ``batch_size`` is the largest batch it will be fed, ``num_views`` the V it expects;
    ``device="cuda"`` runs the pipeline on the current GPU (fed torch CUDA tensors, output on
    the GPU); it needs a CUDA build of torch.
    """

    def __init__(
        self,
        preset: str | ViewAugment = "simclr",
        size: int = 32,
        batch_size: int = 256,
        num_views: int = 2,
        device: str = "cpu",
        seed: int = 0,
        num_threads: int | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    ):
        dali, _, _, _ = import_dali()
        augment = presets.preset(preset, size, normalize) if isinstance(preset, str) else preset
        if not isinstance(augment, ViewAugment):
            raise ValueError(f"preset must be a preset name or a ViewAugment, got {preset!r}")
        for field, value, low in (("batch_size", batch_size, 1), ("num_views", num_views, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{field} must be an int >= {low}, got {value!r}")
        if seed >= 1 << 31:
            raise ValueError(f"seed must be < 2**31 for DALI, got {seed}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if num_threads is None:
            num_threads = max(1, min(8, os.cpu_count() or 1))
        self.augment = augment
        self.size = augment.size
        self.batch_size = batch_size
        self.num_views = num_views
        self.device = device
        self.seed = seed
        try:
            configs = [augment.config(v) for v in range(num_views)]
        except ValueError as e:
            raise ValueError(f"DaliAugment translates the ops an AugmentConfig describes: {e}") from None
        self._colour = any(c.jitter_enabled or c.grayscale_p > 0 for c in configs)
        device_id = torch.cuda.current_device() if device == "cuda" else None
        self._pipe = dali.Pipeline(
            batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
            exec_pipelined=False, exec_async=False, prefetch_queue_depth=1,
        )
        with self._pipe:
            self._pipe.set_outputs(*(self._graph(v, cfg) for v, cfg in enumerate(configs)))
        self._pipe.build()

    def _graph(self, view: int, cfg: AugmentConfig):
        """The DALI ops of one view fed by its ``external_source`` (output CHW)."""
        _, fn, _, types = import_dali()
        gpu = self.device == "cuda"
        x = fn.external_source(name=f"view{view}", device="gpu" if gpu else "cpu", layout="HWC", dtype=types.FLOAT)
        return view_ops(x, cfg, gpu)

    def __call__(
        self, views: torch.Tensor, seed: int = 0, step: int = 0, stream: int = 0, sample_offset: int = 0,
        sample_ids: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Augment ``views`` ``[V, B, C, H, W]``; the counter arguments are ignored (see the class)."""
        if not isinstance(views, torch.Tensor) or views.dim() != 5:
            shape = list(views.shape) if isinstance(views, torch.Tensor) else type(views).__name__
            raise ValueError(f"views must be a 5-d tensor [V, B, C, H, W], got {shape}")
        if not views.is_floating_point():
            raise ValueError(f"views must be floating point in [0, 1], got {views.dtype}")
        v, b, c, h, w = views.shape
        if v != self.num_views:
            raise ValueError(f"views has {v} views but this DaliAugment was built for num_views={self.num_views}")
        if not 1 <= b <= self.batch_size:
            raise ValueError(f"views has batch {b}; this DaliAugment takes 1..batch_size={self.batch_size}")
        if self._colour and c != 3:
            raise ValueError(f"views must have 3 channels for colour jitter/greyscale, got {c}")
        if any(len(self.augment.config(i).normalize[0]) != c for i in range(v) if self.augment.config(i).normalize):
            raise ValueError(f"normalize mean/std must have {c} values (one per channel)")
        on_gpu = self.device == "cuda"
        hwc = views.to(device="cuda" if on_gpu else "cpu", dtype=torch.float32).permute(0, 1, 3, 4, 2).contiguous()
        for i in range(v):
            if on_gpu:
                self._pipe.feed_input(f"view{i}", hwc[i], cuda_stream=torch.cuda.current_stream().cuda_stream)
            else:
                self._pipe.feed_input(f"view{i}", hwc[i].numpy())
        outputs = self._pipe.run()
        if not on_gpu:
            return torch.stack([torch.from_numpy(o.as_array()) for o in outputs])
        from nvidia.dali.plugin.pytorch import feed_ndarray

        out = torch.empty(v, b, c, self.size, self.size, device=hwc.device)
        for i, o in enumerate(outputs):
            feed_ndarray(o.as_tensor(), out[i], cuda_stream=torch.cuda.current_stream())
        return out

    def __repr__(self) -> str:
        return (f"DaliAugment({self.augment!r}, batch_size={self.batch_size}, num_views={self.num_views}, "
                f"device={self.device!r}, seed={self.seed})")
