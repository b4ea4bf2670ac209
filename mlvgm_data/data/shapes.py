"""Shapes: a procedural RGB image dataset with known factors (no files, no download).

Each image is one coloured shape on a tinted background, rendered from eight factors drawn
per index with the counter-based uniforms of :func:`mlvgm_data.ops.uniform` (domain 3), so item
``i`` is the same whatever batch it is rendered in. A whole batch is rendered at once from
signed-distance functions with analytic anti-aliasing.

Factors (the columns of the ``factors`` tensor, in :data:`FACTOR_NAMES` order):

=============  =====================  ==================================================
name           range                  meaning
=============  =====================  ==================================================
``class``      {0, …, 5}              index into :data:`SHAPE_NAMES` (also returned alone)
``hue``        [0, 0.85)              foreground HSV hue (saturation 0.85, value 0.95)
``scale``      [0, 1)                 size: outer radius 0.34 + 0.31·scale (image half-width 1)
``x``, ``y``   (-1, 1)                centre, as a fraction of the room left by the shape
``rotation``   [0, 60)                angle in degrees
``bg_hue``     [0, 0.85)              background HSV hue (saturation 0.35)
``bg_value``   [0, 1)                 background brightness 0.08 + 0.37·bg_value
=============  =====================  ==================================================

Every continuous factor is an interval, not a circle: hues stop short of wrapping back to red
and 60° is less than the smallest symmetry angle of the non-round shapes (72° for the star), so
each factor can be regressed as a plain number and each image has one set of factors (up to the
rotation of a circle or ring).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from .. import ops

SHAPE_NAMES = ("circle", "square", "triangle", "star", "cross", "ring")
FACTOR_NAMES = ("class", "hue", "scale", "x", "y", "rotation", "bg_hue", "bg_value")
num_classes = len(SHAPE_NAMES)

HUE_RANGE = 0.85
ROTATION_RANGE = 60.0
_MAX_INDEX = 1 << 32


def _hsv_to_rgb(h: torch.Tensor, s: float, v: torch.Tensor) -> torch.Tensor:
    """HSV → RGB for ``[N]`` tensors; returns ``[N, 3]``."""
    k = torch.tensor([5.0, 3.0, 1.0], device=h.device)
    kk = torch.remainder(k[None, :] + h[:, None] * 6.0, 6.0)
    return v[:, None] - v[:, None] * s * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)


def _sd_star(px: torch.Tensor, py: torch.Tensor, r: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Exact signed distance to a regular ``n``-gon (``m = 2``) or ``n``-pointed star (``m > 2``)
    of outer radius ``r`` (Inigo Quilez's sdStar), broadcasting over per-sample parameters."""
    an = math.pi / n
    en = math.pi / m
    acs_x, acs_y = torch.cos(an), torch.sin(an)
    ecs_x, ecs_y = torch.cos(en), torch.sin(en)
    bn = torch.remainder(torch.atan2(px, py), 2.0 * an) - an
    length = torch.sqrt(px * px + py * py)
    qx = length * torch.cos(bn) - r * acs_x
    qy = length * torch.abs(torch.sin(bn)) - r * acs_y
    t = torch.clamp(-(qx * ecs_x + qy * ecs_y), min=torch.zeros_like(r), max=r * acs_y / ecs_y)
    qx = qx + ecs_x * t
    qy = qy + ecs_y * t
    return torch.sqrt(qx * qx + qy * qy) * torch.sign(qx)


