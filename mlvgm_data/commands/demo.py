"""``mlvgm-data demo``: SSL on generated views vs real views, linear probes, pictures."""

from __future__ import annotations

import argparse
from ..demo import DemoConfig, run_demo

HELP = ("Train a small encoder with SimCLR (or SimSiam/BYOL) on generated views (MI-recommended and "
        "baseline policies) and on real Shapes, compare linear-probe accuracy, write pictures and a report.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DemoConfig()
    p.add_argument("--generator", default=d.generator, help="builtin:NAME or PATH of a Shapes generator")
    p.add_argument("--out", default=d.out, help="output folder (report, pictures)")
    p.add_argument("--method", default=d.method, choices=["simclr", "simsiam", "byol"])
    p.add_argument("--seeds", type=int, default=d.seeds, help="repeat every run with this many seeds")
    p.add_argument("--steps", type=int, default=None, help=f"training steps per run (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=None, help=f"anchors per step (default {d.batch_size})")
    p.add_argument("--device", default=d.device, help="cpu or cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in under 2 minutes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> dict:
    overrides = {k: v for k, v in dict(generator=args.generator, out=args.out, method=args.method, seeds=args.seeds,
                                        steps=args.steps, batch_size=args.batch_size, device=args.device,
                                        progress=not args.no_progress).items() if v is not None}
    cfg = DemoConfig.quick_config(**overrides) if args.quick else DemoConfig(**overrides)
    return run_demo(cfg)
