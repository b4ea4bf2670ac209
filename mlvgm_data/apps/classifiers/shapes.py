"""The Shapes classifier's training and the recognisability score it gives a generator.

``recognizability(generator, n=2000, seed=0)`` decodes ``n`` prior samples (the anchors of
``ops.resample``) and reports the classifier's mean max-softmax confidence and the fraction of
samples given to each class. The shipped weights were made with::

    python -m mlvgm_data.apps.classifiers.shapes --out mlvgm_data/assets/shapes_classifier
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from ...data.shapes import SHAPE_NAMES, Shapes
from ...models.shapes_classifier import CLASSIFIER_STEM, RESOLUTION, ShapesClassifier, classify
from ..train.outputs import save_width_model


def score_images(images: torch.Tensor, classifier: ShapesClassifier | None = None) -> dict:
    """Mean max-softmax confidence and the class histogram of ``images``."""
    probs = classify(images, classifier)
    conf, pred = probs.max(dim=1)
    counts = torch.bincount(pred, minlength=len(SHAPE_NAMES))
    fractions = {name: float(c) / len(images) for name, c in zip(SHAPE_NAMES, counts.tolist())}
    return {
        "n": len(images),
        "mean_confidence": float(conf.mean()),
        "class_counts": dict(zip(SHAPE_NAMES, counts.tolist())),
        "class_fractions": fractions,
        "min_fraction": min(fractions.values()),
        "max_fraction": max(fractions.values()),
    }


@torch.no_grad()
def recognizability(generator: nn.Module, n: int = 2000, seed: int = 0, batch_size: int = 250) -> dict:
    """Scores ``n`` prior samples of ``generator`` (:func:`~mlvgm_data.generators.base.prior_samples`
    with ``seed``): ``{"mean_confidence", "class_fractions", "class_counts", "min_fraction",
    "max_fraction", "n"}``."""
    from ...generators.base import prior_samples

    return score_images(prior_samples(generator, n, seed, batch_size))


def train_classifier(steps: int = 1500, batch_size: int = 128, seed: int = 0, width: int = 16,
                     eval_images: int = 5000) -> tuple[ShapesClassifier, dict]:
    """Trains the classifier on fresh Shapes (dataset seed ``seed``) and measures held-out
    accuracy on ``eval_images`` of ``Shapes(seed=seed + 1)``."""
    from tqdm import tqdm

    data = Shapes(1 << 32, RESOLUTION, seed)
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ShapesClassifier(width)
        optim = torch.optim.Adam(model.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=3e-3, total_steps=steps)
        model.train()
        for step in tqdm(range(steps), desc="train classifier", unit="step"):
            x, y, _ = data.render(torch.arange(step * batch_size, (step + 1) * batch_size))
            loss = F.cross_entropy(model(x), y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
    model.eval()
    held = Shapes(eval_images, RESOLUTION, seed + 1)
    x, y, _ = held.render(range(eval_images))
    probs = classify(x, model)
    acc = float((probs.argmax(1) == y).float().mean())
    return model, {"held_out_accuracy": acc, "held_out_images": eval_images, "steps": steps,
                   "batch_size": batch_size, "seed": seed, "width": width,
                   "held_out_mean_confidence": float(probs.max(1).values.mean()),
                   "train_seconds": round(time.time() - t0, 1)}



def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="train the Shapes classifier used by recognizability()")
    p.add_argument("--out", default=str(CLASSIFIER_STEM), help="output stem (writes STEM.pt and STEM.json)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 makes the result exact)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, meta = train_classifier(args.steps, args.batch_size, args.seed, args.width)
    save_width_model(model, args.out, meta)
    print(json.dumps(meta, indent=2))
    return meta


if __name__ == "__main__":
    main()
