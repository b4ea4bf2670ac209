"""The ML-VAE trainer (``mlvgm-data train --model mlvae``): grouped batches and the training loop.

Groups in training:

- ``--data shapes``: each group's members share the Shapes factors named by
  ``--group-factors`` (default ``class``: same shape kind, everything else independent; e.g.
  ``class,hue`` also shares the colour). Members are fresh Shapes items with those factor
  columns copied from the group's first member, so every factor keeps its Shapes distribution.
- ``--data FOLDER``: a group is images from the same sub-folder (an ImageFolder layout: one
  sub-folder per identity/class/object); sub-folders with fewer than ``--group-size`` images are
  skipped, and a folder without such sub-folders is rejected.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ...data.shapes import FACTOR_NAMES, render_factors, sample_factors
from ...models.mlvae import DEFAULT_CONFIG, FAMILY, MLVAE, check_config
from ..classifiers.shapes import recognizability
from ..viz import save_image_grid
from .checkpoint import out_dir
from .data import image_source
from .loop import Training, run_training
from .options import Trainer
from .outputs import save_outputs


def swap_grid(model: MLVAE, path: str | Path, rows: int = 8, seed: int = 0) -> None:
    """Writes a PNG grid of prior samples: each row one content, each column one style."""
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(rows, model.config["content_dim"], generator=g)
    style = torch.randn(rows, model.config["style_dim"], generator=g)
    with torch.no_grad():
        img = model.decode({"content": content.repeat_interleave(rows, 0), "style": style.repeat(rows, 1)})
    save_image_grid(img, path, nrow=rows)


# --- grouped batches -------------------------------------------------------------------------


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + 17) % (1 << 63))


class ShapesGroups:
    """Groups of Shapes items sharing the factors ``shared`` (see the module docstring)."""

    def __init__(self, resolution: int, seed: int, shared: list[str]) -> None:
        unknown = [f for f in shared if f not in FACTOR_NAMES]
        if unknown or not shared:
            raise ValueError(f"--group-factors must name Shapes factors from {list(FACTOR_NAMES)}, got {shared}")
        self.resolution, self.seed = resolution, seed
        self.columns = [FACTOR_NAMES.index(f) for f in shared]

    def factors(self, step: int, num_groups: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(factors [N, 8], group ids [N])`` of ``step``'s batch (a pure function of the step)."""
        n = num_groups * group_size
        index = step * n + torch.arange(n, dtype=torch.int64)
        f = sample_factors(index % (1 << 32), self.seed)
        groups = torch.arange(num_groups).repeat_interleave(group_size)
        f[:, self.columns] = f[groups * group_size][:, self.columns]
        return f, groups

    def batch(self, step: int, num_groups: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [N, 3, R, R], group ids [N])`` of ``step``'s batch."""
        f, groups = self.factors(step, num_groups, group_size)
        return render_factors(f, self.resolution), groups


class FolderGroups:
    """Groups of images from the same sub-folder of an image folder."""

    def __init__(self, root: str, resolution: int, seed: int, group_size: int) -> None:
        self.source = image_source(root, resolution, seed)
        self.seed = seed
        folders: dict[Path, list[int]] = {}
        for i, p in enumerate(self.source.dataset.paths):
            folders.setdefault(p.parent, []).append(i)
        root_path = Path(root).resolve()
        self.members = [torch.tensor(v) for k, v in sorted(folders.items())
                        if k.resolve() != root_path and len(v) >= group_size]
        if not self.members:
            raise ValueError(
                f"ML-VAE on a folder needs groups: put each group's images in its own sub-folder of {root} "
                f"(ImageFolder layout) with at least --group-size={group_size} images; none found"
            )
        # Groups are chosen in proportion to their size (as if picking a random image).
        self.weights = torch.tensor([len(m) for m in self.members], dtype=torch.float64)

    def batch(self, step: int, num_groups: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [N, 3, R, R], group ids [N])`` of ``step``'s batch (a pure function of the step)."""
        g = _step_generator(self.seed, step)
        chosen = torch.multinomial(self.weights, num_groups, replacement=True, generator=g)
        picks = [self.members[k][torch.randperm(len(self.members[k]), generator=g)[:group_size]]
                 for k in chosen.tolist()]
        return self.source.batch(torch.cat(picks)), torch.arange(num_groups).repeat_interleave(group_size)


