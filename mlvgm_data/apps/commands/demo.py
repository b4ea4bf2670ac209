"""``mlvgm-data demo``: SSL on generated views vs real images, linear and k-NN probes, pictures."""

from __future__ import annotations

import argparse
import sys

from ..demo import DATA, DEFAULT_RUNS, RUNS, DemoConfig, run_demo

HELP = ("Train a small encoder with SimCLR (or SimSiam/BYOL) on generated views (MI-recommended policy, "
        "baselines, a fixed generated set) and on real images; compare linear-probe and k-NN accuracy on the "
        "real test split; write pictures and a report.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DemoConfig()
    p.add_argument("--data", choices=DATA, default=None,
                   help="fashion-mnist (default when its files are found) or shapes")
    p.add_argument("--generator", default=None, help="builtin:NAME or PATH (default: builtin:fashion / builtin:shapes)")
    p.add_argument("--out", default=d.out, help="output folder (report, pictures)")
    p.add_argument("--method", default=d.method, choices=["simclr", "simsiam", "byol"])
    p.add_argument("--seeds", type=int, default=d.seeds, help="repeat every run with this many seeds")
    p.add_argument("--steps", type=int, default=None, help=f"training steps per run (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=None, help=f"pairs per step (default {d.batch_size})")
    p.add_argument("--fixed-set", type=int, default=None,
                   help="anchors of the fixed generated set (e) (default: as many as real training images)")
    p.add_argument("--eval-every", type=int, default=None,
                   help=f"steps between the curve evaluations (default {d.eval_every}; 0: none)")
    p.add_argument("--mi-budget", type=float, default=None,
                   help="run the MI analysis afresh for this many seconds (default: the generator's stored policy)")
    p.add_argument("--runs", type=_runs, default=None,
                   help=f"comma-separated runs (default {','.join(DEFAULT_RUNS)}; all: {','.join(RUNS)})")
    p.add_argument("--threads", type=int, default=d.threads,
                   help=f"torch threads while training (default {d.threads}; results repeat at fixed counts)")
    p.add_argument("--eval-threads", type=int, default=d.eval_threads,
                   help=f"torch threads of the final evaluations, when no producer runs (default {d.eval_threads})")
    p.add_argument("--device", default=d.device, help="cpu or cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a minute or two")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _runs(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in RUNS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown run(s) {', '.join(unknown) or repr(text)}; "
                                         f"choose from {', '.join(RUNS)}")
    return names


def resolve_data(requested: str | None) -> str:
    """``--data``, or fashion-mnist when its files are found, else shapes (saying why)."""
    if requested is not None:
        return requested
    from ...data import find_fashion_mnist

    try:
        find_fashion_mnist()
        return "fashion-mnist"
    except FileNotFoundError as e:
        print(f"Fashion-MNIST not found ({e}); running the demo on procedural Shapes instead", file=sys.stderr)
        return "shapes"


def run(args: argparse.Namespace) -> dict:
    options = dict(
        data=resolve_data(args.data), generator=args.generator, out=args.out, method=args.method, seeds=args.seeds,
        steps=args.steps, batch_size=args.batch_size, fixed_set=args.fixed_set, eval_every=args.eval_every,
        mi_budget=args.mi_budget, threads=args.threads, eval_threads=args.eval_threads, runs=args.runs,
        device=args.device, progress=not args.no_progress)
    overrides = {k: v for k, v in options.items() if v is not None}
    cfg = DemoConfig.quick_config(**overrides) if args.quick else DemoConfig(**overrides)
    return run_demo(cfg)
