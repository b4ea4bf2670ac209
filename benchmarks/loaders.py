"""Generated views vs real-image loaders, side by side: the script behind ``mlvgm-data bench``.

    python benchmarks/loaders.py [--quick] [--json results.json] [--rows pipe,pil,torchvision]

Same options and output as the CLI (see ``mlvgm_data/bench.py`` for what each row measures).
torchvision and DALI rows need those packages (skipped with a note otherwise). On a machine
shared with other jobs, ``OMP_WAIT_POLICY=PASSIVE`` stops idle OpenMP threads from spinning
(with 2 intra-op threads in the main thread that spinning cost up to 10× here) and
``THP_MEM_ALLOC_ENABLE=1`` (transparent huge pages, set before torch is imported) cuts the
allocation cost of every row; both are recorded in the output.
"""

from __future__ import annotations

import argparse
import json

from mlvgm_data.commands import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the result as JSON to PATH")
    bench.add_arguments(parser)
    args = parser.parse_args()
    result = bench.run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True, default=str)


if __name__ == "__main__":
    main()
