"""The rows of ``mlvgm-data bench``: configuration, one function per row, the decoder-width sweep."""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ..._threads import torch_threads
from ...augment import simclr
from ...datasets import GeneratedViews
from ...pipe import ViewPairPipe
from ...policy import Perturb, ViewPolicy
from .fashion import ROWS as FASHION_ROWS
from .fashion import fashion_rows
from .loaders import (
    TORCHVISION_INSTALL,
    PilViews,
    TwoViews,
    dali_folder_pipeline,
    dali_outputs_to_torch,
    has_torchvision,
    shapes_folder,
    torchvision_simclr,
)
from .research import ResearchStep
from .subjects import bench_generator, decode_cost, decodes_channels_last, fresh_hvae
from .timing import Rate, machine_info, measure, time_loader

ROWS = ("pipe", "pipe_cl", "pipe_cuda", "views0", "views2", "pil", "torchvision", "dali", "research")
"""Row keys in table order (``--rows`` selects a subset)."""

BASELINE = "pil"


@dataclass
class BenchConfig:
    """Settings of :func:`run_bench`; :meth:`quick` is the under-3-minutes variant."""

    data: str = "shapes"  # or "fashion-mnist" (see bench/fashion.py)
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
        if self.data not in ("shapes", "fashion-mnist"):
            raise ValueError(f"data must be 'shapes' or 'fashion-mnist', got {self.data!r}")
        known = FASHION_ROWS if self.data == "fashion-mnist" else ROWS
        unknown = sorted(set(self.rows) - set(known))
        if unknown:
            raise ValueError(f"unknown rows {unknown} for --data {self.data}; choose from {list(known)}")
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
        with torch_threads(threads):
            it = iter(ViewPairPipe(gen, policy, c.batch_size, seed=c.seed, augment="simclr", prefetch=2))
            try:
                rate = measure(lambda: next(it), c.batch_size, **ctx.timing())
            finally:
                it.close()
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
        with torch_threads(threads):
            ds = GeneratedViews(gen, policy, ctx.loader_items(workers), seed=c.seed, transform=simclr(res))
            rate = time_loader(ctx, DataLoader(ds, batch_size=c.batch_size, num_workers=workers), workers)
        ctx.add(key, name, rate, res, threads, workers, generator_note=note)


def _folder_loader(ctx: _Context, dataset: Dataset) -> DataLoader:
    c = ctx.cfg
    sampler = RandomSampler(dataset, replacement=True, num_samples=ctx.loader_items(c.workers))
    return DataLoader(dataset, batch_size=c.batch_size, sampler=sampler, num_workers=c.workers)


def _pil_row(ctx: _Context, folder: Path, res: int) -> None:
    rate = time_loader(ctx, _folder_loader(ctx, PilViews(folder, res)), ctx.cfg.workers)
    ctx.add("pil", f"PIL + DataLoader, {ctx.cfg.workers} workers (baseline)", rate, res, 1, ctx.cfg.workers)


def _torchvision_row(ctx: _Context, folder: Path, res: int) -> None:
    name = f"torchvision ImageFolder + v2, {ctx.cfg.workers} workers"
    if not has_torchvision():
        ctx.skip("torchvision", name, TORCHVISION_INSTALL)
        return
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(folder), transform=TwoViews(torchvision_simclr(res)), allow_empty=True)
    rate = time_loader(ctx, _folder_loader(ctx, dataset), ctx.cfg.workers)
    import torchvision

    ctx.add("torchvision", name, rate, res, 1, ctx.cfg.workers, torchvision=torchvision.__version__)


def _dali_row(ctx: _Context, folder: Path, res: int) -> None:
    from ...augment.dali import INSTALL_HINT, has_dali

    gpu = torch.cuda.is_available()
    name = f"DALI file reader + decode + ops ({'GPU' if gpu else 'CPU'})"
    if not has_dali():
        ctx.skip("dali", name, f"NVIDIA DALI is not installed: {INSTALL_HINT}")
        return
    c = ctx.cfg
    threads = max(c.threads)
    pipe = dali_folder_pipeline(folder, res, c.batch_size, threads, seed=c.seed, gpu=gpu)
    sync = torch.cuda.synchronize if gpu else None
    rate = measure(lambda: dali_outputs_to_torch(pipe.run(), gpu), c.batch_size, sync=sync, **ctx.timing(2))
    # Rebinding (not del: the lambda's cell still names it) releases the pipeline before the collect.
    pipe = None
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
        with torch_threads(threads):
            rate = measure(step, c.batch_size, **ctx.timing())
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
        with torch_threads(threads):
            it = iter(ViewPairPipe(gen, policy, c.batch_size, seed=c.seed, augment="simclr", prefetch=2))
            try:
                rate = measure(lambda: next(it), c.batch_size, warmup=max(c.warmup, 1), repeats=c.repeats,
                               per_repeat=c.sweep_batches)
            finally:
                it.close()
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
                             f"(≈{params / 1e6:.2f} M decoder parameters at this architecture); "
                             "larger decoders are slower than decoding the JPEGs.")
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
    if cfg.data == "fashion-mnist":
        ctx.say("32² (Fashion-MNIST):")
        fashion_rows(ctx)
    needs_folder = {"pil", "torchvision", "dali"} & set(cfg.rows)
    gen32 = None
    for res in cfg.resolutions if cfg.data == "shapes" else ():
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
    if cfg.sweep and 32 in cfg.resolutions and cfg.data == "shapes":
        ctx.say("sweep of decoder width at 32²:")
        sweep = _sweep(ctx, gen32)
        loaders = [r for r in ctx.rows if r["key"] in ("pil", "torchvision", "dali") and r["resolution"] == 32]
        lines = crossover(sweep, loaders)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    settings = dataclasses.asdict(cfg)
    return {"rows": ctx.rows, "skipped": ctx.skipped, "sweep": sweep, "crossover": lines, "machine": machine,
            "settings": settings, "notes": ctx.notes}


# --- reporting -----------------------------------------------------------------------------------
