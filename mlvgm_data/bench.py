"""Generated views vs real-image loaders, side by side on one machine (``mlvgm-data bench``).

Every row delivers two SimCLR views per item to a consumer loop that does nothing else, at
matched resolution and augmentation; the number is view *pairs* per second. Rows:

* ``pipe``: :class:`~mlvgm_data.ViewPairPipe` with the shipped generator, the SimCLR preset and
  the thread producer (prefetch 2); ``pipe_cl``: the same with the generator converted to
  ``channels_last`` (``generator.to(memory_format=torch.channels_last)``, which lets oneDNN run
  the convolutions in its faster layout on CPUs; skipped when the generator already decodes in
  that layout); ``pipe_cuda``: the CUDA-stream producer (GPU only).
* ``views0`` / ``views2``: :class:`~mlvgm_data.GeneratedViews` (batched ``simclr`` transform)
  through a ``DataLoader`` with 0 and 2 workers.
* ``pil``: the always-available baseline every ratio refers to: a plain ``DataLoader`` (2
  workers) over the Shapes JPEG export, PIL decode and the SimCLR recipe written with PIL's own
  ops (``resize(box=…)``, ``ImageEnhance``, HSV hue shift, ``GaussianBlur``), no torchvision.
* ``torchvision``: ``ImageFolder`` + the equivalent ``transforms.v2`` SimCLR pipeline (2 workers);
  skipped with a note when torchvision is not installed.
* ``dali``: a DALI pipeline (file reader → JPEG decode → the same augmentation ops as
  ``augment="dali"``), CPU mode (``device_id=None``), or GPU mode when a GPU is present.
* ``research``: the research code's synchronous Continuous Sampling step, re-implemented:
  per step, seeds from ``np.random.randint``, anchors and one full-width noise draw per
  perturbed chunk group with ``scipy.stats.truncnorm.rvs`` on the CPU (one seed reused for
  every group, as there), ``torch.from_numpy``, one generator forward over the 2B latents, then
  the augmentation — no prefetch.

A sweep of decoder width at 32² (the pipe with fresh hierarchical VAEs of the shipped
architecture) states where generation overtakes decoding on this machine. The same timing,
research step and SimCLR training step serve ``benchmarks/pipe.py`` and ``benchmarks/overlap.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import itertools
import json
import math
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from . import ops
from .augment import ViewAugment, default_blur_kernel, simclr
from .datasets import GeneratedViews
from .generators import load_generator, recommended_policy
from .generators.base import checked_decode, decode_views, draw_classes
from .pipe import ViewPairPipe
from .views import Keep, Perturb, Resample, ViewPolicy

ROWS = ("pipe", "pipe_cl", "pipe_cuda", "views0", "views2", "pil", "torchvision", "dali", "research")
"""Row keys in table order (``--rows`` selects a subset)."""

BASELINE = "pil"
_TORCHVISION_INSTALL = ("torchvision is not installed: pip install the torchvision that matches your torch "
                        "(e.g. torch==2.14.1 with torchvision==0.29.1)")


# --- timing ------------------------------------------------------------------------------------

@dataclass
class Rate:
    """Items per second over timed rounds: median, min and max of the rounds."""

    median: float
    low: float
    high: float
    samples: list[float]


def measure(step: Callable[[], object], items: int, *, warmup: int, repeats: int, per_repeat: int,
            sync: Callable[[], None] | None = None) -> Rate:
    """``items`` per call of ``step``: ``warmup`` untimed calls, then ``repeats`` rounds of
    ``per_repeat`` calls each; every round gives one rate (``sync`` runs before each clock read,
    e.g. ``torch.cuda.synchronize``)."""
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1), ("per_repeat", per_repeat, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    for _ in range(warmup):
        step()
    sync = sync or (lambda: None)
    sync()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(per_repeat):
            step()
        sync()
        rates.append(items * per_repeat / (time.perf_counter() - t0))
    return Rate(statistics.median(rates), min(rates), max(rates), rates)


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: torch version and threads, cores, load, allocator setting."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"torch": torch.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg": [round(x, 2) for x in load], "native_op": ops.has_native("cpu"),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE"),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}


# --- generators ----------------------------------------------------------------------------------

def fresh_hvae(resolution: int, channel_scale: float = 1.0, base: dict | None = None) -> nn.Module:
    """A freshly initialised hierarchical VAE (speed does not depend on the weights): ``base``
    (a config, default the trainer's defaults at ``resolution``) with its decoder widths scaled."""
    from .models.hvae import DEFAULT_CONFIG, RESOLUTION_DEFAULTS, HierarchicalVAE, make_config

    if base is None:
        if resolution not in RESOLUTION_DEFAULTS:
            raise ValueError(f"no default hvae config at {resolution}²; choose from {sorted(RESOLUTION_DEFAULTS)}")
        base = make_config({"resolution": resolution, **RESOLUTION_DEFAULTS[resolution]})
    cfg = {k: v for k, v in base.items() if k in DEFAULT_CONFIG and not k.startswith("vmi_")}
    cfg["channels"] = [max(1, round(c * channel_scale)) for c in base["channels"]]
    torch.manual_seed(0)
    return HierarchicalVAE(make_config(cfg)).eval()


def bench_generator(name: str, resolution: int) -> tuple[nn.Module, ViewPolicy, str]:
    """``(generator, policy, note)``: the saved generator ``name`` with its recommended policy
    (σ = 0.5 on every group if it stores none). ``"untrained"`` (or a built-in whose weights are
    not there) is a fresh HVAE of the shipped architecture at ``resolution``: decoding costs the
    same whatever the weights (the note says so)."""
    if name == "untrained":
        gen = fresh_hvae(resolution)
        return gen, ViewPolicy.uniform(gen.latent_spec, Perturb(0.5)), f"{resolution}²: an untrained HVAE of the shipped architecture"
    try:
        gen = load_generator(name)
    except FileNotFoundError:
        if not name.startswith("builtin:"):
            raise
        gen = fresh_hvae(resolution)
        return gen, ViewPolicy.uniform(gen.latent_spec, Perturb(0.5)), f"{name} not shipped yet: fresh HVAE stand-in"
    try:
        policy = recommended_policy(name)
    except ValueError:
        policy = ViewPolicy.uniform(gen.latent_spec, Perturb(0.5))
    if gen.image_shape[-1] != resolution:
        raise ValueError(f"{name} makes {gen.image_shape[-1]}² images, expected {resolution}²")
    return gen, policy, ""


def decode_cost(generator: nn.Module) -> tuple[float, int]:
    """``(FLOPs, parameters)`` of decoding one image: FLOPs from ``torch.utils.flop_counter``
    (convolutions and matmuls), parameters of the modules the decode runs (an encoder is not
    counted) plus those held directly by the generator."""
    from torch.utils.flop_counter import FlopCounterMode

    used: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda m, i, o: used.add(m)) for m in generator.modules()]
    latents = ops.resample(generator.latent_spec, ViewPolicy({}), 1, 1, 0, 0)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            checked_decode(generator, {k: v[0] for k, v in latents.items()}, draw_classes(generator, 1, 0, 0))
    finally:
        for h in hooks:
            h.remove()
    params = {id(p): p.numel() for m in used | {generator} for p in m.parameters(recurse=m is not generator)}
    return float(counter.get_total_flops()), sum(params.values())


