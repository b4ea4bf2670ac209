"""Adapters: make a user's own pretrained generator an MLVGM without copying its code.

The user loads their model however its project says (an NVlabs pickle, a rosinality checkpoint,
a BigGAN package, an NVAE checkpoint) and hands us the module; we only call it, with the inputs
its own sampling code would give it. Every adapter is an :class:`~mlvgm_data.generators.base.MLVGM`,
so ``decode`` validates the latents and the images at the call. What a model says about itself
(``z_dim``, classes, image size, per-block z slots) is taken from it, and an argument that
contradicts it is refused.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..latents import LatentGroup, LatentSpec
from .base import MLVGM


def _check_range(output_range: Sequence[float] | None) -> tuple[float, float] | None:
    if output_range is None:
        return None
    try:
        lo, hi = (float(v) for v in output_range)
    except (TypeError, ValueError):
        raise ValueError(f"output_range must be a pair (low, high) or None, got {output_range!r}") from None
    if not lo < hi:
        raise ValueError(f"output_range must have low < high, got {output_range!r}")
    return lo, hi


def to_unit_range(images: torch.Tensor, output_range: tuple[float, float] | None, where: str = "the model") -> torch.Tensor:
    """Maps images from ``output_range`` (e.g. ``(-1, 1)``) to [0, 1], clamped.

    ``None`` means the model already outputs [0, 1]; the clamp still applies (NaN passes through
    so that the protocol check reports it).
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise RuntimeError(f"{where} returned {got}, expected a floating-point image tensor [N, C, H, W]")
    if output_range is not None and output_range != (0.0, 1.0):
        lo, hi = output_range
        images = (images - lo) / (hi - lo)
    return images.clamp(0.0, 1.0)


def _agree(field: str, given: Any, found: Any, source: str | None) -> Any:
    """``given`` when set, else what the model says (``found``); both set and different is an error."""
    if given is None:
        return found
    if found is not None and given != found:
        raise ValueError(f"{field}={given!r} contradicts the model's {source} ({found!r}); "
                         f"leave {field} unset to take it from the model")
    return given


def _model_int(model: Any, paths: Sequence[str]) -> tuple[int | None, str | None]:
    """The first positive int among dotted attribute ``paths`` of ``model``, and its path."""
    for path in paths:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, int) and not isinstance(obj, bool) and obj > 0:
            return obj, path
    return None, None


class _Adapter(MLVGM):
    """What every adapter shares: ``decode`` given one tensor instead of the dict says so."""

    def decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None = None) -> torch.Tensor:
        _check_mapping(self, latents)
        return super().decode(latents, classes)


def _check_mapping(generator: MLVGM, latents: object) -> None:
    if isinstance(latents, Mapping):
        return
    name, spec = type(generator).__name__, generator.latent_spec
    hint = (f"; for one flat tensor [N, {spec.numel}] pass {name}.latent_spec.split(z)"
            if isinstance(latents, torch.Tensor) else "")
    raise ValueError(f"{name}.decode takes a dict {{group: tensor [N, *shape]}} with groups {list(spec.names)}, "
                     f"got {type(latents).__name__}{hint}")


class _WrapsCallable(_Adapter):
    """Holds a user's callable so that ``.to()``, ``.eval()`` and ``state_dict`` reach its module.

    A module is registered as ``self.model``; a bound method of a module registers the module
    and keeps the method as a plain attribute (registering it twice would duplicate its weights).
    """

    def _hold(self, fn: Callable[..., Any], field: str) -> None:
        if not callable(fn):
            raise ValueError(f"{field} must be callable, got {type(fn).__name__}")
        owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module):
            self.model = owner
        self._call = None if fn is owner else fn

    def _run(self, *args: Any) -> Any:
        return self.model(*args) if self._call is None else self._call(*args)

    def _check_call(self, passed: Sequence[str], hint: str) -> None:
        """Refuses, at construction, a call the wrapped callable's signature cannot take (instead
        of a ``missing argument`` error from deep inside the first decode)."""
        fn = self.model.forward if self._call is None else self._call
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # no signature to read (a builtin): the call will tell
            return
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            return
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required = [p for p in positional if p.default is p.empty]
        if not len(required) <= len(passed) <= len(positional):
            raise ValueError(f"the wrapped generator takes ({', '.join(p.name for p in positional)}), but this "
                             f"adapter would call it as ({', '.join(passed)}): {hint}")


