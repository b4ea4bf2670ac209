"""Argument checks shared by the public entry points.

Every check raises ``ValueError`` whose message names the argument, the value given and what
was expected, so that a mistake is answered at the call, before any work is done. Integers may
be Python or NumPy integers (never ``bool``); numbers must be finite.
"""

from __future__ import annotations

import math
import numbers

import torch

U32 = 1 << 32


def check_int(value: object, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high)`` (either bound may be open-ended)."""
    if type(value) is int:  # the common case, without the ABC check's cost (the op checks 6 per call)
        v = value
    elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}")
    else:
        v = int(value)
    if (low is not None and v < low) or (high is not None and v >= high):
        if high is None:
            raise ValueError(f"{name} must be an int >= {low}, got {v}")
        if low is None:
            raise ValueError(f"{name} must be an int < {high}, got {v}")
        raise ValueError(f"{name} must be in [{low}, {high}), got {v}")
    return v


def check_number(value: object, name: str, low: float | None = None, high: float | None = None,
                 *, strict_low: bool = False) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``(low, high]`` with ``strict_low``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    too_low = low is not None and (v <= low if strict_low else v < low)
    if too_low or (high is not None and v > high):
        lo = "" if low is None else f"{'(' if strict_low else '['}{low}, "
        hi = "inf)" if high is None else f"{high}]"
        raise ValueError(f"{name} must be in {lo or '(-inf, '}{hi}, got {value!r}")
    return v


def check_prob(value: object, name: str) -> float:
    """A probability in [0, 1]."""
    return check_number(value, name, 0.0, 1.0)


def check_range(value: object, name: str, low: float, high: float | None = None,
                strict: bool = False) -> tuple[float, float]:
    """A ``(lo, hi)`` pair with ``low <= lo <= hi <= high`` (``low < lo`` with ``strict``)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    lo, hi = (check_number(v, name, low, high) for v in value)
    if lo > hi or (strict and lo <= low):
        raise ValueError(f"{name} must satisfy {low} {'<' if strict else '<='} low <= high, got {value!r}")
    return lo, hi


def check_counter(seed: object, step: object, stream: object) -> tuple[int, int, int]:
    """The three words of a counter-based draw: ints in [0, 2**32)."""
    return tuple(check_int(v, f, 0, U32) for v, f in ((seed, "seed"), (step, "step"), (stream, "stream")))


def check_images(images: object, name: str, rank: int) -> torch.Tensor:
    """A floating-point image tensor of ``rank`` dims with non-empty images, as float32."""
    if not isinstance(images, torch.Tensor) or images.dim() != rank:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a {rank}-d tensor, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point in [0, 1], got {images.dtype} (divide uint8 images by 255)")
    if min(images.shape[-2:]) < 1:
        raise ValueError(f"{name} must have non-empty images, got {list(images.shape)}")
    return images.float()


def check_per_sample(t: object, n: int, name: str, *trailing: int) -> torch.Tensor:
    """A tensor of shape ``[n, *trailing]`` (one row per sample)."""
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n, *trailing):
        got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must have shape {[n, *trailing]}, got {got}")
    return t



def check_device(device: object, name: str = "device") -> torch.device:
    """A ``torch.device`` (or its string) that exists on this machine."""
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"{name} {device!r} is not a device (e.g. 'cpu', 'cuda', 'cuda:1')") from None
    else:
        raise ValueError(f"{name} must be a torch.device or a string such as 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {str(dev)!r}: CUDA is not available here (a CPU build of torch, or no GPU)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {str(dev)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "meta"):
        raise ValueError(f"{name} {str(dev)!r}: only 'cpu' and 'cuda' devices are supported")
    return dev
