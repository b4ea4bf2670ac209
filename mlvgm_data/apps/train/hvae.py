"""The trainer of the hierarchical VAE (``mlvgm-data train --model hvae``): options, the training
loop with KL weights per group and the VMI term, held-out evaluation (ELBO, KL per group) and
the linear probe on posterior means (the Skip-VAE paper's measure)."""

from __future__ import annotations

import argparse
import copy
import json
import math

import torch
from torch import nn

from ...models.fashion_classifier import classifier_available as fashion_classifier_available
from ...models.hvae import HierarchicalVAE, make_config
from ...models.shapes_classifier import classifier_available as shapes_classifier_available
from ..classifiers.fashion import sample_quality
from ..classifiers.shapes import recognizability
from ..ssl import linear_probe
from ..viz import save_image_grid
from .checkpoint import out_dir
from .data import ImageSource, add_conditional_argument, batch_at, class_count, image_source, real_images
from .loop import Trained, Training, run_training, seeded
from .options import Trainer
from .outputs import grid_classes, save_outputs

RESOLUTION_DEFAULTS = {
    32: {"channels": [48, 32, 24], "blocks": [1, 1, 1], "point_blocks": [0, 0, 1], "enc_channels": [16, 32, 48, 64]},
    64: {"channels": [48, 32, 24, 12], "blocks": [1, 1, 1, 0], "point_blocks": [0, 0, 0, 1],
         "enc_channels": [8, 16, 32, 48, 64]},
}


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated ints, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def _groups(text: str) -> list[list]:
    """``"z1:32:1,z2:8:4"`` → ``[["z1", 32, 1], ["z2", 8, 4]]`` (name:channels:resolution)."""
    out = []
    for part in text.split(","):
        try:
            name, ch, res = part.split(":")
            out.append([name.strip(), int(ch), int(res)])
        except ValueError:
            raise ValueError(f"--groups entries are name:channels:resolution, got {part!r}") from None
    return out


def add_arguments(p) -> None:
    """Declares the hvae options (see ``mlvgm-data train --help``)."""
    p.add_argument("--groups", type=str, default="z1:32:1,z2:8:4,z3:4:8",
                   help="latent groups coarse→fine as name:channels:resolution (resolution 1 = vector)")
    p.add_argument("--channels", type=str, default=None,
                   help="decoder widths at 4², 8², … resolution/2 (default by resolution: 48,32,24 at 32²)")
    p.add_argument("--blocks", type=str, default=None, help="residual blocks per decoder stage (default 1,1,1 at 32²)")
    p.add_argument("--point-blocks", type=str, default=None,
                   help="per-pixel residual blocks per decoder stage (default 0,0,1 at 32²)")
    p.add_argument("--enc-channels", type=str, default=None, help="encoder widths, full resolution down to 4²")
    p.add_argument("--skip", action=argparse.BooleanOptionalAction, default=True,
                   help="Skip-VAE: feed every latent group into every later decoder block")
    p.add_argument("--vmi-weight", type=float, default=0.0, help="VMI-VAE: weight λ of the MI term (0 = off)")
    p.add_argument("--vmi-groups", type=str, default="", help="VMI-VAE: comma-separated groups the term applies to")
    add_conditional_argument(p)
    p.add_argument("--sigma", type=float, default=0.1, help="std of the Gaussian likelihood")
    p.add_argument("--temperature", type=float, default=0.8, help="default sampling temperature of decode")
    # Weighting the spatial groups' KL ×5 keeps the shape in z1, whose prior can place it: with
    # equal weights the spatial groups carry the outline and prior samples come out incoherent.
    p.add_argument("--kl-weights", type=str, default=None,
                   help="KL weight per group after warm-up (default: 1 for the top group, 5 for the others)")
    p.add_argument("--kl-warmup", type=int, default=1200, help="steps of linear KL warm-up (weight 0→1)")
    p.add_argument("--top-only-steps", type=int, default=0,
                   help="first steps in which only the top group is inferred (lower groups at their prior means)")
    p.add_argument("--ema", type=float, default=0.999, help="decay of the weight average that is exported")
    p.add_argument("--eval-images", type=int, default=2000, help="held-out images for the final ELBO figures")
    p.add_argument("--probe", action=argparse.BooleanOptionalAction, default=False,
                   help="after training, linear-probe accuracy on the posterior means (fashion-mnist: fitted on "
                        "the train split, scored on the test split)")


