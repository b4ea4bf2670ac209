"""Batched view augmentations with replayable per-sample parameters.

As in kornia, every augmentation is split into *parameter sampling* (small per-sample tensors
drawn from the counter-based Philox streams of :func:`mlvgm_data.ops.uniform`, domain
``DOMAIN_AUGMENT``, counter view = the view index, one slot per augmentation kind) and
*application* (a pure batched function of images and parameters, no per-sample Python loops).
The same ``(seed, step, stream, sample ids)`` therefore gives the same augmented views on every
run, device and batch composition.

Order of application (torchvision's SimCLR/BYOL order): random resized crop with horizontal flip
(one per-sample separable resampling, see :func:`resized_crop`) → colour jitter (brightness,
contrast, saturation, hue, in that fixed order, clamping to [0, 1] after each) → greyscale →
Gaussian blur → solarize → normalize. Images are float tensors in [0, 1] (the generators'
``decode`` contract); every operation at its identity parameters returns its input exactly.

As torchvision: crop boxes (ten tries at a uniform scale and log-uniform ratio, integer sizes,
centre-crop fallback), bilinear resize with ``antialias=True`` (a triangle filter widened by the
downscale factor), the jitter factor ranges, greyscale weights, blur kernel and solarize rule.
Deviations, on purpose:

* colour jitter applies its four factors in a fixed order (torchvision shuffles it per call);
* hue is a rotation of the chroma plane in YIQ space (a per-sample 3×3 matrix, luma preserved)
  instead of a shift in HSV space, which needs ~20 elementwise passes; a shift ``h`` (in turns,
  sampled in [−hue, hue]) rotates by 2πh, positive turning red towards green as in HSV;
* with CUDA TF32 matmuls enabled the resize and colour matrices lose ~1e-3 relative precision.

On CPUs, multi-megabyte tensors are fresh pages from the kernel on every call; the page faults
can cost as much as the arithmetic, which is why ``apply`` works in two buffers. Setting
``THP_MEM_ALLOC_ENABLE=1`` before importing torch (transparent huge pages) removes most of the
remaining cost; on cores shared with other jobs one intra-op thread is faster than two.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from . import ops

IMAGENET_NORMALIZE: tuple[tuple[float, ...], tuple[float, ...]] = (
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
)
"""ImageNet mean/std, for encoders that expect normalised inputs: ``simclr(32, IMAGENET_NORMALIZE)``."""

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
"""RGB → grey weights (torchvision's ``rgb_to_grayscale``), used by greyscale, contrast, saturation."""

_SLOT_CROP, _SLOT_FLIP, _SLOT_JITTER, _SLOT_GRAY, _SLOT_BLUR, _SLOT_SOLARIZE = range(6)
_CROP_TRIES = 10
_U32 = 1 << 32


# --- argument checks -----------------------------------------------------------------------

def _number(value: object, field: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{field} must be in [{low}, {high}], got {value!r}")
    return float(value)


def _prob(value: object, field: str) -> float:
    return _number(value, field, 0.0, 1.0)


def _range(value: object, field: str, low: float, high: float | None = None, strict: bool = False) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{field} must be a (low, high) pair, got {value!r}")
    lo, hi = (_number(v, field, low, high) for v in value)
    if lo > hi or (strict and lo <= low):
        raise ValueError(f"{field} must satisfy {low} {'<' if strict else '<='} low <= high, got {value!r}")
    return lo, hi


def _counter(seed: int, step: int, stream: int) -> None:
    for field, value in (("seed", seed), ("step", step), ("stream", stream)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U32:
            raise ValueError(f"{field} must be an int in [0, 2**32), got {value!r}")


def _images(images: object, field: str, rank: int) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != rank:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{field} must be a {rank}-d tensor, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{field} must be floating point in [0, 1], got {images.dtype} (divide uint8 images by 255)")
    if min(images.shape[-2:]) < 1:
        raise ValueError(f"{field} must have non-empty images, got {list(images.shape)}")
    return images.float()


def _per_sample(t: torch.Tensor, n: int, field: str, *trailing: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n, *trailing):
        got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{field} must have shape {[n, *trailing]}, got {got}")
    return t


def default_blur_kernel(size: int) -> int:
    """Blur kernel size for an output ``size``: 10 % of it, odd, at least 3 (the SimCLR recipe)."""
    k = int(0.1 * size)
    return max(3, k + 1 - k % 2)


# --- application: pure batched functions -----------------------------------------------------

def _resize_weights(start: torch.Tensor, length: torch.Tensor, size: int, in_size: int, antialias: bool) -> torch.Tensor:
    """``[N, size, in_size]`` resampling matrices of the crops ``[start, start + length)``.

    Output pixel j is centred at ``start + (j + ½)·scale``; input pixel k (centre ``k + ½``)
    weighs ``max(0, 1 − |k + ½ − centre| / support)``, support = max(scale, 1) with antialias
    (else 1), restricted to the crop and normalised: bilinear with edge clamping when upsampling,
    a triangle filter when downsampling (torchvision/PIL ``antialias=True``); exactly the identity
    matrix for a full-size crop at scale 1.
    """
    dev = start.device
    scale = length / size
    inv_support = 1.0 / scale.clamp(min=1.0) if antialias else torch.ones_like(scale)
    centre = start[:, None] + (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) * scale[:, None]
    k = torch.arange(in_size, device=dev, dtype=torch.float32) + 0.5
    w = (k - centre[:, :, None]).abs_().mul_(inv_support[:, None, None]).neg_().add_(1.0).clamp_(min=0.0)
    inside = (k >= start[:, None]) & (k < (start + length)[:, None])
    w.mul_(inside[:, None, :])
    return w.div_(w.sum(-1, keepdim=True))


def resized_crop(
    images: torch.Tensor, box: torch.Tensor, size: int, flip: torch.Tensor | None = None, antialias: bool = True
) -> torch.Tensor:
    """Crop ``box`` = ``[N, 4]`` (top, left, height, width in input pixels) out of each image,
    resize it to ``size × size`` (bilinear, antialiased when shrinking) and mirror it where
    ``flip`` (``[N]`` bool) is set; ``images`` ``[N, C, H, W]`` → ``[N, C, size, size]``.

    The crop, resize and flip are two batched matmuls with per-sample separable matrices
    (``Wy @ image @ Wxᵀ``), so a crop of a region equals slicing it and calling
    ``F.interpolate(..., mode="bilinear", antialias=True)`` up to float rounding.
    """
    x = _images(images, "images", 4)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    n, c, h, w = x.shape
    box = _per_sample(box, n, "box", 4).to(device=x.device, dtype=torch.float32)
    wy = _resize_weights(box[:, 0], box[:, 2], size, h, antialias)
    wx = _resize_weights(box[:, 1], box[:, 3], size, w, antialias)
    if flip is not None:
        flip = _per_sample(flip, n, "flip").to(x.device)
        wx = torch.where(flip[:, None, None], wx.flip(1), wx)
    # [N, C·H, W] @ [N, W, S], then per image and channel [S, H] @ [H, S]: no layout copies.
    cols = torch.bmm(x.reshape(n, c * h, w), wx.transpose(1, 2)).view(n * c, h, size)
    return torch.bmm(wy.repeat_interleave(c, 0), cols).view(n, c, size, size)


def _hue_basis() -> tuple[torch.Tensor, torch.Tensor]:
    """A, B with rotation(θ) = I + (cos θ − 1)·A − sin θ·B in RGB (rotation of YIQ's I/Q plane).

    Written as identity plus corrections so that θ = 0 gives exactly the identity matrix.
    """
    t = torch.tensor(
        [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
        dtype=torch.float64,
    )
    t_inv = torch.linalg.inv(t)
    chroma = torch.diag(torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64))
    turn = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    return (t_inv @ chroma @ t).float(), (t_inv @ turn @ t).float()


_HUE_A, _HUE_B = _hue_basis()


def color_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Per-sample colour jitter; ``factors`` = ``[N, 4]`` (brightness, contrast, saturation, hue).

    Brightness scales, contrast blends with the mean grey level, saturation blends with the grey
    image (torchvision's definitions), hue rotates the chroma by ``hue`` turns (YIQ); applied in
    that order, clamping to [0, 1] after each. Factors (1, 1, 1, 0) return the input (in [0, 1])
    exactly; single-channel images get brightness and contrast only.
    """
    x = _images(images, "images", 4)
    n, c = x.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels for colour jitter, got {c}")
    f = _per_sample(factors, n, "factors", 4).to(device=x.device, dtype=torch.float32)
    return _jitter_into(x, f, torch.empty_like(x), torch.empty_like(x) if c == 3 else None)


# The ``_*_into`` cores write into ``out`` (which may be ``x`` itself, except for the matrix
# products) so that ``ViewAugment.apply`` can run the whole chain in two buffers: every fresh
# multi-megabyte tensor costs page faults on CPUs, which otherwise take as long as the arithmetic.

def _jitter_into(x: torch.Tensor, f: torch.Tensor, out: torch.Tensor, scratch: torch.Tensor | None) -> torch.Tensor:
    n, c, h, w = x.shape
    torch.mul(x, f[:, 0, None, None, None], out=out).clamp_(0.0, 1.0)
    # the mean grey level is the grey level of the channel means (it is linear)
    channel_mean = out.mean((2, 3))
    grey_mean = channel_mean @ torch.tensor(GRAY_WEIGHTS, device=x.device) if c == 3 else channel_mean[:, 0]
    offset = ((1.0 - f[:, 1]) * grey_mean)[:, None, None, None]
    out.mul_(f[:, 1, None, None, None]).add_(offset).clamp_(0.0, 1.0)
    if c == 1:
        return out
    eye = torch.eye(3, device=x.device)
    s = f[:, 2, None, None]
    saturation = s * eye + (1.0 - s) * _gray_matrix(x.device)
    flat, spare = out.view(n, 3, h * w), scratch.view(n, 3, h * w)
    torch.bmm(saturation, flat, out=spare).clamp_(0.0, 1.0)
    theta = (2.0 * math.pi) * f[:, 3, None, None]
    hue = eye + (torch.cos(theta) - 1.0) * _HUE_A.to(x.device) - torch.sin(theta) * _HUE_B.to(x.device)
    torch.bmm(hue, spare, out=flat).clamp_(0.0, 1.0)
    return out


def _gray_matrix(device: torch.device) -> torch.Tensor:
    """The 3×3 matrix whose every row is GRAY_WEIGHTS (RGB → grey in all channels)."""
    return torch.tensor(GRAY_WEIGHTS, device=device).expand(3, 3)


def grayscale(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace the images where ``mask`` (``[N]`` bool) is set by their grey level in every channel."""
    x = _images(images, "images", 4)
    n, c = x.shape[:2]
    mask = _per_sample(mask, n, "mask").to(x.device)
    if c == 1:
        return x
    if c != 3:
        raise ValueError(f"images must have 1 or 3 channels for greyscale, got {c}")
    return _grayscale_into(x, mask, torch.empty_like(x))


def _grayscale_into(x: torch.Tensor, mask: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    # one batched 3×3 product per sample: the grey matrix or exactly the identity
    mix = torch.where(mask[:, None, None], _gray_matrix(x.device), torch.eye(3, device=x.device))
    torch.bmm(mix, x.view(n, 3, h * w), out=out.view(n, 3, h * w))
    return out


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` (``[N]``, > 0) and reflect padding
    (torchvision's kernel: ``exp(−x²/2σ²)`` on ``kernel_size`` taps, normalised), as batched
    shifted multiply-adds; images where ``mask`` is False are returned unchanged."""
    x = _images(images, "images", 4)
    n, c, h, w = x.shape
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if kernel_size // 2 >= min(h, w):
        raise ValueError(f"kernel_size {kernel_size} is too large for {h}x{w} images (reflect padding)")
    sigma = _per_sample(sigma, n, "sigma").to(device=x.device, dtype=torch.float32)
    mask = torch.ones(n, dtype=torch.bool, device=x.device) if mask is None else _per_sample(mask, n, "mask").to(x.device)
    return _blur_into(x, sigma, kernel_size, mask, torch.empty_like(x))


def _blur_into(
    x: torch.Tensor, sigma: torch.Tensor, kernel_size: int, mask: torch.Tensor, out: torch.Tensor,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    n, c, h, w = x.shape
    r = kernel_size // 2
    taps = torch.arange(-r, r + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (taps / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True))[:, :, None, None, None]  # [N, K, 1, 1, 1]
    padded = F.pad(x, (r, r, r, r), mode="reflect")
    # Separable shifted multiply-adds with per-sample weights: on CPUs a grouped (depthwise)
    # convolution with N·C groups is several times slower at these kernel sizes.
    rows = padded[:, :, 0:h, :] * k[:, 0]
    for t in range(1, kernel_size):
        rows.addcmul_(padded[:, :, t : t + h, :], k[:, t])
    blurred = torch.mul(rows[:, :, :, 0:w], k[:, 0], out=torch.empty_like(x) if scratch is None else scratch)
    for t in range(1, kernel_size):
        blurred.addcmul_(rows[:, :, :, t : t + w], k[:, t])
    return torch.where(mask[:, None, None, None], blurred, x, out=out)


def solarize(images: torch.Tensor, mask: torch.Tensor, threshold: float | torch.Tensor = 0.5) -> torch.Tensor:
    """Invert pixels ``>= threshold`` (``1 − x``) in the images where ``mask`` is set; ``threshold``
    is a number or a per-sample ``[N]`` tensor."""
    x = _images(images, "images", 4)
    n = x.shape[0]
    mask = _per_sample(mask, n, "mask").to(x.device)
    if isinstance(threshold, torch.Tensor):
        threshold = _per_sample(threshold.to(device=x.device, dtype=torch.float32), n, "threshold")
    else:
        threshold = _number(threshold, "threshold")
    return _solarize_into(x, mask, threshold, torch.empty_like(x), torch.empty_like(x))


def _solarize_into(
    x: torch.Tensor, mask: torch.Tensor, threshold: float | torch.Tensor, out: torch.Tensor, scratch: torch.Tensor
) -> torch.Tensor:
    # Branch-free forms: a per-pixel torch.where with a random condition is ~10x slower on CPUs.
    if not isinstance(threshold, torch.Tensor) and threshold == 0.5:
        # x >= ½ ⇔ 1 − x <= x, so solarize(x) = min(x, 1 − x); an infinite bound leaves x alone.
        bound = torch.where(mask, 1.0, torch.inf)[:, None, None, None]
        return torch.minimum(x, torch.sub(bound, x, out=scratch), out=out)
    t = threshold if isinstance(threshold, torch.Tensor) else torch.full(mask.shape, threshold, device=x.device)
    t = torch.where(mask, t, torch.inf)[:, None, None, None]
    # lerp is exact at weights 0 and 1
    return torch.lerp(x, torch.sub(1.0, x, out=scratch), (x >= t).to(x.dtype), out=out)


def normalize(images: torch.Tensor, mean: torch.Tensor | Sequence[float], std: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``(x − mean) / std`` per channel; ``mean``/``std`` are ``[C]`` or per-sample ``[N, C]``."""
    x = _images(images, "images", 4)
    if not isinstance(std, torch.Tensor) and min(std) <= 0:  # tensors are not checked: no device sync
        raise ValueError(f"std must be > 0, got {std}")
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    if m.shape != s.shape or m.shape[-1:] != x.shape[1:2] or m.dim() > 2 or (m.dim() == 2 and m.shape[0] != x.shape[0]):
        raise ValueError(f"mean/std must have shape [C] or [N, C] with C={x.shape[1]}, got {list(m.shape)}, {list(s.shape)}")
    return _normalize_into(x, m, s, torch.empty_like(x))


def _normalize_into(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    inv = 1.0 / std[..., None, None]
    return torch.addcmul(-mean[..., None, None] * inv, x, inv, out=out)


# --- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation of one view. Probabilities are per sample; ranges are (low, high).

    ``crop_scale=None`` skips the crop (the whole image is resized to ``size``); ``jitter`` =
    (brightness, contrast, saturation, hue) as in torchvision's ``ColorJitter`` (factors uniform
    in [max(0, 1 − b), 1 + b], hue shift in [−h, h] turns, h ≤ 0.5), applied with ``jitter_p``;
    ``blur_kernel=None`` uses :func:`default_blur_kernel`; ``normalize`` = (mean, std) or None
    (outputs stay in [0, 1]).
    """

    size: int
    crop_scale: tuple[float, float] | None = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    jitter_p: float = 0.0
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    antialias: bool = True

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be a positive int, got {self.size!r}")
        if self.crop_scale is not None:
            put("crop_scale", _range(self.crop_scale, "crop_scale", 0.0, 1.0, strict=True))
        put("crop_ratio", _range(self.crop_ratio, "crop_ratio", 0.0, strict=True))
        put("flip_p", _prob(self.flip_p, "flip_p"))
        if not isinstance(self.jitter, (tuple, list)) or len(self.jitter) != 4:
            raise ValueError(f"jitter must be (brightness, contrast, saturation, hue), got {self.jitter!r}")
        names = ("jitter.brightness", "jitter.contrast", "jitter.saturation", "jitter.hue")
        put("jitter", tuple(_number(v, f, 0.0, 0.5 if f == "jitter.hue" else None) for v, f in zip(self.jitter, names)))
        put("jitter_p", _prob(self.jitter_p, "jitter_p"))
        put("grayscale_p", _prob(self.grayscale_p, "grayscale_p"))
        put("blur_p", _prob(self.blur_p, "blur_p"))
        put("blur_sigma", _range(self.blur_sigma, "blur_sigma", 0.0, strict=True))
        if self.blur_kernel is None:
            put("blur_kernel", default_blur_kernel(self.size))
        elif isinstance(self.blur_kernel, bool) or not isinstance(self.blur_kernel, int) or self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd int, got {self.blur_kernel!r}")
        if self.blur_p > 0 and self.blur_kernel // 2 >= self.size:
            raise ValueError(f"blur_kernel {self.blur_kernel} is too large for size {self.size}")
        put("solarize_p", _prob(self.solarize_p, "solarize_p"))
        put("solarize_threshold", _number(self.solarize_threshold, "solarize_threshold"))
        if self.normalize is not None:
            if not isinstance(self.normalize, (tuple, list)) or len(self.normalize) != 2:
                raise ValueError(f"normalize must be (mean, std), got {self.normalize!r}")
            mean, std = (tuple(_number(v, f"normalize.{f}") for v in seq) if isinstance(seq, (tuple, list)) else seq
                         for seq, f in zip(self.normalize, ("mean", "std")))
            if not isinstance(mean, tuple) or not isinstance(std, tuple) or len(mean) != len(std) or not mean:
                raise ValueError(f"normalize must be (mean, std) sequences of equal length, got {self.normalize!r}")
            if min(std) <= 0:
                raise ValueError(f"normalize.std must be > 0, got {std}")
            put("normalize", (mean, std))
        if not isinstance(self.antialias, bool):
            raise ValueError(f"antialias must be a bool, got {self.antialias!r}")

    @property
    def jitter_enabled(self) -> bool:
        """Whether any sample can be jittered (a nonzero factor range with jitter_p > 0)."""
        return self.jitter_p > 0 and any(self.jitter)

    def to_dict(self) -> dict:
        """JSON-safe fields (tuples become lists)."""
        return _json_safe(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> "AugmentConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, Mapping) or set(d) - fields:
            raise ValueError(f"unknown AugmentConfig fields: {sorted(set(d) - fields) if isinstance(d, Mapping) else d!r}")
        return cls(**d)

    def sample(
        self, batch_size: int, height: int, width: int, seed: int, step: int, stream: int = 0, *,
        view: int = 0, sample_offset: int = 0, sample_ids: torch.Tensor | Sequence[int] | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample parameters of one view (the fields of :class:`AugmentParams`, ``[B, ...]``)."""
        dev = torch.device("cpu") if device is None else torch.device(device)

        def draw(slot: int, n: int) -> torch.Tensor:
            return ops.uniform(batch_size, n, seed, step, dev, stream, domain=ops.DOMAIN_AUGMENT, view=view,
                               slot=slot, sample_offset=sample_offset, sample_ids=sample_ids)

        never = torch.zeros(batch_size, dtype=torch.bool, device=dev)
        if self.crop_scale is None:
            box = torch.tensor([0.0, 0.0, height, width], device=dev).expand(batch_size, 4).clone()
        else:
            box = _sample_box(draw(_SLOT_CROP, 2 * _CROP_TRIES + 2), height, width, self.crop_scale, self.crop_ratio)
        flip = draw(_SLOT_FLIP, 1)[:, 0] < self.flip_p if self.flip_p > 0 else never
        factors = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev).expand(batch_size, 4).clone()
        jitter = never
        if self.jitter_enabled:
            u = draw(_SLOT_JITTER, 5)
            jitter = u[:, 0] < self.jitter_p
            lo = torch.tensor([max(0.0, 1.0 - j) for j in self.jitter[:3]] + [-self.jitter[3]], device=dev)
            hi = torch.tensor([1.0 + j for j in self.jitter[:3]] + [self.jitter[3]], device=dev)
            factors = torch.where(jitter[:, None], lo + (hi - lo) * u[:, 1:], factors)
        gray = draw(_SLOT_GRAY, 1)[:, 0] < self.grayscale_p if self.grayscale_p > 0 else never
        blur, sigma = never, torch.full((batch_size,), self.blur_sigma[0], device=dev)
        if self.blur_p > 0:
            u = draw(_SLOT_BLUR, 2)
            blur = u[:, 0] < self.blur_p
            sigma = self.blur_sigma[0] + (self.blur_sigma[1] - self.blur_sigma[0]) * u[:, 1]
        sol = draw(_SLOT_SOLARIZE, 1)[:, 0] < self.solarize_p if self.solarize_p > 0 else never
        return dict(box=box, flip=flip, jitter=jitter, jitter_factors=factors, grayscale=gray, blur=blur,
                    blur_sigma=sigma, solarize=sol)


def _json_safe(value: object) -> object:
    """Tuples → lists, recursively (for ``to_dict``)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_json_safe(v) for v in value]
    return value


def _sample_box(u: torch.Tensor, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop.get_params``, batched: ten tries of (scale, log-ratio),
    the first whose rounded box fits wins, else the centre crop at the clamped ratio."""
    t = _CROP_TRIES
    area = float(height * width)
    s = scale[0] + (scale[1] - scale[0]) * u[:, :t]
    lr0, lr1 = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lr0 + (lr1 - lr0) * u[:, t : 2 * t])
    w = torch.round(torch.sqrt(area * s * aspect))
    h = torch.round(torch.sqrt(area * s / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)
    found = ok.any(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    w = torch.where(found, w.gather(1, first)[:, 0], float(fw))
    h = torch.where(found, h.gather(1, first)[:, 0], float(fh))
    top = torch.minimum(torch.floor(u[:, 2 * t] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(u[:, 2 * t + 1] * (width - w + 1)), width - w)
    top = torch.where(found, top, float((height - fh) // 2))
    left = torch.where(found, left, float((width - fw) // 2))
    return torch.stack([top, left, h, w], 1)


@dataclass
class AugmentParams:
    """Per-sample parameters of a batch of views, each a tensor with leading dims ``[V, B]``.

    ``box``: (top, left, height, width) crop in input pixels; ``jitter_factors``: (brightness,
    contrast, saturation, hue), (1, 1, 1, 0) where ``jitter`` is False; ``blur_sigma`` is drawn
    for every sample and used where ``blur`` is set.
    """

    box: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    jitter_factors: torch.Tensor
    grayscale: torch.Tensor
    blur: torch.Tensor
    blur_sigma: torch.Tensor
    solarize: torch.Tensor

    def check(self, num_views: int, batch_size: int) -> None:
        """Raise ValueError unless every field has the shape of ``num_views × batch_size`` samples."""
        for f in dataclasses.fields(self):
            t = getattr(self, f.name)
            want = (num_views, batch_size, 4) if f.name in ("box", "jitter_factors") else (num_views, batch_size)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"params.{f.name} must have shape {list(want)}, got {got}")


# --- the composed augmentation ---------------------------------------------------------------

class ViewAugment:
    """Augments all views of a batch at once: ``aug(views, seed, step)`` with ``views`` =
    ``Tensor[V, B, C, H, W]`` → ``Tensor[V, B, C, size, size]``.

    ``views`` is one :class:`AugmentConfig` shared by every view, or a sequence of them: view v
    uses config ``v mod len(views)`` (BYOL's asymmetric pair; more views alternate). View v draws
    its parameters with counter view = v, so views differ, and the same ``(seed, step, stream,
    sample ids)`` replays exactly. ``sample_params`` / ``apply`` expose the two halves for
    inspection and replay.
    """

    def __init__(self, views: AugmentConfig | Sequence[AugmentConfig]):
        configs = (views,) if isinstance(views, AugmentConfig) else tuple(views)
        if not configs or not all(isinstance(c, AugmentConfig) for c in configs):
            raise ValueError(f"views must be an AugmentConfig or a non-empty sequence of them, got {views!r}")
        for field in ("size", "antialias"):
            if len({getattr(c, field) for c in configs}) != 1:
                raise ValueError(f"all view configs must share {field}, got {[getattr(c, field) for c in configs]}")
        if len({c.blur_kernel for c in configs if c.blur_p > 0}) > 1:
            raise ValueError(f"all blurred views must share blur_kernel, got {[c.blur_kernel for c in configs]}")
        self.views = configs

    @property
    def size(self) -> int:
        return self.views[0].size

    def config(self, view: int) -> AugmentConfig:
        """The config of view ``view``."""
        return self.views[view % len(self.views)]

    def _configs(self, num_views: int) -> list[AugmentConfig]:
        if num_views > 256:
            raise ValueError(f"at most 256 views, got {num_views}")
        return [self.config(v) for v in range(num_views)]

    def sample_params(
        self, shape: Sequence[int], seed: int, step: int, stream: int = 0, *, sample_offset: int = 0,
        sample_ids: torch.Tensor | Sequence[int] | None = None, device: torch.device | str | None = None,
    ) -> AugmentParams:
        """Parameters for views of ``shape`` = (V, B, C, H, W) (only V, B, H, W are used)."""
        if len(shape) != 5 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"shape must be (V, B, C, H, W) positive ints, got {tuple(shape)!r}")
        _counter(seed, step, stream)
        v, b, _, h, w = shape
        per_view = [cfg.sample(b, h, w, seed, step, stream, view=i, sample_offset=sample_offset,
                               sample_ids=sample_ids, device=device)
                    for i, cfg in enumerate(self._configs(v))]
        return AugmentParams(**{k: torch.stack([p[k] for p in per_view]) for k in per_view[0]})

    def apply(self, views: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment ``views`` ``[V, B, C, H, W]`` with ``params``: one batched pass over all V·B images."""
        x = _images(views, "views", 5)
        v, b, c, h, w = x.shape
        configs = self._configs(v)
        params.check(v, b)
        n = v * b
        flat = lambda t: t.reshape(n, *t.shape[2:]).to(x.device)  # noqa: E731
        per_view = lambda values: torch.tensor(values, dtype=torch.float32, device=x.device).repeat_interleave(b, 0)  # noqa: E731
        size = self.size
        # ``cur`` holds the batch; ``spare`` is the one scratch buffer (see the ``_*_into`` cores).
        cur = resized_crop(x.reshape(n, c, h, w), flat(params.box), size, flat(params.flip), configs[0].antialias)
        spare = None
        colour = c == 3
        if any(cfg.jitter_enabled for cfg in configs):
            if c not in (1, 3):
                raise ValueError(f"views must have 1 or 3 channels for colour jitter, got {c}")
            spare = torch.empty_like(cur) if colour else None
            _jitter_into(cur, flat(params.jitter_factors), cur, spare)
        if any(cfg.grayscale_p > 0 for cfg in configs) and c != 1:
            if not colour:
                raise ValueError(f"views must have 1 or 3 channels for greyscale, got {c}")
            spare = torch.empty_like(cur) if spare is None else spare
            cur, spare = _grayscale_into(cur, flat(params.grayscale), spare), cur
        blurs = [cfg for cfg in configs if cfg.blur_p > 0]
        if blurs:
            spare = torch.empty_like(cur) if spare is None else spare
            _blur_into(cur, flat(params.blur_sigma), blurs[0].blur_kernel, flat(params.blur), cur, spare)
        if any(cfg.solarize_p > 0 for cfg in configs):
            thresholds = {cfg.solarize_threshold for cfg in configs}
            threshold = thresholds.pop() if len(thresholds) == 1 else per_view([cfg.solarize_threshold for cfg in configs])
            spare = torch.empty_like(cur) if spare is None else spare
            _solarize_into(cur, flat(params.solarize), threshold, cur, spare)
        # Interpolation, grey and blur weights sum to 1 only up to rounding: keep [0, 1] exact.
        cur.clamp_(0.0, 1.0)
        if any(cfg.normalize is not None for cfg in configs):
            stats = [cfg.normalize or ((0.0,) * c, (1.0,) * c) for cfg in configs]
            if any(len(m) != c for m, _ in stats):
                raise ValueError(f"normalize mean/std must have {c} values (one per channel)")
            _normalize_into(cur, per_view([m for m, _ in stats]), per_view([s for _, s in stats]), cur)
        return cur.view(v, b, c, size, size)

    def __call__(
        self, views: torch.Tensor, seed: int, step: int, stream: int = 0, sample_offset: int = 0,
        sample_ids: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        x = _images(views, "views", 5)
        params = self.sample_params(tuple(x.shape), seed, step, stream, sample_offset=sample_offset,
                                    sample_ids=sample_ids, device=x.device)
        return self.apply(x, params)

    def to_dict(self) -> dict:
        return {"views": [cfg.to_dict() for cfg in self.views]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ViewAugment":
        if not isinstance(d, Mapping) or not isinstance(d.get("views"), list):
            raise ValueError(f"expected {{'views': [config, ...]}}, got {d!r}")
        return cls([AugmentConfig.from_dict(c) for c in d["views"]])

    def __repr__(self) -> str:
        return f"ViewAugment({list(self.views)!r})"


# --- presets ---------------------------------------------------------------------------------

Normalize = tuple[Sequence[float], Sequence[float]] | None


def simclr(size: int, normalize: Normalize = None) -> ViewAugment:
    """SimCLR: crop 0.08–1, flip 0.5, jitter (0.8, 0.8, 0.8, 0.2) @ 0.8, grey 0.2, blur 0.5 σ 0.1–2."""
    return ViewAugment(AugmentConfig(
        size, crop_scale=(0.08, 1.0), flip_p=0.5, jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.8,
        grayscale_p=0.2, blur_p=0.5, blur_sigma=(0.1, 2.0), normalize=normalize,
    ))


def byol(size: int, normalize: Normalize = None) -> ViewAugment:
    """BYOL: crop 0.08–1, flip 0.5, jitter (0.4, 0.4, 0.2, 0.1) @ 0.8, grey 0.2, σ 0.1–2;
    blur p 1.0 / 0.1 and solarize p 0 / 0.2 for view 0 / view 1 (later views alternate)."""
    common = dict(crop_scale=(0.08, 1.0), flip_p=0.5, jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8,
                  grayscale_p=0.2, blur_sigma=(0.1, 2.0), normalize=normalize)
    return ViewAugment([AugmentConfig(size, blur_p=1.0, solarize_p=0.0, **common),
                        AugmentConfig(size, blur_p=0.1, solarize_p=0.2, **common)])


def crop_flip(size: int, normalize: Normalize = None) -> ViewAugment:
    """The MI paper's light option: crop 0.2–1 and flip 0.5 only."""
    return ViewAugment(AugmentConfig(size, crop_scale=(0.2, 1.0), flip_p=0.5, normalize=normalize))


PRESETS: dict[str, Callable[..., ViewAugment]] = {"simclr": simclr, "byol": byol, "crop_flip": crop_flip}
"""Preset name → ``preset(size, normalize=None)``; the pipe's ``augment="simclr"`` etc."""


def preset(name: str, size: int, normalize: Normalize = None) -> ViewAugment:
    """The preset called ``name`` (see :data:`PRESETS`) at output ``size``."""
    if name not in PRESETS:
        raise ValueError(f"unknown augment preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name](size, normalize)
