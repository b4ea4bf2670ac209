"""What every augmentation op is: parameter sampling apart from application, and the registry of ops by name.

As in kornia (``generate_parameters`` / ``apply_transform``) and torchvision v2 (``make_params`` /
``transform``), an op is a frozen dataclass of its settings with two halves:

* :meth:`Op.sample` draws per-sample parameters ``{name: Tensor[B, ...]}`` from a :class:`Draw`,
  which gives ``[B, n]`` uniforms of the counter streams (:func:`mlvgm_data.ops.uniform`) at the
  op's **own counter slot**: no op reads another op's numbers, so adding or removing an op never
  changes what the others draw, and a pipeline's output stays bit-exact by construction;
* :meth:`Op.apply` is a pure batched function of images ``[N, C, H, W]`` and those parameters
  (:meth:`Op.apply_` is its in-place twin that pipelines chain, with scratch buffers).

A new op: one file in this package with a ``@register``-ed frozen dataclass subclass of
:class:`Op` that sets ``slot`` (a free one, if it draws), ``param_shapes``, ``apply_fields`` and
implements ``sample`` and ``apply_``; plus its import line in ``ops/__init__.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch

from ... import ops as counter_ops
from ..._checks import check_images, check_per_sample
from ..functional import Workspace

SLOT_STRIDE = 64
"""Ops draw from slots below this; a pipeline's k-th op of one class draws from ``slot + k·SLOT_STRIDE``."""


@dataclass(frozen=True, eq=False)
class Draw:
    """The counter of one view's draws: ``draw(n)`` → ``[batch_size, n]`` uniforms in (0, 1) from
    ``(seed, step, stream, sample id, view, slot)`` (domain ``DOMAIN_AUGMENT``)."""

    batch_size: int
    seed: int
    step: int
    stream: int = 0
    view: int = 0
    slot: int = 0
    sample_offset: int = 0
    sample_ids: torch.Tensor | Sequence[int] | None = None
    device: torch.device = torch.device("cpu")

    def at(self, slot: int) -> "Draw":
        """The same counter at another slot."""
        # positional, not dataclasses.replace: this runs once per op and view on every call
        return Draw(self.batch_size, self.seed, self.step, self.stream, self.view, slot, self.sample_offset,
                    self.sample_ids, self.device)

    def __call__(self, n: int) -> torch.Tensor:
        return counter_ops.uniform(self.batch_size, n, self.seed, self.step, self.device, self.stream,
                                   domain=counter_ops.DOMAIN_AUGMENT, view=self.view, slot=self.slot,
                                   sample_offset=self.sample_offset, sample_ids=self.sample_ids)

    def never(self) -> torch.Tensor:
        """An all-False ``[batch_size]`` mask (an op with probability 0 draws nothing)."""
        return torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)

    def coin(self, p: float) -> torch.Tensor:
        """``[batch_size]`` bools, True with probability ``p`` (one draw per sample; none when p = 0)."""
        return self(1)[:, 0] < p if p > 0 else self.never()


