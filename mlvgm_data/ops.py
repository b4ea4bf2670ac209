"""The fused latent-resampling op, its uniform-draw sibling, and their pure-PyTorch references.

Randomness is Philox4x32-10 keyed by ``(seed, stream)`` with the counter
``(block, sample, step, domain|view|slot)`` (see ``csrc/philox.h``). The compiled kernels and the
references below run the same IEEE operations in the same order, so they agree bit for bit on
every device and thread count.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Mapping, NamedTuple, Sequence

import torch

from ._checks import U32 as _U32
from ._checks import check_device, check_int
from ._op_anchors import given_anchors
from .latents import LatentSpec
from .philox import (
    DOMAIN_ANCHOR,
    DOMAIN_AUGMENT,
    DOMAIN_CLASS,
    DOMAIN_DATA,
    DOMAIN_VIEW,
    erf_c,
    resample_reference_into,
    row_words,
    unit_uniform,
)
from .policy import Keep, Perturb, Resample, ViewPolicy

__all__ = ["DOMAIN_ANCHOR", "DOMAIN_AUGMENT", "DOMAIN_CLASS", "DOMAIN_DATA", "DOMAIN_VIEW", "has_native", "resample",
           "resample_reference", "uniform", "uniform_reference"]


_KIND = {Keep: 0, Perturb: 1, Resample: 2}


def _load_native() -> bool:
    try:
        from . import _C  # noqa: F401  (importing registers torch.ops.mlvgm_data.*)
    except ImportError as e:
        warnings.warn(
            f"mlvgm_data: the compiled op is not available ({e}); falling back to the PyTorch "
            "reference implementation, which gives the same numbers but is slower. "
            "Reinstall with `pip install -e . --no-build-isolation` to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


_NATIVE = _load_native()


def has_native(device: torch.device | str | None = None) -> bool:
    """Whether the compiled op is loaded (and, given a device, has a kernel for its type)."""
    if not _NATIVE:
        return False
    if device is None:
        return True
    return _has_kernel(torch.device(device).type)


@functools.lru_cache(maxsize=None)
def _has_kernel(device_type: str) -> bool:
    # Kernels register when _C loads, before any call can ask: the answer never changes.
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key("mlvgm_data::resample_", key)


# --- argument checks -----------------------------------------------------------------------

def _sample_ids(
    sample_ids: torch.Tensor | Sequence[int] | None, batch_size: int, sample_offset: int,
    device: torch.device,
) -> torch.Tensor | None:
    if sample_ids is None:
        check_int(sample_offset, "sample_offset", 0, _U32 - batch_size + 1)
        return None
    try:
        ids = torch.as_tensor(sample_ids)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"sample_ids must be a sequence or tensor of integers, got {sample_ids!r}") from None
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        # A cast would turn 0.5 into id 0 (a repeat of another sample's numbers) without a word.
        raise ValueError(f"sample_ids must be integers, got {ids.dtype} values")
    ids = ids.to(torch.int64)
    if ids.dim() != 1 or ids.numel() != batch_size:
        raise ValueError(f"sample_ids must be a vector of batch_size={batch_size} ids, got {list(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= _U32):
        raise ValueError("sample_ids must be in [0, 2**32)")
    return ids.to(device).contiguous()


def _output_buffer(out: torch.Tensor | None, device: torch.device | str | None, total: int) -> torch.Tensor:
    """``out`` checked (a contiguous float32 buffer of ``total`` values on ``device``), or a new one."""
    if out is None:
        return torch.empty(total, dtype=torch.float32, device=_device(device))
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"out must be a tensor, got {type(out).__name__}")
    dev = out.device
    _not_meta(dev, "out")
    want = None if device is None else _device(device)
    if want is not None and (want.type != dev.type or want.index not in (None, dev.index)):
        raise ValueError(f"out is on {dev} but device={str(device)!r}")
    if out.dtype != torch.float32 or not out.is_contiguous() or out.numel() != total:
        raise ValueError(f"out must be a contiguous float32 tensor of {total} elements")
    if out.requires_grad:
        raise ValueError("out must not require grad (the op writes it in place)")
    return out


def _device(device: torch.device | str | None) -> torch.device:
    dev = torch.device("cpu") if device is None else check_device(device)
    _not_meta(dev, "device")
    return dev


def _not_meta(dev: torch.device, name: str) -> None:
    if dev.type == "meta":
        raise ValueError(f"{name} is on the meta device, which holds no values: the op writes numbers (use 'cpu' "
                         "or 'cuda')")


class _Layout(NamedTuple):
    """The kernels' arguments for one (spec, policy, batch, views) and the output's split."""

    meta: tuple[int, ...]  # 5 ints per group
    params: tuple[float, ...]  # 4 floats per group
    starts: tuple[int, ...]  # where each group's block starts in the flat output
    shapes: tuple[tuple[int, ...], ...]  # each block as [num_views, batch_size, *group shape]
    strides: tuple[tuple[int, ...], ...]  # contiguous strides of those shapes


@functools.lru_cache(maxsize=256)
def _layout(spec: LatentSpec, rules: tuple[tuple[str, Keep | Perturb | Resample], ...], anchor_trunc: float | None,
            batch_size: int, num_views: int) -> _Layout:
    # Cached: the pipe asks for the same layout every step, and building it in Python costs as
    # much as the kernel on a small spec (BigBiGAN's 6 x 20). The key holds the rules
    # themselves (frozen dataclasses), so a policy edited in place gets a fresh layout.
    by_name = dict(rules)
    starts = tuple(num_views * batch_size * off for off in spec.offsets)
    meta: list[int] = []
    params: list[float] = []
    c_anchor = erf_c(anchor_trunc)
    for i, g in enumerate(spec):
        rule = by_name.get(g.name, Keep())
        mu = rule.mu if isinstance(rule, Perturb) else 0.0
        sigma = rule.sigma if isinstance(rule, Perturb) else 0.0
        trunc = None if isinstance(rule, Keep) else rule.trunc
        meta += [g.numel, spec.anchor_slots[i], i, _KIND[type(rule)], starts[i]]
        params += [mu, sigma, erf_c(trunc), c_anchor]
    shapes = tuple((num_views, batch_size, *g.shape) for g in spec)
    strides = tuple(tuple(math.prod(shape[d + 1:]) for d in range(len(shape))) for shape in shapes)
    return _Layout(tuple(meta), tuple(params), starts, shapes, strides)


def _layout_of(spec: LatentSpec, policy: ViewPolicy, batch_size: int, num_views: int) -> _Layout:
    """The kernels' arguments (``.meta``, ``.params``) and the output's blocks for one call."""
    return _layout(spec, tuple(policy.rules.items()), policy.anchor_trunc, batch_size, num_views)


def _check_resample(
    spec: LatentSpec, policy: ViewPolicy, batch_size: int, num_views: int, seed: int, step: int,
    stream: int,
) -> None:
    if not isinstance(spec, LatentSpec):
        raise ValueError(f"spec must be a LatentSpec, got {type(spec).__name__}")
    if not isinstance(policy, ViewPolicy):
        raise ValueError(f"policy must be a ViewPolicy, got {type(policy).__name__}")
    policy.check(spec)
    if len(spec) >= 1 << 20:
        raise ValueError("a spec may have at most 2**20 groups")
    for value, name, low, high in ((batch_size, "batch_size", 1, _U32), (num_views, "num_views", 1, 256),
                                   (seed, "seed", 0, _U32), (step, "step", 0, _U32), (stream, "stream", 0, _U32)):
        check_int(value, name, low, high)


def _as_views(spec: LatentSpec, out: torch.Tensor, layout: _Layout) -> dict[str, torch.Tensor]:
    # One as_strided per group (a slice and a view would make two tensors: most of a small
    # call's Python time); out is a contiguous 1-D buffer, so these are its plain sub-blocks.
    base = out.storage_offset()
    return {g.name: out.as_strided(shape, stride, base + start)
            for g, start, shape, stride in zip(spec, layout.starts, layout.shapes, layout.strides)}


# --- public ops ------------------------------------------------------------------------------

def resample(
    spec: LatentSpec,
    policy: ViewPolicy,
    batch_size: int,
    num_views: int,
    seed: int,
    step: int,
    device: torch.device | str | None = None,
    stream: int = 0,
    *,
    sample_offset: int = 0,
    sample_ids: torch.Tensor | Sequence[int] | None = None,
    out: torch.Tensor | None = None,
    anchors: Mapping[str, torch.Tensor] | None = None,
    check_anchors: bool = True,
) -> dict[str, torch.Tensor]:
    """Anchors and views of every group for one batch, in one fused launch.

    Returns ``{group: Tensor[num_views, batch_size, *shape]}`` (float32), views into one flat
    buffer (``out`` if given: ``spec.numel * batch_size * num_views`` floats on ``device``).
    With ``policy.include_anchor``, view 0 is the anchor itself. Sample ``b`` uses counter
    sample id ``sample_offset + b`` (or ``sample_ids[b]``); the same ``(seed, step, stream)`` gives
    the same numbers on every device, and different steps or streams share no values.

    ``anchors={group: Tensor[batch_size, *shape]}`` (float32, on the op's device; e.g. inverted
    images) replaces those groups' prior draws: view 0 (with ``include_anchor``) and ``Keep`` views
    are the given anchor, ``Perturb`` views the given anchor + the very ε (same counters) a prior
    call adds to its drawn anchor, ``Resample`` views the same fresh draws. Other groups are drawn
    as without ``anchors``; ``policy.anchor_trunc`` applies to drawn anchors only. A tied group's
    given anchor is its whole tie's (name one group of it, or several with equal values). Anchors
    are read in place (copied if they alias ``out``), not differentiated; ``check_anchors`` refuses
    non-finite and differing tied values (a host sync on a GPU: False if the caller checked).
    """
    _check_resample(spec, policy, batch_size, num_views, seed, step, stream)
    batch_size, num_views, seed, step, stream = (int(v) for v in (batch_size, num_views, seed, step, stream))
    out = _output_buffer(out, device, spec.numel * batch_size * num_views)
    dev = out.device
    ids = _sample_ids(sample_ids, batch_size, sample_offset, dev)
    given = None if anchors is None else given_anchors(spec, anchors, batch_size, out, check_anchors)
    layout = _layout_of(spec, policy, batch_size, num_views)
    out = out if out.dim() == 1 else out.view(-1)
    views = _as_views(spec, out, layout)
    if has_native(dev):
        torch.ops.mlvgm_data.resample_(out, ids, layout.meta, layout.params, batch_size, num_views,
                                       policy.include_anchor, seed, stream, step, sample_offset, *(given or ()))
    else:
        resample_reference_into(views, spec, policy, batch_size, num_views, seed, step, stream, sample_offset,
                                 ids, given)
    return views


def resample_reference(
    spec: LatentSpec,
    policy: ViewPolicy,
    batch_size: int,
    num_views: int,
    seed: int,
    step: int,
    device: torch.device | str | None = None,
    stream: int = 0,
    *,
    sample_offset: int = 0,
    sample_ids: torch.Tensor | Sequence[int] | None = None,
    anchors: Mapping[str, torch.Tensor] | None = None,
    check_anchors: bool = True,
) -> dict[str, torch.Tensor]:
    """``resample`` in plain PyTorch (Philox in int64 tensor ops): the tests' ground truth."""
    _check_resample(spec, policy, batch_size, num_views, seed, step, stream)
    dev = _device(device)
    ids = _sample_ids(sample_ids, batch_size, sample_offset, dev)
    out = torch.empty(spec.numel * batch_size * num_views, dtype=torch.float32, device=dev)
    given = None if anchors is None else given_anchors(spec, anchors, batch_size, out, check_anchors)
    views = _as_views(spec, out, _layout_of(spec, policy, batch_size, num_views))
    resample_reference_into(views, spec, policy, batch_size, num_views, seed, step, stream, sample_offset, ids, given)
    return views