def _check_positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field} must be a positive int, got {value!r}")
    return value


def _check_image_shape(image_shape: Sequence[int] | None) -> tuple[int, int, int] | None:
    if image_shape is None:
        return None
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (C, H, W) positive ints, got {image_shape!r}")
    return shape  # type: ignore[return-value]


def _class_input(classes: torch.Tensor | None, num_classes: int | None, kind: str,
                 like: torch.Tensor, name: str) -> torch.Tensor | None:
    """Class labels in the form the wrapped module takes (one-hot floats or int64 indices)."""
    if not num_classes:
        return None
    if classes is None:
        raise ValueError(
            f"{name} is class-conditional ({num_classes} classes): pass classes=[N] int64 to decode"
        )
    if bool(((classes < 0) | (classes >= num_classes)).any()):
        raise ValueError(f"classes must lie in [0, {num_classes}), got values outside it")
    if kind == "index":
        return classes.to(like.device)
    return F.one_hot(classes, num_classes).to(device=like.device, dtype=like.dtype)


# --- W+ layer groups (shared by the StyleGAN adapter and the built-in StyleGAN-like model) ---


def split_layers(num_ws: int, layer_groups: int | Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` W+ layer ranges, one per group, from ``layer_groups``:

    * ``k``: ``k`` groups of near-equal size, in layer order;
    * a list of ``(start, stop)`` ranges, e.g. ``[(0, 4), (4, 8), (8, 14)]``;
    * a list of layer lists, each of consecutive layers, e.g. ``[[0, 1, 2, 3], [4, 5, 6, 7], [8, …, 13]]``.

    A list must cover ``0 … num_ws-1`` exactly once (every layer needs one owning group). The two
    list forms cannot be mistaken for each other: ranges that cover every layer once share their
    inner boundaries, so read as layer lists they would name a layer twice (or ``num_ws``).
    """
    num_ws = _check_positive_int(num_ws, "num_ws")
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
        self.num_ws = _check_positive_int(num_ws, "num_ws")
        self.z_dim = _check_positive_int(z_dim, "z_dim")
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


# --- StyleGAN ---------------------------------------------------------------------------------


class _RosinalityParts(nn.Module):
    """NVlabs-style ``mapping`` / ``synthesis`` calls on a rosinality ``Generator``."""

    def __init__(self, g: nn.Module) -> None:
        super().__init__()
        for attr in ("style", "n_latent", "style_dim"):
            if not hasattr(g, attr):
                raise ValueError(f"a rosinality generator needs attribute {attr!r}; {type(g).__name__} has none")
        self.g = g
        self.z_dim = self.w_dim = int(g.style_dim)
        self.num_ws = int(g.n_latent)
        self.c_dim = 0
        # rosinality's Generator(size, …) draws RGB images of size × size.
        size, _ = _model_int(g, ["size"])
        self.img_resolution = size
        self.img_channels = 3 if size else None

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.g.style(z).unsqueeze(1).expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        out = self.g([ws], input_is_latent=True, randomize_noise=noise_mode == "random")
        return out[0] if isinstance(out, (tuple, list)) else out


class StyleGANAdapter(_Adapter):
    """Wraps a StyleGAN generator; its latent groups are tied layer groups of W+ (style mixing).

    ``generator`` follows the NVlabs API (``api="nvlabs"``, StyleGAN2-ADA / StyleGAN3):
    attributes ``z_dim, c_dim, num_ws``, ``mapping(z, c, truncation_psi=…, truncation_cutoff=…)
    -> [N, num_ws, w_dim]`` (with a ``w_avg`` buffer) and ``synthesis(ws, noise_mode=…)``; or
    the rosinality API (``api="rosinality"``: ``style``, ``n_latent``, ``style_dim``, ``size``,
    ``g([ws], input_is_latent=True, randomize_noise=…)``; pass ``w_avg=g.mean_latent(4096)``
    for truncation).

    ``layer_groups``: ``k`` contiguous groups of near-equal size (default 4, as in the MI paper),
    a list of ``(start, stop)`` ranges or a list of layer lists (``[[0, 1, 2, 3], [4, …], …]``),
    covering every layer once (see :func:`split_layers`); ``group_names`` names them
    (default ``w0, w1, …``). All groups are ``(z_dim,)`` tied to one anchor ``z``; decode maps all
    groups' z in one mapping call and builds W+ from each group's own w.

    ``truncation_psi`` ψ < 1 pulls w toward ``w_avg`` (the mapping's buffer, or the ``w_avg``
    given) on the layers below ``truncation_cutoff``; without any ``w_avg`` the mapping's own
    ``truncation_psi`` argument is used. ``output_range`` is the synthesis range, mapped to
    [0, 1] and clamped; ``noise_mode`` and ``synthesis_kwargs`` go to ``synthesis``. A
    class-conditional generator (``c_dim > 0``) needs ``classes`` at decode. ``image_shape``
    ``(C, H, W)`` comes from the generator (NVlabs ``img_channels``/``img_resolution``,
    rosinality ``size``); give it for a generator that has neither (the pipe's augmentation
    presets need it).
    """

    def __init__(
        self,
        generator: nn.Module,
        layer_groups: int | Sequence[Sequence[int]] = 4,
        group_names: Sequence[str] | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        w_avg: torch.Tensor | None = None,
        noise_mode: str = "const",
        output_range: Sequence[float] | None = (-1.0, 1.0),
        api: str = "nvlabs",
        synthesis_kwargs: Mapping[str, Any] | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if api not in ("nvlabs", "rosinality"):
            raise ValueError(f"api must be 'nvlabs' or 'rosinality', got {api!r}")
        if not isinstance(generator, nn.Module):
            raise ValueError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
        if api == "nvlabs":
            for attr in ("mapping", "synthesis", "z_dim", "num_ws"):
                if not hasattr(generator, attr):
                    raise ValueError(
                        f"an NVlabs-style generator needs attribute {attr!r}; {type(generator).__name__} "
                        "has none (for a rosinality generator pass api='rosinality')"
                    )
            self.generator = generator
        else:
            self.generator = _RosinalityParts(generator)
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if api == "rosinality" and noise_mode == "none":
            raise ValueError("rosinality generators have no noise_mode='none'; use 'const' or 'random'")
        if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, (int, float)):
            raise ValueError(f"truncation_psi must be a number, got {truncation_psi!r}")
        if truncation_cutoff is not None:
            _check_positive_int(truncation_cutoff, "truncation_cutoff")
        g = self.generator
        self.groups = WPlusGroups(int(g.num_ws), int(g.z_dim), layer_groups, group_names)
        self.latent_spec = self.groups.spec
        self.num_classes = int(getattr(g, "c_dim", 0) or 0) or None
        self.truncation_psi = float(truncation_psi)
        self.truncation_cutoff = truncation_cutoff
        if w_avg is not None:
            if not isinstance(w_avg, torch.Tensor):
                raise ValueError(f"w_avg must be a tensor [w_dim], got {type(w_avg).__name__}")
            self.register_buffer("w_avg", w_avg.detach().reshape(-1).clone())
        elif api == "rosinality" and self.truncation_psi != 1.0:
            raise ValueError("truncation with api='rosinality' needs w_avg (e.g. w_avg=g.mean_latent(4096))")
        self.noise_mode = noise_mode
        self.output_range = _check_range(output_range)
        self.synthesis_kwargs = dict(synthesis_kwargs or {})
        res, _ = _model_int(g, ["img_resolution"])
        ch, _ = _model_int(g, ["img_channels"])
        own = (ch, res, res) if res and ch else None
        source = "size (3 × size × size)" if api == "rosinality" else "img_channels/img_resolution"
        self.image_shape = _agree("image_shape", _check_image_shape(image_shape), own, source)

    @property
    def layer_ranges(self) -> list[tuple[int, int]]:
        """The ``[start, stop)`` W+ layers each group owns, in group order."""
        return list(self.groups.ranges)

    def _current_w_avg(self) -> torch.Tensor | None:
        own = self._buffers.get("w_avg")
        return own if own is not None else getattr(self.generator.mapping, "w_avg", None)

    def w_plus(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None = None) -> torch.Tensor:
        """The mixed (and truncated) W+ ``[N, num_ws, w_dim]`` that ``decode`` synthesises."""
        _check_mapping(self, latents)
        lead = self.latent_spec.check(latents, check_finite=False)
        if len(lead) != 1:
            raise ValueError(f"latents must have one batch dimension, got leading shape {list(lead)}")
        return self._w_plus(latents, classes, lead[0])

    def _w_plus(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None, n: int) -> torch.Tensor:
        z = self.groups.stack(latents)
        c = _class_input(classes, self.num_classes, "onehot", z, type(self).__name__)
        c = z.new_zeros(n, 0) if c is None else c
        c = c.repeat(len(self.groups.ranges), 1)
        w_avg = self._current_w_avg()
        kwargs: dict[str, Any] = {}
        if self.truncation_psi != 1.0 and w_avg is None:
            kwargs = {"truncation_psi": self.truncation_psi, "truncation_cutoff": self.truncation_cutoff}
        mapped = self.generator.mapping(z, c, **kwargs)
        ws = self.groups.assemble(mapped, n, f"{type(self.generator).__name__}.mapping")
        if self.truncation_psi != 1.0 and w_avg is not None:
            cut = self.groups.num_ws if self.truncation_cutoff is None else self.truncation_cutoff
            w_avg = w_avg.to(ws.dtype)
            ws = torch.cat([w_avg + self.truncation_psi * (ws[:, :cut] - w_avg), ws[:, cut:]], dim=1)
        return ws

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        n = next(iter(latents.values())).shape[0]
        ws = self._w_plus(latents, classes, n)
        img = self.generator.synthesis(ws, noise_mode=self.noise_mode, **self.synthesis_kwargs)
        return to_unit_range(img, self.output_range, f"{type(self.generator).__name__}.synthesis")


# --- BigGAN / BigBiGAN -----------------------------------------------------------------------


def _chunk_layout(chunks: int | Sequence[int] | Mapping[str, int], z_dim: int | None) -> list[tuple[str, int]]:
    if isinstance(chunks, str):
        raise ValueError(f"chunks must be an int, a list of sizes or a dict name → size, got {chunks!r}")
    if isinstance(chunks, Mapping):
        layout = [(str(k), v) for k, v in chunks.items()]
    elif isinstance(chunks, int) and not isinstance(chunks, bool):
        if z_dim is None:
            raise ValueError("chunks given as a count needs z_dim (or a generator with z_dim / dim_z)")
        if chunks <= 0 or z_dim % chunks:
            raise ValueError(f"z_dim={z_dim} cannot be split into {chunks} equal chunks; pass chunks as a list of sizes")
        layout = [(f"c{i}", z_dim // chunks) for i in range(chunks)]
    else:
        try:
            layout = [(f"c{i}", v) for i, v in enumerate(chunks)]
        except TypeError:
            raise ValueError(f"chunks must be an int, a list of sizes or a dict name → size, got {chunks!r}") from None
    if not layout:
        raise ValueError("chunks must not be empty")
    for name, size in layout:
        _check_positive_int(size, f"chunk {name!r} size")
    total = sum(s for _, s in layout)
    if z_dim is not None and total != z_dim:
        raise ValueError(f"chunk sizes {[s for _, s in layout]} sum to {total}, but z_dim is {z_dim}")
    return layout


def _z_slots(model: Any) -> tuple[int, int] | None:
    """``(num_slots, z_chunk_size)`` of a hierarchical-z BigGAN-PyTorch generator — z is split into
    ``num_slots`` slots of ``z_chunk_size``: slot 0 feeds the first linear layer, slot i block i's
    conditional batch norm — directly or under ``big_gan`` (the BigBiGAN port's wrapper)."""
    for obj in (model, getattr(model, "big_gan", None)):
        slots, _ = _model_int(obj, ["num_slots"])
        size, _ = _model_int(obj, ["z_chunk_size"])
        if slots and size and slots > 1:
            return slots, size
    return None


def _check_slots(layout: list[tuple[str, int]], slots: tuple[int, int]) -> None:
    num_slots, size = slots
    start = 0
    for name, n in layout:
        stop = start + n
        if start % size or stop % size:
            raise ValueError(
                f"chunk {name!r} is z[{start}:{stop}], which straddles the generator's per-block z slots "
                f"({num_slots} slots of {size}: slot 0 feeds the first layer, slot i block i): a chunk must "
                f"hold whole slots, i.e. start and stop at multiples of {size}"
            )
        start = stop


class BigGANAdapter(_WrapsCallable):
    """Wraps a BigGAN / BigBiGAN-style generator that takes one z split into named chunks.

    The wrapped module is called positionally as ``generator(z, [class_input], [truncation])``:
    ``z`` is the chunks concatenated in order; the class input is included when the generator is
    class-conditional (``class_input="onehot"`` floats ``[N, num_classes]`` or ``"index"`` int64
    ``[N]``); ``truncation`` is included when not ``None``. The call is checked against the
    generator's signature when the adapter is built.

    * **pytorch-pretrained-BigGAN** (``BigGAN.forward(z, class_label, truncation)``): its samples are
      ``z = truncation · truncnorm(−2, 2)`` (``truncated_noise_sample``) passed together with
      ``truncation``. So with ``truncation`` set the adapter feeds ``truncation · z``; use a policy
      with ``anchor_trunc=2.0`` for the truncated normal. ``z_dim``, ``num_classes`` and the image
      shape come from its ``config`` (``z_dim``, ``num_classes``, ``output_dim``).
    * **BigGAN-PyTorch generators with hierarchical z** and the **BigBiGAN port** of
      pytorch-pretrained-gans (``G(z)``, ``dim_z = 120``): they say how z is cut into per-block
      slots (``num_slots``, ``z_chunk_size``, on the module or its ``big_gan``); the default is one
      chunk per slot (BigBiGAN: 6 × 20), and a chunk that straddles two slots is refused.

    ``chunks``: ``None`` (one per slot when the generator has slots, else 6 equal chunks — the MI
    paper's BigBiGAN layout), a count of equal chunks, a list of sizes, or a dict name → size
    (names default ``c0, c1, …``). ``z_dim``, ``num_classes`` and ``image_shape`` default to what
    the generator says (attributes ``z_dim``/``dim_z``, ``config.*``, ``resolution``); a value
    that contradicts it is refused. ``truncation`` must lie in (0, 1]. ``output_range`` is mapped
    to [0, 1] and clamped.
    """

    def __init__(
        self,
        generator: Callable[..., torch.Tensor],
        chunks: int | Sequence[int] | Mapping[str, int] | None = None,
        z_dim: int | None = None,
        num_classes: int | None = None,
        class_input: str = "onehot",
        truncation: float | None = None,
        output_range: Sequence[float] | None = (-1.0, 1.0),
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self._hold(generator, "generator")
        model = getattr(self, "model", generator)
        own_z, z_source = _model_int(model, ["z_dim", "dim_z", "config.z_dim", "big_gan.dim_z"])
        z_dim = _agree("z_dim", None if z_dim is None else _check_positive_int(z_dim, "z_dim"), own_z, z_source)
        slots = _z_slots(model)
        if slots is not None:
            z_dim = _agree("z_dim", z_dim, slots[0] * slots[1], "num_slots × z_chunk_size")
        layout = _chunk_layout((slots[0] if slots else 6) if chunks is None else chunks, z_dim)
        if slots is not None:
            _check_slots(layout, slots)
        self.latent_spec = LatentSpec([LatentGroup(n, (s,)) for n, s in layout])
        if class_input not in ("onehot", "index"):
            raise ValueError(f"class_input must be 'onehot' or 'index', got {class_input!r}")
        own_classes, _ = _model_int(model, ["config.num_classes"])
        given = None if num_classes is None else _check_positive_int(num_classes, "num_classes")
        self.num_classes = _agree("num_classes", given, own_classes, "config.num_classes")
        self.class_input = class_input
        if truncation is not None and (isinstance(truncation, bool) or not isinstance(truncation, (int, float))
                                       or not 0 < truncation <= 1):
            raise ValueError(f"truncation must be a number in (0, 1] or None, got {truncation!r}")
        self.truncation = None if truncation is None else float(truncation)
        self.output_range = _check_range(output_range)
        res, res_source = _model_int(model, ["config.output_dim", "resolution", "big_gan.resolution"])
        self.image_shape = _agree("image_shape", _check_image_shape(image_shape), (3, res, res) if res else None,
                                  f"{res_source} (3 × {res} × {res} images)")
        passed = ["z"] + (["classes"] if self.num_classes else []) + (["truncation"] if self.truncation is not None else [])
        self._check_call(passed, "set num_classes= for a class input and truncation= for a truncation argument "
                                 "(pytorch-pretrained-BigGAN takes (z, class_label, truncation))")

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        z = self.latent_spec.join(latents)
        if self.truncation is not None:
            z = z * self.truncation  # pytorch-pretrained-BigGAN's z = truncation · truncnorm(−2, 2)
        args: list[Any] = [z]
        c = _class_input(classes, self.num_classes, self.class_input, z, type(self).__name__)
        if c is not None:
            args.append(c)
        if self.truncation is not None:
            args.append(self.truncation)
        return to_unit_range(self._run(*args), self.output_range, "the wrapped generator")


# --- NVAE-style hierarchical ------------------------------------------------------------------


class HierarchicalAdapter(_WrapsCallable):
    """Wraps a top-down sampler of a hierarchical VAE (NVAE, VDVAE, …).

    ``sampler(eps_list, t)`` gets one standard-normal tensor ε per latent group, ``[N, *shape]``
    in ``shapes`` order, and the temperature ``t``, and returns images. It runs the model's own
    top-down loop with ε given: group k's value is ``z_k = μ_k + σ_k · t · ε_k``, with μ_k, σ_k
    from the conditional prior given the groups above. So the latent groups are the ε's, and
    ``Keep()`` keeps a group's ε, not its value: when an earlier group changes, a kept group's
    z still moves through the conditional prior (its standardised position in it is what is
    kept) — the same as drawing the model's own samples with that ε.

    :class:`NVAESampler` and :class:`VDVAESampler` are such samplers for NVAE and VDVAE; they say
    their ``latent_shapes`` and ``image_shape``, which ``shapes`` and ``image_shape`` then default
    to. ``names`` default ``z0, z1, …``; ``output_range`` defaults to [0, 1].
    """

    def __init__(
        self,
        sampler: Callable[[list[torch.Tensor], float], torch.Tensor],
        shapes: Sequence[Sequence[int]] | None = None,
        temperature: float = 1.0,
        names: Sequence[str] | None = None,
        output_range: Sequence[float] | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self._hold(sampler, "sampler")
        own_shapes = getattr(sampler, "latent_shapes", None)
        shapes = [tuple(s) for s in (own_shapes if shapes is None else shapes) or []]
        if own_shapes is not None and shapes != [tuple(s) for s in own_shapes]:
            raise ValueError(f"shapes {shapes} contradict the sampler's latent_shapes {list(own_shapes)}; "
                             "leave shapes unset to take them from the sampler")
        if not shapes:
            raise ValueError("shapes must list at least one latent group shape")
        names = [f"z{i}" for i in range(len(shapes))] if names is None else list(names)
        if len(names) != len(shapes):
            raise ValueError(f"names {names} must match the {len(shapes)} shapes")
        self.latent_spec = LatentSpec([LatentGroup(n, s) for n, s in zip(names, shapes)])
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)
        self.output_range = _check_range(output_range)
        self.image_shape = _agree("image_shape", _check_image_shape(image_shape),
                                  _check_image_shape(getattr(sampler, "image_shape", None)), "sampler's image_shape")

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        eps = [latents[n] for n in self.latent_spec.names]
        return to_unit_range(self._run(eps, self.temperature), self.output_range, "the sampler")


def _require(model: object, attrs: Sequence[str], what: str) -> None:
    for attr in attrs:
        if not hasattr(model, attr):
            raise ValueError(f"{what} needs attribute {attr!r}; {type(model).__name__} has none")


def _soft_clamp5(x: torch.Tensor) -> torch.Tensor:
    return 5.0 * torch.tanh(x / 5.0)  # NVAE's soft_clamp5 (mean and log-scale kept within ±5)


class NVAESampler(nn.Module):
    """A :class:`HierarchicalAdapter` sampler for NVlabs NVAE's ``AutoEncoder``: the top-down
    loop of ``AutoEncoder.sample(num_samples, t)`` with each group's ε given.

    NVAE's ``Normal(mu, log_sigma, t)`` draws ``z = μ + σ · ε`` with ``μ = soft_clamp5(mu)`` and
    ``σ = (exp(soft_clamp5(log_sigma)) + 0.01) · t``; the top group has ``mu = log_sigma = 0``
    (``z_0 = 1.01 · t · ε_0``), group k > 0 takes ``mu, log_sigma`` from ``dec_sampler[k-1]`` on
    the decoder state. The images are ``decoder_output(logits)``'s mean (``output="mean"``:
    ``DiscMixLogistic.mean()``, ``Bernoulli.mean``; a pure function of the ε's) or
    ``.sample()`` (``output="sample"``: draws from torch's global generator, so two decodes of the
    same latents differ). ``latent_shapes`` and ``image_shape`` are read off one batch-1 pass.

    Give the model as NVAE samples with it: batch-norm statistics re-estimated
    (``--readjust_bn``), then ``eval()``; the pipe keeps generators in eval mode.

    >>> gen = HierarchicalAdapter(NVAESampler(model), temperature=0.8)
    """

    def __init__(self, model: nn.Module, output: str = "mean") -> None:
        super().__init__()
        _require(model, ("z0_size", "prior_ftr0", "dec_tower", "dec_sampler", "post_process",
                         "image_conditional", "decoder_output"), "an NVAE AutoEncoder")
        if output not in ("mean", "sample"):
            raise ValueError(f"output must be 'mean' or 'sample', got {output!r}")
        self.model = model
        self.output = output
        shapes: list[tuple[int, ...]] = []
        with torch.no_grad():
            images = self._top_down(None, 1.0, 1, shapes)
        self.latent_shapes = shapes
        self.image_shape = tuple(images.shape[1:])

    def forward(self, eps: list[torch.Tensor], t: float) -> torch.Tensor:
        if len(eps) != len(self.latent_shapes):
            raise ValueError(f"NVAESampler needs {len(self.latent_shapes)} ε tensors (one per group), got {len(eps)}")
        return self._top_down(eps, t, eps[0].shape[0], None)

    def _top_down(self, eps: list[torch.Tensor] | None, t: float, n: int,
                  shapes: list[tuple[int, ...]] | None) -> torch.Tensor:
        m = self.model

        def draw(k: int, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
            if shapes is not None:
                shapes.append(tuple(mu.shape[1:]))
            e = torch.zeros_like(mu) if eps is None else eps[k].to(mu.dtype)
            sigma = (torch.exp(_soft_clamp5(log_sigma)) + 1e-2) * t
            return _soft_clamp5(mu) + sigma * e

        s = m.prior_ftr0.unsqueeze(0).expand(n, -1, -1, -1)
        top = m.prior_ftr0.new_zeros(n, *m.z0_size)
        z = draw(0, top, top)
        k = 0
        for cell in m.dec_tower:
            if cell.cell_type == "combiner_dec":
                if k > 0:
                    mu, log_sigma = torch.chunk(m.dec_sampler[k - 1](s), 2, dim=1)
                    z = draw(k, mu, log_sigma)
                s = cell(s, z)
                k += 1
            else:
                s = cell(s)
        if getattr(m, "vanilla_vae", False):
            s = m.stem_decoder(z)
        for cell in m.post_process:
            s = cell(s)
        dist = m.decoder_output(m.image_conditional(s))
        if self.output == "sample":
            return dist.sample()
        mean = dist.mean
        return mean() if callable(mean) else mean


def _dmol_mean(params: torch.Tensor, num_mix: int) -> torch.Tensor:
    """The deterministic image of a discretised mixture of logistics in VDVAE's layout
    (``[N, H, W, 10 · num_mix]``: mixture logits, then per RGB channel means, log-scales and
    coefficients): NVAE's ``DiscMixLogistic.mean()`` rule — softmax-weighted means, each channel
    conditioned on the ones before it — mapped to [0, 1], ``[N, 3, H, W]``."""
    n, h, w, _ = params.shape
    weights = torch.softmax(params[..., :num_mix], dim=-1).unsqueeze(3)      # N, H, W, 1, M
    rest = params[..., num_mix:].reshape(n, h, w, 3, 3 * num_mix)
    means = (rest[..., :num_mix] * weights).sum(-1)                            # N, H, W, 3
    coeffs = (torch.tanh(rest[..., 2 * num_mix:]) * weights).sum(-1)
    x0 = means[..., 0].clamp(-1, 1)
    x1 = (means[..., 1] + coeffs[..., 0] * x0).clamp(-1, 1)
    x2 = (means[..., 2] + coeffs[..., 1] * x0 + coeffs[..., 2] * x1).clamp(-1, 1)
    return torch.stack([x0, x1, x2], dim=1) / 2 + 0.5


class VDVAESampler(nn.Module):
    """A :class:`HierarchicalAdapter` sampler for openai VDVAE (its ``VAE`` or ``Decoder``): the
    loop of ``Decoder.forward_uncond(n, t)`` with each block's ε given.

    VDVAE's ``forward_samples_set_latents(n, latents, t)`` takes the latents' values z; drawing
    them from ε needs the prior of each block on the decoder state, so this re-runs the blocks
    (``DecBlock.forward_uncond``: mixin, ``prior`` → ``pm, pv, xpp``, ``z_fn``, ``resnet``) with
    ``z = exp(pv + log t) · ε + pm`` (``sample_uncond`` at temperature t). One group per decoder
    block, ``[zdim, res, res]``. The images are the discretised-mixture output's deterministic
    mean (``output="mean"``, see :func:`_dmol_mean`) or ``out_net.sample(px_z)``
    (``output="sample"``: draws from torch's global generator; its uint8 pixels are scaled to
    [0, 1]).

    >>> gen = HierarchicalAdapter(VDVAESampler(ema_vae), temperature=0.9)
    """

    def __init__(self, vae: nn.Module, output: str = "mean") -> None:
        super().__init__()
        decoder = getattr(vae, "decoder", vae)  # the encoder plays no part in sampling
        _require(decoder, ("dec_blocks", "bias_xs", "final_fn", "out_net", "H"), "a VDVAE Decoder")
        if output not in ("mean", "sample"):
            raise ValueError(f"output must be 'mean' or 'sample', got {output!r}")
        self.decoder = decoder
        self.output = output
        self.latent_shapes = [(b.zdim, b.base, b.base) for b in decoder.dec_blocks]
        size = decoder.H.image_size
        self.image_shape = (int(getattr(decoder.H, "image_channels", 3)), size, size)

    def forward(self, eps: list[torch.Tensor], t: float) -> torch.Tensor:
        d = self.decoder
        if len(eps) != len(d.dec_blocks):
            raise ValueError(f"VDVAESampler needs {len(d.dec_blocks)} ε tensors (one per decoder block), got {len(eps)}")
        n = eps[0].shape[0]
        xs = {bias.shape[2]: bias.repeat(n, 1, 1, 1) for bias in d.bias_xs}
        for block, e in zip(d.dec_blocks, eps):
            x = xs.get(block.base)
            if x is None:
                ref = next(iter(xs.values()))
                x = ref.new_zeros(n, block.widths[block.base], block.base, block.base)
            if block.mixin is not None:
                x = x + F.interpolate(xs[block.mixin][:, :x.shape[1], ...], scale_factor=block.base // block.mixin)
            feats = block.prior(x)
            pm, pv, xpp = feats[:, :block.zdim], feats[:, block.zdim:2 * block.zdim], feats[:, 2 * block.zdim:]
            log_sigma = pv if t == 1 else pv + math.log(t)
            z = torch.exp(log_sigma) * e.to(pm.dtype) + pm
            x = x + xpp
            x = x + block.z_fn(z)
            xs[block.base] = block.resnet(x)
        px_z = d.final_fn(xs[d.H.image_size])
        if self.output == "sample":
            pixels = torch.from_numpy(d.out_net.sample(px_z)).to(px_z.device)   # N, H, W, C uint8
            return pixels.permute(0, 3, 1, 2).float() / 255
        return _dmol_mean(d.out_net(px_z), d.H.num_mixtures)


# --- any callable -----------------------------------------------------------------------------


class CallableGenerator(_WrapsCallable):
    """Any callable ``fn(latents) -> images`` (``fn(latents, classes)`` when ``num_classes`` is
    set) with the :class:`LatentSpec` it takes. ``output_range`` is mapped to [0, 1] and clamped.
    """

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        spec: LatentSpec,
        num_classes: int | None = None,
        image_shape: Sequence[int] | None = None,
        output_range: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self._hold(fn, "fn")
        if not isinstance(spec, LatentSpec):
            raise ValueError(f"spec must be a LatentSpec, got {type(spec).__name__}")
        self.latent_spec = spec
        self.num_classes = None if num_classes is None else _check_positive_int(num_classes, "num_classes")
        self.image_shape = _check_image_shape(image_shape)
        self.output_range = _check_range(output_range)

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        if self.num_classes:
            if classes is None:
                raise ValueError(f"CallableGenerator is class-conditional ({self.num_classes} classes): pass classes")
            out = self._run(dict(latents), classes)
        else:
            out = self._run(dict(latents))
        return to_unit_range(out, self.output_range, "fn")
