"""SimCLR on real images: a dataset of images, two augmentations per image, a DataLoader.
examples/simclr_generated.py is this script with the data source swapped for generated views
(the README shows the diff).

    python examples/simclr_real.py --steps 100
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader

from mlvgm_data import AugmentedViews
from mlvgm_data.apps.ssl import ConvEncoder, SimCLR
from mlvgm_data.augment import simclr
from mlvgm_data.data import Shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SimCLR(ConvEncoder(width=32))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    dataset = AugmentedViews(Shapes(20_000), simclr(32))
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