def config_from_options(opts, num_classes: int = 0, image_channels: int = 3) -> dict:
    """The model config of the ``train`` options; ``num_classes``: the classes the model
    conditions on (0: unconditional; see :func:`.data.class_count`); ``image_channels``: the data's."""
    res = opts.resolution
    base = RESOLUTION_DEFAULTS.get(res)
    overrides = {"resolution": res, "groups": _groups(opts.groups), "skip": bool(opts.skip),
                 "num_classes": int(num_classes), "image_channels": int(image_channels),
                 "sigma": opts.sigma, "temperature": opts.temperature, "vmi_weight": opts.vmi_weight,
                 "vmi_groups": [g.strip() for g in opts.vmi_groups.split(",") if g.strip()]}
    for key, flag in (("channels", "channels"), ("blocks", "blocks"), ("point_blocks", "point_blocks"),
                      ("enc_channels", "enc_channels")):
        value = getattr(opts, flag)
        if value is not None:
            overrides[key] = _ints(value)
        elif base is None:
            raise ValueError(f"--{flag.replace('_', '-')} must be given at resolution {res} "
                             "(defaults exist for 32 and 64)")
        else:
            overrides[key] = base[key]
    return make_config(overrides)


@torch.no_grad()
def evaluate(model: HierarchicalVAE, images: torch.Tensor, batch_size: int = 250, seed: int = 0,
             classes: torch.Tensor | None = None) -> dict:
    """One-sample ELBO figures on ``images`` (nats per image): NLL, KL per group, ELBO, bits/dim,
    and the reconstruction MSE of the posterior means (given ``classes`` for a class-conditional
    model: the conditional ELBO of log p(x | class))."""
    model.eval()
    nll, mse, kl = 0.0, 0.0, {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            c = None if classes is None else classes[start:start + batch_size]
            out = model(x, classes=c)
            nll += float(out["nll"].sum())
            for g, v in out["kl"].items():
                kl[g] = kl.get(g, 0.0) + float(v.sum())
            mse += float(((model.reconstruct(x, c) - x) ** 2).mean(dim=(1, 2, 3)).sum())
    n = len(images)
    kl = {g: v / n for g, v in kl.items()}
    elbo = -(nll / n + sum(kl.values()))
    return {"nll": nll / n, "kl": kl, "kl_total": sum(kl.values()), "elbo": elbo,
            "bits_per_dim": -elbo / (math.log(2) * images[0].numel()), "recon_mse": mse / n}


@torch.no_grad()
def posterior_means(model: HierarchicalVAE, images: torch.Tensor, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """``{group: [N, D_g]}``: the flattened means of q(ε_g | x) of ``images`` (an unconditional model's)."""
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        for g, (mu, _) in model.encode(images[start:start + batch_size]).items():
            chunks.setdefault(g, []).append(mu.flatten(1))
    return {g: torch.cat(v) for g, v in chunks.items()}


def posterior_probe(model: HierarchicalVAE, train_images: torch.Tensor, train_labels: torch.Tensor,
                    test_images: torch.Tensor, test_labels: torch.Tensor) -> dict[str, float]:
    """Held-out accuracy of linear probes on the posterior means (Dieng et al.'s Skip-VAE
    measure): fitted on the train images, scored on the test images; ``"all"`` uses every group's
    means together, each group name its own alone."""
    train, test = posterior_means(model, train_images), posterior_means(model, test_images)
    sets = {"all": (torch.cat(list(train.values()), 1), torch.cat(list(test.values()), 1)),
            **{g: (train[g], test[g]) for g in train}}
    return {k: linear_probe(a, train_labels, b, test_labels).accuracy for k, (a, b) in sets.items()}


def kl_weights(text: str | None, n_groups: int) -> list[float]:
    """The KL weight per group of ``--kl-weights`` (``"1,5,5"``); without it 1 for the top group and
    5 for every lower one."""
    weights = [1.0] + [5.0] * (n_groups - 1) if text is None else _floats(text)
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"--kl-weights must be finite numbers >= 0, got {text!r}")
    return weights


def _check_options(opts: argparse.Namespace, cfg: dict) -> list[float]:
    """Refuses bad hvae options before anything is built; returns the KL weight per group."""
    weights = kl_weights(opts.kl_weights, len(cfg["groups"]))
    if len(weights) != len(cfg["groups"]):
        raise ValueError(f"--kl-weights needs one weight per group ({len(cfg['groups'])}), got {opts.kl_weights!r}")
    if not 0.0 <= opts.ema < 1.0:
        raise ValueError(f"--ema must be in [0, 1), got {opts.ema}")
    if opts.top_only_steps < 0:
        raise ValueError(f"--top-only-steps must be >= 0, got {opts.top_only_steps}")
    if opts.kl_warmup < 0:
        raise ValueError(f"--kl-warmup must be >= 0 steps, got {opts.kl_warmup}")
    if opts.probe and (opts.data != "fashion-mnist" or cfg["num_classes"]):
        raise ValueError("--probe needs --data fashion-mnist and an unconditional model (its train/test split labels)")
    return weights


class _HVAEStep:
    """The hvae model, its EMA and optimiser, and one training step: cosine learning rate, KL
    warm-up (per-group weights), the VMI term, gradient clipping and the EMA update."""

    def __init__(self, opts: argparse.Namespace, cfg: dict, source: ImageSource, weights: list[float]) -> None:
        self.opts, self.cfg, self.source, self.weights = opts, cfg, source, weights
        self.model = HierarchicalVAE(cfg)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=opts.lr)
        self.model.train()
        self.vae_params = [p for n, p in self.model.named_parameters() if not n.startswith("class_head.")]
        self.pixels = math.prod(self.model.image_shape)
        self.names = [g[0] for g in self.model.groups]
        self.conditional = bool(cfg["num_classes"])
        self.warmup = max(1, opts.kl_warmup)

    def training(self) -> Training:
        """The parts :func:`run_training` needs (the EMA is the exported model)."""
        return Training({"model": self.model, "ema": self.ema}, {"adam": self.optim}, self, self.ema,
                        extra={"config": json.dumps(self.cfg)}, shown=("nll", "kl_"))

    def __call__(self, step: int) -> dict[str, float]:
        opts, model = self.opts, self.model
        item = batch_at(self.source, opts.batch_size, step, labelled=self.conditional)
        x, classes = item if self.conditional else (item, None)
        lr = opts.lr * 0.5 * (1.0 + math.cos(math.pi * step / opts.steps))
        for group in self.optim.param_groups:
            group["lr"] = lr
        beta = min(1.0, (step + 1) / self.warmup)
        out = model(x, top_only=step < opts.top_only_steps, classes=classes)
        kls = {g: out["kl"][g].mean() for g in self.names if g in out["kl"]}
        loss = out["nll"].mean() + beta * sum(w * kls[g] for w, g in zip(self.weights, self.names) if g in kls)
        vmi = model.vmi_terms(opts.batch_size) if model.vmi_weight > 0 else {}
        if vmi:
            loss = loss + model.vmi_weight * sum(vmi.values())
        self.optim.zero_grad(set_to_none=True)
        # The class head's cross-entropy is not divided by the pixel count (a gradient that small
        # would sit at Adam's ε); it is detached from the encoder and left out of the clipping,
        # so it does not touch the VAE's updates.
        class_loss = out["class_nll"].mean() if self.conditional else 0.0
        (loss / self.pixels + class_loss).backward()
        grad_norm = float(nn.utils.clip_grad_norm_(self.vae_params, 5.0))
        self.optim.step()
        with torch.no_grad():
            for pe, pm in zip(self.ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1.0 - opts.ema)
        stats = {"loss": float(loss.detach()), "nll": float(out["nll"].detach().mean()),
                 **{f"kl_{g}": float(v.detach()) for g, v in kls.items()}, "beta": beta, "lr": lr,
                 "grad_norm": grad_norm, **{f"vmi_{g}": float(v.detach()) for g, v in vmi.items()}}
        if self.conditional:
            stats["class_nll"] = float(out["class_nll"].detach().mean())
        return stats


