"""SimCLR in Lightning on generated views: the LightningModule you write around ViewPairDataModule.

The DataModule hands every rank its own share of each step's anchors (none shared across ranks or
DataLoader workers) and puts the stream position in Lightning's checkpoints, so a resumed run
continues with the batch after the checkpoint. On CPU, two ranks with the gloo backend:

    python examples/lightning_simclr.py --devices 2 --workers 2 --steps-per-epoch 50 --epochs 2
    python examples/lightning_simclr.py --devices 2 --workers 2 --steps-per-epoch 50 --epochs 4 \\
        --resume lightning_out/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from mlvgm_data import ViewBatch, load_generator, recommended_policy
from mlvgm_data.apps.ssl import ConvEncoder, SimCLR, nt_xent
from mlvgm_data.lightning import ViewPairDataModule


class LitSimCLR(L.LightningModule):
    """SimCLR: a conv encoder and a projection head trained with NT-Xent on the two views."""

    def __init__(self, width: int = 32, lr: float = 1e-3, temperature: float = 0.2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = SimCLR(ConvEncoder(width=width), temperature=temperature)

    def training_step(self, batch: ViewBatch, batch_idx: int) -> torch.Tensor:
        x0, x1 = batch.views  # (x0, x1), target = batch works too
        # One forward over both views: batch norm sees all 2B images, DDP all-reduces once.
        z = self.model(torch.cat([x0, x1]))
        loss = nt_xent(z[: len(x0)], z[len(x0):], self.hparams.temperature)
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="builtin:shapes")
    parser.add_argument("--batch-size", type=int, default=64, help="anchors per step and rank")
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--devices", type=int, default=1, help="ranks (DDP when > 1)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per rank (CPU generators)")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--out", default="lightning_out")
    parser.add_argument("--resume", default=None, help="a checkpoint to continue from")
    args = parser.parse_args()

    data = ViewPairDataModule(load_generator(args.generator), recommended_policy(args.generator), args.batch_size,
                              args.steps_per_epoch, seed=0, augment="simclr", num_workers=args.workers)
    torch.manual_seed(0)  # the same initial weights on every rank
    trainer = L.Trainer(accelerator="auto", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto",
                        max_epochs=args.epochs, default_root_dir=args.out, logger=False,
                        callbacks=[ModelCheckpoint(dirpath=f"{args.out}/checkpoints", save_last=True)])
    trainer.fit(LitSimCLR(width=args.width), data, ckpt_path=args.resume)
    if trainer.is_global_zero:
        print(f"trained {trainer.global_step} steps, {trainer.current_epoch} epochs; "
              f"final loss {trainer.callback_metrics['loss'].item():.3f}")


if __name__ == "__main__":
    main()
