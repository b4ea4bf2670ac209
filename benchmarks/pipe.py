"""The pipe against a bare loop and against the research code's synchronous step.

1. Pairs/s of ``ViewPairPipe`` (thread producer, prefetch 2, SimCLR preset) vs a bare loop of
   ``ops.resample`` + ``decode`` + augment on the same generator, batch and thread count
   (target ≥ 0.95×: the machinery costs next to nothing).
2. End-to-end training steps/s of a small-ResNet SimCLR step fed by the pipe vs by the research
   code's synchronous Continuous Sampling step (scipy truncated-normal noise on the CPU + one 2B
   forward inside the step; target ≥ 1.3×).
3. With ``--compile``: pairs/s of the pipe with ``compile=True`` (``torch.compile`` of decode) vs
   eager decode, and the first compiled batch's time (the compilation).

Each comparison is timed in interleaved rounds (``bench.measure_interleaved``) and its ratio
printed as the median over rounds with the round-by-round min–max.

    python benchmarks/pipe.py [--quick] [--threads 1,2] [--compile] [--json out.json]
"""

from __future__ import annotations

import torch

from mlvgm_data.apps.bench import (
    compiled_vs_eager,
    machine_info,
    pipe_vs_bare,
    rate_dict,
    round_ratios,
    training_bench_setup,
    training_markdown,
    training_rates,
    write_training_bench_json,
)


def main() -> None:
    def compile_option(p) -> None:
        p.add_argument("--compile", action="store_true", help="also time the pipe with compile=True against eager")

    args, gen, policy, note = training_bench_setup(__doc__.splitlines()[0], "batches", compile_option)
    timing = dict(warmup=args.warmup, repeats=args.repeats, per_repeat=args.batches)
    print(f"{args.generator} {args.resolution}², batch {args.batch_size}, {machine_info()}"
          + (f" ({note})" if note else ""))
    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        data = pipe_vs_bare(gen, policy, args.batch_size, **timing)
        overhead, low, high = round_ratios(data["pipe"], data["bare"])
        print(f"\n{threads} thread(s): pipe {data['pipe'].median:,.0f} pairs/s vs bare loop {data['bare'].median:,.0f} "
              f"→ {overhead:.2f}× (rounds {low:.2f}–{high:.2f}; target ≥ 0.95)")
        row = {"threads": threads, "pairs_per_s": {k: rate_dict(r) for k, r in data.items()},
               "pipe_over_bare": overhead, "training": []}
        for width in (int(w) for w in args.widths.split(",")):
            train = training_rates(gen, policy, args.batch_size, ("pipe", "research"), width=width, **timing)
            gain, low, high = round_ratios(train["pipe"], train["research"])
            print(f"ResNet width {width}:\n{training_markdown(train)}")
            print(f"pipe-fed training / research-fed training: {gain:.2f}× (rounds {low:.2f}–{high:.2f}; target ≥ 1.3)")
            row["training"].append({"width": width, "steps_per_s": {k: rate_dict(r) for k, r in train.items()},
                                    "pipe_over_research": gain})
        if args.compile:
            rates, first = compiled_vs_eager(gen, policy, args.batch_size, **timing)
            ratio, low, high = round_ratios(rates["compiled"], rates["eager"])
            print(f"compile=True: {rates['compiled'].median:,.0f} pairs/s vs eager {rates['eager'].median:,.0f} → "
                  f"{ratio:.2f}× (rounds {low:.2f}–{high:.2f}; goal ≥ 1.3; first compiled batch {first:.1f} s)")
            row["compile"] = {"pairs_per_s": {k: rate_dict(r) for k, r in rates.items()}, "compiled_over_eager": ratio,
                              "first_batch_s": first}
        results.append(row)
    write_training_bench_json(args, note, results)


if __name__ == "__main__":
    main()
