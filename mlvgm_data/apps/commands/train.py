"""``mlvgm-data train``: trains a built-in generator on Shapes, Fashion-MNIST or a folder of your images."""

from __future__ import annotations

import argparse

from ..train.options import COMMON_DEFAULTS
from ..train.registry import get_trainer, train, trainers

HELP = "train a built-in generator (--model hvae|...) on Shapes, Fashion-MNIST or a folder of images"

_COMMON_HELP = {
    "data": ("--data", "'shapes' (procedural, no files), 'fashion-mnist' (the train split of the IDX files, "
                       "grey, zero-padded to 32² at --resolution 32) or a folder of images (any size, resized)"),
    "out": ("--out", "run folder: checkpoint.pt, model.{pt,json}, summary.json (default runs/MODEL-DATA-RES)"),
    "steps": ("--steps", "optimiser steps"),
    "batch_size": ("--batch-size", "images per step"),
    "lr": ("--lr", "learning rate"),
    "seed": ("--seed", "seed of the weights, the data order and the training noise"),
    "resolution": ("--resolution", "image size (square)"),
    "checkpoint_every": ("--checkpoint-every", "steps between checkpoints"),
    "export": ("--export", "also save the final generator as PATH.{pt,json}"),
    "threads": ("--threads", "torch CPU threads (default: torch's)"),
}
_TYPES = {"data": str, "out": str, "steps": int, "batch_size": int, "lr": float, "seed": int,
          "resolution": int, "checkpoint_every": int, "export": str, "threads": int}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares ``--model``, the common options and every trainer's own (one group per model)."""
    found = trainers()
    parser.add_argument("--model", required=True, choices=sorted(found), help="which model to train")
    for dest, (flag, text) in _COMMON_HELP.items():
        default = COMMON_DEFAULTS[dest]
        shown = "" if default is None else f" (default: {default}; some models change it)"
        parser.add_argument(flag, dest=dest, type=_TYPES[dest], default=argparse.SUPPRESS, help=text + shown)
    parser.add_argument("--resume", action="store_true", default=argparse.SUPPRESS,
                        help="continue from OUT/checkpoint.pt if it exists")
    # Options declared by several trainers are added once, in the first one's group, with each
    # trainer's default in the help.
    declared: dict[tuple[str, ...], list[tuple[str, dict]]] = {}
    for name, trainer in sorted(found.items()):
        for flags, kw in trainer.options():
            declared.setdefault(flags, []).append((name, kw))
    groups = {name: parser.add_argument_group(f"--model {name}", t.help or None) for name, t in sorted(found.items())}
    for flags, uses in declared.items():
        same = [{k: v for k, v in kw.items() if k not in ("default", "help")} for _, kw in uses]
        if any(s != same[0] for s in same[1:]):
            raise ValueError(f"trainers {[n for n, _ in uses]} declare option {flags} differently")
        first_name, first_kw = uses[0]
        if len(uses) == 1:
            default = first_kw.get("default")
            shown = "" if default is None else f" (default: {default})"
        else:
            shown = " (defaults: " + ", ".join(f"{n} {kw.get('default')}" for n, kw in uses) + ")"
        groups[first_name].add_argument(
            *flags, **dict(same[0], default=argparse.SUPPRESS, help=first_kw.get("help", "") + shown)
        )


def run(args: argparse.Namespace) -> dict:
    """Runs the chosen trainer with the options given on the command line; prints and returns its summary."""
    trainer = get_trainer(args.model)
    known = trainer.option_defaults()
    given = {k: v for k, v in vars(args).items() if k in known}
    # The CLI's own options (every subcommand has --json and --debug) are not the trainer's.
    cli_options = ("model", "json", "debug", "command", "_module")
    other = sorted(k for k in vars(args) if k not in known and k not in cli_options)
    if other:
        raise ValueError(f"options {other} do not apply to --model {args.model}")
    summary = train(args.model, **given)
    print(_format(summary))
    return summary


def _format(summary: dict) -> str:
    lines = [f"trained {summary.get('model', '?')}:"]
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b:.3g}" if isinstance(b, float) else f"{a}={b}" for a, b in v.items())
        lines.append(f"  {k}: {v}")
    return "\n".join(lines)
