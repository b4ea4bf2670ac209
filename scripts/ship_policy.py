"""Ship a measured view policy with a built-in generator (a developer command, on the checkout).

    mlvgm-data mi builtin:shapes --plot docs/mi_shapes.png --save-policy /tmp/shapes.policy.json
    python scripts/ship_policy.py shapes /tmp/shapes.policy.json

writes the policy into ``mlvgm_data/assets/STEM.json`` (``policy`` and ``policy_source``) and the
MI report beside it as ``STEM.mi.json``, the only way the shipped policies change. Users' own
``--save-policy`` runs never touch the package (they write to their config folder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlvgm_data._io import write_text
from mlvgm_data.generators.registry import BUILTINS, read_config, read_policy_file

ASSETS = Path(__file__).resolve().parent.parent / "mlvgm_data" / "assets"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("builtin", choices=sorted(BUILTINS), help="the built-in generator's name (builtin:NAME)")
    p.add_argument("policy_file", type=Path, help="a file written by `mlvgm-data mi ... --save-policy PATH`")
    p.add_argument("--assets", type=Path, default=ASSETS, help="the assets folder (default: the checkout's)")
    args = p.parse_args()
    doc = read_policy_file(args.policy_file)
    if doc.get("generator") != f"builtin:{args.builtin}":
        raise SystemExit(f"{args.policy_file} was measured for {doc.get('generator')!r}, not builtin:{args.builtin}")
    stem = args.assets / BUILTINS[args.builtin]
    config_path = stem.with_suffix(".json")
    cfg = read_config(config_path)
    cfg["policy"], cfg["policy_source"] = doc["policy"], doc["source"]
    write_text(config_path, json.dumps(cfg, indent=2, sort_keys=True) + "\n", "asset config", root=args.assets)
    if doc.get("mi") is not None:
        write_text(stem.with_name(stem.name + ".mi.json"), json.dumps(doc["mi"], indent=2) + "\n", "MI report",
                   root=args.assets)
    print(f"shipped the policy of {args.policy_file} in {config_path}")


if __name__ == "__main__":
    main()
