"""Lightning runs under ``Trainer(strategy="ddp")`` for tests/test_lightning.py: 2 CPU ranks (gloo),
2 DataLoader workers each, the example's LitSimCLR on ViewPairDataModule (PointwiseGenerator views,
latents returned). Lightning's DDP launches rank 1 by running this script again, so it is a script.

    python tests/lightning_ddp_run.py OUT

runs four fits, each with a new DataModule, model and Trainer: "stopped" (max_steps=STOP), "full"
(uninterrupted), then "resumed_mid" and "resumed_end" from the stopped run's checkpoints (in one
launch: starting two ranks that import Lightning is most of the cost; a resumed fit shares nothing
with the stopped one but the checkpoint file). The stopped run leaves two checkpoints: OUT/mid
(ModelCheckpoint(every_n_train_steps=STOP): written after batch STOP, mid-epoch by Lightning's
accounting) and OUT/end (the default, written in on_train_epoch_end: Lightning counts the epoch as
ended). Each fit writes OUT/NAME.rankR.json: per
batch Lightning's (epoch, batch_idx), a digest of the whole batch, the anchors' digests, and a
digest of the final weights.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from helpers import PointwiseGenerator  # noqa: E402  (tests/ is this script's folder)
from lightning_simclr import LitSimCLR  # noqa: E402

from mlvgm_data import Resample, ViewPolicy  # noqa: E402
from mlvgm_data.lightning import ViewPairDataModule  # noqa: E402

STEPS_PER_EPOCH, EPOCHS, BATCH, STOP, WORKERS, SEED = 6, 2, 4, 4, 2, 7
POLICY = ViewPolicy({"map": Resample()})


def digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def anchor_digests(latents: dict[str, torch.Tensor]) -> list[str]:
    """One digest per anchor: its view-0 latents of every group."""
    flat = torch.cat([z[0].flatten(1) for _, z in sorted(latents.items())], dim=1)
    return [digest(row) for row in flat]


class Record(L.Callback):
    """What each training step received, written per rank when training ends."""

    def __init__(self, path: Path) -> None:
        self.path, self.steps = path, []

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        (x0, x1), target, latents = batch
        self.steps.append({"epoch": trainer.current_epoch, "batch_idx": batch_idx, "type": type(batch).__name__,
                           "batch": digest(x0, x1, target, *(latents[k] for k in sorted(latents))),
                           "anchors": anchor_digests(latents)})

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        weights = digest(*(v for _, v in sorted(module.state_dict().items())))
        Path(f"{self.path}.rank{trainer.global_rank}.json").write_text(json.dumps(
            {"steps": self.steps, "weights": weights, "global_step": trainer.global_step}))


def fit(out: Path, name: str, ckpt_path: str | None = None, max_steps: int = -1,
        checkpoints: tuple[ModelCheckpoint, ...] = ()) -> None:
    data = ViewPairDataModule(PointwiseGenerator(), POLICY, BATCH, STEPS_PER_EPOCH, seed=SEED,
                              num_workers=WORKERS, return_latents=True)
    torch.manual_seed(0)
    model = LitSimCLR(width=4)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, max_steps=max_steps,
                        callbacks=[Record(out / name), *checkpoints], enable_checkpointing=bool(checkpoints),
                        logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=out)
    trainer.fit(model, data, ckpt_path=ckpt_path)


def main() -> None:
    out = Path(sys.argv[1])
    mid = ModelCheckpoint(dirpath=out / "mid", every_n_train_steps=STOP)
    fit(out, "stopped", max_steps=STOP, checkpoints=(mid, ModelCheckpoint(dirpath=out / "end")))
    fit(out, "full")
    for name, folder in (("resumed_mid", "mid"), ("resumed_end", "end")):
        (ckpt,) = (out / folder).glob("*.ckpt")
        fit(out, name, ckpt_path=str(ckpt))
    # gloo frees the last collectives' tensors on a worker thread that needs the GIL; let it finish
    # before the interpreter shuts down (see examples/ddp_simclr.py)
    time.sleep(0.2)


if __name__ == "__main__":
    main()
