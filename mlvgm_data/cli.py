"""``mlvgm-data`` command line: each subcommand lives in its own module.

A subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> dict``; the dict is what ``--json`` prints (and the human output goes to stdout
otherwise).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

COMMANDS = {
    "demo": "mlvgm_data.commands.demo",
    "views": "mlvgm_data.commands.views",
    "mi": "mlvgm_data.commands.mi",
    "bench": "mlvgm_data.commands.bench",
    "train": "mlvgm_data.commands.train",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlvgm-data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--json", metavar="PATH", default=None,
                       help="also write the result as JSON to PATH ('-' for stdout)")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args._module.run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"mlvgm-data {args.command}: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        text = json.dumps(result, indent=2, sort_keys=True, default=str)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
