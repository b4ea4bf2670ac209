"""Latent groups: named blocks of standard-normal noise, and the spec that lays them out."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

MAX_GROUP_NUMEL = 1 << 28
"""Values per sample of one group (the kernels index a group's values with 32-bit ints)."""


def _check_name(name: object, field: str) -> str:
    if not isinstance(name, str) or not name or not name.isidentifier():
        raise ValueError(f"{field} must be a non-empty identifier string, got {name!r}")
    return name


@dataclass(frozen=True)
class LatentGroup:
    """A named group of i.i.d. N(0, 1) latents of a fixed per-sample shape.

    ``tie`` names a tied set: groups with the same ``tie`` share one anchor (the same noise
    values), and each gets its own view noise. That is style mixing: a StyleGAN's layer groups
    all start from one z, and the view of group g perturbs only g's copy.
    """

    name: str
    shape: tuple[int, ...]
    tie: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "LatentGroup.name")
        raw = (self.shape,) if isinstance(self.shape, numbers.Integral) else self.shape
        try:
            items = tuple(raw)
        except TypeError:
            raise ValueError(
                f"LatentGroup.shape of {self.name!r} must be a tuple of ints, got {self.shape!r}"
            ) from None
        if not items or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in items):
            raise ValueError(
                f"LatentGroup.shape of {self.name!r} must be a non-empty tuple of positive ints, "
                f"got {self.shape!r}"
            )
        shape = tuple(int(s) for s in items)
        if math.prod(shape) > MAX_GROUP_NUMEL:
            raise ValueError(f"LatentGroup {self.name!r} has {math.prod(shape):,} values per sample; at most "
                             f"{MAX_GROUP_NUMEL:,} (2**28) are supported")
        object.__setattr__(self, "shape", shape)
        if self.tie is not None:
            _check_name(self.tie, f"LatentGroup.tie of {self.name!r}")

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def to_dict(self) -> dict:
        d: dict = {"name": self.name, "shape": list(self.shape)}
        if self.tie is not None:
            d["tie"] = self.tie
        return d


class LatentSpec:
    """An ordered set of latent groups: ``spec.numel`` floats per sample.

    ``split`` / ``join`` convert between a flat ``[..., numel]`` buffer (groups in order) and a
    dict ``{name: [..., *shape]}``.
    """

    def __init__(self, groups: Sequence[LatentGroup]) -> None:
        groups = tuple(groups)
        if not groups:
            raise ValueError("LatentSpec.groups must not be empty")
        for g in groups:
            if not isinstance(g, LatentGroup):
                raise ValueError(f"LatentSpec.groups must hold LatentGroup objects, got {g!r}")
        names = [g.name for g in groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"LatentSpec.groups has duplicate names: {dupes}")
        tie_shape: dict[str, tuple[int, ...]] = {}
        for g in groups:
            if g.tie is None:
                continue
            first = tie_shape.setdefault(g.tie, g.shape)
            if first != g.shape:
                raise ValueError(
                    f"LatentGroup.tie {g.tie!r}: tied groups must share a shape, "
                    f"{g.name!r} has {g.shape} but the set has {first}"
                )
        self.groups = groups
        self._index = {g.name: i for i, g in enumerate(groups)}
        offsets, off = [], 0
        for g in groups:
            offsets.append(off)
            off += g.numel
        self.offsets = tuple(offsets)
        self.numel = off
        first_of_tie: dict[str, int] = {}
        self.anchor_slots = tuple(
            i if g.tie is None else first_of_tie.setdefault(g.tie, i) for i, g in enumerate(groups)
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def __getitem__(self, name: str) -> LatentGroup:
        return self.groups[self.index(name)]

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(f"unknown latent group {name!r}; the spec has {list(self.names)}") from None

    def __iter__(self) -> Iterator[LatentGroup]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LatentSpec) and self.groups == other.groups

    def __hash__(self) -> int:
        return hash(self.groups)

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{g.name}{list(g.shape)}" + (f"~{g.tie}" if g.tie else "") for g in self.groups
        )
        return f"LatentSpec({inner})"

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[..., numel]`` → ``{name: [..., *shape]}`` (views where the layout allows)."""
        if flat.shape[-1:] != (self.numel,):
            raise ValueError(f"split expects a [..., {self.numel}] tensor, got {tuple(flat.shape)}")
        lead = flat.shape[:-1]
        return {
            g.name: flat[..., off : off + g.numel].reshape(*lead, *g.shape)
            for g, off in zip(self.groups, self.offsets)
        }

    def join(self, latents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{name: [..., *shape]}`` → ``[..., numel]``, groups in spec order."""
        lead = self.check(latents, check_finite=False)
        return torch.cat([latents[g.name].reshape(*lead, g.numel) for g in self.groups], dim=-1)

    def check(self, latents: Mapping[str, torch.Tensor], check_finite: bool = True) -> tuple[int, ...]:
        """Validates a latent dict against the spec; returns the shared leading shape.

        Raises ``ValueError`` naming the group for a missing or unknown group, a wrong shape or
        a non-floating dtype, and (with ``check_finite``; a host sync on GPU) non-finite values.
        """
        if not isinstance(latents, Mapping):
            raise ValueError(f"latents must be a dict of tensors, got {type(latents).__name__}")
        missing = [n for n in self.names if n not in latents]
        if missing:
            raise ValueError(f"latents are missing groups {missing}; the spec has {list(self.names)}")
        unknown = [n for n in latents if n not in self._index]
        if unknown:
            raise ValueError(f"latents have unknown groups {unknown}; the spec has {list(self.names)}")
        lead: tuple[int, ...] | None = None
        for g in self.groups:
            x = latents[g.name]
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"latent group {g.name!r} must be a tensor, got {type(x).__name__}")
            if not x.is_floating_point():
                raise ValueError(f"latent group {g.name!r} must be floating point, got {x.dtype}")
            k = len(g.shape)
            if x.dim() < k + 1 or tuple(x.shape[-k:]) != g.shape:
                raise ValueError(
                    f"latent group {g.name!r} must have shape [..., {', '.join(map(str, g.shape))}], "
                    f"got {list(x.shape)}"
                )
            this = tuple(x.shape[:-k])
            if lead is None:
                lead = this
            elif this != lead:
                raise ValueError(
                    f"latent group {g.name!r} has leading shape {list(this)}, other groups {list(lead)}"
                )
            if check_finite and not bool(torch.isfinite(x).all()):
                raise ValueError(f"latent group {g.name!r} has non-finite values")
        assert lead is not None
        return lead

    def to_dict(self) -> dict:
        return {"groups": [g.to_dict() for g in self.groups]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "LatentSpec":
        try:
            groups = d["groups"]
            return cls([LatentGroup(g["name"], tuple(g["shape"]), g.get("tie")) for g in groups])
        except (KeyError, TypeError) as e:
            raise ValueError(f"LatentSpec.from_dict: malformed spec {d!r} ({e})") from None
