"""``mlvgm-data bench --data fashion-mnist``: the pipe with ``builtin:fashion`` beside real-image
loaders over the same Fashion-MNIST train images, at 32² (the generator's size: the 28² images
zero-padded) with the same augmentation (the ``fashion`` preset: crop 0.3–1, flip, brightness and
contrast jitter). Rows:

* ``pipe``: :class:`~mlvgm_data.ViewPairPipe`, thread producer, prefetch 2;
* ``pipe_real``: the same pipe with real anchors (the train images, inverted by the generator
  every step: one encoder forward more than ``pipe``);
* ``tensor``: the images already in memory as a tensor, the same batched augmentation
  (:class:`~mlvgm_data.AugmentedViews`, one call per DataLoader batch, 0 workers): the fastest
  a real loader can be here;
* ``pil``: a folder of grey PNGs + PIL decode and the same recipe in PIL's ops + DataLoader (2
  workers) — the baseline the ratios refer to;
* ``torchvision``: ``torchvision.datasets.FashionMNIST`` (its ``raw`` IDX files) + the same
  recipe as ``transforms.v2`` (2 workers), skipped when torchvision is not installed;
* ``dali``: a DALI file reader over the PNG folder, decoded as RGB (DALI's colour ops expect
  three channels), with the same ops (CPU mode).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset

from ..._threads import torch_threads
from ...augment import fashion
from ...datasets import AugmentedViews
from ...pipe import ViewPairPipe
from .loaders import TORCHVISION_INSTALL, TwoViews, dali_outputs_to_torch, has_torchvision, pil_simclr_view
from .subjects import bench_generator
from .timing import measure, time_loader

ROWS = ("pipe", "pipe_real", "tensor", "pil", "torchvision", "dali")
RESOLUTION = 32


def png_folder(root: Path, images: torch.Tensor) -> Path:
    """The first images of the train split as grey PNGs under ``root`` (written once)."""
    from PIL import Image

    folder = root / f"fashion_png_{len(images)}"
    marker = folder / ".complete"
    if not marker.exists():
        (folder / "all").mkdir(parents=True, exist_ok=True)
        pixels = (images[:, 0] * 255).round().to(torch.uint8).numpy()
        for i, p in enumerate(pixels):
            Image.fromarray(p, "L").save(folder / "all" / f"{i:05d}.png")
        marker.write_text(f"{len(images)}\n")
    return folder


class PilGreyViews(Dataset):
    """Two views of each grey PNG with PIL's ops (the recipe of the ``fashion`` preset)."""

    def __init__(self, root: Path, size: int) -> None:
        from ...data.folder import find_images

        self.paths = find_images(root)
        self.augment = fashion(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        from PIL import Image

        with Image.open(self.paths[index]) as im:
            image = im.convert("L")
        return (pil_simclr_view(image, self.augment), pil_simclr_view(image, self.augment)), 0


def _torchvision_root(out: Path, files: Sequence[Path]) -> Path:
    """``OUT/FashionMNIST/raw`` with the IDX files unpacked, as torchvision reads them (it looks
    for all four, whichever split it loads)."""
    raw = out / "torchvision" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for src in files:
        name = src.name.removesuffix(".gz")
        if not (raw / name).exists():
            with (gzip.open(src) if src.suffix == ".gz" else open(src, "rb")) as f, open(raw / name, "wb") as g:
                shutil.copyfileobj(f, g)
    return out / "torchvision"


def _loader(ctx: Any, dataset: Dataset, workers: int) -> DataLoader:
    """Random batches, as many as the timing needs (with replacement: a small folder suffices)."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=ctx.loader_items(workers))
    return DataLoader(dataset, batch_size=ctx.cfg.batch_size, sampler=sampler, num_workers=workers)


def fashion_rows(ctx: Any) -> None:
    """Adds every selected Fashion-MNIST row to ``ctx`` (the bench's row context)."""
    from ...data import fashion_mnist_tensors, find_fashion_mnist

    c = ctx.cfg
    images, labels = fashion_mnist_tensors(True, pad_to=RESOLUTION)
    images, labels = images[: c.images], labels[: c.images]
    augment = fashion(RESOLUTION)
    gen, policy, note = bench_generator(c.generator, RESOLUTION)
    res, workers = RESOLUTION, c.workers
    folder = png_folder(Path(c.out), images) if {"pil", "dali"} & set(c.rows) else None
    for key in c.rows:
        if key in ("pipe", "pipe_real"):
            real = key == "pipe_real"
            anchors = TensorDataset(images, labels) if real else None
            for threads in c.threads:
                with torch_threads(threads):
                    it = iter(ViewPairPipe(gen, policy, c.batch_size, seed=c.seed, augment=augment, prefetch=2,
                                           anchors=anchors))
                    try:
                        rate = measure(lambda: next(it), c.batch_size, **ctx.timing())
                    finally:
                        it.close()
                name = "ViewPairPipe (builtin:fashion), thread producer" + (", real anchors (inverted)" if real else "")
                ctx.add(key, name, rate, res, threads, 0, generator_note=note)
        elif key == "tensor":
            loader = _loader(ctx, AugmentedViews(images, augment, seed=c.seed), 0)
            ctx.add("tensor", "in-memory tensor + the same batched augmentation", time_loader(ctx, loader, 0), res,
                    torch.get_num_threads(), 0)
        elif key == "pil":
            loader = _loader(ctx, PilGreyViews(folder, res), workers)
            ctx.add("pil", f"PNG folder + PIL + DataLoader, {workers} workers (baseline)",
                    time_loader(ctx, loader, workers), res, 1, workers)
        elif key == "torchvision":
            name = f"torchvision FashionMNIST + v2, {workers} workers"
            if not has_torchvision():
                ctx.skip("torchvision", name, TORCHVISION_INSTALL)
                continue
            from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST
            from torchvision.transforms import v2

            cfg = augment.config(0)
            transform = v2.Compose([v2.Pad(2), v2.RandomResizedCrop(res, scale=cfg.crop_scale, antialias=True),
                                    v2.RandomHorizontalFlip(),
                                    v2.RandomApply([v2.ColorJitter(cfg.jitter[0], cfg.jitter[1])], p=cfg.jitter_p),
                                    v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
            files = (*find_fashion_mnist(train=True), *find_fashion_mnist(train=False))
            ds = TorchvisionFashionMNIST(str(_torchvision_root(Path(c.out), files)),
                                         train=True, transform=TwoViews(transform))
            loader = _loader(ctx, ds, workers)
            ctx.add("torchvision", name, time_loader(ctx, loader, workers), res, 1, workers)
        elif key == "dali":
            from ...augment.dali import INSTALL_HINT, has_dali

            name = "DALI file reader + PNG decode + ops (CPU)"
            if not has_dali():
                ctx.skip("dali", name, f"NVIDIA DALI is not installed: {INSTALL_HINT}")
                continue
            pipe = _dali_pipeline(folder, augment, c.batch_size, max(c.threads), c.seed)
            rate = measure(lambda: dali_outputs_to_torch(pipe.run(), False), c.batch_size, **ctx.timing(2))
            del pipe
            ctx.add("dali", name, rate, res, max(c.threads), 0, dali_mode="cpu")


def _dali_pipeline(folder: Path, augment: Any, batch_size: int, threads: int, seed: int) -> Any:
    from ...augment.dali import import_dali, view_ops

    dali, fn, _, types = import_dali()
    pipe = dali.Pipeline(batch_size=batch_size, num_threads=threads, seed=seed, device_id=None)
    with pipe:
        files, _ = fn.readers.file(file_root=str(folder), random_shuffle=True, name="reader")
        x = fn.cast(fn.decoders.image(files, device="cpu", output_type=types.RGB), dtype=types.FLOAT) * (1.0 / 255.0)
        pipe.set_outputs(*(view_ops(x, augment.config(v)) for v in range(2)))
    pipe.build()
    return pipe
