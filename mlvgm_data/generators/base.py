"""The MLVGM protocol: what the pipe, the datasets and the MI utility need from a generator,
and :func:`decode_views`, the one place where a step's views are made."""

from __future__ import annotations

import contextlib
import itertools
import warnings
from typing import Iterator, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from .. import ops
from .._checks import check_int
from ..latents import LatentSpec
from ..policy import ViewPolicy


@runtime_checkable
class MLVGMProtocol(Protocol):
    """A multiple-latent-variable generative model.

    ``latent_spec`` names its noise groups; ``decode(latents)`` maps ``{group: [N, *shape]}``
    (standard-normal noise) to images ``[N, C, H, W]`` in [0, 1]. Class-conditional models set
    ``num_classes`` and accept ``classes`` (``[N]`` int64): ``decode(latents, classes)``; a
    generator without ``num_classes`` is always called as ``decode(latents)``.
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
        """Validate the latents (and classes) → :meth:`_decode` → validate the images."""
        n = check_latents(self, latents, classes)
        return check_images(self, self._decode(latents, classes), n)

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


def _wants_finite_check(latents: Mapping[str, torch.Tensor]) -> bool:
    # A finiteness check is a host sync on a GPU: do it on the CPU only (the CUDA producer
    # checks its outputs asynchronously, see pipe.py).
    return isinstance(latents, Mapping) and all(
        t.device.type == "cpu" for t in latents.values() if isinstance(t, torch.Tensor))


_NO_POLICY = object()


def check_generator(generator: object, policy: object = _NO_POLICY) -> None:
    """Raises ``ValueError`` unless ``generator`` follows the protocol (and ``policy``, when given,
    is a ``ViewPolicy`` that fits it)."""
    has_spec = isinstance(getattr(generator, "latent_spec", None), LatentSpec)
    if not has_spec or not callable(getattr(generator, "decode", None)):
        raise ValueError("generator must have a latent_spec (LatentSpec) and a decode(latents) method "
                         "(see MLVGMProtocol)")
    if isinstance(generator, nn.Module):
        for name, t in itertools.chain(generator.named_parameters(), generator.named_buffers()):
            if t.is_meta or isinstance(t, nn.parameter.UninitializedTensorMixin):
                # A lazy module would fill itself with random weights at the first decode, in each
                # DataLoader worker differently; a meta tensor holds no weights at all.
                raise ValueError(f"the generator's {name!r} is not materialised (meta device or a lazy module's "
                                 "uninitialised parameter): load its weights or run it once first")
    if policy is not _NO_POLICY:
        if not isinstance(policy, ViewPolicy):
            raise ValueError(f"policy must be a ViewPolicy, got {type(policy).__name__} (ViewPolicy({{}}) keeps "
                             "every group)")
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


def check_latents(generator: MLVGMProtocol, latents: Mapping[str, torch.Tensor],
                  classes: torch.Tensor | None = None) -> int:
    """The batch size of ``latents`` after checking them (and ``classes``) against the generator:
    ``ValueError`` for a missing group, a wrong shape or dtype, non-finite values on the CPU."""
    lead = generator.latent_spec.check(latents, check_finite=_wants_finite_check(latents))
    if len(lead) != 1:
        raise ValueError(f"latents must have one batch dimension, got leading shape {list(lead)}")
    check_classes(generator, classes, lead[0])
    return lead[0]


def checked_decode(generator: MLVGMProtocol, latents: Mapping[str, torch.Tensor],
                   classes: torch.Tensor | None = None) -> torch.Tensor:
    """``generator.decode`` with the protocol enforced at the call: an :class:`MLVGM` checks itself;
    any other generator gets :func:`check_latents` and :func:`check_images` around its ``decode``
    (called as ``decode(latents)`` unless it is class-conditional)."""
    if isinstance(generator, MLVGM):
        return generator.decode(latents, classes)
    n = check_latents(generator, latents, classes)
    out = generator.decode(latents, classes) if getattr(generator, "num_classes", None) else generator.decode(latents)
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


def generator_device(generator: nn.Module) -> torch.device:
    """The device of the generator's first parameter or buffer (CPU if it has none)."""
    for t in itertools.chain(generator.parameters(), generator.buffers()):
        return t.device
    return torch.device("cpu")


