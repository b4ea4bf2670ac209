"""A user's folder of images (any size, any nesting) as a dataset of square model-sized images."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

MAX_PIXELS = 50_000_000
"""Larger images are refused before they are decoded (a 1 MB PNG can unpack to gigabytes)."""
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def find_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive, by extension, case-insensitive), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_image(path: Path, resolution: int) -> torch.Tensor:
    """Reads ``path`` as RGB, resizes its shorter side to ``resolution`` and centre-crops it →
    ``[3, R, R]`` uint8."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size  # from the header: nothing is decoded yet
            if w * h > MAX_PIXELS:
                raise ValueError(f"image {path} is {w}x{h} pixels, more than the {MAX_PIXELS:,} this reader decodes")
            im = im.convert("RGB")
            k = resolution / min(w, h)
            nw, nh = max(resolution, round(w * k)), max(resolution, round(h * k))
            im = im.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)
            left, top = (nw - resolution) // 2, (nh - resolution) // 2
            im = im.crop((left, top, left + resolution, top + resolution))
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:  # PIL's errors for broken or huge files
        raise ValueError(f"cannot read image {path}: {e}") from None
    return data.view(resolution, resolution, 3).permute(2, 0, 1).contiguous()


class FolderImages(Dataset):
    """Every image under ``root`` resized (shorter side) and centre-cropped to ``resolution``².

    ``ds[i]`` → ``[3, R, R]`` float in [0, 1]; ``ds.load(indices)`` → a ``[N, 3, R, R]`` batch.
    Files are found recursively by extension (:data:`IMAGE_EXTENSIONS`) and ordered by path.
    """

    def __init__(self, root: str | Path, resolution: int = 32) -> None:
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= 1024:
            raise ValueError(f"FolderImages.resolution must be an int in [8, 1024], got {resolution!r}")
        self.root = Path(root)
        self.resolution = resolution
        self.paths = find_images(self.root)
        if not self.paths:
            raise ValueError(
                f"image folder {self.root} contains no images (looked recursively for "
                f"{', '.join(IMAGE_EXTENSIONS)})"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def load_uint8(self, index: int) -> torch.Tensor:
        return load_image(self.paths[index], self.resolution)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.load_uint8(index).float().div_(255.0)

    def load(self, indices: torch.Tensor | list[int]) -> torch.Tensor:
        """A ``[N, 3, R, R]`` float batch of the given indices."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).tolist()
        return torch.stack([self.load_uint8(i) for i in idx]).float().div_(255.0)
