"""``mlvgm-data mi``: per-group mutual information of a generator and a measured view policy; with
``--judge``, the view-quality report of candidate policies (what their views keep under the judge
vs how much they change) instead."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import torch

from ..._checks import check_int, check_number
from ..._io import check_output_path, write_text
from ...generators.registry import (
    POLICY_FORMAT,
    is_factory_name,
    measured_budget,
    policy_source,
    read_policy_file,
    user_policy_path,
)
from .common import GENERATOR_HELP, open_generator

HELP = "Measure each latent group's information (I(z_g; x), I(x; x') with g resampled) and recommend a view policy."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("generator", nargs="?", default="builtin:shapes", help=GENERATOR_HELP + " (default builtin:shapes)")
    p.add_argument("--groups", default=None, help="comma-separated groups to analyse (default: all)")
    p.add_argument("--budget", type=float, default=300.0,
                   help="time cap in seconds (default 300); the defaults finish inside it on a 2-core CPU; when it "
                        "binds, critics stop early and the report says so (results then depend on machine speed)")
    p.add_argument("--samples", type=int, default=None,
                   help="paired samples per estimate (default 2048; with --judge, pairs per policy, default 2000)")
    p.add_argument("--steps", type=int, default=None,
                   help="critic training steps (default 300; with --judge, of the I(x0; x1) critics, default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", type=float, default=None,
                   help="I(x0; x1) in nats the recommended views should have (default: middle of the measured range)")
    p.add_argument("--anchor-trunc", type=float, default=None, help="truncate latents to ±T (truncation trick)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="under-used: I(z_g; x) below this fraction of the largest group's (default 0.05)")
    p.add_argument("--plot", default=None, metavar="PATH", help="write the bar chart PNG here (needs matplotlib)")
    p.add_argument("--save-policy", nargs="?", const="auto", default=None, metavar="PATH",
                   help="store the recommended policy (and this report) where recommended_policy() reads it first: "
                        "beside a saved generator (PATH.policy.json), or for builtin:NAME in "
                        "~/.config/mlvgm-data/policies/NAME.json ($MLVGM_CONFIG overrides); or in PATH. Never in "
                        "the installed package")
    p.add_argument("--force", action="store_true",
                   help="let --save-policy replace (or shadow) a policy measured with a larger budget")
    p.add_argument("--encoder-data", default=None, metavar="shapes|fashion-mnist|PATH",
                   help="also report the encoder metrics (KL, I_q(x; z), active units per group) on real images: "
                        "'shapes' (held-out procedural Shapes), 'fashion-mnist' (its test split) or an image "
                        "folder; needs a generator with encode(x)")
    p.add_argument("--encoder-samples", type=int, default=2000, help="images for --encoder-data (default 2000)")
    p.add_argument("--device", default=None, help="device for the generator and the critics (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    q = p.add_argument_group("view quality (--judge)")
    q.add_argument("--judge", default=None, metavar="PATH_OR_BUILTIN",
                   help="run the view-quality report with this judge instead: builtin:fashion-classifier, "
                        "builtin:shapes-classifier, a saved classifier's STEM (STEM.pt + STEM.json) or module:factory; "
                        "the chart (--plot) shows label consistency vs change with the Pareto front")
    q.add_argument("--mi-report", default=None, metavar="PATH",
                   help="the MI report (this command's --json) that ranks the groups for the candidate policies "
                        "(default: the generator's stored one, else the groups in order)")
    q.add_argument("--min-consistency", type=float, default=None,
                   help="the recommendation's floor: the most change among candidates keeping the judged class in "
                        "at least this fraction of pairs (default 0.7)")
    q.add_argument("--change", choices=("pixel", "feature"), default="pixel",
                   help="the change axis: RMS pixel change (default) or the judge's feature change")

_NOT_WITH_JUDGE = ("groups", "target", "anchor_trunc", "save_policy", "encoder_data")
_JUDGE_ONLY = ("mi_report", "min_consistency")


def _policy_target(args: argparse.Namespace) -> Path:
    return user_policy_path(args.generator) if args.save_policy == "auto" else Path(args.save_policy)


def _save_policy(path: Path, name: str, recommended: dict, report: dict, command: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": POLICY_FORMAT, "generator": name, "policy": recommended["policy"],
           "source": {"command": command, "samples": report["settings"]["samples"],
                      "steps": report["settings"]["steps"], "target_nats": recommended["target"],
                      "views_mi_nats": recommended["mi"]["value"], "description": recommended["description"]},
           "mi": report}
    write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n", "--save-policy")
    return str(path)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_modes(args: argparse.Namespace) -> None:
    """--judge runs the view-quality report: the analysis-only options are refused with it, its own
    without it; the defaults of --samples and --steps are the mode's."""
    if args.judge is not None:
        given = [_flag(n) for n in _NOT_WITH_JUDGE if getattr(args, n) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} do(es) not apply with --judge (the view-quality report)")
        if args.min_consistency is not None:
            check_number(args.min_consistency, "--min-consistency", 0.0, 1.0)
    else:
        given = [_flag(n) for n in _JUDGE_ONLY if getattr(args, n) is not None] + (
            ["--change"] if args.change != "pixel" else [])
        if given:
            raise ValueError(f"{', '.join(given)} need(s) --judge (the view-quality report)")
    judged = args.judge is not None
    args.samples = (2000 if judged else 2048) if args.samples is None else args.samples
    args.steps = (200 if judged else 300) if args.steps is None else args.steps


