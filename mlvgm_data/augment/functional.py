"""The augmentation kernels: pure batched functions of images and per-sample parameters.

Each output pixel is a fixed sequence of elementwise IEEE operations on its own sample's pixels
and parameters — gathers, multiplies, adds, clamps, selects; no matrix products, no ATen
reductions, no transcendental functions (those go through :mod:`.exact`). So a sample's output
is bit-identical whatever else is in its batch, however the batch is split across ranks or
workers, on every CPU capability and thread count. (A batched matrix product would not be: MKL
blocks it by batch size, differently on AVX2 and AVX-512.)

Images are float tensors ``[N, C, H, W]`` in [0, 1]; every kernel at its identity parameters
returns its input exactly. Each kernel has an in-place twin (``color_jitter_`` …) that
:class:`~mlvgm_data.augment.ViewAugment` chains on the crop's output, with scratch buffers from a
:class:`Workspace`: on CPUs every fresh multi-megabyte tensor costs page faults, which otherwise
take as long as the arithmetic.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .._checks import check_images, check_int, check_number, check_per_sample
from . import exact

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
"""RGB → grey weights (torchvision's ``rgb_to_grayscale``), used by greyscale, contrast, saturation."""


class Workspace:
    """Scratch buffers reused from call to call, by name; use one per thread."""

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def get(self, name: str, shape: Sequence[int], like: torch.Tensor,
            dtype: torch.dtype | None = None) -> torch.Tensor:
        """A tensor of ``shape`` on ``like``'s device (contents undefined), reusing the buffer ``name``."""
        dtype = like.dtype if dtype is None else dtype
        key = (name, dtype, like.device)
        numel = math.prod(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=like.device)
            self._buffers[key] = buf
        return buf[:numel].view(*shape)


def _scratch(ws: Workspace | None, name: str, shape: Sequence[int], like: torch.Tensor,
             dtype: torch.dtype | None = None) -> torch.Tensor:
    if ws is None:
        return torch.empty(*shape, dtype=like.dtype if dtype is None else dtype, device=like.device)
    return ws.get(name, shape, like, dtype)


def _grey_into(x: torch.Tensor, out: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """``out`` = grey level ``[N, 1, H, W]`` of RGB images: (r·R + g·G) + b·B, in that order."""
    r, g, b = GRAY_WEIGHTS
    torch.mul(x[:, 0:1], r, out=out)
    out.add_(torch.mul(x[:, 1:2], g, out=tmp))
    return out.add_(torch.mul(x[:, 2:3], b, out=tmp))


def _grey(x: torch.Tensor, ws: Workspace | None) -> torch.Tensor:
    n, _, h, w = x.shape
    return _grey_into(x, _scratch(ws, "grey", (n, 1, h, w), x), _scratch(ws, "grey.tmp", (n, 1, h, w), x))


# --- resized crop ----------------------------------------------------------------------------

def _resize_taps(start: torch.Tensor, length: torch.Tensor, size: int, in_size: int,
                 antialias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Input indices and weights ``[N, size, K]`` of each output pixel of the crops
    ``[start, start + length)``.

    Output pixel j is centred at ``start + (j + ½)·scale``; input pixel k (centre ``k + ½``)
    weighs ``max(0, 1 − |k + ½ − centre| / support)``, support = max(scale, 1) with antialias
    (else 1), restricted to the crop and normalised: bilinear with edge clamping when upsampling,
    a triangle filter when downsampling (torchvision/PIL ``antialias=True``). Only the K taps
    that can be non-zero are kept; extra taps weigh exactly 0, so K does not change the result.
    """
    dev = start.device
    scale = length / size
    support = scale.clamp(min=1.0) if antialias else torch.ones_like(scale)
    max_support = max(in_size / size, 1.0) if antialias else 1.0
    # At most ceil(2·support) input centres lie strictly within ±support of an output centre.
    k_taps = math.ceil(2.0 * max_support)
    centre = start[:, None] + (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) * scale[:, None]
    first = torch.floor(centre - 0.5 - support[:, None]) + 1.0
    k = first[:, :, None] + torch.arange(k_taps, device=dev, dtype=torch.float32)  # [N, S, K]
    w = (1.0 - (k + 0.5 - centre[:, :, None]).abs() / support[:, None, None]).clamp(min=0.0)
    inside = (k >= start[:, None, None]) & (k < (start + length)[:, None, None])
    w = torch.where(inside, w, 0.0)
    w = w / exact.ordered_sum(w)[:, :, None]
    index = k.clamp(0, in_size - 1).long()
    return index, w


def _resample_rows(rows: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, ws: Workspace | None,
                   name: str) -> torch.Tensor:
    """``rows`` ``[M, L, D]`` resampled along L: ``out[m, j] = Σ_t weight[m, j, t] · rows[m, index[m, j, t]]``
    (``[M, S, D]``): one ``index_select`` of whole contiguous rows, then the taps weighted and
    added in order."""
    m, length, d = rows.shape
    size, k_taps = index.shape[1:]
    base = (torch.arange(m, device=rows.device) * length)[:, None, None]
    picked = _scratch(ws, name + ".taps", (m, size, k_taps, d), rows)
    torch.index_select(rows.reshape(m * length, d), 0, (index + base).reshape(-1), out=picked.view(-1, d))
    picked.mul_(weight[..., None])
    out = _scratch(ws, name, (m, size, d), rows)
    if k_taps == 1:
        return out.copy_(picked[:, :, 0])
    torch.add(picked[:, :, 0], picked[:, :, 1], out=out)
    for t in range(2, k_taps):
        out.add_(picked[:, :, t])
    return out


def resized_crop(
    images: torch.Tensor, box: torch.Tensor, size: int, flip: torch.Tensor | None = None, antialias: bool = True,
    *, workspace: Workspace | None = None,
) -> torch.Tensor:
    """Crop ``box`` = ``[N, 4]`` (top, left, height, width in input pixels) out of each image,
    resize it to ``size × size`` (bilinear, antialiased when shrinking) and mirror it where
    ``flip`` (``[N]`` bool) is set; ``images`` ``[N, C, H, W]`` → a new ``[N, C, size, size]``.

    Separable: each output pixel is a weighted sum of a few gathered input pixels per axis, so a
    crop of a region equals slicing it and calling ``F.interpolate(..., mode="bilinear",
    antialias=True)`` up to float rounding, and a full-size crop at scale 1 is the identity.
    """
    x = check_images(images, "images", 4)
    size = check_int(size, "size", 1)
    n, c, h, w = x.shape
    box = check_per_sample(box, n, "box", 4).to(device=x.device, dtype=torch.float32)
    iy, wy = _resize_taps(box[:, 0], box[:, 2], size, h, antialias)
    ix, wx = _resize_taps(box[:, 1], box[:, 3], size, w, antialias)
    if flip is not None:
        flip = check_per_sample(flip, n, "flip").to(x.device)[:, None, None]
        ix, wx = torch.where(flip, ix.flip(1), ix), torch.where(flip, wx.flip(1), wx)
    # Each pass gathers whole contiguous rows: image rows first ([N·C, H, W]), then image columns
    # of the transposed result ([N·C, W, S]); a sample's channels share its taps.
    per_channel = lambda t: t.repeat_interleave(c, 0)  # noqa: E731
    rows = _resample_rows(x.reshape(n * c, h, w), per_channel(iy), per_channel(wy), workspace, "crop.rows")
    columns = _scratch(workspace, "crop.t", (n * c, w, size), x).copy_(rows.transpose(1, 2))
    cols = _resample_rows(columns, per_channel(ix), per_channel(wx), workspace, "crop.cols")  # [N·C, S_w, S_h]
    return cols.transpose(1, 2).contiguous().view(n, c, size, size)


# --- colour ----------------------------------------------------------------------------------

def _hue_basis() -> tuple[torch.Tensor, torch.Tensor]:
    """A, B with rotation(θ) = I + (cos θ − 1)·A − sin θ·B in RGB (rotation of YIQ's I/Q plane).

    Written as identity plus corrections so that θ = 0 gives exactly the identity matrix; the
    3×3 algebra runs in Python floats (IEEE double everywhere, unlike a LAPACK inverse).
    """
    t = [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
    cof = [[t[(j + 1) % 3][(i + 1) % 3] * t[(j + 2) % 3][(i + 2) % 3]
            - t[(j + 1) % 3][(i + 2) % 3] * t[(j + 2) % 3][(i + 1) % 3] for j in range(3)] for i in range(3)]
    det = sum(t[0][j] * cof[j][0] for j in range(3))
    t_inv = [[cof[i][j] / det for j in range(3)] for i in range(3)]
    # chroma = diag(0, 1, 1); turn rotates I into Q: A = T⁻¹·chroma·T, B = T⁻¹·turn·T
    a = [[sum(t_inv[i][k] * t[k][j] for k in (1, 2)) for j in range(3)] for i in range(3)]
    b = [[t_inv[i][2] * t[1][j] - t_inv[i][1] * t[2][j] for j in range(3)] for i in range(3)]
    return torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)


_HUE_A, _HUE_B = _hue_basis()


def _factors(factors: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return check_per_sample(factors, x.shape[0], "factors", 4).to(device=x.device, dtype=torch.float32)


def color_jitter_(x: torch.Tensor, factors: torch.Tensor, *, workspace: Workspace | None = None) -> torch.Tensor:
    """:func:`color_jitter` in place on ``x`` (float32)."""
    x = check_images(x, "images", 4)
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels for colour jitter, got {c}")
    f = _factors(factors, x)
    per_sample = lambda col: f[:, col, None, None, None]  # noqa: E731
    x.mul_(per_sample(0)).clamp_(0.0, 1.0)
    grey = _grey(x, workspace) if c == 3 else x
    grey_mean = exact.tree_sum(grey.reshape(n, -1)) / float(h * w)
    x.mul_(per_sample(1)).add_(((1.0 - f[:, 1]) * grey_mean)[:, None, None, None]).clamp_(0.0, 1.0)
    if c == 1:
        return x
    s = per_sample(2)
    grey = _grey(x, workspace).mul_(1.0 - s)  # before x changes
    x.mul_(s).add_(grey).clamp_(0.0, 1.0)
    cos, sin = exact.cos_sin_turns(f[:, 3])
    cos, sin = cos.float()[:, None, None], sin.float()[:, None, None]
    hue = (torch.eye(3, device=x.device) + (cos - 1.0) * _HUE_A.to(x.device)) - sin * _HUE_B.to(x.device)
    # out_c = (R_c0·x0 + R_c1·x1) + R_c2·x2 for each output channel, from a copy of the input
    src = _scratch(workspace, "jitter.src", x.shape, x).copy_(x)
    tmp = _scratch(workspace, "grey.tmp", (n, 1, h, w), x)
    for ch in range(3):
        dst = x[:, ch : ch + 1]
        torch.mul(src[:, 0:1], hue[:, ch, 0, None, None, None], out=dst)
        for k in (1, 2):
            dst.add_(torch.mul(src[:, k : k + 1], hue[:, ch, k, None, None, None], out=tmp))
    return x.clamp_(0.0, 1.0)


def color_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Per-sample colour jitter; ``factors`` = ``[N, 4]`` (brightness, contrast, saturation, hue).

    Brightness scales, contrast blends with the mean grey level, saturation blends with the grey
    image (torchvision's definitions), hue rotates the chroma by ``hue`` turns (YIQ); applied in
    that order, clamping to [0, 1] after each. Factors (1, 1, 1, 0) return the input (in [0, 1])
    exactly; single-channel images get brightness and contrast only.
    """
    return color_jitter_(check_images(images, "images", 4).clone(), factors)


def grayscale_(x: torch.Tensor, mask: torch.Tensor, *, workspace: Workspace | None = None) -> torch.Tensor:
    """:func:`grayscale` in place on ``x`` (float32)."""
    x = check_images(x, "images", 4)
    n, c = x.shape[:2]
    mask = check_per_sample(mask, n, "mask").to(x.device)
    if c == 1:
        return x
    if c != 3:
        raise ValueError(f"images must have 1 or 3 channels for greyscale, got {c}")
    return torch.where(mask[:, None, None, None], _grey(x, workspace), x, out=x)


def grayscale(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace the images where ``mask`` (``[N]`` bool) is set by their grey level in every channel."""
    return grayscale_(check_images(images, "images", 4).clone(), mask)


# --- blur, solarize, normalize ----------------------------------------------------------------

def default_blur_kernel(size: int) -> int:
    """Blur kernel size for an output ``size``: 10 % of it, odd, at least 3 (the SimCLR recipe)."""
    k = int(0.1 * size)
    return max(3, k + 1 - k % 2)


def _reflect_pad(x: torch.Tensor, r: int, out: torch.Tensor) -> torch.Tensor:
    """``F.pad(x, (r, r, r, r), mode="reflect")`` written into ``out``."""
    h, w = x.shape[-2:]
    out[:, :, r : r + h, r : r + w] = x
    for i in range(1, r + 1):
        out[:, :, r - i, r : r + w] = x[:, :, i]
        out[:, :, r + h - 1 + i, r : r + w] = x[:, :, h - 1 - i]
    for i in range(1, r + 1):
        out[:, :, :, r - i] = out[:, :, :, r + i]
        out[:, :, :, r + w - 1 + i] = out[:, :, :, r + w - 1 - i]
    return out


def gaussian_blur_(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int, mask: torch.Tensor | None = None, *,
                   workspace: Workspace | None = None) -> torch.Tensor:
    """:func:`gaussian_blur` in place on ``x`` (float32)."""
    x = check_images(x, "images", 4)
    n, c, h, w = x.shape
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if kernel_size // 2 >= min(h, w):
        raise ValueError(f"kernel_size {kernel_size} is too large for {h}x{w} images (reflect padding)")
    sigma = check_per_sample(sigma, n, "sigma").to(device=x.device, dtype=torch.float32)
    mask = (torch.ones(n, dtype=torch.bool, device=x.device) if mask is None
            else check_per_sample(mask, n, "mask").to(x.device))
    r = kernel_size // 2
    taps = torch.arange(-r, r + 1, device=x.device, dtype=torch.float64)
    q = taps / sigma.double()[:, None]
    k = exact.exp(-0.5 * (q * q))
    k = (k / exact.ordered_sum(k)[:, None]).float()[:, :, None, None, None]  # [N, K, 1, 1, 1]
    padded = _reflect_pad(x, r, _scratch(workspace, "blur.pad", (n, c, h + 2 * r, w + 2 * r), x))
    # Shifted multiply-adds with per-sample weights: on CPUs a grouped (depthwise) convolution
    # with N·C groups is several times slower at these kernel sizes (and not batch-exact).
    rows = _scratch(workspace, "blur.rows", (n, c, h, w + 2 * r), x)
    tmp = _scratch(workspace, "blur.tmp", (n, c, h, w + 2 * r), x)
    torch.mul(padded[:, :, 0:h, :], k[:, 0], out=rows)
    for t in range(1, kernel_size):
        rows.add_(torch.mul(padded[:, :, t : t + h, :], k[:, t], out=tmp))
    blurred = _scratch(workspace, "blur.out", (n, c, h, w), x)
    tmp = tmp[:, :, :, :w]
    torch.mul(rows[:, :, :, 0:w], k[:, 0], out=blurred)
    for t in range(1, kernel_size):
        blurred.add_(torch.mul(rows[:, :, :, t : t + w], k[:, t], out=tmp))
    return torch.where(mask[:, None, None, None], blurred, x, out=x)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` (``[N]``, > 0) and reflect padding
    (torchvision's kernel: ``exp(−x²/2σ²)`` on ``kernel_size`` taps, normalised), as batched
    shifted multiply-adds; images where ``mask`` is False are returned unchanged."""
    return gaussian_blur_(check_images(images, "images", 4).clone(), sigma, kernel_size, mask)


def solarize_(x: torch.Tensor, mask: torch.Tensor, threshold: float | torch.Tensor = 0.5, *,
              workspace: Workspace | None = None) -> torch.Tensor:
    """:func:`solarize` in place on ``x`` (float32)."""
    x = check_images(x, "images", 4)
    n = x.shape[0]
    mask = check_per_sample(mask, n, "mask").to(x.device)
    inverted = torch.neg(x, out=_scratch(workspace, "solarize", x.shape, x)).add_(1.0)
    if not isinstance(threshold, torch.Tensor):
        threshold = check_number(threshold, "threshold")
        if threshold == 0.5:
            # Branch-free (a per-pixel select on a random condition is slow on CPUs): for
            # x >= ½, 1 − x <= x, so solarize(x) = min(x, 1 − x); an infinite bound leaves x alone.
            inverted.add_(torch.where(mask, 0.0, torch.inf)[:, None, None, None])
            return torch.minimum(x, inverted, out=x)
        threshold = torch.full((n,), threshold, device=x.device)
    t = check_per_sample(threshold.to(device=x.device, dtype=torch.float32), n, "threshold")
    t = torch.where(mask, t, torch.inf)[:, None, None, None]
    return torch.where(x >= t, inverted, x, out=x)


def solarize(images: torch.Tensor, mask: torch.Tensor, threshold: float | torch.Tensor = 0.5) -> torch.Tensor:
    """Invert pixels ``>= threshold`` (``1 − x``) in the images where ``mask`` is set; ``threshold``
    is a number or a per-sample ``[N]`` tensor."""
    return solarize_(check_images(images, "images", 4).clone(), mask, threshold)


def _normalize_stats(x: torch.Tensor, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(std, torch.Tensor) and min(std) <= 0:  # tensors are not checked: no device sync
        raise ValueError(f"std must be > 0, got {std}")
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    if m.shape != s.shape or m.shape[-1:] != x.shape[1:2] or m.dim() > 2 or (m.dim() == 2 and m.shape[0] != x.shape[0]):
        raise ValueError(f"mean/std must have shape [C] or [N, C] with C={x.shape[1]}, "
                         f"got {list(m.shape)}, {list(s.shape)}")
    return m[..., None, None], s[..., None, None]


def normalize_(x: torch.Tensor, mean: torch.Tensor | Sequence[float],
               std: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """:func:`normalize` in place on ``x`` (float32)."""
    x = check_images(x, "images", 4)
    m, s = _normalize_stats(x, mean, std)
    return x.sub_(m).div_(s)


def normalize(images: torch.Tensor, mean: torch.Tensor | Sequence[float],
              std: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``(x − mean) / std`` per channel; ``mean``/``std`` are ``[C]`` or per-sample ``[N, C]``."""
    return normalize_(check_images(images, "images", 4).clone(), mean, std)
