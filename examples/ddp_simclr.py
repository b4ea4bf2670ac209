"""SimCLR with DistributedDataParallel on generated views.

Each rank builds its own ViewPairPipe — here before ``init_process_group``, as a script or a
Lightning DataModule that sets up its data first would; the pipe reads its rank and world size
from torch.distributed when iteration starts and draws its share of every step's global batch, so
ranks never see the same anchors, with or without DataLoader workers. On CPU this runs with the
gloo backend:

    torchrun --nproc_per_node=2 examples/ddp_simclr.py --steps 20 --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mlvgm_data import ViewPairPipe, ViewPolicy, load_generator, recommended_policy
from mlvgm_data.apps.ssl import ConvEncoder, SimCLR, nt_xent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="builtin:shapes")
    parser.add_argument("--policy", default=None, help="ViewPolicy JSON (default: the generator's recommended policy)")
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per rank (CPU generators)")
    parser.add_argument("--report", default=None, help="rank 0 writes losses and anchor statistics here (JSON)")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))  # set by torchrun
    device = torch.device("cuda", local_rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)

    # The data first: the pipe does not need the process group yet.
    generator = load_generator(args.generator, device)
    policy = ViewPolicy.from_dict(json.loads(args.policy)) if args.policy else recommended_policy(args.generator)
    pipe = ViewPairPipe(generator, policy, args.batch_size, seed=0, augment="simclr", steps=args.steps,
                        return_latents=True)
    batches = DataLoader(pipe, batch_size=None, num_workers=args.workers) if args.workers else pipe

    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # identical initial weights on every rank
    model = DistributedDataParallel(SimCLR(ConvEncoder(width=16)).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    losses, anchors = [], []
    for (x0, x1), _, latents in batches:
        # Both views in one forward through the DDP wrapper, so gradients are all-reduced once.
        z = model(torch.cat([x0, x1]))
        loss = nt_xent(z[: len(x0)], z[len(x0):], model.module.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        flat = torch.cat([z[0].flatten(1) for z in latents.values()], dim=1).cpu()
        anchors += [hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in flat]

    gathered: list = [None] * world
    dist.all_gather_object(gathered, {"rank": rank, "losses": losses, "anchors": anchors})
    in_sync = _weights_in_sync(model)  # a collective: every rank takes part
    if rank == 0:
        all_anchors = [a for g in gathered for a in g["anchors"]]
        summary = {"world_size": world, "steps": args.steps, "losses": gathered[0]["losses"],
                   "anchors": len(all_anchors), "unique_anchors": len(set(all_anchors)),
                   "weights_in_sync": in_sync}
        print(json.dumps({k: v for k, v in summary.items() if k != "losses"} | {"final_loss": losses[-1]}))
        if args.report:
            with open(args.report, "w") as f:
                json.dump(summary, f)
    dist.barrier()
    dist.destroy_process_group()
    # A gloo worker thread frees the last collectives' tensors just after they complete, and needs
    # the GIL for it; if the interpreter has begun shutting down by then, CPython ends that thread
    # mid-destructor and the process aborts ("terminate called without an active exception",
    # pytorch/pytorch#190489). Sleeping releases the GIL so the worker finishes while Python lives.
    time.sleep(0.2)


def _weights_in_sync(model: DistributedDataParallel) -> bool:
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    copies = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, flat)
    return all(torch.equal(copies[0], c) for c in copies)


if __name__ == "__main__":
    main()