def check(args: argparse.Namespace) -> None:
    """Before the analysis: the numbers, the output files and matplotlib for --plot."""
    _check_modes(args)
    check_int(args.samples, "--samples", 128)
    check_int(args.steps, "--steps", 1)
    check_int(args.encoder_samples, "--encoder-samples", 1)
    check_number(args.budget, "--budget", 0.0, strict_low=True)
    check_number(args.threshold, "--threshold", 0.0, 1.0, strict_low=True)
    if args.target is not None:
        check_number(args.target, "--target")
    if args.plot is not None:
        check_output_path(args.plot, "--plot")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib: pip install matplotlib") from None
    if args.save_policy is not None:
        target = _policy_target(args)
        if args.save_policy != "auto" or target.parent.exists():
            check_output_path(target, "--save-policy")
        if not args.force:
            _check_budget(args, target)


def _check_budget(args: argparse.Namespace, target: Path) -> None:
    """Refuses to store a policy over one measured with a larger budget (samples × critic steps):
    a smoke-sized run must not silently change what every later user of the generator gets."""
    if target.is_file():
        where, (_, samples, steps) = target, measured_budget(read_policy_file(target).get("source"))
    elif args.save_policy == "auto":
        try:
            source = policy_source(args.generator)
        except ValueError:  # nothing stored yet
            return
        where, samples, steps = source.path, source.samples, source.steps
    else:
        return
    if samples and steps and samples * steps > args.samples * args.steps:
        raise ValueError(f"--save-policy would override the policy in {where}, measured with {samples} samples and "
                         f"{steps} critic steps, by one measured with {args.samples} and {args.steps}: pass --force "
                         "to do it anyway")


ENCODER_SHAPES_SEED = 7
"""Shapes seed for --encoder-data shapes: images the shipped generators were not trained on."""


def _image_batches(source: str, resolution: int, n: int, batch: int = 250,
                   channels: int = 3) -> Iterator[torch.Tensor]:
    """Batches of ``n`` real images with the generator's ``channels``; the dataset is opened now,
    so a bad folder or missing files fail early."""
    from ...data import FashionMNIST, FolderImages, Shapes

    if source == "shapes":
        shapes = Shapes(n, resolution, seed=ENCODER_SHAPES_SEED)
        return (shapes.render(range(i, min(i + batch, n)))[0] for i in range(0, n, batch))
    if source == "fashion-mnist":
        # The test split: images a generator trained on the train split has not seen.
        fashion = FashionMNIST(train=False, pad_to=resolution)
        count = min(n, len(fashion))
        return (fashion.batch(range(i, min(i + batch, count)))[0].expand(-1, channels, -1, -1)
                for i in range(0, count, batch))
    folder = FolderImages(source, resolution)
    count = min(n, len(folder))
    return (folder.load(list(range(i, min(i + batch, count)))) for i in range(0, count, batch))


