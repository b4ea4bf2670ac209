"""SimCLR on generated views: examples/simclr_real.py with the data source swapped for views
from the shipped generator under its MI-recommended policy (the README shows the diff).

    python examples/simclr_generated.py --steps 100
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader

from mlvgm_data import GeneratedViews, load_generator, recommended_policy
from mlvgm_data.apps.ssl import ConvEncoder, SimCLR
from mlvgm_data.augment import simclr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SimCLR(ConvEncoder(width=32))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    generator, policy = load_generator("builtin:shapes"), recommended_policy("builtin:shapes")
    dataset = GeneratedViews(generator, policy, 20_000, transform=simclr(32))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=2, drop_last=True)

    step, epoch = 0, 0
    while step < args.steps:
        dataset.set_epoch(epoch)
        for (x0, x1), _ in loader:
            loss = model.loss(x0, x1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 20 == 0 or step == args.steps:
                print(f"step {step}: loss {loss.item():.3f}")
            if step == args.steps:
                break
        epoch += 1


if __name__ == "__main__":
    main()
