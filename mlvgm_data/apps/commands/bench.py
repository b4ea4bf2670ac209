"""``mlvgm-data bench``: generated views vs real-image loaders, side by side on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..._io import write_text
from ..bench import ROWS, BenchConfig, bar_chart, markdown, run_bench

HELP = ("Measure view pairs/s of the pipe, GeneratedViews, PIL, torchvision and DALI loaders and the research "
        "code's synchronous step at 32² and 64², with a decoder-width sweep; print a table, write a chart.")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated ints, got {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    p.add_argument("--quick", action="store_true", help="smaller batches and fewer rounds (under 3 minutes on 2 cores)")
    p.add_argument("--data", choices=["shapes", "fashion-mnist"], default=d.data,
                   help="shapes (JPEG exports, 32² and 64², width sweep) or fashion-mnist (builtin:fashion beside "
                        "loaders of the real train images at 32²)")
    p.add_argument("--generator", default=None, help="the 32² generator (builtin:NAME or PATH; default builtin:shapes, "
                                                     "or builtin:fashion with --data fashion-mnist)")
    p.add_argument("--generator64", default=d.generator64,
                   help="the 64² generator (builtin:NAME, PATH, or 'untrained': a fresh HVAE of the shipped "
                        "architecture, the default)")
    p.add_argument("--resolutions", default=None, help="comma-separated, from 32,64 (default both)")
    p.add_argument("--rows", default=None, help=f"comma-separated subset of {','.join(ROWS)}")
    p.add_argument("--batch-size", type=int, default=None, help=f"pairs per batch (default {d.batch_size}; quick 128)")
    p.add_argument("--warmup", type=int, default=None, help="untimed batches before timing")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (median, min and max are over these)")
    p.add_argument("--batches", type=int, default=None, help="batches per timed round")
    p.add_argument("--threads", default=None,
                   help="torch intra-op thread counts to measure in-process rows at (default 1,2)")
    p.add_argument("--images", type=int, default=None, help="JPEGs in the Shapes export the real loaders read")
    p.add_argument("--sweep", default=None, help="decoder width multipliers at 32² (default 0.5,1,2,4; 'none' skips)")
    p.add_argument("--out", default=d.out, help="folder for the JPEG exports, bench.md and bench.png")
    p.add_argument("--chart", default=None, help="bar chart PNG path (default OUT/bench.png; needs matplotlib)")
    p.add_argument("--seed", type=int, default=d.seed)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    generator = args.generator or ("builtin:fashion" if args.data == "fashion-mnist" else "builtin:shapes")
    overrides = {"data": args.data, "generator": generator, "generator64": args.generator64, "out": args.out,
                 "seed": args.seed}
    if args.data == "fashion-mnist":
        from ..bench.fashion import ROWS as FASHION_ROWS

        overrides.update(rows=FASHION_ROWS, resolutions=(32,))
    for name in ("batch_size", "warmup", "repeats", "batches", "images"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.resolutions:
        overrides["resolutions"] = _ints(args.resolutions)
    if args.rows:
        overrides["rows"] = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    if args.threads:
        overrides["threads"] = _ints(args.threads)
    if args.sweep:
        overrides["sweep"] = () if args.sweep == "none" else _floats(args.sweep)
    return BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)


def run(args: argparse.Namespace) -> dict:
    result = run_bench(config_from_args(args))
    table = markdown(result)
    print("\n" + table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "bench.md", table + "\n", "bench table")
    try:
        chart = bar_chart(result, args.chart or out / "bench.png")
    except ImportError as e:
        if args.chart:
            raise ValueError(str(e)) from None
        print(f"\nchart skipped: {e}")
    else:
        print(f"\nchart: {chart}")
        result["chart"] = str(chart)
    return result