def _sd_cross(px: torch.Tensor, py: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance to a plus sign of arm half-length ``r`` and arm half-width ``0.34·r``."""
    bx, by = r, 0.34 * r
    ax, ay = torch.abs(px), torch.abs(py)
    swap = ay > ax
    ax, ay = torch.where(swap, ay, ax), torch.where(swap, ax, ay)
    qx, qy = ax - bx, ay - by
    k = torch.maximum(qx, qy)
    wx = torch.where(k > 0, qx, by - ax)
    wy = torch.where(k > 0, qy, -k)
    return torch.sign(k) * torch.sqrt(wx.clamp(min=0) ** 2 + wy.clamp(min=0) ** 2)


def factors_to_dict(factors: torch.Tensor) -> dict[str, torch.Tensor]:
    """``[..., 8]`` factor tensor → ``{name: [...]}`` (``class`` as int64)."""
    out = {name: factors[..., i] for i, name in enumerate(FACTOR_NAMES)}
    out["class"] = out["class"].long()
    return out


def sample_factors(indices: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The ``[N, 8]`` factors (see the module docstring) of the given indices."""
    u = ops.uniform(len(indices), len(FACTOR_NAMES), seed, 0, domain=ops.DOMAIN_DATA, sample_ids=indices)
    f = u.clone()
    f[:, 0] = torch.clamp(torch.floor(u[:, 0] * num_classes), max=num_classes - 1)
    f[:, 1] = HUE_RANGE * u[:, 1]
    f[:, 3:5] = 2.0 * u[:, 3:5] - 1.0
    f[:, 5] = ROTATION_RANGE * u[:, 5]
    f[:, 6] = HUE_RANGE * u[:, 6]
    return f


def render_factors(factors: torch.Tensor, resolution: int = 32) -> torch.Tensor:
    """Renders ``[N, 8]`` factors as ``[N, 3, R, R]`` float images in [0, 1]."""
    if factors.dim() != 2 or factors.shape[1] != len(FACTOR_NAMES):
        raise ValueError(f"factors must be [N, {len(FACTOR_NAMES)}], got {list(factors.shape)}")
    dev = factors.device
    f = factors_to_dict(factors.float())
    n = factors.shape[0]
    col = lambda t: t.view(n, 1, 1)  # noqa: E731
    r = 0.34 + 0.31 * f["scale"]
    room = 0.97 - r
    cx, cy = f["x"] * room, f["y"] * room
    theta = f["rotation"] * (math.pi / 180.0)
    # Pixel centres in [-1, 1] (y down), moved into each shape's rotated frame.
    g = (torch.arange(resolution, device=dev, dtype=torch.float32) + 0.5) * (2.0 / resolution) - 1.0
    dx = g.view(1, 1, -1) - col(cx)
    dy = g.view(1, -1, 1) - col(cy)
    c, s = col(torch.cos(theta)), col(torch.sin(theta))
    px, py = c * dx + s * dy, -s * dx + c * dy
    cls = f["class"]
    rr = col(r)
    # Polygon/star parameters per class (entries for circle, cross and ring are never used);
    # the outer radii are set so every class covers a similar area.
    poly_n = torch.tensor([4.0, 4.0, 3.0, 5.0, 4.0, 4.0], device=dev)[cls]
    poly_m = torch.tensor([2.0, 2.0, 2.0, 3.2, 2.0, 2.0], device=dev)[cls]
    poly_r = torch.tensor([1.0, 0.92, 1.1, 1.1, 1.0, 1.0], device=dev)[cls]
    d_poly = _sd_star(px, py, rr * col(poly_r), col(poly_n), col(poly_m))
    radial = torch.sqrt(px * px + py * py)
    d_circle = radial - 0.85 * rr
    d_ring = torch.abs(radial - 0.68 * rr) - 0.28 * rr
    d_cross = _sd_cross(px, py, rr)
    c4 = col(cls)
    d = torch.where(c4 == 0, d_circle, torch.where(c4 == 4, d_cross, torch.where(c4 == 5, d_ring, d_poly)))
    # Coverage of a pixel by the shape: a linear ramp one pixel wide across the edge.
    alpha = torch.clamp(0.5 - d * (resolution / 2.0), 0.0, 1.0).unsqueeze(1)
    fg = _hsv_to_rgb(f["hue"], 0.85, torch.full_like(f["hue"], 0.95))
    bg = _hsv_to_rgb(f["bg_hue"], 0.35, 0.08 + 0.37 * f["bg_value"])
    img = bg.view(n, 3, 1, 1) + (fg - bg).view(n, 3, 1, 1) * alpha
    return img.clamp_(0.0, 1.0)


class Shapes(Dataset):
    """``length`` procedural shape images at ``resolution``² (32 or 64), deterministic per index.

    ``ds[i]`` → ``(image [3, R, R] float in [0, 1], class int, factors [8] float)``;
    ``ds.render(indices)`` renders a batch at once → ``(images [N, 3, R, R], classes [N] int64,
    factors [N, 8])``. The factor columns are :data:`FACTOR_NAMES` (see the module docstring);
    different ``seed`` values give independent datasets.
    """

    def __init__(self, length: int, resolution: int = 32, seed: int = 0) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= _MAX_INDEX:
            raise ValueError(f"Shapes.length must be an int in [1, 2**32], got {length!r}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= 512:
            raise ValueError(f"Shapes.resolution must be an int in [8, 512], got {resolution!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _MAX_INDEX:
            raise ValueError(f"Shapes.seed must be an int in [0, 2**32), got {seed!r}")
        self.length = length
        self.resolution = resolution
        self.seed = seed

    num_classes = num_classes
    classes = list(SHAPE_NAMES)

    def __len__(self) -> int:
        return self.length

    def _indices(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.length):
            raise IndexError(f"Shapes indices must be in [0, {self.length}), "
                             f"got {idx.min().item()}..{idx.max().item()}")
        return idx

    def factors(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """The ``[N, 8]`` factors of ``indices`` without rendering."""
        return sample_factors(self._indices(indices), self.seed)

    def render(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Renders ``indices`` in one batched pass → ``(images, classes, factors)``."""
        f = self.factors(indices)
        return render_factors(f, self.resolution), f[:, 0].long(), f

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        if index < 0:
            index += self.length
        images, classes, factors = self.render([index])
        return images[0], int(classes[0]), factors[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
        images, classes, factors = self.render(indices)
        return [(images[k], int(classes[k]), factors[k]) for k in range(len(indices))]


def export_jpeg(root: str | Path, length: int, resolution: int = 32, seed: int = 0, quality: int = 95,
                batch_size: int = 256) -> Path:
    """Writes ``Shapes(length, resolution, seed)`` as a torchvision-style ImageFolder:
    ``root/<class name>/<index>.jpg`` (zero-padded index). Returns ``root``."""
    from PIL import Image
    from tqdm import tqdm

    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    root = Path(root)
    ds = Shapes(length, resolution, seed)
    for name in SHAPE_NAMES:
        (root / name).mkdir(parents=True, exist_ok=True)
    width = len(str(length - 1))
    with tqdm(total=length, desc="export shapes", unit="img") as bar:
        for start in range(0, length, batch_size):
            idx = torch.arange(start, min(start + batch_size, length))
            images, classes, _ = ds.render(idx)
            pixels = (images * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
            for k, i in enumerate(idx.tolist()):
                path = root / SHAPE_NAMES[int(classes[k])] / f"{i:0{width}d}.jpg"
                Image.fromarray(pixels[k]).save(path, quality=quality)
            bar.update(len(idx))
    return root
