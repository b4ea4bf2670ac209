"""``mlvgm-data`` command line: each subcommand lives in its own module.

A subcommand module defines ``HELP`` (one line), ``add_arguments(parser)``, optionally
``check(args)`` (argument, output and optional-dependency checks that run before any work) and
``run(args) -> dict``; the dict is what ``--json`` writes (the human output goes to stdout).
Every failure is one line on stderr and a non-zero exit; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback

from .._io import check_output_path, write_text

COMMANDS = {
    "demo": "mlvgm_data.apps.commands.demo",
    "views": "mlvgm_data.apps.commands.views",
    "mi": "mlvgm_data.apps.commands.mi",
    "bench": "mlvgm_data.apps.commands.bench",
    "train": "mlvgm_data.apps.commands.train",
    "export": "mlvgm_data.apps.commands.export",
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="mlvgm-data", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mlvgm-data {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--json", metavar="PATH", default=None,
                       help="also write the result as JSON to PATH ('-' for stdout)")
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.json not in (None, "-"):
            check_output_path(args.json, "--json")
        check = getattr(args._module, "check", None)
        if check is not None:
            check(args)
        result = args._module.run(args)
        if args.json:
            text = json.dumps(result, indent=2, sort_keys=True, default=str)
            if args.json == "-":
                print(text)
            else:
                write_text(args.json, text + "\n", "--json")
    except KeyboardInterrupt:
        print(f"mlvgm-data {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every failure is one line (the traceback with --debug)
        if args.debug:
            traceback.print_exc()
        message = " ".join(str(e).split()) or type(e).__name__
        kind = "" if isinstance(e, (ValueError, FileNotFoundError)) else f"{type(e).__name__}: "
        print(f"mlvgm-data {args.command}: error: {kind}{message}", file=sys.stderr)
        return 2 if isinstance(e, (ValueError, FileNotFoundError)) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