def _command(args: argparse.Namespace) -> str:
    parts = ["mlvgm-data mi", args.generator, f"--samples {args.samples}", f"--steps {args.steps}",
             f"--seed {args.seed}", f"--budget {args.budget:g}"]
    for flag, value in (("--groups", args.groups), ("--target", args.target), ("--anchor-trunc", args.anchor_trunc)):
        if value is not None:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def _judged_command(args: argparse.Namespace) -> str:
    parts = ["mlvgm-data mi", args.generator, f"--judge {args.judge}", f"--samples {args.samples}",
             f"--steps {args.steps}", f"--seed {args.seed}"]
    for flag, value in (("--mi-report", args.mi_report), ("--min-consistency", args.min_consistency),
                        ("--change", None if args.change == "pixel" else args.change), ("--plot", args.plot),
                        ("--json", args.json)):
        if value is not None:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def _run_judged(args: argparse.Namespace) -> dict:
    """The view-quality report: table, recommended policy, chart; the report's dict for --json."""
    from ...mi import view_quality

    generator = open_generator(args.generator, args.device)
    if is_factory_name(args.judge) and "" not in sys.path:
        sys.path.insert(0, "")  # as for a GENERATOR module:factory: the user's module lives in the current folder
    report = view_quality(generator, None, args.judge, samples=args.samples, seed=args.seed, mi={"steps": args.steps},
                          mi_report=args.mi_report, change=args.change, min_consistency=args.min_consistency,
                          name=args.generator, command=_judged_command(args), progress=not args.no_progress)
    result = report.to_dict()
    print(report.to_markdown())
    print()
    best = report.recommendation()
    print(f"Recommended policy ({best.chosen_with}: {best.rule}): {best.name}")
    print(json.dumps(best.policy.to_dict(), indent=2))
    if args.plot:
        result["plot"] = str(report.plot(args.plot))
        print(f"chart: {result['plot']}")
    return result


def run(args: argparse.Namespace) -> dict:
    from ...mi import analyze, encoder_metrics

    if args.judge is not None:
        return _run_judged(args)
    generator = open_generator(args.generator, args.device)
    batches = None
    if args.encoder_data:
        if not callable(getattr(generator, "encode", None)):
            raise ValueError(f"{args.generator} has no encode(x): --encoder-data needs a model with an encoder")
        batches = _image_batches(args.encoder_data, generator.image_shape[-1], args.encoder_samples,
                                 channels=generator.image_shape[0])
    groups = None if args.groups is None else [g.strip() for g in args.groups.split(",") if g.strip()]
    report = analyze(
        generator, groups, samples=args.samples, steps=args.steps, seed=args.seed, budget=args.budget,
        anchor_trunc=args.anchor_trunc, threshold=args.threshold, name=args.generator,
        progress=not args.no_progress,
    )
    best, target = report.recommendation(args.target)
    result = report.to_dict()
    result["recommended"] = {"target": target, "policy": best.policy.to_dict(), "mi": best.mi.to_dict(),
                             "description": best.description, "chosen_with": "label-free MI"}
    print(report.to_markdown())
    print()
    print(f"Recommended policy (target {target:.2f} nats, measured I(x0; x1) = {best.mi}):")
    print(json.dumps(best.policy.to_dict(), indent=2))
    if args.plot:
        result["plot"] = str(report.plot(args.plot))
        print(f"chart: {result['plot']}")
    if batches is not None:
        enc = encoder_metrics(generator, batches, max_samples=args.encoder_samples, seed=args.seed,
                              progress=not args.no_progress)
        result["encoder"] = dict(enc.to_dict(), data=args.encoder_data)
        print()
        print(f"Encoder metrics on {enc.n} images ({args.encoder_data}):")
        print(enc.to_markdown())
    if args.save_policy is not None:
        result["saved_policy_to"] = _save_policy(_policy_target(args), args.generator, result["recommended"],
                                                 report.to_dict(), _command(args))
        print(f"policy stored in {result['saved_policy_to']}")
    return result
