"""How much of the generation the pipe hides behind a training step.

Steps/s of a small-ResNet SimCLR training step fed by (a) ``ViewPairPipe`` with prefetch (the
producer thread generates while the step trains), (b) synchronous generation inside the step
(the same fused ops, no prefetch), (c) pre-materialised tensors (no generation: the upper
bound); optionally (b') the research code's synchronous step. Reports (a)/(c) — how close the
pipe gets to free data — and (a)/(b) — what running ahead buys. The feeds are timed in
interleaved rounds (each round times every feed once, in a rotating order), and each ratio is
given as its median over rounds with the min–max of the round-by-round ratios.

    python benchmarks/overlap.py [--quick] [--threads 1,2] [--research] [--json out.json]
"""

from __future__ import annotations

import itertools

import torch

from mlvgm_data.apps.bench import (
    machine_info,
    rate_dict,
    round_ratios,
    training_bench_setup,
    training_markdown,
    training_rates,
    write_training_bench_json,
)


def main() -> None:
    def research_option(p) -> None:
        p.add_argument("--research", action="store_true", help="also feed the research code's synchronous step")

    args, gen, policy, note = training_bench_setup(__doc__.splitlines()[0], "steps", research_option)
    feeds = ("pipe", "sync", "materialised") + (("research",) if args.research else ())
    print(f"{args.generator} {args.resolution}², batch {args.batch_size}, {machine_info()}"
          + (f" ({note})" if note else ""))
    results = []
    for threads, width in itertools.product((int(t) for t in args.threads.split(",")),
                                            [int(w) for w in args.widths.split(",")]):
        torch.set_num_threads(threads)
        rates = training_rates(gen, policy, args.batch_size, feeds, width=width, warmup=args.warmup,
                               repeats=args.repeats, per_repeat=args.steps)
        ratios = {f"{x}_over_{y}": round_ratios(rates[fx], rates[fy])
                  for x, y, fx, fy in (("a", "c", "pipe", "materialised"), ("a", "b", "pipe", "sync"))
                  + ((("a", "research", "pipe", "research"),) if args.research else ())}
        print(f"\n{threads} thread(s), ResNet width {width}:\n{training_markdown(rates)}")
        for key, meaning in (("a_over_c", "share of the no-generation speed"), ("a_over_b", "gain from running ahead"),
                             ("a_over_research", "against the research code's step")):
            if key in ratios:
                mid, low, high = ratios[key]
                print(f"{key.replace('_over_', '/')}: {mid:.2f} (rounds {low:.2f}–{high:.2f}) — {meaning}")
        results.append({"threads": threads, "width": width, "steps_per_s": {k: rate_dict(r) for k, r in rates.items()}}
                       | {key: mid for key, (mid, _, _) in ratios.items()}
                       | {f"{key}_rounds": [low, high] for key, (_, low, high) in ratios.items()})
    write_training_bench_json(args, note, results)


if __name__ == "__main__":
    main()
