"""Training fed by each data source: a SimCLR step on a small ResNet, steps/s per feed, and the
command-line setup that ``benchmarks/pipe.py`` and ``benchmarks/overlap.py`` share."""

from __future__ import annotations

import itertools
import json
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..._io import write_text
from ...augment import ViewAugment, fashion, simclr
from ...pipe import ViewPairPipe
from ...policy import ViewPolicy
from ..ssl import SmallResNet
from .research import ResearchStep, bare_loop
from .subjects import bench_generator
from .timing import Opener, Rate, machine_info, measure_interleaved


class SimCLRStep:
    """One SimCLR training step (small ResNet + projection head, NT-Xent, SGD) on a view pair."""

    def __init__(self, width: int = 16, lr: float = 0.05, seed: int = 0, in_channels: int = 3) -> None:
        from ..ssl import SimCLR

        torch.manual_seed(seed)
        self.model = SimCLR(SmallResNet(width, in_channels))
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


def bench_augment(generator: nn.Module) -> ViewAugment:
    """The SimCLR preset for colour generators, the ``fashion`` preset (no colour jitter) for grey ones."""
    channels, size = generator.image_shape[0], generator.image_shape[-1]
    return fashion(size) if channels == 1 else simclr(size)


FEEDS = ("pipe", "sync", "research", "materialised")
FEED_NAMES = {
    "pipe": "(a) ViewPairPipe, thread producer, prefetch 2",
    "sync": "(b) synchronous generation in the step (same fused ops, no prefetch)",
    "research": "(b') research code's synchronous step (scipy noise + 2B forward)",
    "materialised": "(c) pre-materialised tensors (upper bound)",
}


def _pipe_opener(pipe: ViewPairPipe, take: Callable[[Any], object] = lambda batch: batch) -> Opener:
    """A fresh iterator of ``pipe`` per round (its producer stops when the round closes it)."""
    def open_round() -> tuple[Callable[[], object], Callable[[], None]]:
        it = iter(pipe)
        return (lambda: take(next(it))), it.close
    return open_round


def _opener(step: Callable[[], object]) -> Opener:
    return lambda: (step, lambda: None)


def training_rates(generator: nn.Module, policy: ViewPolicy, batch_size: int, feeds: Sequence[str], *,
                   width: int = 16, warmup: int = 2, repeats: int = 3, per_repeat: int = 3, seed: int = 0,
                   materialised: int = 4) -> dict[str, Rate]:
    """Training steps/s of :class:`SimCLRStep` fed by each of ``feeds`` (see :data:`FEEDS`), in
    interleaved rounds (:func:`~.timing.measure_interleaved`); each feed trains its own model."""
    unknown = sorted(set(feeds) - set(FEEDS))
    if unknown:
        raise ValueError(f"unknown feeds {unknown}; choose from {list(FEEDS)}")
    augment = bench_augment(generator)
    device = next(generator.parameters()).device
    openers: dict[str, Opener] = {}
    for feed in feeds:
        train = SimCLRStep(width, seed=seed, in_channels=generator.image_shape[0]).to(device)
        pipe = ViewPairPipe(generator, policy, batch_size, seed=seed, augment=augment, prefetch=2)
        if feed == "pipe":
            openers[feed] = _pipe_opener(pipe, lambda batch, train=train: train(*batch.views))
        elif feed == "sync":
            work, steps = pipe.work(), itertools.count()
            openers[feed] = _opener(lambda train=train, work=work, steps=steps: train(*work(next(steps)).views))
        elif feed == "research":
            research = ResearchStep(generator, policy, batch_size, augment)
            openers[feed] = _opener(lambda train=train, research=research: train(*research()))
        else:
            work = pipe.work()
            batches = itertools.cycle([work(s).views for s in range(materialised)])
            openers[feed] = _opener(lambda train=train, batches=batches: train(*next(batches)))
    return measure_interleaved(openers, 1, warmup=warmup, repeats=repeats, per_repeat=per_repeat)


def pipe_vs_bare(generator: nn.Module, policy: ViewPolicy, batch_size: int, *, warmup: int = 2, repeats: int = 3,
                 per_repeat: int = 3, seed: int = 0) -> dict[str, Rate]:
    """Pairs/s of the pipe (thread producer, prefetch 2, SimCLR) and of :func:`bare_loop` on the
    same generator, batch and thread count, in interleaved rounds."""
    augment = bench_augment(generator)
    pipe = ViewPairPipe(generator, policy, batch_size, seed=seed, augment=augment, prefetch=2)
    openers = {"pipe": _pipe_opener(pipe), "bare": _opener(bare_loop(generator, policy, batch_size, augment, seed))}
    return measure_interleaved(openers, batch_size, warmup=warmup, repeats=repeats, per_repeat=per_repeat)


def compiled_vs_eager(generator: nn.Module, policy: ViewPolicy, batch_size: int, *, warmup: int = 2,
                      repeats: int = 3, per_repeat: int = 3, seed: int = 0) -> tuple[dict[str, Rate], float]:
    """Pairs/s of the pipe with eager and with compiled decode (``compile=True``) on the same
    generator, batch and threads, in interleaved rounds; and the seconds the first compiled
    batch took (compilation included), timed before the rounds."""
    import time

    augment = bench_augment(generator)
    pipes = {name: ViewPairPipe(generator, policy, batch_size, seed=seed, augment=augment, prefetch=2, compile=flag)
             for name, flag in (("eager", False), ("compiled", True))}
    it = iter(pipes["compiled"])
    try:
        t0 = time.perf_counter()
        next(it)
        first = time.perf_counter() - t0
    finally:
        it.close()
    rates = measure_interleaved({name: _pipe_opener(p) for name, p in pipes.items()}, batch_size, warmup=warmup,
                                repeats=repeats, per_repeat=per_repeat)
    return rates, first


# --- the loader benchmark --------------------------------------------------------------------


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
    p.add_argument("--widths", default="8,16",
                   help="ResNet widths of the training step (cheaper step → data matters more)")
    p.add_argument("--channels-last", action="store_true", help="convert the generator to channels_last first")
    p.add_argument("--warmup", type=int, default=None, help="default 2 (quick 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds, each timing every feed once; default 7 (quick 3)")
    p.add_argument(f"--{per_repeat}", type=int, default=None, help=f"{per_repeat} per timed round, default 3 (quick 2)")
    p.add_argument("--quick", action="store_true", help="batch 128, 3 rounds of 2")
    p.add_argument("--json", default=None)
    if extra is not None:
        extra(p)
    args = p.parse_args()
    defaults = (dict(batch_size=128, warmup=1, repeats=3) if args.quick else dict(batch_size=256, warmup=2, repeats=7))
    defaults[per_repeat] = 2 if args.quick else 3
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
    write_text(args.json, json.dumps({"generator": args.generator, "note": note, "batch_size": args.batch_size,
                                      "channels_last": args.channels_last, "feeds": FEED_NAMES,
                                      "machine": machine_info(), "results": results}, indent=2) + "\n", "--json")