class Op:
    """One augmentation. Subclasses are frozen dataclasses (their settings) and set:

    * ``slot``: the counter slot of their draws (``None``: draws nothing);
    * ``param_shapes``: name → trailing shape of each per-sample parameter ``sample`` returns;
    * ``apply_fields``: the settings ``apply_`` reads (views whose ops agree on them are applied
      in one batched call; others view by view, with the same bits);
    * ``in_place``: whether ``apply_`` writes into its input (else it returns a new tensor);
    * ``keeps_range``: whether images in [0, 1] stay in [0, 1] up to rounding (a pipeline clamps
      once, before its first op that does not);
    * ``absorbs``: op types that, right after this one, it applies in its own kernel (the crop
      mirrors its sampling taps instead of a second pass for the flip).
    """

    slot: ClassVar[int | None] = None
    param_shapes: ClassVar[Mapping[str, tuple[int, ...]]] = {}
    apply_fields: ClassVar[tuple[str, ...]] = ()
    in_place: ClassVar[bool] = True
    keeps_range: ClassVar[bool] = True
    absorbs: ClassVar[tuple[type, ...]] = ()

    @property
    def active(self) -> bool:
        """Whether the op can change any sample (a pipeline skips a position no view activates)."""
        return True

    @property
    def apply_key(self) -> tuple:
        """The values of ``apply_fields``."""
        return tuple(getattr(self, f) for f in self.apply_fields)

    def output_size(self, height: int | None, width: int | None) -> tuple[int | None, int | None]:
        """The size of the images this op returns for inputs of ``height × width`` (None: unknown)."""
        return height, width

    def sample(self, draw: Draw, height: int, width: int) -> dict[str, torch.Tensor]:
        """Per-sample parameters ``{name: Tensor[B, *param_shapes[name]]}`` for images of ``height × width``."""
        return {}

    def apply_(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], workspace: Workspace | None = None
               ) -> torch.Tensor:
        """:meth:`apply` on float32 ``images`` ``[N, C, H, W]``, in place when ``in_place``."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply_")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The op on ``images`` ``[N, C, H, W]`` in [0, 1] with ``params`` (as :meth:`sample` returns
        them, ``[N, ...]`` each): a new float32 tensor; ``images`` is left alone."""
        x = check_images(images, "images", 4)
        self.check_params(params, x.shape[0])
        return self.apply_(x.clone() if self.in_place else x, params)

    def check_params(self, params: Mapping[str, torch.Tensor], batch_size: int, name: str = "params") -> None:
        """Raise ValueError unless ``params`` has every parameter, each of shape ``[batch_size, ...]``."""
        if not isinstance(params, Mapping):
            raise ValueError(f"{name} must be a dict of tensors, got {type(params).__name__}")
        for key, trailing in self.param_shapes.items():
            check_per_sample(params.get(key), batch_size, f"{name}.{key}", *trailing)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{"op": class name, **settings}`` (tuples become lists)."""
        return {"op": type(self).__name__, **lists(dataclasses.asdict(self))}


OPS: dict[str, type[Op]] = {}
"""Registered ops by class name (what :func:`op_from_dict` builds)."""


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add the op to :data:`OPS`, refusing a taken name or counter slot."""
    if not (isinstance(cls, type) and issubclass(cls, Op) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"register takes an Op subclass that is a dataclass, got {cls!r}")
    name = cls.__name__
    if OPS.get(name, cls) is not cls:
        raise ValueError(f"an op named {name} is already registered ({OPS[name].__module__})")
    if cls.slot is not None:
        if isinstance(cls.slot, bool) or not isinstance(cls.slot, int) or not 0 <= cls.slot < SLOT_STRIDE:
            raise ValueError(f"{name}.slot must be an int in [0, {SLOT_STRIDE}), got {cls.slot!r}")
        taken = [other.__name__ for other in OPS.values() if other is not cls and other.slot == cls.slot]
        if taken:
            raise ValueError(f"{name}.slot {cls.slot} is already {taken[0]}'s: an op needs its own counter slot")
    OPS[name] = cls
    return cls


def op_from_dict(d: Mapping[str, Any]) -> Op:
    """The op that :meth:`Op.to_dict` described (its settings are validated again)."""
    if not isinstance(d, Mapping) or d.get("op") not in OPS:
        got = d.get("op") if isinstance(d, Mapping) else d
        raise ValueError(f"op must name a registered op ({sorted(OPS)}), got {got!r}")
    cls = OPS[d["op"]]
    settings = {k: v for k, v in d.items() if k != "op"}
    unknown = set(settings) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    return cls(**settings)


def set_fields(op: Op, **values: Any) -> None:
    """Store validated settings on a frozen op (in ``__post_init__``)."""
    for name, value in values.items():
        object.__setattr__(op, name, value)


def lists(value: object) -> object:
    """Tuples → lists, recursively (for ``to_dict``)."""
    if isinstance(value, dict):
        return {k: lists(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [lists(v) for v in value]
    return value
