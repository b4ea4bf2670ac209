"""Helpers shared by the test modules (test modules do not import each other): small generators
(importable, so DataLoader workers can unpickle them), stand-ins with NVlabs StyleGAN's signatures,
tiny Fashion-MNIST files, a tiny saved HVAE, and the buffers of the host-emulated CUDA kernels."""

from __future__ import annotations

import gc
import gzip
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlvgm_data import LatentGroup, LatentSpec
from mlvgm_data.data import fashion_mnist as fm
from mlvgm_data.generators import save_generator
from mlvgm_data.generators.base import MLVGM
from mlvgm_data.models.hvae import build, make_config


class TinyGenerator(MLVGM):
    """Two groups (a vector and a spatial map) → 3×16×16 images in [0, 1]."""

    def __init__(self, num_classes: int | None = None, size: int = 16) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("top", (8,)), LatentGroup("map", (4, 4, 4))])
        self.image_shape = (3, size, size)
        self.num_classes = num_classes
        g = torch.Generator().manual_seed(0)
        self.lin = nn.Linear(8, 3 * 4 * 4)
        self.conv = nn.Conv2d(4, 3, 3, padding=1)
        self.embed = nn.Embedding(num_classes or 1, 3)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.eval()  # a frozen generator, as load_generator returns them

    def _decode(self, latents, classes):
        x = self.lin(latents["top"]).view(-1, 3, 4, 4) + self.conv(latents["map"])
        if classes is not None:
            x = x + self.embed(classes)[:, :, None, None]
        size = self.image_shape[-1]
        return torch.sigmoid(nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))


class BrokenGenerator(TinyGenerator):
    """Fails in a chosen way from a chosen call on (to test error propagation)."""

    def __init__(self, mode: str, after: int = 0) -> None:
        super().__init__()
        self.mode, self.after, self.calls = mode, after, 0

    def _decode(self, latents, classes):
        self.calls += 1
        out = super()._decode(latents, classes)
        if self.calls <= self.after:
            return out
        if self.mode == "raise":
            raise ArithmeticError("decoder exploded")
        if self.mode == "nan":
            return out * float("nan")
        if self.mode == "shape":
            return out[:, :, :8]
        if self.mode == "interrupt":
            raise KeyboardInterrupt
        return out


class OneArgGenerator(nn.Module):
    """The documented protocol at its plainest: ``latent_spec``, ``image_shape`` and
    ``decode(latents)`` with no ``classes`` argument (not an MLVGM subclass)."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("a", (3,)), LatentGroup("b", (3,))])
        self.image_shape = (3, 8, 8)
        self.scale = nn.Parameter(torch.tensor(0.2))
        self.eval()

    def decode(self, latents):
        x = latents["a"] + 0.5 * latents["b"]
        return torch.sigmoid(self.scale * x)[:, :, None, None].expand(-1, 3, 8, 8).contiguous()


class PointwiseGenerator(MLVGM):
    """A generator whose decode is per sample by construction (elementwise IEEE operations only,
    no matmul, no transcendental function): a sample's image does not depend on its batch, so the
    pipe's own exactness (latents, classes, augmentation) can be tested bit for bit."""

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("top", (3,)), LatentGroup("map", (1, 8, 8))])
        self.image_shape = (3, 8, 8)
        self.num_classes = num_classes
        self.eval()

    def _decode(self, latents, classes):
        top = latents["top"][:, :, None, None]
        x = 0.5 + 0.1 * top + 0.05 * latents["map"]
        if classes is not None:
            x = x + 0.01 * classes.to(x.dtype)[:, None, None, None]
        return x.clamp(0.0, 1.0)


class BatchNormGenerator(TinyGenerator):
    """TinyGenerator with a batch norm on its output, in train mode (as BigBiGAN ports come)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(3)
        self.train()

    def _decode(self, latents, classes):
        return torch.sigmoid(self.norm(torch.logit(super()._decode(latents, classes), eps=1e-6)))


class CountingGenerator(TinyGenerator):
    """Counts its decodes in shared memory (DataLoader workers included)."""

    def __init__(self) -> None:
        super().__init__()
        self.decodes = torch.zeros(1, dtype=torch.int64).share_memory_()

    def _decode(self, latents, classes):
        self.decodes += 1
        return super()._decode(latents, classes)


def producer_threads() -> list[threading.Thread]:
    # Loops like torchdata's Loader hold their iterator in a reference cycle: collect those first.
    gc.collect()
    return [t for t in threading.enumerate() if t.name == "mlvgm-data-producer"]


def producer_threads_after_gc(deadline_s: float = 30.0) -> list[threading.Thread]:
    """The producer threads left once a dropped iterator's producer has reached its step boundary
    (garbage collection tells it to stop without waiting for it; the deadline only guards a hang)."""
    deadline = time.monotonic() + deadline_s
    while (left := producer_threads()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


# --- NVlabs StyleGAN2/3 stand-ins (test_adapters.py, the README's StyleGAN block) ----------------


class NVMapping(nn.Module):
    """NVlabs MappingNetwork signature: (z, c, truncation_psi, truncation_cutoff, update_emas)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, with_w_avg: bool = True) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.fc = nn.Linear(z_dim + c_dim, w_dim)
        if with_w_avg:
            self.register_buffer("w_avg", torch.linspace(-0.5, 0.5, w_dim))
        self.calls: list[dict] = []

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        self.calls.append({"n": z.shape[0], "truncation_psi": truncation_psi, "truncation_cutoff": truncation_cutoff})
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        if self.c_dim:
            assert c.shape == (z.shape[0], self.c_dim)
            x = torch.cat([x, c], dim=1)
        ws = torch.tanh(self.fc(x)).unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cut] = ws[:, :cut] * truncation_psi
        return ws


