"""Fashion-MNIST (Zalando; 60,000 train / 10,000 test, 28×28 grey, 10 classes) from its standard
IDX files, read with numpy. Nothing is downloaded.

The four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each gzipped or not) are looked for, in this order, in:

1. ``root`` when given (the folder itself, then its torchvision-style ``FashionMNIST/raw``); an
   explicit root that lacks the files is an error, not a reason to read other files;
2. ``$MLVGM_DATA`` (the same two forms);
3. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package).

The IDX format: a big-endian magic number (two zero bytes, the element type, the number of
dimensions; 2051 for the uint8 image tensor, 2049 for the uint8 label vector), one big-endian
int32 per dimension, then the elements.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_PATH = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "MLVGM_DATA"
SIZE = 28
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
HOW_TO_GET = ("get them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu: installs them under "
              f"{DEBIAN_PATH}), or put the four IDX files from github.com/zalandoresearch/fashion-mnist "
              f"in a folder and pass root= or set ${ENV_VAR}")


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """The uint8 array in the IDX file ``path`` (gzipped when it ends in ``.gz``); ``magic`` is
    the expected magic number (2051 images, 2049 labels). A wrong magic number, a truncated file or
    trailing bytes raise a ``ValueError`` naming the file."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as e:  # gzip raises these for a truncated or non-gzip file
        raise ValueError(f"{path}: cannot read (corrupt or truncated gzip?): {e}") from None
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: magic number {found} where an IDX {'image' if magic == IMAGES_MAGIC else 'label'} "
                         f"file has {magic} (not an IDX file, or the wrong one)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header ({len(data)} bytes, {header} needed for {ndim} dimensions)")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(f"{path}: {what}: {len(data)} bytes where dimensions {dims} need {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _candidates(root: str | Path | None) -> list[Path]:
    if root is not None:
        bases = [Path(root)]
    else:
        env = os.environ.get(ENV_VAR)
        bases = ([Path(env)] if env else []) + [DEBIAN_PATH]
    out: list[Path] = []
    for base in bases:
        if base == DEBIAN_PATH:
            out.append(base)
        else:
            out += [base, base / "FashionMNIST" / "raw"]
    return out


def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(root: str | Path | None = None, train: bool = True) -> tuple[Path, Path]:
    """The (images, labels) IDX files of a split, by the search order of the module docstring;
    a ``FileNotFoundError`` naming every folder tried and how to get the files when none has them."""
    stems = FILES[bool(train)]
    tried = _candidates(root)
    for folder in tried:
        found = [_file_in(folder, s) for s in stems]
        if all(found):
            return found[0], found[1]  # type: ignore[return-value]
    split = "train" if train else "test (t10k)"
    raise FileNotFoundError(
        f"Fashion-MNIST {split} files ({' and '.join(s + '[.gz]' for s in stems)}) not found in "
        f"{', '.join(str(p) for p in tried)}; {HOW_TO_GET}"
    )


def load_split(root: str | Path | None = None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor, Path]:
    """Reads one split → (images ``[N, 28, 28]`` uint8, labels ``[N]`` int64, the folder read)."""
    image_path, label_path = find_fashion_mnist(root, train)
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC)
    # The magic numbers fixed the dimensions' count (3 and 1); their sizes are checked here.
    if images.shape[1:] != (SIZE, SIZE):
        raise ValueError(f"{image_path}: images of shape {list(images.shape)}, expected [N, {SIZE}, {SIZE}]")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{label_path}: labels of shape {list(labels.shape)} for {images.shape[0]} images")
    if labels.size and int(labels.max()) >= len(CLASS_NAMES):
        raise ValueError(f"{label_path}: label {int(labels.max())} is not a class 0–{len(CLASS_NAMES) - 1}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)), image_path.parent


def pad_images(images: torch.Tensor, pad_to: int | None) -> torch.Tensor:
    """Zero-pads ``[..., 28, 28]`` images to ``[..., pad_to, pad_to]`` (centred: Fashion-MNIST's
    background is 0); ``None`` leaves them as they are."""
    if pad_to is None:
        return images
    if isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < SIZE:
        raise ValueError(f"pad_to must be None or an int >= {SIZE}, got {pad_to!r}")
    lo = (pad_to - SIZE) // 2
    return torch.nn.functional.pad(images, (lo, pad_to - SIZE - lo, lo, pad_to - SIZE - lo))


class FashionMNIST(Dataset):
    """Fashion-MNIST from its IDX files (search order: module docstring).

    ``ds[i]`` → ``(image [1, R, R] float in [0, 1], label)`` with R = 28, or ``pad_to``
    (zero-padded, e.g. 32 for the generators); ``ds.batch(indices)`` → ``(images [N, 1, R, R],
    labels [N] int64)``; ``ds.images`` / ``ds.labels`` hold the whole split (uint8 ``[N, 28, 28]``,
    int64 ``[N]``); ``ds.root`` is the folder the files were read from.
    """

    classes = CLASS_NAMES

    def __init__(self, root: str | Path | None = None, train: bool = True, pad_to: int | None = None) -> None:
        pad_images(torch.zeros(1, SIZE, SIZE), pad_to)  # validates pad_to before reading anything
        self.train = bool(train)
        self.pad_to = pad_to
        self.images, self.labels, self.root = load_split(root, self.train)

    @property
    def resolution(self) -> int:
        return SIZE if self.pad_to is None else self.pad_to

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image = self.images[index].float().div_(255.0)[None]
        return pad_images(image, self.pad_to), int(self.labels[index])

    def batch(self, indices: torch.Tensor | list[int] | range) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [N, 1, R, R] float in [0, 1], labels [N] int64)`` of ``indices``."""
        idx = torch.as_tensor(list(indices) if isinstance(indices, range) else indices, dtype=torch.int64).reshape(-1)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} images")
        images = self.images[idx].float().div_(255.0)[:, None]
        return pad_images(images, self.pad_to), self.labels[idx]


def fashion_mnist_tensors(train: bool = True, root: str | Path | None = None,
                          pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split as tensors: ``(images [N, 1, R, R] float in [0, 1], labels [N] int64)``,
    R = 28 or ``pad_to`` (the real images for a benchmark, a demo or a linear probe)."""
    ds = FashionMNIST(root, train, pad_to)
    return ds.batch(range(len(ds)))