def _training_module(generator: object) -> str | None:
    if isinstance(generator, nn.Module):
        for name, module in generator.named_modules():
            if module.training:
                return name or type(generator).__name__
    return None


def set_eval_mode(generator: object, who: str) -> None:
    """Puts a generator that is (partly) in train mode into eval mode, with a warning: ``who``
    decodes in background threads and worker processes for as long as it lives, and in train mode
    batch norm and dropout would make each sample depend on the batch it is decoded in."""
    name = _training_module(generator)
    if name is not None:
        generator.eval()
        warnings.warn(f"{who} put the generator in eval mode ({name!r} was in train mode, where batch norm and "
                      "dropout make each sample depend on its batch)", UserWarning, stacklevel=3)


def check_eval_mode(generator: object, who: str) -> None:
    """Refuses a generator switched back to train mode after :func:`set_eval_mode`."""
    name = _training_module(generator)
    if name is not None:
        raise ValueError(f"{who} needs the generator in eval mode, but {name!r} is in train mode again (batch norm "
                         "and dropout would make each sample depend on its batch): call generator.eval()")


@contextlib.contextmanager
def eval_mode(generator: object) -> Iterator[None]:
    """Runs the block with ``generator`` in eval mode and restores every submodule's mode after:
    for the single-threaded users (MI analysis, view grids, scores)."""
    modules = list(generator.modules()) if isinstance(generator, nn.Module) else []
    before = [m.training for m in modules]
    for m in modules:
        m.training = False
    try:
        yield
    finally:
        for m, mode in zip(modules, before):
            m.training = mode


class Views(NamedTuple):
    """One step's generated views: ``images`` ``[V, B, C, H, W]`` (float32), ``classes`` ``[B]``
    (one class per anchor, shared by its views; ``None`` for an unconditional generator) and the
    ``latents`` ``{group: [V, B, *shape]}`` they were decoded from."""

    images: torch.Tensor
    classes: torch.Tensor | None
    latents: dict[str, torch.Tensor]


