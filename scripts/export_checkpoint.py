"""Exports the weights of a training checkpoint (``OUT/checkpoint.pt`` of ``mlvgm-data train
--model hvae``) as a generator, e.g. to look at a run before it ends:

    python scripts/export_checkpoint.py runs/hvae-shapes-32 /tmp/partial [--weights model]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlvgm_data.generators import save_generator
from mlvgm_data.generators.registry import load_state
from mlvgm_data.models.hvae import HierarchicalVAE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("out", type=Path, help="output stem: writes OUT.pt and OUT.json")
    p.add_argument("--weights", choices=("ema", "model"), default="ema",
                   help="the exported weight average (default) or the raw weights")
    args = p.parse_args()
    state = load_state(args.run / "checkpoint.pt")
    config = json.loads(state["extra"]["config"])
    model = HierarchicalVAE(config)
    model.load_state_dict(state["modules"][args.weights])
    save_generator(model, args.out, "hvae", config, {"training": {"step": int(state["step"]), "weights": args.weights,
                                                                  "options": json.loads(state["extra"]["options"])}})
    print(f"exported step {int(state['step'])} ({args.weights}) to {args.out}.pt/.json")


if __name__ == "__main__":
    main()
