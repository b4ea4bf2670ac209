"""The Fashion-MNIST classifier's training and the sample quality it gives a generator.

``sample_quality(generator, n=10000)`` decodes ``n`` prior samples (the anchors of
``ops.resample``) and reports the classifier's mean max-softmax confidence, the share of samples
given to each class, and the Fréchet distance between the classifier's penultimate features of
the samples and of the real test split (an FID with this classifier in place of Inception);
``quality_floor(n)`` is the same distance between ``n`` real train images and the test split, the
value a perfect generator would reach. The shipped weights were made on the train split only with::

    python -m mlvgm_data.apps.classifiers.fashion train --out mlvgm_data/assets/fashion_classifier

and a generator is scored with ``python -m mlvgm_data.apps.classifiers.fashion score GENERATOR``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..._io import write_text
from ...data.fashion_mnist import CLASS_NAMES, SIZE, FashionMNIST
from ...datasets import GeneratedViews
from ...generators.base import prior_samples
from ...models.fashion_classifier import CLASSIFIER_STEM, FashionClassifier, classify
from ...policy import ViewPolicy
from ..train.outputs import save_width_model


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2(Σ_a Σ_b)^½) between the Gaussians fitted to the rows of
    ``a`` and ``b`` (``[N, D]``, N ≥ 2), in float64; Tr((Σ_a Σ_b)^½) is the sum of the square
    roots of the eigenvalues of the symmetric Σ_a^½ Σ_b Σ_a^½."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError("frechet_distance needs two [N, D] feature sets with N >= 2, "
                         f"got {list(a.shape)} and {list(b.shape)}")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = (vecs * vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


@lru_cache(maxsize=2)
def _real_features(train: bool, n: int) -> torch.Tensor:
    """Features of the first ``n`` images of a split (the train split's first ``n`` of a fixed
    permutation, so a subset is not biased by the file's order)."""
    ds = FashionMNIST(train=train)
    if train:
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n]
    else:
        idx = torch.arange(min(n, len(ds)))
    return classify(ds.batch(idx)[0])[1]


def score_images(images: torch.Tensor, classifier: FashionClassifier | None = None,
                 reference: torch.Tensor | None = None) -> dict:
    """Mean max-softmax confidence and class histogram of ``images``; with ``reference``
    features (``[M, 128]``) also the Fréchet distance to them."""
    probs, feats = classify(images, classifier)
    conf, pred = probs.max(dim=1)
    counts = torch.bincount(pred, minlength=len(CLASS_NAMES))
    fractions = {name: float(c) / len(images) for name, c in zip(CLASS_NAMES, counts.tolist())}
    out = {
        "n": len(images),
        "mean_confidence": float(conf.mean()),
        "class_counts": dict(zip(CLASS_NAMES, counts.tolist())),
        "class_fractions": fractions,
        "min_fraction": min(fractions.values()),
        "max_fraction": max(fractions.values()),
    }
    if reference is not None:
        out["frechet_distance"] = frechet_distance(feats, reference)
    return out


def sample_quality(generator: nn.Module, n: int = 10000, seed: int = 0, frechet: bool = True) -> dict:
    """Scores ``n`` prior samples (:func:`~mlvgm_data.generators.base.prior_samples`): ``mean_confidence``,
    ``class_fractions`` (``min_fraction``, ``max_fraction``), and with ``frechet`` the ``frechet_distance``
    of their features to the 10,000 test images' (needs the Fashion-MNIST files)."""
    reference = _real_features(False, 10000) if frechet else None
    return score_images(prior_samples(generator, n, seed), reference=reference)


def quality_floor(n: int = 10000) -> float:
    """The Fréchet distance between ``n`` real train images (a fixed random subset) and the test
    split: what a generator that draws the real distribution would score with ``n`` samples."""
    return frechet_distance(_real_features(True, n), _real_features(False, 10000))


@torch.no_grad()
def reconstruction_quality(generator: nn.Module, n: int = 2000, policy: ViewPolicy | None = None, seed: int = 0,
                           batch_size: int = 250) -> dict:
    """How well ``generator.invert`` keeps what a real test image is: on its first ``n`` images,
    the pixel error of the reconstructions ``decode(invert(x))`` and how often the classifier
    gives them the image's label (beside its accuracy on the real images); with ``policy``, the
    same for views of the real images under it (the real-anchored pipe's views, unaugmented)."""
    test = FashionMNIST(train=False, pad_to=generator.image_shape[-1])
    count = min(n, len(test))
    data = GeneratedViews(generator, policy or ViewPolicy({}), count, seed=seed, num_views=2,
                          anchors=torch.utils.data.Subset(test, range(count)))
    real_right = recon_right = view_right = 0
    squared, absolute = 0.0, 0.0
    for start in range(0, count, batch_size):
        x, y = test.batch(range(start, min(start + batch_size, count)))
        items = data.__getitems__(range(start, start + len(y)))
        recon = torch.stack([views[0] for views, _ in items])
        view = torch.stack([views[1] for views, _ in items])
        squared += float((recon - x).square().flatten(1).mean(1).sum())
        absolute += float((recon - x).abs().flatten(1).mean(1).sum())
        real_right += int((classify(x)[0].argmax(1) == y).sum())
        recon_right += int((classify(recon)[0].argmax(1) == y).sum())
        view_right += int((classify(view)[0].argmax(1) == y).sum())
    out = {"n": count, "pixel_mse": squared / count, "pixel_rmse": math.sqrt(squared / count),
           "pixel_mae": absolute / count, "real_accuracy": real_right / count,
           "reconstruction_accuracy": recon_right / count}
    if policy is not None:
        out.update(policy=policy.to_dict(), view_accuracy=view_right / count)
    return out


