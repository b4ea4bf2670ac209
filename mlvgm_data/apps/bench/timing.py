"""Timing: repeated measurements of a step with their spread, and the machine they ran on."""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from ... import ops


@dataclass
class Rate:
    """Items per second over timed rounds: median, min and max of the rounds."""

    median: float
    low: float
    high: float
    samples: list[float]


def _check_rounds(warmup: int, repeats: int, per_repeat: int) -> None:
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1), ("per_repeat", per_repeat, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def measure(step: Callable[[], object], items: int, *, warmup: int, repeats: int, per_repeat: int,
            sync: Callable[[], None] | None = None) -> Rate:
    """``items`` per call of ``step``: ``warmup`` untimed calls, then ``repeats`` rounds of
    ``per_repeat`` calls each; every round gives one rate (``sync`` runs before each clock read,
    e.g. ``torch.cuda.synchronize``)."""
    _check_rounds(warmup, repeats, per_repeat)
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


Opener = Callable[[], tuple[Callable[[], object], Callable[[], None]]]
"""Opens a step for one round of :func:`measure_interleaved`: returns ``(step, close)``."""


def measure_interleaved(openers: Mapping[str, Opener], items: int, *, warmup: int, repeats: int, per_repeat: int,
                        ) -> dict[str, Rate]:
    """Rates of several steps in interleaved rounds: round ``r`` times each step once, in the
    order rotated by ``r``, so a ratio compares timings taken seconds apart and a drift in the
    machine's load hits every step alike. Each round opens its step (``openers[name]()``),
    makes ``warmup`` untimed calls and ``per_repeat`` timed ones, and closes it before the next
    step is timed (a running producer would otherwise compete with it)."""
    _check_rounds(warmup, repeats, per_repeat)
    names = list(openers)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            step, close = openers[name]()
            try:
                samples[name] += measure(step, items, warmup=warmup, repeats=1, per_repeat=per_repeat).samples
            finally:
                close()
    return {name: Rate(statistics.median(s), min(s), max(s), s) for name, s in samples.items()}


def round_ratios(a: Rate, b: Rate) -> tuple[float, float, float]:
    """Median, min and max over rounds of ``a / b``, round by round (for rates from one
    :func:`measure_interleaved`, whose round ``i`` of each was taken together)."""
    ratios = [x / y for x, y in zip(a.samples, b.samples, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: torch version and threads, cores, load, allocator setting."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"torch": torch.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg": [round(x, 2) for x in load], "native_op": ops.has_native("cpu"),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE"),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}


# --- generators ----------------------------------------------------------------------------------


def rate_dict(rate: Rate) -> dict[str, Any]:
    return {"median": rate.median, "min": rate.low, "max": rate.high, "samples": rate.samples}


def time_loader(ctx: Any, loader: Any, workers: int) -> Rate:
    """Pairs/s of a DataLoader's batches under the bench context's timing (warm-up covers the
    workers' prefetch); the iterator and its workers are gone when it returns."""
    it = iter(loader)
    try:
        return measure(lambda: next(it), ctx.cfg.batch_size, **ctx.timing(workers * (loader.prefetch_factor or 0)))
    finally:
        # Rebinding (not del: the lambda's cell still names it) drops the iterator, so that the collect
        # reaps its workers.
        it = None
        gc.collect()
