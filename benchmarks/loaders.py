"""Generated views vs real-image loaders, side by side: ``mlvgm-data bench`` as a script.

    python benchmarks/loaders.py [--quick] [--json results.json] [--rows pipe,pil,torchvision]

Same options and output as the CLI (see ``mlvgm_data/bench/`` for what each row measures).
torchvision and DALI rows need those packages (skipped with a note otherwise). On a machine
shared with other jobs, ``OMP_WAIT_POLICY=PASSIVE`` stops idle OpenMP threads from spinning
(with 2 intra-op threads in the main thread that spinning cost up to 10× here) and
``THP_MEM_ALLOC_ENABLE=1`` (transparent huge pages, set before torch is imported) cuts the
allocation cost of every row; both are recorded in the output.
"""

from __future__ import annotations

import sys

from mlvgm_data.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