# --- the research code's synchronous step --------------------------------------------------------

class ResearchStep:
    """The research code's Continuous Sampling data step, faithfully: ``step()`` → ``(x0, x1)``.

    Per call: three seeds ``(randint(2**10, 2**24) + rank) // (epoch + 1)`` from NumPy's global
    generator; anchors ``truncnorm.rvs`` ``[B, D]`` (D = all groups flattened; ±anchor_trunc) with
    ``RandomState(seed_anchor)``; for every group a policy perturbs, a full ``[B, D]`` truncated
    normal draw with the *same* positive seed of which the group's columns are added (resampled
    groups are replaced by such a draw, kept groups untouched); ``torch.from_numpy``; one decode of
    the 2B latents; the augmentation of both halves. Nothing runs ahead of the step.
    """

    def __init__(self, generator: nn.Module, policy: ViewPolicy, batch_size: int, augment: ViewAugment,
                 rank: int = 0, epoch: int = 0) -> None:
        import numpy as np
        from scipy.stats import truncnorm

        self._np, self._truncnorm = np, truncnorm
        self.generator, self.policy, self.batch_size, self.augment = generator, policy, batch_size, augment
        self.rank, self.epoch = rank, epoch
        self.groups = list(generator.latent_spec)
        self.dim = sum(g.numel for g in self.groups)
        self.calls = 0

    def _noise(self, mean: float, std: float, trunc: float | None, seed: int):
        t = math.inf if trunc is None else trunc
        return self._truncnorm.rvs(-t, t, loc=mean, scale=std, size=(self.batch_size, self.dim),
                                   random_state=self._np.random.RandomState(seed)).astype(self._np.float32)

    def latents(self) -> dict[str, torch.Tensor]:
        """``{group: [2B, *shape]}``: anchors then positives, as the research code packs them."""
        np = self._np
        seeds = (np.random.randint(2**10, 2**24, 3) + self.rank) // (self.epoch + 1)
        anchor = self._noise(0.0, 1.0, self.policy.anchor_trunc, int(seeds[0]))
        positive = anchor.copy()
        start = 0
        for g in self.groups:
            cols = slice(start, start + g.numel)
            start += g.numel
            rule = self.policy.rule(g.name)
            if isinstance(rule, Keep) or (isinstance(rule, Perturb) and rule.sigma == 0.0):
                continue
            if isinstance(rule, Perturb):
                positive[:, cols] += self._noise(rule.mu, rule.sigma, rule.trunc, int(seeds[1]))[:, cols]
            elif isinstance(rule, Resample):
                positive[:, cols] = self._noise(0.0, 1.0, rule.trunc, int(seeds[1]))[:, cols]
        both = torch.from_numpy(np.concatenate([anchor, positive]))
        out, start = {}, 0
        for g in self.groups:
            out[g.name] = both[:, start:start + g.numel].reshape(2 * self.batch_size, *g.shape)
            start += g.numel
        return out

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.latents()
        with torch.no_grad():
            classes = draw_classes(self.generator, self.batch_size, 0, self.calls)
            images = checked_decode(self.generator, latents, None if classes is None else classes.repeat(2)).float()
            views = self.augment(images.view(2, self.batch_size, *images.shape[1:]), 0, self.calls)
        self.calls += 1
        return views[0], views[1]


