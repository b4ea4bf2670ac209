"""SimCLR with Lightning Fabric on generated views: your own loop, with a resumable loader.

``ViewPairLoader`` is a DataLoader over the pipe whose ``state_dict`` is the step of the next batch,
so ``fabric.save`` puts the stream position in the checkpoint beside the weights, and a run resumed
mid-epoch continues with the batch after the checkpoint (every rank: each draws its own share of a
step). On CPU, two ranks with the gloo backend:

    python examples/fabric_simclr.py --devices 2 --workers 2 --steps-per-epoch 50 --epochs 2 --stop-after 30
    python examples/fabric_simclr.py --devices 2 --workers 2 --steps-per-epoch 50 --epochs 2 \\
        --resume fabric_out/checkpoint.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch

from mlvgm_data import ViewPairPipe, load_generator, recommended_policy
from mlvgm_data.apps.ssl import ConvEncoder, SimCLR, nt_xent
from mlvgm_data.lightning import ViewPairLoader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="builtin:shapes")
    parser.add_argument("--batch-size", type=int, default=64, help="anchors per step and rank")
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--devices", type=int, default=1, help="ranks (DDP when > 1)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per rank (CPU generators)")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--out", default="fabric_out")
    parser.add_argument("--stop-after", type=int, default=None, help="save a checkpoint after this many steps and stop")
    parser.add_argument("--resume", default=None, help="a checkpoint to continue from")
    args = parser.parse_args()

    fabric = L.Fabric(accelerator="auto", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto")
    fabric.launch()
    pipe = ViewPairPipe(load_generator(args.generator), recommended_policy(args.generator), args.batch_size,
                        seed=0, augment="simclr", steps=args.steps_per_epoch)
    loader = ViewPairLoader(pipe, num_workers=args.workers)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = SimCLR(ConvEncoder(width=args.width))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model, optimizer = fabric.setup(model, optimizer)
    batches = fabric.setup_dataloaders(loader)  # moves each ViewBatch to the device

    state = {"model": model, "optimizer": optimizer, "loader": loader, "step": 0, "epoch": 0}
    if args.resume:
        fabric.load(args.resume, state)  # the loader continues after the last batch trained on
    while state["epoch"] < args.epochs:
        for (x0, x1), _ in batches:
            z = model(torch.cat([x0, x1]))  # through the wrapper's forward: DDP syncs the gradients
            loss = nt_xent(z[: len(x0)], z[len(x0):], model.temperature)
            optimizer.zero_grad()
            fabric.backward(loss)
            optimizer.step()
            state["step"] += 1
            fabric.print(f"step {state['step']} epoch {state['epoch']} loss {loss.item():.10f}")
            if state["step"] == args.stop_after:
                fabric.save(Path(args.out) / "checkpoint.pt", state)
                return
        state["epoch"] += 1


if __name__ == "__main__":
    main()
