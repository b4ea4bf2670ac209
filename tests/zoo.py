"""A zoo of awkward generator modules: one per kind of tensor a real model holds (issue 25), for the
fingerprint's unit tests and the public-contract suite.

Every class draws its weights from a fixed seed, so each call of a factory in :data:`FACTORIES`
builds the same generator again: that is the "fresh copy" a resumed process loads. The classes are
module-level so that DataLoader workers can unpickle them. All decode latents ``a: (4,)`` and
``b: (2, 2, 2)`` into 3×8×8 images in [0, 1].
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

from mlvgm_data import LatentGroup, LatentSpec
from mlvgm_data.generators.base import MLVGM

SIZE = 8


def _fill(module: nn.Module, seed: int, scale: float = 0.5) -> None:
    """Every parameter and floating buffer from one seeded stream: the same weights on every build."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.copy_((torch.randn(t.shape, generator=g) * scale).to(t.dtype))


class ZooGenerator(MLVGM):
    """The shared frame: two latent groups, a 3×2×2 feature map from them (``_features``), upsampled
    to 8×8 and squashed into [0, 1]. Subclasses hold their weights in their own awkward way."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_spec = LatentSpec([LatentGroup("a", (4,)), LatentGroup("b", (2, 2, 2))])
        self.image_shape = (3, SIZE, SIZE)

    def _features(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _decode(self, latents, classes):
        x = self._features(latents["a"], latents["b"])
        x = F.interpolate(x.float(), size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


class ChannelsLast(ZooGenerator):
    """1×1 and 3×3 convolutions in channels_last (the shipped generators' layout that broke the
    fingerprint's byte view)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 12)
        self.mix = nn.Conv2d(2, 3, 1)
        self.smooth = nn.Conv2d(3, 3, 3, padding=1)
        _fill(self, 1)
        self.to(memory_format=torch.channels_last)
        self.eval()

    def _features(self, a, b):
        return self.smooth(self.lin(a).view(-1, 3, 2, 2) + self.mix(b))


class Strided(ZooGenerator):
    """A parameter that is a transposed view (non-contiguous, stride (1, 4))."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(12, 4).t())
        self.mix = nn.Parameter(torch.empty(3, 2))
        _fill(self, 2)
        self.eval()

    def _features(self, a, b):
        return (a @ self.weight).view(-1, 3, 2, 2) + torch.einsum("oc,nchw->nohw", self.mix, b)


class ZeroDim(ZooGenerator):
    """A 0-d parameter and a 0-d buffer (StyleGAN3 keeps scalars such as ``magnitude_ema`` so)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 12)
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("gain", torch.ones(()))
        _fill(self, 3)
        self.eval()

    def _features(self, a, b):
        return self.gain * self.lin(a).view(-1, 3, 2, 2) + self.bias + b.mean(1, keepdim=True)


class LowPrecision(ZooGenerator):
    """Weights stored in bf16 or fp16 (computed in float32)."""

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 12)
        self.mix = nn.Conv2d(2, 3, 1)
        _fill(self, 4)
        self.to(dtype)
        self.eval()

    def _features(self, a, b):
        w, c = self.lin, self.mix
        return (F.linear(a, w.weight.float(), w.bias.float()).view(-1, 3, 2, 2)
                + F.conv2d(b, c.weight.float(), c.bias.float()))


class Tied(ZooGenerator):
    """One weight shared by two layers (state_dict lists it under both names)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 4)
        self.second.weight = self.first.weight
        self.out = nn.Linear(4, 12)
        self.mix = nn.Conv2d(2, 3, 1)
        _fill(self, 5)
        self.eval()

    def _features(self, a, b):
        return self.out(self.second(torch.tanh(self.first(a)))).view(-1, 3, 2, 2) + self.mix(b)


class WeightNormed(ZooGenerator):
    """``torch.nn.utils.parametrizations.weight_norm``: the state holds ``original0`` (g) and
    ``original1`` (v), not the weight it computes."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 12)
        self.mix = parametrizations.weight_norm(nn.Conv2d(2, 3, 1))
        _fill(self, 6)
        self.eval()

    def _features(self, a, b):
        return self.lin(a).view(-1, 3, 2, 2) + self.mix(b)


