"""How much of the generation the pipe hides behind a training step.

Steps/s of a small-ResNet SimCLR training step fed by (a) ``ViewPairPipe`` with prefetch (the
producer thread generates while the step trains), (b) synchronous generation inside the step
(the same fused ops, no prefetch), (c) pre-materialised tensors (no generation: the upper
bound); optionally (b') the research code's synchronous step. Reports (a)/(c) — how close the
pipe gets to free data — and (a)/(b) — what running ahead buys.

    python benchmarks/overlap.py [--quick] [--threads 1,2] [--research] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

from mlvgm_data.bench import FEED_NAMES, bench_generator, machine_info, rate_dict, training_markdown, training_rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="builtin:shapes")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=None, help="default 256 (quick 128)")
    p.add_argument("--threads", default="1,2", help="torch intra-op thread counts to measure at")
    p.add_argument("--widths", default="8,16", help="ResNet widths of the training step (cheaper step → data matters more)")
    p.add_argument("--channels-last", action="store_true", help="convert the generator to channels_last first")
    p.add_argument("--research", action="store_true", help="also feed the research code's synchronous step")
    p.add_argument("--warmup", type=int, default=None, help="default 2 (quick 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds, default 5 (quick 3)")
    p.add_argument("--steps", type=int, default=None, help="training steps per timed round, default 4 (quick 2)")
    p.add_argument("--quick", action="store_true", help="batch 128, 3 rounds of 2 steps")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    defaults = (dict(batch_size=128, warmup=1, repeats=3, steps=2) if args.quick
                else dict(batch_size=256, warmup=2, repeats=5, steps=4))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    gen, policy, note = bench_generator(args.generator, args.resolution)
    if args.channels_last:
        gen = gen.to(memory_format=torch.channels_last)
    feeds = ("pipe", "sync", "materialised") + (("research",) if args.research else ())
    print(f"{args.generator} {args.resolution}², batch {args.batch_size}, {machine_info()}" + (f" ({note})" if note else ""))
    results = []
    for threads, width in itertools.product((int(t) for t in args.threads.split(",")),
                                            [int(w) for w in args.widths.split(",")]):
        torch.set_num_threads(threads)
        rates = training_rates(gen, policy, args.batch_size, feeds, width=width, warmup=args.warmup,
                               repeats=args.repeats, per_repeat=args.steps)
        a, b, c = (rates[k].median for k in ("pipe", "sync", "materialised"))
        print(f"\n{threads} thread(s), ResNet width {width}:\n{training_markdown(rates)}")
        print(f"(a)/(c) = {a / c:.2f} (share of the no-generation speed), (a)/(b) = {a / b:.2f} (gain from running ahead)")
        results.append({"threads": threads, "width": width, "steps_per_s": {k: rate_dict(r) for k, r in rates.items()},
                        "a_over_c": a / c, "a_over_b": a / b})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"generator": args.generator, "note": note, "batch_size": args.batch_size,
                       "channels_last": args.channels_last, "feeds": FEED_NAMES, "machine": machine_info(),
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