def bare_loop(generator: nn.Module, policy: ViewPolicy, batch_size: int, augment: ViewAugment,
              seed: int = 0) -> Callable[[], torch.Tensor]:
    """resample → decode → augment in the caller's thread with nothing around it: the floor the
    pipe's machinery is measured against."""
    steps = itertools.count()

    def step() -> torch.Tensor:
        s = next(steps)
        return augment(decode_views(generator, policy, batch_size, 2, seed, s).images, seed, s)

    return step


# --- real-image loaders ----------------------------------------------------------------------

def shapes_folder(root: str | Path, length: int, resolution: int) -> Path:
    """The Shapes JPEG export (``length`` images at ``resolution``²) under ``root``, written once
    and reused (a marker file records what is there)."""
    from .data.shapes import export_jpeg

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
    """One SimCLR view of a PIL RGB image with PIL's own ops (the recipe of ``augment``'s first
    config), as a ``[3, S, S]`` float tensor in [0, 1]; ``rng`` is a ``random.Random`` (default
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
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div_(255.0)


class PilViews(Dataset):
    """The PIL baseline: item i → ``((v0, v1), 0)`` from ``paths[i]`` with :func:`pil_simclr_view`
    (parameters from Python's ``random``, which DataLoader seeds per worker)."""

    def __init__(self, root: str | Path, size: int, num_views: int = 2) -> None:
        from .data.folder import find_images

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
    from .dali import _import_dali, view_ops

    dali, fn, _, types = _import_dali()
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

class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class SmallResNet(nn.Module):
    """A CIFAR-style ResNet (3×3 stem, one basic block per stage at widths w, 2w, 4w, 8w)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.Sequential(*(BasicBlock(widths[max(i - 1, 0)], w, 1 if i == 0 else 2)
                                      for i, w in enumerate(widths)))
        self.dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


class SimCLRStep:
    """One SimCLR training step (small ResNet + projection head, NT-Xent, SGD) on a view pair."""

    def __init__(self, width: int = 16, lr: float = 0.05, seed: int = 0) -> None:
        from .ssl import SimCLR

        torch.manual_seed(seed)
        self.model = SimCLR(SmallResNet(width))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)

    def to(self, device: torch.device | str) -> "SimCLRStep":
        self.model.to(device)
        return self

    def __call__(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        loss = self.model.loss(x0, x1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


FEEDS = ("pipe", "sync", "research", "materialised")
FEED_NAMES = {
    "pipe": "(a) ViewPairPipe, thread producer, prefetch 2",
    "sync": "(b) synchronous generation in the step (same fused ops, no prefetch)",
    "research": "(b') research code's synchronous step (scipy noise + 2B forward)",
    "materialised": "(c) pre-materialised tensors (upper bound)",
}


def training_rates(generator: nn.Module, policy: ViewPolicy, batch_size: int, feeds: Sequence[str], *,
                   width: int = 16, warmup: int = 2, repeats: int = 3, per_repeat: int = 3, seed: int = 0,
                   materialised: int = 4) -> dict[str, Rate]:
    """Training steps/s of :class:`SimCLRStep` fed by each of ``feeds`` (see :data:`FEEDS`)."""
    unknown = sorted(set(feeds) - set(FEEDS))
    if unknown:
        raise ValueError(f"unknown feeds {unknown}; choose from {list(FEEDS)}")
    augment = simclr(generator.image_shape[-1])
    device = next(generator.parameters()).device
    out: dict[str, Rate] = {}
    for feed in feeds:
        train = SimCLRStep(width, seed=seed).to(device)
        pipe = ViewPairPipe(generator, policy, batch_size, seed=seed, augment=augment, prefetch=2)
        close = lambda: None  # noqa: E731
        if feed == "pipe":
            it = iter(pipe)
            close = it.close
            source: Callable[[], Sequence[torch.Tensor]] = lambda: next(it).views  # noqa: E731
        elif feed == "sync":
            work, steps = pipe.work(), itertools.count()
            source = lambda: work(next(steps)).views  # noqa: E731
        elif feed == "research":
            source = ResearchStep(generator, policy, batch_size, augment)
        else:
            work = pipe.work()
            batches = itertools.cycle([work(s).views for s in range(materialised)])
            source = lambda: next(batches)  # noqa: E731
        try:
            out[feed] = measure(lambda: train(*source()), 1, warmup=warmup, repeats=repeats, per_repeat=per_repeat)
        finally:
            close()
    return out


def pipe_vs_bare(generator: nn.Module, policy: ViewPolicy, batch_size: int, *, warmup: int = 2, repeats: int = 3,
                 per_repeat: int = 3, seed: int = 0) -> dict[str, Rate]:
    """Pairs/s of the pipe (thread producer, prefetch 2, SimCLR) and of :func:`bare_loop` on the
    same generator, batch and thread count; measured one after the other (a live producer would
    run ahead while the other is timed)."""
    augment = simclr(generator.image_shape[-1])
    it = iter(ViewPairPipe(generator, policy, batch_size, seed=seed, augment=augment, prefetch=2))
    try:
        pipe = measure(lambda: next(it), batch_size, warmup=warmup, repeats=repeats, per_repeat=per_repeat)
    finally:
        it.close()
    bare = measure(bare_loop(generator, policy, batch_size, augment, seed), batch_size, warmup=warmup,
                   repeats=repeats, per_repeat=per_repeat)
    return {"pipe": pipe, "bare": bare}


# --- the loader benchmark --------------------------------------------------------------------

@dataclass
class BenchConfig:
    """Settings of :func:`run_bench`; :meth:`quick` is the under-3-minutes variant."""

    generator: str = "builtin:shapes"
    generator64: str = "untrained"
    resolutions: tuple[int, ...] = (32, 64)
    rows: tuple[str, ...] = ROWS
    batch_size: int = 256
    warmup: int = 2
    repeats: int = 5
    batches: int = 4
    threads: tuple[int, ...] = (1, 2)
    workers: int = 2
    images: int = 3000
    sweep: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    sweep_batches: int = 2
    out: str = "bench_out"
    seed: int = 0
    progress: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> "BenchConfig":
        settings = dict(batch_size=128, warmup=1, repeats=3, batches=2, images=1000, sweep=(0.5, 2.0), sweep_batches=1)
        settings.update(overrides)
        return cls(**settings)

    def check(self) -> None:
        unknown = sorted(set(self.rows) - set(ROWS))
        if unknown:
            raise ValueError(f"unknown rows {unknown}; choose from {list(ROWS)}")
        for name in ("batch_size", "repeats", "batches", "images", "sweep_batches", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "workers" else 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not self.threads or any(t < 1 for t in self.threads):
            raise ValueError(f"threads must be positive ints, got {self.threads}")
        if any(r not in (32, 64) for r in self.resolutions) or not self.resolutions:
            raise ValueError(f"resolutions must be 32 and/or 64, got {self.resolutions}")
        if any(not s > 0 for s in self.sweep):
            raise ValueError(f"sweep width multipliers must be > 0, got {self.sweep}")


@dataclass
class _Context:
    cfg: BenchConfig
    rows: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        if self.cfg.progress:
            print(text, flush=True)

    def add(self, key: str, name: str, rate: Rate, resolution: int, threads: int, workers: int, **extra: Any) -> dict:
        row = {"key": key, "name": name, "pairs_per_s": rate.median, "min": rate.low, "max": rate.high,
               "samples": rate.samples, "resolution": resolution, "threads": threads, "workers": workers,
               "batch_size": self.cfg.batch_size, **extra}
        self.rows.append(row)
        self.say(f"  {name} {resolution}² threads={threads} workers={workers}: {rate.median:,.0f} pairs/s "
                 f"({rate.low:,.0f}–{rate.high:,.0f})")
        return row

    def skip(self, key: str, name: str, reason: str) -> None:
        if not any(s["key"] == key for s in self.skipped):
            self.skipped.append({"key": key, "name": name, "reason": reason})
            self.say(f"  {name}: skipped ({reason})")

    def timing(self, queued: int = 0) -> dict[str, int]:
        # While the consumer waits for worker start-up, the workers fill their prefetch queues
        # (``queued`` batches); those come out at once and must not be timed.
        return dict(warmup=self.cfg.warmup + queued, repeats=self.cfg.repeats, per_repeat=self.cfg.batches)

    def loader_items(self, workers: int) -> int:
        c = self.cfg
        return c.batch_size * (c.warmup + 2 * workers + c.repeats * c.batches + 2 * max(workers, 1) + 1)


def _with_threads(n: int) -> Callable[[], None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    return lambda: torch.set_num_threads(old)


def _time_loader(ctx: _Context, loader: DataLoader, workers: int) -> Rate:
    it = iter(loader)
    try:
        return measure(lambda: next(it), ctx.cfg.batch_size, **ctx.timing(workers * (loader.prefetch_factor or 0)))
    finally:
        del it
        gc.collect()


def decodes_channels_last(generator: nn.Module) -> bool:
    """Whether ``generator.decode`` already returns a channels_last tensor."""
    latents = ops.resample(generator.latent_spec, ViewPolicy({}), 2, 1, 0, 0)
    with torch.inference_mode():
        out = checked_decode(generator, {k: v[0] for k, v in latents.items()}, draw_classes(generator, 2, 0, 0))
    return out.shape[1] > 1 and out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()


def _pipe_rows(ctx: _Context, key: str, gen: nn.Module, policy: ViewPolicy, res: int, note: str) -> None:
    c = ctx.cfg
    name = "ViewPairPipe, thread producer, prefetch 2"
    if key == "pipe_cl":
        name = "ViewPairPipe, channels_last generator"
        if decodes_channels_last(gen):
            ctx.skip(key, name, "the generator already decodes in channels_last")
            return
        gen = copy.deepcopy(gen).to(memory_format=torch.channels_last)
    for threads in c.threads:
        restore = _with_threads(threads)
        it = iter(ViewPairPipe(gen, policy, c.batch_size, seed=c.seed, augment="simclr", prefetch=2))
        try:
            rate = measure(lambda: next(it), c.batch_size, **ctx.timing())
        finally:
            it.close()
            restore()
        ctx.add(key, name, rate, res, threads, 0, generator_note=note, producer="thread")


def _pipe_cuda_row(ctx: _Context, gen: nn.Module, policy: ViewPolicy, res: int, note: str) -> None:
    name = "ViewPairPipe, CUDA stream producer"
    if not torch.cuda.is_available():
        ctx.skip("pipe_cuda", name, "no GPU on this machine")
        return
    c = ctx.cfg
    gpu_gen = gen.to("cuda")
    it = iter(ViewPairPipe(gpu_gen, policy, c.batch_size, seed=c.seed, augment="simclr", prefetch=2, device="cuda"))
    try:
        rate = measure(lambda: next(it), c.batch_size, sync=torch.cuda.synchronize, **ctx.timing())
    finally:
        it.close()
        gen.to("cpu")
    ctx.add("pipe_cuda", name, rate, res, torch.get_num_threads(), 0, generator_note=note, producer="cuda")


def _views_rows(ctx: _Context, key: str, gen: nn.Module, policy: ViewPolicy, res: int, note: str) -> None:
    c = ctx.cfg
    workers = 0 if key == "views0" else c.workers
    name = f"GeneratedViews + DataLoader, {workers} workers"
    for threads in (c.threads if workers == 0 else (1,)):
        restore = _with_threads(threads)
        try:
            ds = GeneratedViews(gen, policy, ctx.loader_items(workers), seed=c.seed, transform=simclr(res))
            rate = _time_loader(ctx, DataLoader(ds, batch_size=c.batch_size, num_workers=workers), workers)
        finally:
            restore()
        ctx.add(key, name, rate, res, threads, workers, generator_note=note)


def _folder_loader(ctx: _Context, dataset: Dataset) -> DataLoader:
    c = ctx.cfg
    sampler = RandomSampler(dataset, replacement=True, num_samples=ctx.loader_items(c.workers))
    return DataLoader(dataset, batch_size=c.batch_size, sampler=sampler, num_workers=c.workers)


def _pil_row(ctx: _Context, folder: Path, res: int) -> None:
    rate = _time_loader(ctx, _folder_loader(ctx, PilViews(folder, res)), ctx.cfg.workers)
    ctx.add("pil", f"PIL + DataLoader, {ctx.cfg.workers} workers (baseline)", rate, res, 1, ctx.cfg.workers)


def _torchvision_row(ctx: _Context, folder: Path, res: int) -> None:
    name = f"torchvision ImageFolder + v2, {ctx.cfg.workers} workers"
    if not has_torchvision():
        ctx.skip("torchvision", name, _TORCHVISION_INSTALL)
        return
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(folder), transform=TwoViews(torchvision_simclr(res)), allow_empty=True)
    rate = _time_loader(ctx, _folder_loader(ctx, dataset), ctx.cfg.workers)
    import torchvision

    ctx.add("torchvision", name, rate, res, 1, ctx.cfg.workers, torchvision=torchvision.__version__)


def _dali_row(ctx: _Context, folder: Path, res: int) -> None:
    from .dali import _INSTALL, has_dali

    gpu = torch.cuda.is_available()
    name = f"DALI file reader + decode + ops ({'GPU' if gpu else 'CPU'})"
    if not has_dali():
        ctx.skip("dali", name, f"NVIDIA DALI is not installed: {_INSTALL}")
        return
    c = ctx.cfg
    threads = max(c.threads)
    pipe = dali_folder_pipeline(folder, res, c.batch_size, threads, seed=c.seed, gpu=gpu)
    sync = torch.cuda.synchronize if gpu else None
    rate = measure(lambda: dali_outputs_to_torch(pipe.run(), gpu), c.batch_size, sync=sync, **ctx.timing(2))
    del pipe
    gc.collect()
    ctx.add("dali", name, rate, res, threads, 0, dali_mode="gpu" if gpu else "cpu")


def _research_rows(ctx: _Context, gen: nn.Module, policy: ViewPolicy, res: int, note: str) -> None:
    name = "research sync step (scipy truncnorm + 2B forward)"
    try:
        import scipy  # noqa: F401
    except ImportError:
        ctx.skip("research", name, "scipy is not installed: pip install scipy (or 'mlvgm-data[bench]')")
        return
    c = ctx.cfg
    import numpy as np

    np.random.seed(c.seed)
    step = ResearchStep(gen, policy, c.batch_size, simclr(res))
    for threads in c.threads:
        restore = _with_threads(threads)
        try:
            rate = measure(step, c.batch_size, **ctx.timing())
        finally:
            restore()
        ctx.add("research", name, rate, res, threads, 0, generator_note=note)


def _sweep(ctx: _Context, base_gen: nn.Module, policy_sigma: float = 0.5) -> list[dict]:
    """Pipe pairs/s at 32² for fresh HVAEs with the shipped architecture's decoder widths scaled,
    run as the fastest 32² pipe row was (thread count, channels_last or not)."""
    c = ctx.cfg
    pipe_rows = [r for r in ctx.rows if r["key"] in ("pipe", "pipe_cl") and r["resolution"] == 32]
    best = max(pipe_rows, key=lambda r: r["pairs_per_s"]) if pipe_rows else {"threads": max(c.threads), "key": "pipe"}
    threads, channels_last = best["threads"], best["key"] == "pipe_cl"
    base = getattr(base_gen, "config", None)
    out = []
    for scale in c.sweep:
        gen = fresh_hvae(32, scale, base)
        flops, params = decode_cost(gen)
        if channels_last:
            gen = gen.to(memory_format=torch.channels_last)
        policy = ViewPolicy.uniform(gen.latent_spec, Perturb(policy_sigma))
        restore = _with_threads(threads)
        it = iter(ViewPairPipe(gen, policy, c.batch_size, seed=c.seed, augment="simclr", prefetch=2))
        try:
            rate = measure(lambda: next(it), c.batch_size, warmup=max(c.warmup, 1), repeats=c.repeats,
                           per_repeat=c.sweep_batches)
        finally:
            it.close()
            restore()
        row = {"width_scale": scale, "channels": gen.config["channels"], "params": params,
               "decode_mflops": flops / 1e6, "pairs_per_s": rate.median, "min": rate.low, "max": rate.high,
               "threads": threads, "channels_last": channels_last, "resolution": 32}
        out.append(row)
        ctx.say(f"  sweep ×{scale:g} ({params / 1e6:.2f} M decoder params, {row['decode_mflops']:.0f} MFLOP/image): "
                f"{rate.median:,.0f} pairs/s")
    return out


def crossover(sweep: Sequence[dict], loaders: Sequence[dict]) -> list[str]:
    """Sentences saying up to which decoder size generation outpaces each real-image loader:
    log-log interpolation of the sweep's pairs/s against decode FLOPs."""
    points = sorted((s["decode_mflops"], s["pairs_per_s"], s["params"]) for s in sweep)
    lines = []
    for loader in loaders:
        target = loader["pairs_per_s"]
        label = f"{loader['name']} ({target:,.0f} pairs/s)"
        if not points:
            break
        if points[0][1] < target:
            lines.append(f"{label} is faster than generation even with the smallest decoder tried "
                         f"({points[0][0]:.0f} MFLOP/image, {points[0][2] / 1e6:.2f} M decoder parameters).")
            continue
        if points[-1][1] >= target:
            lines.append(f"Generation outpaces {label} for every decoder tried, up to at least "
                         f"{points[-1][0]:.0f} MFLOP/image ({points[-1][2] / 1e6:.2f} M decoder parameters).")
            continue
        for (f0, r0, p0), (f1, r1, p1) in zip(points, points[1:]):
            if r0 >= target > r1:
                t = (math.log(r0) - math.log(target)) / (math.log(r0) - math.log(r1))
                flops = math.exp(math.log(f0) + t * (math.log(f1) - math.log(f0)))
                params = math.exp(math.log(p0) + t * (math.log(p1) - math.log(p0)))
                lines.append(f"Generation outpaces {label} for decoders up to ≈{flops:.0f} MFLOP/image "
                             f"(≈{params / 1e6:.2f} M decoder parameters at this architecture); larger decoders are slower "
                             "than decoding the JPEGs.")
                break
    return lines


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Measures every selected row at every resolution, then the width sweep; returns
    ``{"rows", "skipped", "sweep", "crossover", "machine", "settings", "notes"}``."""
    cfg.check()
    ctx = _Context(cfg)
    machine = machine_info()
    ctx.say(f"mlvgm-data bench: torch {machine['torch']}, {machine['cpu_count']} cores, "
            f"load average {machine['loadavg']}, THP_MEM_ALLOC_ENABLE={machine['THP_MEM_ALLOC_ENABLE']}, "
            f"OMP_WAIT_POLICY={machine['OMP_WAIT_POLICY']}")
    needs_folder = {"pil", "torchvision", "dali"} & set(cfg.rows)
    gen32 = None
    for res in cfg.resolutions:
        gen, policy, note = bench_generator(cfg.generator if res == 32 else cfg.generator64, res)
        if res == 32:
            gen32 = gen
        if note and note not in ctx.notes:
            ctx.notes.append(note)
        folder = shapes_folder(Path(cfg.out), cfg.images, res) if needs_folder else None
        ctx.say(f"{res}²:")
        for key in cfg.rows:
            if key in ("pipe", "pipe_cl"):
                _pipe_rows(ctx, key, gen, policy, res, note)
            elif key == "pipe_cuda":
                _pipe_cuda_row(ctx, gen, policy, res, note)
            elif key in ("views0", "views2"):
                _views_rows(ctx, key, gen, policy, res, note)
            elif key == "pil":
                _pil_row(ctx, folder, res)
            elif key == "torchvision":
                _torchvision_row(ctx, folder, res)
            elif key == "dali":
                _dali_row(ctx, folder, res)
            elif key == "research":
                _research_rows(ctx, gen, policy, res, note)
    for row in ctx.rows:
        base = [r for r in ctx.rows if r["key"] == BASELINE and r["resolution"] == row["resolution"]]
        row["ratio_to_pil"] = row["pairs_per_s"] / base[0]["pairs_per_s"] if base else None
    sweep, lines = [], []
    if cfg.sweep and 32 in cfg.resolutions:
        ctx.say("sweep of decoder width at 32²:")
        sweep = _sweep(ctx, gen32)
        loaders = [r for r in ctx.rows if r["key"] in ("pil", "torchvision", "dali") and r["resolution"] == 32]
        lines = crossover(sweep, loaders)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    settings = dataclasses.asdict(cfg)
    return {"rows": ctx.rows, "skipped": ctx.skipped, "sweep": sweep, "crossover": lines, "machine": machine,
            "settings": settings, "notes": ctx.notes}


# --- reporting -----------------------------------------------------------------------------------

def markdown(result: dict[str, Any]) -> str:
    """The side-by-side table, skipped rows, the sweep and the cross-over statements."""
    lines = ["| loader | res | threads | workers | pairs/s (median) | min–max | × PIL baseline |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        ratio = "—" if r.get("ratio_to_pil") is None else f"{r['ratio_to_pil']:.2f}×"
        lines.append(f"| {r['name']} | {r['resolution']}² | {r['threads']} | {r['workers']} | {r['pairs_per_s']:,.0f} "
                     f"| {r['min']:,.0f}–{r['max']:,.0f} | {ratio} |")
    for s in result["skipped"]:
        lines.append(f"\nSkipped: {s['name']} — {s['reason']}.")
    for note in result.get("notes", []):
        lines.append(f"\nNote: {note}.")
    if result["sweep"]:
        first = result["sweep"][0]
        lines += ["", f"Decoder-width sweep at 32² (fresh HVAEs of the shipped architecture; pipe with {first['threads']} "
                      f"thread(s){', channels_last' if first['channels_last'] else ''}):", "",
                  "| decoder width | decoder params | MFLOP / image | pairs/s (median) | min–max |",
                  "|---:|---:|---:|---:|---:|"]
        for s in result["sweep"]:
            lines.append(f"| ×{s['width_scale']:g} {s['channels']} | {s['params'] / 1e6:.2f} M | {s['decode_mflops']:.0f} "
                         f"| {s['pairs_per_s']:,.0f} | {s['min']:,.0f}–{s['max']:,.0f} |")
        lines += [""] + [f"- {line}" for line in result["crossover"]]
    m = result["machine"]
    lines.append(f"\ntorch {m['torch']}, {m['cpu_count']} cores, load average {m['loadavg']} → {m.get('loadavg_end')}, "
                 f"batch {result['settings']['batch_size']}, {result['settings']['repeats']} rounds of "
                 f"{result['settings']['batches']} batches after {result['settings']['warmup']} warm-up, "
                 f"THP_MEM_ALLOC_ENABLE={m['THP_MEM_ALLOC_ENABLE']}, OMP_WAIT_POLICY={m.get('OMP_WAIT_POLICY')}")
    return "\n".join(lines)


def bar_chart(result: dict[str, Any], path: str | Path) -> Path:
    """One horizontal bar per row and resolution: speed relative to the PIL baseline at that
    resolution (absolute pairs/s when there is no baseline row), min–max whiskers, pairs/s
    written at the bar ends."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the bar chart needs matplotlib: pip install matplotlib (or 'mlvgm-data[bench]')") from None
    rows = result["rows"]
    resolutions = sorted({r["resolution"] for r in rows})
    relative = all(r.get("ratio_to_pil") is not None for r in rows)
    labels: list[tuple] = []
    for r in rows:
        label = (r["name"], r["threads"] if r["workers"] == 0 else None)
        if label not in labels:
            labels.append(label)
    height = 0.8 / len(resolutions)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(labels) * max(1, len(resolutions) / 1.5) + 1.5))
    for k, res in enumerate(resolutions):
        sub = {(r["name"], r["threads"] if r["workers"] == 0 else None): r for r in rows if r["resolution"] == res}
        ys, med, lo, hi, text = [], [], [], [], []
        for i, label in enumerate(labels):
            if label not in sub:
                continue
            r = sub[label]
            scale = r["pairs_per_s"] / r["ratio_to_pil"] if relative else 1.0
            ys.append(len(labels) - 1 - i + (len(resolutions) / 2 - k - 0.5) * height)
            med.append(r["pairs_per_s"] / scale)
            lo.append((r["pairs_per_s"] - r["min"]) / scale)
            hi.append((r["max"] - r["pairs_per_s"]) / scale)
            text.append(f"  {r['pairs_per_s']:,.0f}/s")
        ax.barh(ys, med, height=height, xerr=[lo, hi], color=colours[k % len(colours)], capsize=2, label=f"{res}²")
        for y, m, h, t in zip(ys, med, hi, text):
            ax.text(m + h, y, t, va="center", fontsize=7)
    ax.set_yticks(range(len(labels)), [f"{n} [{t} thr]" if t is not None else n for n, t in labels][::-1], fontsize=8)
    if relative:
        ax.axvline(1.0, color="k", linestyle="--", linewidth=0.8)
        ax.set_xlabel("view pairs/s ÷ PIL baseline at the same resolution (median, min–max)")
    else:
        ax.set_xlabel("view pairs/s (median, min–max)")
    ax.margins(x=0.15)
    ax.legend(loc="lower right", fontsize=8)
    m = result["machine"]
    ax.set_title(f"Two SimCLR views per item — torch {m['torch']}, {m['cpu_count']} cores, load {m['loadavg'][0]}",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rate_dict(rate: Rate) -> dict[str, Any]:
    return {"median": rate.median, "min": rate.low, "max": rate.high, "samples": rate.samples}


def training_markdown(rates: dict[str, Rate], unit: str = "steps/s") -> str:
    lines = [f"| feed | {unit} (median) | min–max |", "|---|---:|---:|"]
    for feed, r in rates.items():
        lines.append(f"| {FEED_NAMES.get(feed, feed)} | {r.median:.3f} | {r.low:.3f}–{r.high:.3f} |")
    return "\n".join(lines)


def training_bench_setup(description: str, per_repeat: str, extra: Callable[[Any], None] | None = None
                         ) -> tuple[Any, nn.Module, ViewPolicy, str]:
    """The command line shared by ``benchmarks/pipe.py`` and ``benchmarks/overlap.py``: parses it
    (``--quick`` fills the unset sizes), loads the generator; ``per_repeat`` names the option
    counting batches or steps per timed round, ``extra(parser)`` adds script options. Returns
    ``(args, generator, policy, note)``."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--generator", default="builtin:shapes")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=None, help="default 256 (quick 128)")
    p.add_argument("--threads", default="1,2", help="torch intra-op thread counts to measure at")
    p.add_argument("--widths", default="8,16", help="ResNet widths of the training step (cheaper step → data matters more)")
    p.add_argument("--channels-last", action="store_true", help="convert the generator to channels_last first")
    p.add_argument("--warmup", type=int, default=None, help="default 2 (quick 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds, default 5 (quick 3)")
    p.add_argument(f"--{per_repeat}", type=int, default=None, help=f"{per_repeat} per timed round, default 4 (quick 2)")
    p.add_argument("--quick", action="store_true", help="batch 128, 3 rounds of 2")
    p.add_argument("--json", default=None)
    if extra is not None:
        extra(p)
    args = p.parse_args()
    defaults = (dict(batch_size=128, warmup=1, repeats=3) if args.quick else dict(batch_size=256, warmup=2, repeats=5))
    defaults[per_repeat] = 2 if args.quick else 4
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    gen, policy, note = bench_generator(args.generator, args.resolution)
    if args.channels_last:
        gen = gen.to(memory_format=torch.channels_last)
    return args, gen, policy, note


def write_training_bench_json(args: Any, note: str, results: list[dict]) -> None:
    """``--json`` of ``benchmarks/pipe.py`` and ``benchmarks/overlap.py`` (nothing without it)."""
    if not args.json:
        return
    with open(args.json, "w") as f:
        json.dump({"generator": args.generator, "note": note, "batch_size": args.batch_size,
                   "channels_last": args.channels_last, "feeds": FEED_NAMES, "machine": machine_info(),
                   "results": results}, f, indent=2)
