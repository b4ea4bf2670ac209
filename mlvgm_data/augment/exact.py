"""Math whose bits depend only on its inputs: the same on every CPU, thread count and batch.

ATen's ``exp``, ``log``, ``cos``, ``sin`` and its reductions take other code paths per CPU
capability (SLEEF vectors, libm scalars for a tensor's tail elements, per-thread partial sums), so
a sample's value could change with the CPU or with its position in the batch. The functions here
are written in basic IEEE operations only (``+ − × ÷``, ``round``, bit shifts), each a separate
torch op, so no path can fuse or reorder them: range reduction plus a Taylor polynomial in
float64 (accurate to far below float32's resolution), and sums in a fixed pairwise order.
"""

from __future__ import annotations

import math

import torch

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k·_LN2_HI is exact (fdlibm's constants)
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_EXP_TERMS = [1.0 / math.factorial(n) for n in range(14)]  # |r| <= ln2/2: the 14th term is < 1e-17
_SIN_TERMS = [(-1.0) ** n / math.factorial(2 * n + 1) for n in range(10)]  # |a| <= π/4
_COS_TERMS = [(-1.0) ** n / math.factorial(2 * n) for n in range(10)]
_TWO_PI = 2.0 * math.pi


def _horner(x: torch.Tensor, coefficients: list[float]) -> torch.Tensor:
    """Σ c_n xⁿ, one multiply and one add per term."""
    p = torch.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        p = p * x + c
    return p


def exp(x: torch.Tensor) -> torch.Tensor:
    """eˣ in float64 (inputs below −700 give e⁻⁷⁰⁰, far below float32's smallest number)."""
    x = x.double().clamp(-700.0, 700.0)
    k = torch.round(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    two_k = ((k.long() + 1023) << 52).view(torch.float64)  # 2**k built from its bits
    return _horner(r, _EXP_TERMS) * two_k


def log(x: torch.Tensor) -> torch.Tensor:
    """ln x for positive finite x, in float64: x = m·2ᵉ with m in [√½, √2), ln m = 2·atanh(s)."""
    x = x.double()
    m, e = torch.frexp(x)  # m in [0.5, 1), exact
    low = m < math.sqrt(0.5)
    m = torch.where(low, m * 2.0, m)
    e = (e - low.to(e.dtype)).double()
    s = (m - 1.0) / (m + 1.0)  # |s| <= 0.1716
    s2 = s * s
    series = _horner(s2, [1.0 / (2 * n + 1) for n in range(12)])
    return (2.0 * s) * series + (e * _LN2_HI + e * _LN2_LO)


def cos_sin_turns(turns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos 2πh, sin 2πh) in float64 for angles ``h`` in turns; exact at whole quarter turns."""
    h = turns.double()
    q = torch.round(h * 4.0)
    a = (h - q * 0.25) * _TWO_PI  # in [−π/4, π/4]
    a2 = a * a
    s = a * _horner(a2, _SIN_TERMS)
    c = _horner(a2, _COS_TERMS)
    quadrant = q.long().remainder(4)
    cos = torch.where(quadrant == 0, c, torch.where(quadrant == 1, -s, torch.where(quadrant == 2, -c, s)))
    sin = torch.where(quadrant == 0, s, torch.where(quadrant == 1, c, torch.where(quadrant == 2, -s, -c)))
    return cos, sin


def log_scalar(x: float) -> float:
    """:func:`log` of one Python number (libm's ``log`` may differ between CPUs in the last bit)."""
    return float(log(torch.tensor([x], dtype=torch.float64))[0])


def tree_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last dimension in a fixed pairwise order (zero-padded to a power of two)."""
    n = x.shape[-1]
    width = 1 << max(n - 1, 0).bit_length()
    if width != n:
        x = torch.nn.functional.pad(x, (0, width - n))
    while width > 1:
        width //= 2
        x = x[..., :width] + x[..., width:]
    return x[..., 0]


def ordered_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last (short) dimension, first element to last."""
    acc = x[..., 0]
    for t in range(1, x.shape[-1]):
        acc = acc + x[..., t]
    return acc
