"""The MLVGM protocol: what the pipe, the datasets and the MI utility need from a generator."""

from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from .. import ops
from ..latents import LatentSpec
from ..views import ViewPolicy


@runtime_checkable
class MLVGMProtocol(Protocol):
    """A multiple-latent-variable generative model.

    ``latent_spec`` names its noise groups; ``decode(latents)`` maps ``{group: [N, *shape]}``
    (standard-normal noise) to images ``[N, C, H, W]`` in [0, 1]. Class-conditional models set
    ``num_classes`` and accept ``classes`` (``[N]`` int64).
    """

    latent_spec: LatentSpec

    def decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None = None) -> torch.Tensor: ...


class MLVGM(nn.Module):
    """Base class for generators: subclasses set ``latent_spec`` (and optionally
    ``num_classes``, ``image_shape``) and implement ``_decode``; ``decode`` validates the input
    and the output with errors that name the group or the shape.
    """

    latent_spec: LatentSpec
    num_classes: int | None = None
    image_shape: tuple[int, int, int] | None = None

    def decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None = None) -> torch.Tensor:
        return checked_decode(self, latents, classes, _inner=True)

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


def _wants_finite_check(latents: Mapping[str, torch.Tensor]) -> bool:
    # A finiteness check is a host sync on a GPU: do it on the CPU only (the CUDA producer
    # checks its outputs asynchronously, see pipe.py).
    return all(t.device.type == "cpu" for t in latents.values() if isinstance(t, torch.Tensor))


def check_generator(generator: object, policy: ViewPolicy | None = None) -> None:
    """Raises ``ValueError`` unless ``generator`` follows the protocol (and ``policy`` fits it)."""
    if not isinstance(getattr(generator, "latent_spec", None), LatentSpec) or not callable(getattr(generator, "decode", None)):
        raise ValueError("generator must have a latent_spec (LatentSpec) and a decode(latents) method (see MLVGMProtocol)")
    if policy is not None:
        if not isinstance(policy, ViewPolicy):
            raise ValueError(f"policy must be a ViewPolicy, got {type(policy).__name__}")
        policy.check(generator.latent_spec)


def draw_classes(generator: object, n: int, seed: int, step: int, device: torch.device | str | None = None,
                 stream: int = 0, *, sample_offset: int = 0,
                 sample_ids: torch.Tensor | None = None) -> torch.Tensor | None:
    """One class per anchor, uniform over ``generator.num_classes``, from the counter streams
    (domain ``ops.DOMAIN_CLASS``); ``None`` for an unconditional generator."""
    k = getattr(generator, "num_classes", None)
    if not k:
        return None
    u = ops.uniform(n, 1, seed, step, device, stream, domain=ops.DOMAIN_CLASS, sample_offset=sample_offset,
                    sample_ids=sample_ids)
    return (u[:, 0] * k).long().clamp_(max=k - 1)


def check_classes(generator: MLVGMProtocol, classes: torch.Tensor | None, n: int) -> None:
    num_classes = getattr(generator, "num_classes", None)
    if classes is None:
        return
    if not num_classes:
        raise ValueError(f"{type(generator).__name__} is not class-conditional but classes were given")
    if classes.dtype != torch.int64 or classes.shape != (n,):
        raise ValueError(f"classes must be an int64 tensor of shape [{n}], got {classes.dtype} {list(classes.shape)}")


def checked_decode(
    generator: MLVGMProtocol,
    latents: Mapping[str, torch.Tensor],
    classes: torch.Tensor | None = None,
    *,
    _inner: bool = False,
) -> torch.Tensor:
    """``generator.decode`` with the protocol enforced at the call.

    Raises ``ValueError`` for latents that do not match ``latent_spec`` (missing group, wrong
    shape or dtype, non-finite values on CPU) and ``RuntimeError`` for an output that is not
    ``[N, C, H, W]`` or not finite.
    """
    spec = generator.latent_spec
    lead = spec.check(latents, check_finite=_wants_finite_check(latents))
    if len(lead) != 1:
        raise ValueError(f"latents must have one batch dimension, got leading shape {list(lead)}")
    n = lead[0]
    check_classes(generator, classes, n)
    out = generator._decode(latents, classes) if _inner else generator.decode(latents, classes)
    return check_images(generator, out, n)


def check_images(generator: object, out: object, n: int) -> torch.Tensor:
    name = type(generator).__name__
    if not isinstance(out, torch.Tensor):
        raise RuntimeError(f"{name}.decode returned {type(out).__name__}, expected a tensor")
    if out.dim() != 4 or out.shape[0] != n:
        raise RuntimeError(f"{name}.decode returned shape {list(out.shape)}, expected [{n}, C, H, W]")
    expected = getattr(generator, "image_shape", None)
    if expected is not None and tuple(out.shape[1:]) != tuple(expected):
        raise RuntimeError(f"{name}.decode returned images {list(out.shape[1:])}, its image_shape is {list(expected)}")
    if out.device.type == "cpu" and not bool(torch.isfinite(out).all()):
        raise RuntimeError(f"{name}.decode returned non-finite values")
    return out
