"""The real-anchored pipe beside the prior-anchored one: pairs/s of ``ViewPairPipe`` on the same
generator, policy, batch and augmentation, with anchors drawn from the prior (``pipe``), inverted
from real images every step (``real``: one encoder forward more), and half of each (``mixed``),
timed in interleaved rounds (each round times every feed once, in a rotating order) and printed
as each ratio's median over rounds with the round-by-round min–max. Goal: real ≥ 0.7 × pipe.

    python benchmarks/real_anchors.py --threads 1        # builtin:fashion on the Fashion-MNIST train split
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.data import TensorDataset

from mlvgm_data import ViewPairPipe, load_generator, recommended_policy
from mlvgm_data._threads import torch_threads
from mlvgm_data.apps.bench.timing import machine_info, measure_interleaved, round_ratios
from mlvgm_data.augment import fashion
from mlvgm_data.data import fashion_mnist_tensors


def opener(generator, policy, batch_size, augment, anchors, prior_fraction):
    def open_feed():
        it = iter(ViewPairPipe(generator, policy, batch_size, augment=augment, prefetch=2, anchors=anchors,
                               prior_fraction=prior_fraction))
        return (lambda: next(it)), it.close
    return open_feed


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="builtin:fashion")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--images", type=int, default=60000, help="real train images the anchors are drawn from")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batches", type=int, default=3, help="timed batches per feed and round")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    generator = load_generator(args.generator)
    policy = recommended_policy(args.generator)
    images, labels = fashion_mnist_tensors(True, pad_to=generator.image_shape[-1])
    anchors = TensorDataset(images[:args.images], labels[:args.images])
    augment = fashion(generator.image_shape[-1])
    feeds = {"pipe": opener(generator, policy, args.batch_size, augment, None, 0.0),
             "real": opener(generator, policy, args.batch_size, augment, anchors, 0.0),
             "mixed": opener(generator, policy, args.batch_size, augment, anchors, 0.5)}
    with torch_threads(args.threads):
        rates = measure_interleaved(feeds, args.batch_size, warmup=1, repeats=args.rounds, per_repeat=args.batches)
        machine = machine_info()
    command = " ".join(["python benchmarks/real_anchors.py", *(sys.argv[1:] if argv is None else argv)])
    result = {"machine": machine, "command": command,
              "pairs_per_s": {k: r.median for k, r in rates.items()},
              "ratios": {k: round_ratios(rates[k], rates["pipe"]) for k in ("real", "mixed")}}
    for name, rate in rates.items():
        print(f"{name:6s} {rate.median:8.0f} pairs/s (rounds {rate.low:.0f}–{rate.high:.0f})")
    for name, (med, low, high) in result["ratios"].items():
        print(f"{name} / pipe = {med:.2f} (rounds {low:.2f}–{high:.2f})")
    if args.json:
        from mlvgm_data._io import write_text

        write_text(args.json, json.dumps(result, indent=2) + "\n", "--json")
    return result


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
