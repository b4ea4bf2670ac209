"""W+ layer groups: the latent groups of a StyleGAN-like generator (shared by the StyleGAN adapter
and the built-in StyleGAN-like model)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..._checks import check_int
from ...latents import LatentGroup, LatentSpec


def split_layers(num_ws: int, layer_groups: int | Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` W+ layer ranges, one per group, from ``layer_groups``:

    * ``k``: ``k`` groups of near-equal size, in layer order;
    * a list of ``(start, stop)`` ranges, e.g. ``[(0, 4), (4, 8), (8, 14)]``;
    * a list of layer lists, each of consecutive layers, e.g. ``[[0, 1, 2, 3], [4, 5, 6, 7], [8, …, 13]]``.

    A list must cover ``0 … num_ws-1`` exactly once (every layer needs one owning group). The two
    list forms cannot be mistaken for each other: ranges that cover every layer once share their
    inner boundaries, so read as layer lists they would name a layer twice (or ``num_ws``).
    """
    num_ws = check_int(num_ws, "num_ws", 1)
    if isinstance(layer_groups, int) and not isinstance(layer_groups, bool):
        k = layer_groups
        if not 1 <= k <= num_ws:
            raise ValueError(f"layer_groups={k} must be between 1 and num_ws={num_ws}")
        base, extra = divmod(num_ws, k)
        ranges, start = [], 0
        for i in range(k):
            stop = start + base + (1 if i < extra else 0)
            ranges.append((start, stop))
            start = stop
        return ranges
    try:
        groups = [[int(v) for v in g] for g in layer_groups]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            "layer_groups must be an int, a list of (start, stop) layer ranges or a list of layer lists, "
            f"got {layer_groups!r}"
        ) from None
    if not groups:
        raise ValueError("layer_groups must not be empty")
    pairs = all(len(g) == 2 for g in groups)
    range_error = _cover_error(num_ws, [(g[0], g[1]) for g in groups]) if pairs else None
    if pairs and range_error is None:
        return [(g[0], g[1]) for g in groups]
    list_error = _layer_lists_error(num_ws, groups)
    if list_error is not None:
        raise ValueError(range_error or list_error)  # pairs that are no layer lists either: ranges were meant
    return [(min(g), max(g) + 1) for g in groups]


def _cover_error(num_ws: int, ranges: list[tuple[int, int]]) -> str | None:
    """What is wrong with ``ranges`` as a cover of the W+ layers (``None``: each layer once)."""
    owners = [0] * num_ws
    for a, b in ranges:
        if not 0 <= a < b <= num_ws:
            return f"layer range ({a}, {b}) must satisfy 0 <= start < stop <= num_ws={num_ws}"
        for i in range(a, b):
            owners[i] += 1
    missing = [i for i, c in enumerate(owners) if c == 0]
    doubled = [i for i, c in enumerate(owners) if c > 1]
    if missing or doubled:
        return (f"layer_groups must cover each of the {num_ws} W+ layers exactly once; "
                f"uncovered {missing}, covered twice {doubled}")
    return None


def _layer_lists_error(num_ws: int, groups: list[list[int]]) -> str | None:
    for g in groups:
        if not g:
            return "layer_groups has an empty layer list"
        if not all(0 <= v < num_ws for v in g):
            return f"layer list {g} names layers outside 0 … {num_ws - 1}"
        if sorted(g) != list(range(min(g), max(g) + 1)):
            return f"layer list {g} must hold consecutive layers (a W+ group is a contiguous block of layers)"
    return _cover_error(num_ws, [(min(g), max(g) + 1) for g in groups])


class WPlusGroups:
    """Style mixing over W+ layer groups with tied anchors.

    Each group is ``LatentGroup(name, (z_dim,), tie="z")``: the anchor gives every group the same
    z, and a view that perturbs group g changes only the W+ layers g owns. ``assemble`` takes,
    for every layer, the w its owning group's z was mapped to.
    """

    def __init__(self, num_ws: int, z_dim: int, layer_groups: int | Sequence[Sequence[int]] = 4,
                 names: Sequence[str] | None = None, tie: str = "z") -> None:
        self.num_ws = check_int(num_ws, "num_ws", 1)
        self.z_dim = check_int(z_dim, "z_dim", 1)
        self.ranges = split_layers(num_ws, layer_groups)
        if names is None:
            names = [f"w{i}" for i in range(len(self.ranges))]
        names = list(names)
        if len(names) != len(self.ranges):
            raise ValueError(f"group names {names} must match the {len(self.ranges)} layer groups")
        self.spec = LatentSpec([LatentGroup(n, (z_dim,), tie=tie) for n in names])
        owner = [0] * num_ws
        for g, (a, b) in enumerate(self.ranges):
            for i in range(a, b):
                owner[i] = g
        self.owner = owner

    def stack(self, latents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{group: [N, z_dim]}`` → ``[G·N, z_dim]`` (group-major) for one mapping call."""
        return torch.cat([latents[n] for n in self.spec.names], dim=0)

    def assemble(self, mapped: torch.Tensor, n: int, where: str) -> torch.Tensor:
        """``[G·N, num_ws, w_dim]`` (mapping of :meth:`stack`) → mixed W+ ``[N, num_ws, w_dim]``."""
        g = len(self.ranges)
        if not isinstance(mapped, torch.Tensor) or mapped.dim() != 3 or mapped.shape[:2] != (g * n, self.num_ws):
            got = list(mapped.shape) if isinstance(mapped, torch.Tensor) else type(mapped).__name__
            raise RuntimeError(f"{where} returned {got}, expected [{g * n}, {self.num_ws}, w_dim]")
        mapped = mapped.reshape(g, n, self.num_ws, mapped.shape[-1])
        owner = torch.tensor(self.owner, device=mapped.device)
        layers = torch.arange(self.num_ws, device=mapped.device)
        return mapped[owner, :, layers].transpose(0, 1)