# --- trainer ---------------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """Declares the mlvae options (see ``mlvgm-data train --help``)."""
    parser.add_argument("--content-dim", type=int, default=DEFAULT_CONFIG["content_dim"], help="content latent size")
    parser.add_argument("--style-dim", type=int, default=DEFAULT_CONFIG["style_dim"], help="style latent size")
    parser.add_argument("--width", type=int, default=DEFAULT_CONFIG["width"], help="channels of the first conv")
    parser.add_argument("--group-size", type=int, default=4, help="images per group (batch = groups × group size)")
    parser.add_argument("--group-factors", type=str, default="class",
                        help="Shapes factors a group shares, comma-separated (from " + ", ".join(FACTOR_NAMES) + ")")
    parser.add_argument("--sigma", type=float, default=0.1, help="std of the Gaussian pixel likelihood")
    parser.add_argument("--kl-warmup", type=int, default=1000, help="steps of linear KL warm-up")
    parser.add_argument("--temperature", type=float, default=DEFAULT_CONFIG["temperature"],
                        help="sampling temperature stored in the saved generator (training ignores it)")


def _check_options(opts: argparse.Namespace) -> None:
    if opts.group_size < 1 or opts.batch_size % opts.group_size:
        raise ValueError(f"--batch-size ({opts.batch_size}) must be a multiple of --group-size ({opts.group_size})")
    if not opts.sigma > 0 or opts.kl_warmup < 0:
        raise ValueError("--sigma must be > 0 and --kl-warmup >= 0")


class _MLVAEStep:
    """The ML-VAE, its optimiser and one training step on ``step``'s grouped batch."""

    def __init__(self, opts: argparse.Namespace, config: dict, data: ShapesGroups | FolderGroups) -> None:
        self.opts, self.data = opts, data
        self.model = MLVAE(**config)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=opts.lr)
        self.model.train()

    def training(self) -> Training:
        """The parts :func:`run_training` needs."""
        return Training({"model": self.model}, {"model": self.opt}, self, self.model,
                        shown=("loss", "mse", "kl_content", "kl_style"))

    def __call__(self, step: int) -> dict[str, float]:
        opts = self.opts
        x, groups = self.data.batch(step, opts.batch_size // opts.group_size, opts.group_size)
        beta = min(1.0, (step + 1) / opts.kl_warmup) if opts.kl_warmup else 1.0
        parts = self.model.loss(x, groups, opts.sigma, beta)
        self.opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.opt.step()
        return {k: float(v.detach()) for k, v in parts.items()}


def train(opts: argparse.Namespace) -> dict:
    """Trains the ML-VAE on grouped Shapes or a grouped folder; returns the summary."""
    _check_options(opts)
    config = check_config({"resolution": opts.resolution, "content_dim": opts.content_dim,
                           "style_dim": opts.style_dim, "width": opts.width, "temperature": opts.temperature})
    if opts.data == "shapes":
        data: ShapesGroups | FolderGroups = ShapesGroups(
            opts.resolution, opts.seed, [f.strip() for f in opts.group_factors.split(",") if f.strip()])
    else:
        data = FolderGroups(opts.data, opts.resolution, opts.seed, opts.group_size)
    # A resumed run may change --steps and the sampling temperature stored in the generator.
    trained = run_training(opts, lambda: _MLVAEStep(opts, config, data).training(), desc="mlvae",
                           changeable=("steps", "temperature"))
    model = trained.output
    swap_grid(model, out_dir(opts) / "samples.png")
    summary: dict[str, Any] = {
        "model": "mlvae", "data": opts.data, "steps": opts.steps, "batch_size": opts.batch_size,
        "group_size": opts.group_size, "seed": opts.seed, "seconds": round(trained.seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()), **trained.rounded(),
    }
    if opts.data == "shapes":
        summary["group_factors"] = opts.group_factors
        if opts.resolution == 32:  # the Shapes classifier's resolution
            summary["recognizability"] = recognizability(model)
    return save_outputs(model, opts, FAMILY, config, summary)


TRAINER = Trainer(
    "mlvae", add_arguments, train,
    help="ML-VAE: group content latent (product of Gaussians) + per-sample style latent",
    defaults={"steps": 6000, "batch_size": 64, "lr": 1e-3},
)
