"""``mlvgm-data demo``: SSL on generated views vs real images, linear and k-NN probes, pictures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
    p.add_argument("--fixed-set-shards", default=None, metavar="DIR",
                   help="the fixed set (e) is an export's view pairs (mlvgm-data export GENERATOR --out DIR with "
                        "the demo's generator and recommended policy), read instead of decoded")
    p.add_argument("--eval-every", type=int, default=None,
                   help=f"steps between the curve evaluations (default {d.eval_every}; 0: none)")
    p.add_argument("--mi-budget", type=float, default=None,
                   help="run the MI analysis afresh for this many seconds (default: the generator's stored policy)")
    p.add_argument("--runs", type=_runs, default=None,
                   help=f"comma-separated runs (default {','.join(DEFAULT_RUNS)}; all: {','.join(RUNS)})")
    p.add_argument("--policies", type=_policies, default=None, metavar="PATH[:NAME|NAME...]",
                   help="extra generated runs, one per policy: a JSON file of name -> ViewPolicy dict, or a view-"
                        "quality report (mlvgm-data mi --judge --json) whose candidates NAME|NAME... to train "
                        "(default: its Pareto front); runs chosen with a labelled judge say so in the report")
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


def _policies(text: str) -> tuple[dict[str, dict], dict[str, str]]:
    """``--policies``: (name -> policy dict, name -> how it was chosen)."""
    path, _, names = text.partition(":") if not Path(text).is_file() else (text, "", "")
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise argparse.ArgumentTypeError(f"--policies {path!r}: {e}") from None
    if not isinstance(doc, dict):
        raise argparse.ArgumentTypeError(f"--policies {path!r} holds no JSON object")
    report = isinstance(doc.get("policies"), dict) and "front" in doc
    candidates = {k: v["policy"] for k, v in doc["policies"].items()} if report else doc
    chosen = [n.strip() for n in names.split("|") if n.strip()] or (doc["front"] if report else list(candidates))
    unknown = [n for n in chosen if n not in candidates]
    if unknown:
        raise argparse.ArgumentTypeError(f"--policies: {unknown} not in {path}; it has {sorted(candidates)}")
    judge = (doc.get("settings") or {}).get("judge") if report else None
    note = f"from the view-quality report of {judge} (a labelled judge)" if judge else ""
    notes = {n: note for n in chosen if note}
    if report and doc.get("recommended", {}).get("name") in chosen:
        notes[doc["recommended"]["name"]] = f"chosen with the labelled judge {judge} (the report's recommendation)"
    return {n: candidates[n] for n in chosen}, notes


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
        fixed_set_shards=args.fixed_set_shards,
        mi_budget=args.mi_budget, threads=args.threads, eval_threads=args.eval_threads, runs=args.runs,
        device=args.device, progress=not args.no_progress)
    if args.policies is not None:
        options["policies"], options["policy_notes"] = args.policies
    overrides = {k: v for k, v in options.items() if v is not None}
    cfg = DemoConfig.quick_config(**overrides) if args.quick else DemoConfig(**overrides)
    return run_demo(cfg)