def train_hvae(opts: argparse.Namespace) -> dict:
    """The ``--model hvae`` trainer (see ``add_arguments`` for the options)."""
    source = image_source(opts.data, opts.resolution, opts.seed, channels=None)
    cfg = config_from_options(opts, class_count(opts, source), source.channels)
    weights = _check_options(opts, cfg)
    trained = run_training(opts, lambda: _HVAEStep(opts, cfg, source, weights).training(), desc="train hvae",
                           changeable=("eval_images", "probe"), log_every=100)
    summary = _evaluate_run(trained, opts)
    return save_outputs(trained.output, opts, "hvae", cfg, summary)


def _evaluate_run(trained: Trained, opts: argparse.Namespace) -> dict:
    """The summary of a finished run: held-out ELBO figures and reconstructions, a sample grid,
    and the scores that apply to its data (recognisability, probe, sample quality)."""
    ema = trained.output
    summary: dict = {"model": "hvae", "data": opts.data, "resolution": opts.resolution, "steps": opts.steps,
                     "seed": opts.seed, "parameters": sum(p.numel() for p in ema.parameters()),
                     "train_seconds": round(trained.seconds, 1)}
    if opts.eval_images > 0:
        summary.update(_held_out(ema, opts))
    with torch.no_grad(), seeded(opts.seed):
        n, classes = grid_classes(ema.num_classes, 8)
        eps = {g.name: torch.randn(n, *g.shape) for g in ema.latent_spec}
        save_image_grid(ema.decode(eps, classes), out_dir(opts) / "samples.png", nrow=8)
    if opts.data == "shapes" and shapes_classifier_available():
        summary["recognizability"] = recognizability(ema, n=2000, seed=opts.seed)
    if opts.probe:
        train_x, train_y = real_images(opts.data, opts.resolution, train=True)
        test_x, test_y = real_images(opts.data, opts.resolution, train=False)
        summary["probe_accuracy"] = posterior_probe(ema, train_x, train_y, test_x, test_y)
    if opts.data == "fashion-mnist" and fashion_classifier_available():
        summary["quality"] = sample_quality(ema, n=2000, seed=opts.seed)
    return summary


