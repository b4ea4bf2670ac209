"""Throughput of the augmentation presets on batches of generated-size images.

Compares, per preset, the batched torch ops (``ViewAugment``, one pass over all V·B images), the
same ops applied one sample at a time in a Python loop (the per-sample ``Dataset.__getitem__``
style; it gives bit-identical outputs, which is checked), and the DALI backend when installed.
Prints a markdown table (median of the repeats, images/s counts every view; the CPU-time
columns show the work done, which stays meaningful when other jobs share the machine).

    python benchmarks/augment.py                      # 32² → 32, V=2, B=256
    python benchmarks/augment.py --in-size 64 --size 32 --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable

import torch

from mlvgm_data import augment as A
from mlvgm_data._io import write_text
from mlvgm_data.augment.dali import DaliAugment, has_dali


def _time(fn: Callable[[int], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each repeat (CPU time is the work done, which
    stays meaningful on a machine shared with other jobs; it includes DALI's worker threads)."""
    fn(0)  # warm-up (allocator, DALI pipeline, thread pool)
    wall, cpu = [], []
    for step in range(1, repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(step)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=32, help="output size")
    p.add_argument("--in-size", type=int, default=None, help="generated image size (default: --size)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--loop-repeats", type=int, default=2, help="repeats of the (slow) per-sample loop")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--presets", default="simclr,byol,crop_flip")
    p.add_argument("--no-dali", action="store_true")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    in_size = args.in_size or args.size
    v, b = args.views, args.batch
    x = torch.rand(v, b, 3, in_size, in_size, generator=torch.Generator().manual_seed(0))
    n = v * b
    rows = []
    for name in args.presets.split(","):
        aug = A.preset(name, args.size)
        batched = _time(lambda step: aug(x, 0, step), args.repeats)

        def loop(step: int) -> torch.Tensor:
            return torch.cat([aug(x[:, i : i + 1], 0, step, sample_ids=[i]) for i in range(b)], 1)

        assert torch.equal(loop(0), aug(x, 0, 0)), "per-sample loop must equal the batched ops"
        looped = _time(loop, args.loop_repeats)
        results = {"batched": batched, "per-sample loop": looped}
        if has_dali() and not args.no_dali:
            dali = DaliAugment(name, args.size, b, v, num_threads=torch.get_num_threads())
            results["DALI CPU"] = _time(lambda step: dali(x), args.repeats)
        for method, (wall, cpu) in results.items():
            med, cpu_med = statistics.median(wall), statistics.median(cpu)
            rows.append({"preset": name, "method": method, "ms_per_batch": med * 1e3, "min_ms": min(wall) * 1e3,
                         "images_per_s": n / med, "cpu_ms_per_batch": cpu_med * 1e3,
                         "images_per_cpu_s": n / cpu_med})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"V={v} B={b} {in_size}²→{args.size}², torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load:.1f}")
    print("| preset | method | ms / batch (median) | min ms | images/s | CPU ms / batch | images / CPU-s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['preset']} | {r['method']} | {r['ms_per_batch']:.1f} | {r['min_ms']:.1f} "
              f"| {r['images_per_s']:,.0f} | {r['cpu_ms_per_batch']:.1f} | {r['images_per_cpu_s']:,.0f} |")
    if args.json:
        write_text(args.json, json.dumps({"views": v, "batch": b, "in_size": in_size, "size": args.size,
                                          "threads": torch.get_num_threads(), "load": load, "rows": rows}, indent=1),
                   "--json")


if __name__ == "__main__":
    main()