class NVSynthesis(nn.Module):
    """NVlabs SynthesisNetwork signature: (ws, noise_mode, force_fp32); every layer matters."""

    def __init__(self, w_dim: int, num_ws: int, res: int) -> None:
        super().__init__()
        self.res = res
        self.weight = nn.Parameter(torch.randn(num_ws, w_dim, 3 * res * res) * 0.3)
        self.register_buffer("const_noise", torch.randn(3 * res * res) * 0.05)

    def forward(self, ws, noise_mode="random", force_fp32=False):
        x = torch.einsum("nld,ldp->np", ws, self.weight)
        if noise_mode == "const":
            x = x + self.const_noise
        elif noise_mode == "random":
            x = x + torch.randn_like(x) * 0.05
        return torch.tanh(x).view(-1, 3, self.res, self.res)


class NVGenerator(nn.Module):
    """NVlabs Generator: z_dim, c_dim, w_dim, num_ws, img_resolution, mapping and synthesis."""

    def __init__(self, z_dim=12, c_dim=0, w_dim=16, num_ws=8, res=8, with_w_avg=True) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.img_resolution, self.img_channels = res, 3
        self.mapping = NVMapping(z_dim, c_dim, w_dim, num_ws, with_w_avg)
        self.synthesis = NVSynthesis(w_dim, num_ws, res)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, noise_mode="const"):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


# --- tiny files: Fashion-MNIST IDX splits and a saved HVAE ---------------------------------------


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file's bytes (uint8 data; ``magic`` overrides the header's magic number)."""
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def write_split(folder: Path, n: int = 5, train: bool = True, gz: bool = True,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Writes a random Fashion-MNIST split of ``n`` images under its real file names; returns it."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in zip(fm.FILES[train], (images, labels)):
        data = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return images, labels


def tiny_generator(tmp_path: Path, channels: int) -> str:
    """A tiny untrained HVAE with ``channels`` image channels saved under ``tmp_path``; its path."""
    config = make_config({"image_channels": channels, "channels": [16, 8, 8], "enc_channels": [8, 8, 8, 8]})
    torch.manual_seed(0)
    path = tmp_path / f"hvae{channels}"
    save_generator(build(config), path, "hvae", config,
                   {"policy": {"rules": {"z1": {"kind": "perturb", "sigma": 0.5}}}})
    return str(path)


# --- host emulation of the CUDA kernels (the ``emulated`` fixture in conftest.py) ----------------

CSRC = Path(__file__).resolve().parents[1] / "csrc"
CXX = os.environ.get("CXX", "c++")
SMALL_GRID = (3, 32)  # blocks, threads per block
LAUNCHER_GRID = (0, 0)  # grid_for's grid and kThreads
MAX_GROUPS_PER_LAUNCH = 64  # kMaxGroupsPerLaunch of csrc/cuda/resample_cuda.h (the fixture checks)
SENTINEL = 0x7FC0DEAD  # a NaN no kernel writes
GUARD = 37  # sentinel floats on each side of the output


def guarded(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A sentinel-filled buffer and its interior of n floats."""
    buf = torch.full((n + 2 * GUARD,), SENTINEL, dtype=torch.int32).view(torch.float32)
    return buf, buf[GUARD : GUARD + n]


def assert_bits(buf: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """``buf``'s interior holds ``want`` bit for bit and its guard zones are untouched."""
    bits = buf.view(torch.int32)
    assert bool((bits[:GUARD] == SENTINEL).all() and (bits[-GUARD:] == SENTINEL).all()), f"{what}: store out of bounds"
    got = bits[GUARD:-GUARD]
    wrong = (got != want.reshape(-1).view(torch.int32)).nonzero().flatten()
    assert wrong.numel() == 0, (f"{what}: {wrong.numel()} of {got.numel()} floats differ, first at {int(wrong[0])}"
                                f" ({'never written' if int(got[wrong[0]]) == SENTINEL else 'wrong value'})")


class InvertibleGenerator(MLVGM):
    """``image = sigmoid(coarse + fine)`` (a 3-vector broadcast over a 3×4×4 map) with its exact
    inverse ``invert`` (logit, then the spatial mean as ``coarse``): real anchors whose
    reconstruction is the image itself, to float precision. ``num_classes`` adds a class offset."""

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("coarse", (3,)), LatentGroup("fine", (3, 4, 4))])
        self.image_shape = (3, 4, 4)
        self.num_classes = num_classes
        self.eval()

    def _offset(self, classes):
        return 0.0 if classes is None else 0.1 * classes.to(torch.float32)[:, None, None, None]

    def _decode(self, latents, classes):
        return torch.sigmoid(latents["coarse"][:, :, None, None] + latents["fine"] + self._offset(classes))

    def invert(self, images, classes=None):
        y = torch.logit(images.clamp(1e-6, 1 - 1e-6)) - self._offset(classes)
        coarse = y.mean((2, 3))
        return {"coarse": coarse, "fine": y - coarse[:, :, None, None]}


def labelled_images(n: int, seed: int = 0, shape: tuple[int, ...] = (3, 4, 4)):
    """A TensorDataset of ``n`` distinct images in (0.05, 0.95) whose label is their index."""
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(seed)
    return TensorDataset(0.05 + 0.9 * torch.rand(n, *shape, generator=g), torch.arange(n))