class SpectralNormed(ZooGenerator):
    """``parametrizations.spectral_norm``: its power-iteration ``_u``/``_v`` buffers advance at every
    forward in train mode and stay put in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = parametrizations.spectral_norm(nn.Linear(4, 12))
        self.mix = nn.Conv2d(2, 3, 1)
        _fill(self, 7)
        self.eval()

    def _features(self, a, b):
        return 3.0 * self.lin(a).view(-1, 3, 2, 2) + self.mix(b)


class NonPersistent(ZooGenerator):
    """A non-persistent buffer (a positional ramp rebuilt from the config, not in the state dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 12)
        self.mix = nn.Conv2d(2, 3, 1)
        _fill(self, 8)
        self.register_buffer("ramp", torch.linspace(-1.0, 1.0, 4).view(1, 1, 2, 2), persistent=False)
        self.eval()

    def _features(self, a, b):
        return self.lin(a).view(-1, 3, 2, 2) + self.mix(b) + self.ramp


class MagnitudeEMA(ZooGenerator):
    """StyleGAN3's ``magnitude_ema``: a 0-d buffer that the forward updates in train mode only and
    divides the features by in both modes."""

    BETA = 0.9

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 12)
        self.mix = nn.Conv2d(2, 3, 1)
        _fill(self, 9)
        self.register_buffer("magnitude_ema", torch.ones(()))
        self.eval()

    def _features(self, a, b):
        x = self.lin(a).view(-1, 3, 2, 2) + self.mix(b)
        if self.training:
            self.magnitude_ema.copy_(x.detach().square().mean().lerp(self.magnitude_ema, self.BETA))
        return x * self.magnitude_ema.rsqrt()


class EvalDrift(ZooGenerator):
    """A persistent buffer that changes at every decode even in eval mode (a call counter: some
    models count their samples) without changing the images."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 12)
        self.mix = nn.Conv2d(2, 3, 1)
        _fill(self, 10)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self.eval()

    def _features(self, a, b):
        self.calls += 1
        return self.lin(a).view(-1, 3, 2, 2) + self.mix(b)


class ParameterFree(ZooGenerator):
    """No parameters and no buffers: the images are a fixed function of the latents and the config."""

    def __init__(self, frequency: float = 1.5) -> None:
        super().__init__()
        self.frequency = float(frequency)
        self.eval()

    def _features(self, a, b):
        phase = a[:, :3, None, None]
        return torch.sin(self.frequency * (b.sum(1, keepdim=True) + phase))


class Lazy(ZooGenerator):
    """A lazy module never run: its weight is an ``UninitializedParameter`` (refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.LazyLinear(12)
        self.eval()

    def _features(self, a, b):
        return self.lin(a).view(-1, 3, 2, 2) + b.mean(1, keepdim=True)


def channels_last() -> ChannelsLast:
    return ChannelsLast()


def strided() -> Strided:
    return Strided()


def zero_dim() -> ZeroDim:
    return ZeroDim()


def bf16() -> LowPrecision:
    return LowPrecision(torch.bfloat16)


def fp16() -> LowPrecision:
    return LowPrecision(torch.float16)


def tied() -> Tied:
    return Tied()


def weight_norm() -> WeightNormed:
    return WeightNormed()


def spectral_norm() -> SpectralNormed:
    return SpectralNormed()


def non_persistent() -> NonPersistent:
    return NonPersistent()


def magnitude_ema() -> MagnitudeEMA:
    return MagnitudeEMA()


def eval_drift() -> EvalDrift:
    return EvalDrift()


def parameter_free() -> ParameterFree:
    return ParameterFree()


def meta() -> ChannelsLast:
    """A zoo generator built on the meta device: shapes without values (refused)."""
    with torch.device("meta"):
        return ChannelsLast()


def lazy() -> Lazy:
    return Lazy()


FACTORIES: dict[str, Callable[[], ZooGenerator]] = {
    "channels_last": channels_last,
    "strided": strided,
    "zero_dim": zero_dim,
    "bf16": bf16,
    "fp16": fp16,
    "tied": tied,
    "weight_norm": weight_norm,
    "spectral_norm": spectral_norm,
    "non_persistent": non_persistent,
    "magnitude_ema": magnitude_ema,
    "eval_drift": eval_drift,
    "parameter_free": parameter_free,
}
"""The zoo's usable generators by name (``zoo:NAME`` as a CLI factory); ``meta`` and ``lazy`` are
the refused ones."""

