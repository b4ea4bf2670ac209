"""The ops' reference arithmetic in plain PyTorch: Philox4x32-10 in int64 tensor ops and the
truncated normals by inverse CDF, mirroring ``csrc/philox.h`` and ``csrc/resample.h`` step for
step, so that the tests pin the compiled kernels' exact bits (:func:`mlvgm_data.ops.resample_reference`
runs it)."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ._op_anchors import GivenAnchors
from .latents import LatentSpec
from .policy import Keep, Resample, ViewPolicy

DOMAIN_ANCHOR = 0
DOMAIN_VIEW = 1
DOMAIN_AUGMENT = 2
DOMAIN_DATA = 3
DOMAIN_CLASS = 4
"""Counter domains: anchors, view noise, augmentation parameters, procedural data (Shapes),
class labels of class-conditional generators; 5–15 are free for users."""

_MASK = 0xFFFFFFFF

def erf_c(trunc: float | None) -> float:
    """Truncation at ±t by inverse CDF scales the uniform by c = erf(t / √2)."""
    return 1.0 if trunc is None else math.erf(trunc / math.sqrt(2.0))




_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of the 64-bit product a·b, in int64 without overflow."""
    p1 = a * (b & 0xFFFF)  # < 2**48
    p2 = a * (b >> 16)  # < 2**48
    s = p1 + ((p2 & 0xFFFF) << 16)
    return (p2 >> 16) + (s >> 32), s & _MASK


def philox4x32_10(
    counter: Sequence[torch.Tensor | int], key: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32-10 on int64 tensors holding uint32 words (broadcasting)."""
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) for c in counter)
    k0, k1 = key
    for _ in range(10):
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


def row_words(
    batch_size: int, n: int, seed: int, stream: int, step: int, domain: int, view: int, slot: int,
    sample_offset: int, sample_ids: torch.Tensor | None, device: torch.device,
) -> torch.Tensor:
    """``[B, n]`` Philox words: element e of a row is word e // nb of block e % nb."""
    nb = (n + 3) // 4
    blocks = torch.arange(nb, dtype=torch.int64, device=device)
    if sample_ids is None:
        samples = torch.arange(sample_offset, sample_offset + batch_size, dtype=torch.int64, device=device)
    else:
        samples = sample_ids.to(device=device, dtype=torch.int64)
    w3 = (domain << 28) | ((view & 0xFF) << 20) | (slot & 0xFFFFF)
    words = philox4x32_10((blocks[None, :], samples[:, None], step, w3), (seed, stream))
    return torch.stack(words, dim=1).reshape(batch_size, 4 * nb)[:, :n]


def _f32(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


_TWO_M24 = _f32(5.9604644775390625e-08)


def unit_uniform(words: torch.Tensor) -> torch.Tensor:
    return (2 * (words >> 9) + 1).to(torch.float32) * _TWO_M24.to(words.device)


def _signed_uniform(words: torch.Tensor) -> torch.Tensor:
    return (2 * (words >> 8) + 1 - (1 << 24)).to(torch.float32) * _TWO_M24.to(words.device)


_LOG_POLY = [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
             1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1]
_ERFINV_CENTRAL = [2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                   -0.00125372503, -0.00417768164, 0.246640727, 1.50140941]
_ERFINV_TAIL = [-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                -0.0076224613, 0.00943887047, 1.00167406, 2.83297682]


def _log_positive(x: torch.Tensor) -> torch.Tensor:
    f = lambda v: _f32(v).to(x.device)  # noqa: E731
    bits = x.view(torch.int32)
    e = (((bits >> 23) & 0xFF) - 126).to(torch.float32)
    m = ((bits & 0x007FFFFF) | 0x3F000000).view(torch.float32)
    low = m < f(0.707106781186547524)
    e = torch.where(low, e - f(1.0), e)
    m = torch.where(low, (m + m) - f(1.0), m - f(1.0))
    z = m * m
    y = f(_LOG_POLY[0])
    for c in _LOG_POLY[1:]:
        y = y * m + f(c)
    y = (y * m) * z
    y = y + f(-2.12194440e-4) * e
    y = y + f(-0.5) * z
    return (m + y) + f(0.693359375) * e


def _erfinv(x: torch.Tensor) -> torch.Tensor:
    f = lambda v: _f32(v).to(x.device)  # noqa: E731
    w = -_log_positive((f(1.0) - x) * (f(1.0) + x))
    a = w - f(2.5)
    p = f(_ERFINV_CENTRAL[0])
    for c in _ERFINV_CENTRAL[1:]:
        p = f(c) + p * a
    # torch.sqrt of float32 on the CPU is not always correctly rounded; via float64 it is.
    b = torch.sqrt(w.double()).float() - f(3.0)
    q = f(_ERFINV_TAIL[0])
    for c in _ERFINV_TAIL[1:]:
        q = f(c) + q * b
    return torch.where(w < f(5.0), p, q) * x


def truncated_normal(words: torch.Tensor, c: float) -> torch.Tensor:
    v = _signed_uniform(words)
    return _f32(1.41421356237309505).to(v.device) * _erfinv(_f32(c).to(v.device) * v)


def resample_reference_into(
    views: dict[str, torch.Tensor], spec: LatentSpec, policy: ViewPolicy, batch_size: int, num_views: int,
    seed: int, step: int, stream: int, sample_offset: int, sample_ids: torch.Tensor | None,
    given: GivenAnchors | None,
) -> None:
    """Fills ``views`` (:func:`_as_views` of the output buffer) with the reference arithmetic."""
    dev = views[spec.groups[0].name].device
    c_anchor = erf_c(policy.anchor_trunc)
    for i, g in enumerate(spec):
        rule = policy.rule(g.name)
        common = (batch_size, g.numel, seed, stream, step)
        at = -1 if given is None else given.index[i]  # its given anchor, -1: drawn
        anchor = given.tensors[at].view(batch_size, g.numel) if at >= 0 else truncated_normal(
            row_words(*common, DOMAIN_ANCHOR, 0, spec.anchor_slots[i], sample_offset, sample_ids, dev), c_anchor)
        dst = views[g.name].view(num_views, batch_size, g.numel)
        for v in range(num_views):
            if (policy.include_anchor and v == 0) or isinstance(rule, Keep):
                dst[v] = anchor
                continue
            z = truncated_normal(
                row_words(*common, DOMAIN_VIEW, v, i, sample_offset, sample_ids, dev), erf_c(rule.trunc)
            )
            if isinstance(rule, Resample):
                dst[v] = z
            else:
                dst[v] = anchor + (_f32(rule.mu).to(dev) + _f32(rule.sigma).to(dev) * z)