def train_classifier(epochs: int = 6, batch_size: int = 128, seed: int = 0, width: int = 16,
                     root: str | Path | None = None) -> tuple[FashionClassifier, dict]:
    """Trains on the Fashion-MNIST train split (random ±2-pixel shifts and horizontal flips; no
    test image is seen) and measures accuracy on the test split."""
    from tqdm import tqdm

    train, test = FashionMNIST(root, train=True, pad_to=32), FashionMNIST(root, train=False)
    n = len(train)
    steps = epochs * math.ceil(n / batch_size)
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FashionClassifier(width)
        optim = torch.optim.Adam(model.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=3e-3, total_steps=steps)
        model.train()
        bar = tqdm(total=steps, desc="train classifier", unit="step")
        for _ in range(epochs):
            order = torch.randperm(n)
            for i in range(0, n, batch_size):
                x, y = train.batch(order[i:i + batch_size])
                shift = torch.randint(0, 5, (2,)).tolist()  # one shift per batch: a crop of the padded 32²
                x = x[:, :, shift[0]:shift[0] + SIZE, shift[1]:shift[1] + SIZE]
                flip = torch.rand(len(x)) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                loss = F.cross_entropy(model(x), y)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                sched.step()
                bar.update(1)
        bar.close()
    model.eval()
    x, y = test.batch(range(len(test)))
    probs, _ = classify(x, model)
    acc = float((probs.argmax(1) == y).float().mean())
    return model, {"test_accuracy": acc, "test_images": len(test), "epochs": epochs, "steps": steps,
                   "batch_size": batch_size, "seed": seed, "width": width,
                   "test_mean_confidence": float(probs.max(1).values.mean()),
                   "train_seconds": round(time.time() - t0, 1)}



def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="the Fashion-MNIST classifier: train it, or score a generator with it")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on the train split, report test accuracy, save STEM.{pt,json}")
    t.add_argument("--out", default=str(CLASSIFIER_STEM), help="output stem (writes STEM.pt and STEM.json)")
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--width", type=int, default=16)
    s = sub.add_parser("score", help="confidence, class histogram and Fréchet distance of a generator's samples")
    s.add_argument("generator", help="builtin:NAME or PATH")
    s.add_argument("--n", type=int, default=10000, help="samples (default 10000)")
    s.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("reconstruct", help="pixel error and kept labels of a generator's inversions of test images")
    r.add_argument("generator", help="builtin:NAME or PATH (a generator with invert)")
    r.add_argument("--n", type=int, default=2000, help="test images (default 2000)")
    r.add_argument("--policy", default="recommended", help="'recommended' or 'none': views under the policy too")
    r.add_argument("--seed", type=int, default=0)
    for q in (t, s, r):
        q.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 makes the result exact)")
    for q in (s, r):
        q.add_argument("--json", default=None, metavar="PATH", help="also write the result here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "train":
        model, result = train_classifier(args.epochs, args.batch_size, args.seed, args.width)
        save_width_model(model, args.out, result)
    elif args.command == "reconstruct":
        from ...generators import load_generator, recommended_policy

        policy = recommended_policy(args.generator) if args.policy == "recommended" else None
        result = reconstruction_quality(load_generator(args.generator), args.n, policy, args.seed)
        result.update(generator=args.generator, command=(
            f"python -m mlvgm_data.apps.classifiers.fashion reconstruct {args.generator} --n {args.n} "
            f"--policy {args.policy} --seed {args.seed} --threads {args.threads}"))
        if args.json:
            write_text(args.json, json.dumps(result, indent=2, sort_keys=True) + "\n", "--json")
    else:
        from ...generators import load_generator

        result = sample_quality(load_generator(args.generator), args.n, args.seed)
        result.update(generator=args.generator, seed=args.seed, floor=quality_floor(args.n))
        result["frechet_vs_floor"] = result["frechet_distance"] / result["floor"]
        if args.json:
            write_text(args.json, json.dumps(result, indent=2, sort_keys=True) + "\n", "--json")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