def uniform(
    batch_size: int,
    n: int,
    seed: int,
    step: int,
    device: torch.device | str | None = None,
    stream: int = 0,
    *,
    domain: int = DOMAIN_AUGMENT,
    view: int = 0,
    slot: int = 0,
    sample_offset: int = 0,
    sample_ids: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """``[batch_size, n]`` uniforms in (0, 1) from counter ``(·, sample, step, domain|view|slot)``.

    The augmentations draw their per-sample parameters here, so they replay exactly and never
    share numbers with the latents (which use domains 0 and 1).
    """
    batch_size, n, seed, step, stream, domain, view, slot = (
        check_int(value, name, low, high) for value, name, low, high in (
            (batch_size, "batch_size", 0, _U32), (n, "n", 0, 1 << 31), (seed, "seed", 0, _U32),
            (step, "step", 0, _U32), (stream, "stream", 0, _U32), (domain, "domain", 0, 16),
            (view, "view", 0, 256), (slot, "slot", 0, 1 << 20)))
    dev = _device(device)
    ids = _sample_ids(sample_ids, batch_size, sample_offset, dev)
    out = torch.empty(batch_size, n, dtype=torch.float32, device=dev)
    if batch_size == 0 or n == 0:
        return out
    if has_native(dev):
        return torch.ops.mlvgm_data.uniform_(out, ids, seed, stream, step, domain, view, slot, sample_offset)
    return unit_uniform(row_words(batch_size, n, seed, stream, step, domain, view, slot, sample_offset, ids, dev))


def uniform_reference(
    batch_size: int,
    n: int,
    seed: int,
    step: int,
    device: torch.device | str | None = None,
    stream: int = 0,
    *,
    domain: int = DOMAIN_AUGMENT,
    view: int = 0,
    slot: int = 0,
    sample_offset: int = 0,
    sample_ids: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """``uniform`` in plain PyTorch."""
    dev = _device(device)
    ids = _sample_ids(sample_ids, batch_size, sample_offset, dev)
    return unit_uniform(row_words(batch_size, n, seed, stream, step, domain, view, slot, sample_offset, ids, dev))