def _held_out(ema: HierarchicalVAE, opts: argparse.Namespace) -> dict:
    """ELBO figures on held-out images (fresh Shapes, or Fashion-MNIST's test split; a folder has
    no held-out part: its first images), the class head's accuracy for a class-conditional model,
    and ``OUT/reconstructions.png``."""
    held_out, held_classes = real_images(opts.data, opts.resolution, train=False, n=opts.eval_images, seed=opts.seed)
    conditional = bool(ema.num_classes)
    summary: dict = {"eval_data": {"shapes": "held-out Shapes", "fashion-mnist": "Fashion-MNIST test split"}.get(
        opts.data, f"first {len(held_out)} training images")}
    if conditional:
        with torch.no_grad():
            predicted = ema.class_head(held_out).argmax(1)
        summary["encoder_class_accuracy"] = float((predicted == held_classes).float().mean())
    labels = held_classes if conditional else None
    summary.update(evaluate(ema, held_out, seed=opts.seed, classes=labels))
    with torch.no_grad():
        recon = ema.reconstruct(held_out[:32], None if labels is None else labels[:32])
    save_image_grid(torch.cat([held_out[:32], recon]), out_dir(opts) / "reconstructions.png", nrow=8)
    return summary


TRAINER = Trainer(
    "hvae", add_arguments, train_hvae,
    help="hierarchical VAE (NVAE-like top-down groups; Skip-VAE and VMI-VAE options)",
    defaults={"steps": 14000, "batch_size": 32, "lr": 2e-3, "threads": 1},
)
