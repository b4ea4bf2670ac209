"""Prior-sampling + decode throughput of a generator (img/s), as the pipe runs it.

    python scripts/bench_decode.py builtin:shapes builtin:shapes64 --batch 256 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mlvgm_data import ViewPolicy, load_generator, ops


def bench(name: str, batch: int, threads: int, channels_last: bool, seconds: float) -> dict:
    torch.set_num_threads(threads)
    gen = load_generator(name)
    if channels_last:
        gen = gen.to(memory_format=torch.channels_last)
    policy = ViewPolicy({})
    step, n = 0, 0
    with torch.inference_mode():
        for warm in range(2):
            gen.decode({k: v[0] for k, v in ops.resample(gen.latent_spec, policy, batch, 1, 0, warm).items()})
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            latents = ops.resample(gen.latent_spec, policy, batch, 1, 0, step)
            gen.decode({k: v[0] for k, v in latents.items()})
            step += 1
            n += batch
        dt = time.perf_counter() - t0
    return {"generator": name, "batch": batch, "threads": threads, "channels_last": channels_last,
            "img_per_s": round(n / dt, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("generators", nargs="+")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    for name in args.generators:
        for threads in args.threads:
            for cl in (False, True):
                print(json.dumps(bench(name, args.batch, threads, cl, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
