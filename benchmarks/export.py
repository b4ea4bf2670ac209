"""Export to WebDataset shards against the pipe, side by side (goal: export ≥ 0.8× the pipe).

Pairs/s of ``mlvgm_data.export.export_shards`` (decode, PNG encoding, tar writing, fsync and
rename of each shard, the fingerprint and manifest of each export included) against
``ViewPairPipe`` on the same generator, batch and thread count: with ``augment=None`` (the same
views, unaugmented: what the export adds is its whole cost) and with the SimCLR preset (the
training feed). One timed call of each: one shard of ``--batches`` × ``--batch-size`` samples
into a fresh folder, or as many batches from an open pipe (thread producer, prefetch 2). Timed in
interleaved rounds (``bench.measure_interleaved``); each ratio is the median over rounds with the
round-by-round min–max.

    python benchmarks/export.py [--generator builtin:shapes] [--threads 2] [--png-level 0,1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from mlvgm_data import ViewPairPipe
from mlvgm_data._io import write_text
from mlvgm_data.apps.bench import (
    Opener,
    bench_augment,
    bench_generator,
    machine_info,
    measure_interleaved,
    rate_dict,
    round_ratios,
)
from mlvgm_data.export import export_shards


def pipe_opener(pipe: ViewPairPipe, batches: int) -> Opener:
    def opener():
        it = iter(pipe)

        def step() -> None:
            for _ in range(batches):
                next(it)
        # wait for the producer's step in progress: left running, it would slow the next row's round
        return step, lambda: it.close(timeout=60.0)
    return opener


def export_opener(gen: torch.nn.Module, policy, batch_size: int, batches: int, level: int, root: Path) -> Opener:
    def opener():
        calls = []

        def step() -> None:
            out = root / f"export{len(calls)}"
            calls.append(out)
            n = batch_size * batches
            export_shards(gen, policy, n, out, batch_size=batch_size, shard_size=n, png_level=level)

        def close() -> None:
            for out in calls:
                shutil.rmtree(out)
        return step, close
    return opener


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="builtin:shapes")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=16,
                   help="batches per timed call (one shard of the export); long enough that the export's fixed "
                        "costs (fingerprint, manifest, the producer filling and draining) weigh as in a real run")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--png-level", default="0,1", help="deflate levels of the export to time (0: the default)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7, help="timed rounds, each timing every row once")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    gen, policy, note = bench_generator(args.generator, args.resolution)
    levels = [int(x) for x in args.png_level.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        openers = {"pipe": pipe_opener(ViewPairPipe(gen, policy, args.batch_size, prefetch=2), args.batches),
                   "pipe_simclr": pipe_opener(ViewPairPipe(gen, policy, args.batch_size, prefetch=2,
                                                           augment=bench_augment(gen)), args.batches)}
        for level in levels:
            openers[f"export_png{level}"] = export_opener(gen, policy, args.batch_size, args.batches, level, Path(tmp))
        rates = measure_interleaved(openers, args.batch_size * args.batches, warmup=args.warmup,
                                    repeats=args.repeats, per_repeat=1)
    print(f"{args.generator} {args.resolution}², batch {args.batch_size}, {args.batches} batches per call, "
          f"{machine_info()}" + (f" ({note})" if note else ""))
    for name, rate in rates.items():
        print(f"  {name:14s} {rate.median:8,.0f} pairs/s (rounds {rate.low:,.0f}–{rate.high:,.0f})")
    ratios = {}
    for level in levels:
        for base in ("pipe", "pipe_simclr"):
            ratio, low, high = round_ratios(rates[f"export_png{level}"], rates[base])
            ratios[f"export_png{level}/{base}"] = [ratio, low, high]
            goal = "; goal ≥ 0.8" if base == "pipe" else ""
            print(f"export (png level {level}) / {base}: {ratio:.2f}× (rounds {low:.2f}–{high:.2f}{goal})")
    if args.json:
        write_text(args.json, json.dumps({"generator": args.generator, "note": note, "batch_size": args.batch_size,
                                          "batches": args.batches, "machine": machine_info(), "ratios": ratios,
                                          "pairs_per_s": {k: rate_dict(r) for k, r in rates.items()}}, indent=2) + "\n",
                   "--json")


if __name__ == "__main__":
    main()
