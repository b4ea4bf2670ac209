"""Given anchors of ``ops.resample``: their checks, what a tied group's anchor is, and how the kernels
get them.

A tie (``LatentGroup.tie``) shares one anchor, drawn once for all its groups; a given anchor keeps
that: the anchor given for a tied group is the anchor of its whole tie. ``anchors`` may name any
one group of a tie, or several, which must then hold the same values bit for bit (a tie with two
different anchors would no longer be a tie: untie the groups in the spec instead).

The kernels read the caller's tensors where they are (no copy, so no torch op runs on the CPU
before the kernel: an OpenMP region there leaves its threads spinning while the kernel's own
helpers need the cores, which made the call up to 8x slower on 2 cores); the value checks read
them with NumPy on the CPU for the same reason.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import numpy as np
import torch

from .latents import LatentSpec


class GivenAnchors(NamedTuple):
    """The given anchors as the kernels take them (the op's ``anchors`` and ``anchor_index``)."""

    tensors: list[torch.Tensor]  # contiguous float32 [B, *shape], one per given tie or untied group
    index: list[int]  # per group of the spec: its anchor's position in tensors; -1: drawn from the prior


def _checked(spec: LatentSpec, name: str, x: object, batch_size: int, device: torch.device) -> torch.Tensor:
    """One given anchor, checked for everything but its values."""
    g = spec[name]
    what = f"anchors[{name!r}]"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a tensor [batch_size, *shape], got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise ValueError(f"{what} must be float32, the op's dtype (cast it with .float()), got {x.dtype}")
    if x.dim() != len(g.shape) + 1 or tuple(x.shape[1:]) != g.shape:
        raise ValueError(f"{what} must have shape [batch_size, *shape] = {[batch_size, *g.shape]}, "
                         f"got {list(x.shape)}")
    if x.shape[0] != batch_size:
        raise ValueError(f"{what} holds {x.shape[0]} anchors but batch_size={batch_size}")
    if x.device != device:
        raise ValueError(f"{what} is on {x.device} but the op writes on {device}")
    return x.detach()


def _finite(x: torch.Tensor) -> bool:
    """Whether the sum is finite, which it is only if every value is (an inf or a NaN never adds up
    to a number; a sum that overflowed says False of finite values): one fast reduction."""
    if x.device.type != "cpu":
        return math.isfinite(float(x.sum()))
    with np.errstate(over="ignore", invalid="ignore"):  # the answer, not a warning
        return math.isfinite(float(np.sum(x.numpy())))


def _same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    if x.device.type == "cpu":
        return bool(np.array_equal(x.view(torch.int32).numpy(), y.view(torch.int32).numpy()))
    return torch.equal(x.view(torch.int32), y.view(torch.int32))


def _check_values(spec: LatentSpec, given: dict[str, torch.Tensor], firsts: dict[int, str]) -> None:
    """Finite values, and one value per tie."""
    for name, x in given.items():
        if not _finite(x) and not bool(torch.isfinite(x).all()):
            raise ValueError(f"anchors[{name!r}] has non-finite values")
    for i, g in enumerate(spec):
        first = firsts.get(spec.anchor_slots[i])
        if g.name in given and first != g.name and not _same_bits(given[g.name], given[first]):
            raise ValueError(f"anchors[{first!r}] and anchors[{g.name!r}] differ, but the groups are tied "
                             f"(tie {g.tie!r}) and share one anchor: give one of them, or the same values")


def given_anchors(
    spec: LatentSpec, anchors: Mapping[str, torch.Tensor], batch_size: int, out: torch.Tensor, check_values: bool,
) -> GivenAnchors | None:
    """Checks ``anchors`` (naming the argument and the group) for the op writing ``out``; None when
    empty.

    With ``check_values`` the values are read too (a host sync on a GPU): non-finite values are
    refused, and so are groups of one tie given different values. Without, a tie given more than
    once takes the values of its first group in spec order."""
    if not isinstance(anchors, Mapping):
        raise ValueError(f"anchors must be a dict {{group: Tensor[batch_size, *shape]}}, got {type(anchors).__name__}")
    if not isinstance(check_values, bool):
        raise ValueError(f"check_anchors must be True or False, got {check_values!r}")
    unknown = [n for n in anchors if n not in spec]
    if unknown:
        raise ValueError(f"anchors has unknown groups {unknown}; the spec has {list(spec.names)}")
    given = {g.name: _checked(spec, g.name, anchors[g.name], batch_size, out.device) for g in spec if g.name in anchors}
    if not given:
        return None
    firsts: dict[int, str] = {}  # anchor slot -> its first given group, whose values the kernels read
    for i, g in enumerate(spec):
        if g.name in given:
            firsts.setdefault(spec.anchor_slots[i], g.name)
    if check_values:
        _check_values(spec, given, firsts)
    tensors, at = [], {}
    for slot, name in firsts.items():
        x = given[name].contiguous()
        # The kernels read an anchor while they write out: one inside out (a view of an earlier
        # call's output, say) is copied first.
        if x.untyped_storage().data_ptr() == out.untyped_storage().data_ptr():
            x = x.clone()
        at[slot] = len(tensors)
        tensors.append(x)
    return GivenAnchors(tensors, [at.get(s, -1) for s in spec.anchor_slots])
