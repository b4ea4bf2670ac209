"""Pictures for the README, from the shipped generators.

    python scripts/make_docs_images.py            # writes docs/shapes_samples.png
    python scripts/make_docs_images.py --generator builtin:shapes-stylegan --out docs/stylegan_samples.png
    python scripts/make_docs_images.py --generator builtin:fashion --out docs/fashion_samples.png

Rows: real images (held-out Shapes, or the Fashion-MNIST test split for a grey generator); their
reconstructions by the generator (a VAE's only); then prior samples at its default temperature
(``decode_views`` anchors, seed 0, with a class per anchor for a class-conditional model); then
rows where one latent group is resampled and the others kept (z1, z2, z3 / w0 … w3), each row
sharing one anchor (and its class), the anchor first.
"""

from __future__ import annotations

import argparse

import torch

from mlvgm_data import Resample, ViewPolicy, load_generator
from mlvgm_data.apps.viz import save_image_grid
from mlvgm_data.generators.base import decode_views


def real_images(gen: torch.nn.Module, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``k`` real images of the generator's data, and their classes when it is class-conditional."""
    channels, res = gen.image_shape[0], gen.image_shape[-1]
    if channels == 1:
        from mlvgm_data.data import FashionMNIST

        return FashionMNIST(train=False, pad_to=res).batch(range(k))[0], None
    from mlvgm_data.data import Shapes

    real, labels, _ = Shapes(k, res, seed=1).render(range(k))
    return real, labels if gen.num_classes else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="builtin:shapes")
    p.add_argument("--out", default="docs/shapes_samples.png")
    p.add_argument("--per-row", type=int, default=12)
    p.add_argument("--sample-rows", type=int, default=4)
    p.add_argument("--anchor-seed", type=int, default=0, help="seed of the anchor of the resampling rows")
    args = p.parse_args()
    gen = load_generator(args.generator)
    k = args.per_row
    real, classes = real_images(gen, k)
    rows = [real]
    with torch.no_grad():
        if hasattr(gen, "reconstruct"):  # a VAE; a GAN has no encoder
            rows.append(gen.reconstruct(real) if classes is None else gen.reconstruct(real, classes))
        rows.append(decode_views(gen, ViewPolicy({}), k * args.sample_rows, 1, seed=0, step=0).images[0])
        for g in gen.latent_spec.names:
            views = decode_views(gen, ViewPolicy({g: Resample()}), 1, k, seed=args.anchor_seed, step=1)
            rows.append(views.images[:, 0])
    save_image_grid(torch.cat(rows), args.out, nrow=k)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
