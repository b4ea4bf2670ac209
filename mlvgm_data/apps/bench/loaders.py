"""Real-image loaders at matched augmentation: a Shapes JPEG folder, PIL + DataLoader, torchvision
v2 and DALI (CPU mode)."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from ...augment import ViewAugment, default_blur_kernel, simclr

TORCHVISION_INSTALL = ("torchvision is not installed: pip install the torchvision that matches your torch "
                        "(e.g. torch==2.14.1 with torchvision==0.29.1)")


# --- timing ------------------------------------------------------------------------------------


def shapes_folder(root: str | Path, length: int, resolution: int) -> Path:
    """The Shapes JPEG export (``length`` images at ``resolution``²) under ``root``, written once
    and reused (a marker file records what is there)."""
    from ...data.shapes import export_jpeg

    folder = Path(root) / f"shapes{resolution}_{length}"
    marker = folder / ".complete"
    if not marker.exists():
        export_jpeg(folder, length, resolution)
        marker.write_text(f"{length} {resolution}\n")
    return folder


def _pil_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                  rng: Any) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (ten tries, then the centre crop) → (left, top, w, h)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    w, h = width, height
    if width / height < ratio[0]:
        h = round(width / ratio[0])
    elif width / height > ratio[1]:
        w = round(height * ratio[1])
    return (width - w) // 2, (height - h) // 2, w, h


def pil_simclr_view(image: Any, augment: ViewAugment, rng: Any = random) -> torch.Tensor:
    """One SimCLR view of a PIL RGB (or grey) image with PIL's own ops (the recipe of ``augment``'s
    first config), as a ``[3, S, S]`` (``[1, S, S]``) float tensor in [0, 1]; ``rng`` is a ``random.Random`` (default
    the ``random`` module, which DataLoader seeds per worker)."""
    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter

    cfg = augment.config(0)
    size = cfg.size
    if cfg.crop_scale is None:
        image = image.resize((size, size), Image.BILINEAR)
    else:
        left, top, w, h = _pil_crop_box(*image.size, cfg.crop_scale, cfg.crop_ratio, rng)
        image = image.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
    if rng.random() < cfg.flip_p:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    if cfg.jitter_enabled and rng.random() < cfg.jitter_p:
        b, c, s, hue = cfg.jitter
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(max(0.0, 1 - b), 1 + b))
        image = ImageEnhance.Contrast(image).enhance(rng.uniform(max(0.0, 1 - c), 1 + c))
        image = ImageEnhance.Color(image).enhance(rng.uniform(max(0.0, 1 - s), 1 + s))
        shift = rng.uniform(-hue, hue)
        if shift:
            h, s_, v = image.convert("HSV").split()
            h = Image.fromarray((np.asarray(h).astype(np.int16) + int(shift * 255)).astype(np.uint8), "L")
            image = Image.merge("HSV", (h, s_, v)).convert("RGB")
    if rng.random() < cfg.grayscale_p:
        image = image.convert("L").convert("RGB")
    if rng.random() < cfg.blur_p:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*cfg.blur_sigma)))
    pixels = np.asarray(image)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels  # a grey ("L") image: one channel
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0)


class PilViews(Dataset):
    """The PIL baseline: item i → ``((v0, v1), 0)`` from ``paths[i]`` with :func:`pil_simclr_view`
    (parameters from Python's ``random``, which DataLoader seeds per worker)."""

    def __init__(self, root: str | Path, size: int, num_views: int = 2) -> None:
        from ...data.folder import find_images

        self.paths = find_images(root)
        if not self.paths:
            raise ValueError(f"no images under {root}")
        self.augment = simclr(size)
        self.num_views = num_views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, ...], int]:
        from PIL import Image

        with Image.open(self.paths[index]) as im:
            image = im.convert("RGB")
        return tuple(pil_simclr_view(image, self.augment) for _ in range(self.num_views)), 0


class TwoViews:
    """``transform`` applied twice (two independent views), a torchvision-style dataset transform."""

    def __init__(self, transform: Callable[[Any], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(image), self.transform(image)


def has_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


def torchvision_simclr(size: int) -> Callable[[Any], torch.Tensor]:
    """The SimCLR preset as ``torchvision.transforms.v2`` on the PIL image, ending in float32 in
    [0, 1]. On PIL input v2 runs PIL's kernels, which at 32²–64² cost less per image than
    converting to a uint8 tensor first (about 3.2 vs 4.5 ms of CPU per pair at 32² here)."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(default_blur_kernel(size), sigma=(0.1, 2.0))], p=0.5),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
    ])


def dali_folder_pipeline(root: str | Path, size: int, batch_size: int, num_threads: int, seed: int = 0,
                         gpu: bool = False) -> Any:
    """A built DALI pipeline: file reader → JPEG decode (CPU, or "mixed" on a GPU) → the SimCLR
    ops of ``augment="dali"`` twice; outputs ``(view0, view1)`` CHW float batches."""
    from ...augment.dali import import_dali, view_ops

    dali, fn, _, types = import_dali()
    augment = simclr(size)
    pipe = dali.Pipeline(batch_size=batch_size, num_threads=num_threads, seed=seed,
                         device_id=torch.cuda.current_device() if gpu else None)
    with pipe:
        jpegs, _ = fn.readers.file(file_root=str(root), random_shuffle=True, name="reader")
        images = fn.decoders.image(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB)
        x = fn.cast(images, dtype=types.FLOAT) * (1.0 / 255.0)
        pipe.set_outputs(*(view_ops(x, augment.config(v), gpu) for v in range(2)))
    pipe.build()
    return pipe


def dali_outputs_to_torch(outputs: Sequence[Any], gpu: bool) -> tuple[torch.Tensor, ...]:
    """DALI pipeline outputs → torch tensors the consumer owns."""
    if not gpu:
        return tuple(torch.from_numpy(o.as_array()) for o in outputs)
    from nvidia.dali.plugin.pytorch import feed_ndarray

    result = []
    for o in outputs:
        t = o.as_tensor()
        out = torch.empty(t.shape(), device="cuda")
        feed_ndarray(t, out, cuda_stream=torch.cuda.current_stream())
        result.append(out)
    return tuple(result)


# --- the SimCLR training step (overlap and pipe benchmarks) --------------------------------------