def decode_views(
    generator: MLVGMProtocol, policy: ViewPolicy, batch_size: int, num_views: int, *, seed: int, step: int,
    device: torch.device | str | None = None, stream: int = 0, sample_offset: int = 0,
    sample_ids: torch.Tensor | Sequence[int] | None = None, latent_out: torch.Tensor | None = None,
    autocast: torch.dtype | None = None, views: Sequence[int] | None = None, spec: LatentSpec | None = None,
    anchors: Mapping[str, torch.Tensor] | None = None, anchor_classes: torch.Tensor | None = None,
) -> Views:
    """Draws the latents of ``batch_size`` anchors and their views (:func:`ops.resample`), one class
    per anchor for a class-conditional generator (:func:`draw_classes`), and decodes all
    ``num_views · batch_size`` images in one forward, without autograd.

    Sample b uses counter sample id ``sample_offset + b`` (or ``sample_ids[b]``), so the same
    ``(seed, step, stream, id)`` gives the same latents and class anywhere. ``latent_out`` is the
    flat buffer :func:`ops.resample` writes into; ``autocast`` (bfloat16 or float16) runs the
    generator under :func:`torch.autocast`; ``views`` decodes only those views (``images`` then
    holds them in that order; ``latents`` always has all ``num_views``); ``spec`` draws the
    latents under another layout of the generator's groups (e.g. with ties undone).

    ``anchors`` (``{group: [n, *shape]}``, n ≤ ``batch_size``, e.g. inverted real images) are the
    anchors of the first n samples (the op's given anchors); the others are drawn from the prior.
    ``anchor_classes`` (``[n]``) are their classes for a class-conditional generator.
    """
    dev = generator_device(generator) if device is None else torch.device(device)
    spec = generator.latent_spec if spec is None else spec
    chosen = list(range(num_views)) if views is None else list(views)
    if any(not 0 <= v < num_views for v in chosen) or not chosen:
        raise ValueError(f"views must be a non-empty list of view indices in [0, {num_views}), got {views!r}")
    counters = dict(seed=seed, step=step, device=dev, stream=stream)
    if anchors is None:
        latents = ops.resample(spec, policy, batch_size, num_views, seed, step, dev, stream,
                               sample_offset=sample_offset, sample_ids=sample_ids, out=latent_out)
        classes = draw_classes(generator, batch_size, sample_offset=sample_offset, sample_ids=sample_ids, **counters)
    else:
        latents, classes = _given_and_drawn(generator, spec, policy, batch_size, num_views, anchors, anchor_classes,
                                            counters, sample_offset, sample_ids)
    picked = latents if views is None else {name: z[chosen] for name, z in latents.items()}
    flat = {name: z.reshape(len(chosen) * batch_size, *z.shape[2:]) for name, z in picked.items()}
    cast = torch.autocast(dev.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    # no_grad rather than inference_mode: the views must be ordinary tensors that a training
    # step can save for backward and a user transform may change in place.
    with torch.no_grad(), cast:
        images = checked_decode(generator, flat, None if classes is None else classes.repeat(len(chosen)))
    images = images.float().reshape(len(chosen), batch_size, *images.shape[1:])
    return Views(images, classes, latents)


def _given_and_drawn(generator: MLVGMProtocol, spec: LatentSpec, policy: ViewPolicy, batch_size: int, num_views: int,
                     anchors: Mapping[str, torch.Tensor], anchor_classes: torch.Tensor | None, counters: dict,
                     sample_offset: int, sample_ids: torch.Tensor | Sequence[int] | None,
                     ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The latents (and classes) of a batch whose first n anchors are given: one op call around
    the given anchors, one for the prior anchors of the rest, with the samples' own counter ids."""
    n = next(iter(anchors.values())).shape[0] if anchors else 0
    if not 0 < n <= batch_size:
        raise ValueError(f"anchors must give 1 to batch_size={batch_size} anchors per group, got {n}")
    ids = (torch.arange(sample_offset, sample_offset + batch_size, dtype=torch.int64) if sample_ids is None
           else torch.as_tensor(sample_ids, dtype=torch.int64))
    latents = ops.resample(spec, policy, n, num_views, sample_ids=ids[:n], anchors=anchors, **counters)
    if getattr(generator, "num_classes", None):
        if anchor_classes is None:
            raise ValueError("a class-conditional generator needs anchor_classes for the given anchors")
        check_classes(generator, anchor_classes, n)
        if bool(((anchor_classes < 0) | (anchor_classes >= generator.num_classes)).any()):
            raise ValueError(f"anchor_classes must lie in [0, {generator.num_classes})")
    classes = anchor_classes.to(counters["device"]) if getattr(generator, "num_classes", None) else None
    if n < batch_size:
        drawn = ops.resample(spec, policy, batch_size - n, num_views, sample_ids=ids[n:], **counters)
        latents = {g: torch.cat([latents[g], drawn[g]], dim=1) for g in latents}
        drawn_classes = draw_classes(generator, batch_size - n, sample_ids=ids[n:], **counters)
        if classes is not None:
            classes = torch.cat([classes, drawn_classes])
    return latents, classes


@torch.no_grad()
def prior_samples(generator: MLVGMProtocol, n: int, seed: int = 0, batch_size: int = 250,
                  stream: int = 0) -> torch.Tensor:
    """``n`` images from the prior: the anchors of :func:`decode_views` (step k for the k-th batch
    of ``batch_size``), with a class per anchor for a class-conditional generator, in eval mode;
    float32 on the generator's device."""
    n = check_int(n, "n", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    keep = ViewPolicy({})
    chunks = []
    with eval_mode(generator):
        for step, start in enumerate(range(0, n, batch_size)):
            chunks.append(decode_views(generator, keep, min(batch_size, n - start), 1, seed=seed, step=step,
                                       stream=stream).images[0])
    return torch.cat(chunks)
