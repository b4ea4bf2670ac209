"""``mlvgm-data export``: write generated view sets to WebDataset tar shards (resumable).

Under ``torchrun`` every rank runs the command and writes its own shards (rank r of W: shards
r, r + W, …), from ``RANK``/``WORLD_SIZE``; no process group is needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..._checks import U32, check_int
from ...export import export_shards
from .common import GENERATOR_HELP, POLICY_FORMS, open_generator, parse_policy

HELP = "Write generated anchors and their views (unaugmented PNGs) to WebDataset tar shards; resumable."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("generator", metavar="GENERATOR", help=GENERATOR_HELP)
    p.add_argument("--samples", type=int, required=True, help="anchors to export (each with its views)")
    p.add_argument("--out", required=True, help="folder of the shards (made if missing; an interrupted export "
                                                "into it is continued)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256,
                   help="anchors per counter step, as the pipe's batch (sample g: step g // B, id g %% B)")
    p.add_argument("--policy", default="recommended", help=f"{POLICY_FORMS} (default: recommended)")
    p.add_argument("--shard-size", type=int, default=10240, help="samples per shard (default 10240)")
    p.add_argument("--num-views", type=int, default=2, help="views per anchor (default 2)")
    p.add_argument("--png-level", type=int, default=0,
                   help="deflate level of the PNGs, 0-9 (default 0: stored, fastest; 1 halves the files, slower)")
    p.add_argument("--device", default=None)


def check(args: argparse.Namespace) -> None:
    """Before any work: the sizes and the output folder."""
    check_int(args.samples, "--samples", 1)
    check_int(args.batch_size, "--batch-size", 1, U32)
    check_int(args.shard_size, "--shard-size", 1)
    check_int(args.num_views, "--num-views", 1, 256)
    check_int(args.png_level, "--png-level", 0, 10)
    check_int(args.seed, "--seed", 0, U32)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out!r} is a file, not a folder")


def run(args: argparse.Namespace) -> dict:
    generator = open_generator(args.generator, args.device)
    policy = parse_policy(args.policy, args.generator, generator)
    result = export_shards(generator, policy, args.samples, args.out, seed=args.seed, batch_size=args.batch_size,
                           shard_size=args.shard_size, num_views=args.num_views, png_level=args.png_level,
                           progress=True)
    print(f"{args.generator}: rank {result.rank} of {result.world_size} wrote {len(result.written)} shard(s), "
          f"{result.samples} samples, to {args.out}"
          + (f" ({len(result.skipped)} already complete)" if result.skipped else ""))
    return {"generator": args.generator, "policy": policy.to_dict(), "seed": args.seed, **result.to_dict()}
