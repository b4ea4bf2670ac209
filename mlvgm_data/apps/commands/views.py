"""``mlvgm-data views``: write a grid of anchors and their views, and summarise how far views move."""

from __future__ import annotations

import argparse
import json

from ... import ops
from ..._checks import check_int
from ..._io import check_output_path
from ...augment import preset
from ...generators.base import generator_device
from ..viz import save_image_grid, view_sets
from .common import GENERATOR_HELP, open_generator, parse_policy

HELP = "Write a grid of anchor/view sets from a generator under a view policy, and summarise it."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("generator", nargs="?", default="builtin:shapes", help=GENERATOR_HELP + " (default builtin:shapes)")
    p.add_argument("--policy", default="recommended",
                   help="'recommended' (stored with the generator), 'sigma=S' (Perturb(S) on every group), "
                        "a JSON string or a JSON file")
    p.add_argument("--anchors", type=int, default=8)
    p.add_argument("--num-views", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", default=None, help="also apply an augmentation preset (simclr, byol, crop_flip)")
    p.add_argument("--out", default="views.png", help="PNG path of the grid")
    p.add_argument("--device", default=None)


def check(args: argparse.Namespace) -> None:
    """Before any work: the sizes and the output file."""
    check_int(args.anchors, "--anchors", 1, 1025)
    check_int(args.num_views, "--num-views", 1, 256)
    check_int(args.seed, "--seed", 0, 1 << 32)
    check_output_path(args.out, "--out")


def run(args: argparse.Namespace) -> dict:
    generator = open_generator(args.generator, args.device)
    policy = parse_policy(args.policy, args.generator, generator)
    size = generator.image_shape[-1]
    augment = preset(args.augment, size) if args.augment else None
    sets = view_sets(generator, policy, args.anchors, args.num_views, args.seed, augment)
    path = save_image_grid(sets.reshape(-1, *sets.shape[2:]), args.out, nrow=args.num_views)
    latents = ops.resample(generator.latent_spec, policy, args.anchors, args.num_views, args.seed, 0,
                           generator_device(generator))
    first = 1 if policy.include_anchor else 0
    moves = {name: float((z[first:] - z[0]).flatten(2).norm(dim=2).mean()) if z.shape[0] > first else 0.0
             for name, z in latents.items()}
    pixel = float((sets[:, first:] - sets[:, :1]).flatten(2).pow(2).mean().sqrt()) if args.num_views > first else 0.0
    print(f"{args.generator}: {args.anchors} anchors x {args.num_views} views -> {path}")
    print("policy:", json.dumps(policy.to_dict()))
    for name, d in moves.items():
        print(f"  group {name:12s} mean latent distance view-anchor {d:.3f}")
    print(f"  mean pixel RMS difference view-anchor {pixel:.4f}")
    return {"generator": args.generator, "grid": str(path), "policy": policy.to_dict(),
            "latent_distance": moves, "pixel_rms": pixel}
