"""Adapters: make a user's own pretrained generator an MLVGM without copying its code.

The user loads their model however its project says (an NVlabs pickle, a rosinality checkpoint,
a BigGAN package, an NVAE checkpoint) and hands us the module; we only call it. Every adapter is
an :class:`~mlvgm_data.generators.base.MLVGM`, so ``decode`` validates the latents and the
images at the call.
"""

from __future__ import annotations

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


class _WrapsCallable(MLVGM):
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
    """Contiguous ``[start, stop)`` W+ layer ranges: ``k`` near-equal groups, or a given list.

    A list must cover ``0 … num_ws-1`` exactly once (every layer needs one owning group).
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
        ranges = [(int(a), int(b)) for a, b in layer_groups]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"layer_groups must be an int or a list of (start, stop) layer ranges, got {layer_groups!r}"
        ) from None
    if not ranges:
        raise ValueError("layer_groups must not be empty")
    owners = [0] * num_ws
    for a, b in ranges:
        if not 0 <= a < b <= num_ws:
            raise ValueError(f"layer range ({a}, {b}) must satisfy 0 <= start < stop <= num_ws={num_ws}")
        for i in range(a, b):
            owners[i] += 1
    missing = [i for i, c in enumerate(owners) if c == 0]
    doubled = [i for i, c in enumerate(owners) if c > 1]
    if missing or doubled:
        raise ValueError(
            f"layer_groups must cover each of the {num_ws} W+ layers exactly once; "
            f"uncovered {missing}, covered twice {doubled}"
        )
    return ranges


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

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.g.style(z).unsqueeze(1).expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        out = self.g([ws], input_is_latent=True, randomize_noise=noise_mode == "random")
        return out[0] if isinstance(out, (tuple, list)) else out


class StyleGANAdapter(MLVGM):
    """Wraps a StyleGAN generator; its latent groups are tied layer groups of W+ (style mixing).

    ``generator`` follows the NVlabs API (``api="nvlabs"``, StyleGAN2-ADA / StyleGAN3):
    attributes ``z_dim, c_dim, num_ws``, ``mapping(z, c, truncation_psi=…, truncation_cutoff=…)
    -> [N, num_ws, w_dim]`` (with a ``w_avg`` buffer) and ``synthesis(ws, noise_mode=…)``; or
    the rosinality API (``api="rosinality"``: ``style``, ``n_latent``, ``style_dim``,
    ``g([ws], input_is_latent=True, randomize_noise=…)``; pass ``w_avg=g.mean_latent(4096)``
    for truncation).

    ``layer_groups``: ``k`` contiguous groups of near-equal size (default 4, as in the MI paper)
    or a list of ``(start, stop)`` ranges covering every layer once; ``group_names`` names them
    (default ``w0, w1, …``). All groups are ``(z_dim,)`` tied to one anchor ``z``; decode maps all
    groups' z in one mapping call and builds W+ from each group's own w.

    ``truncation_psi`` ψ < 1 pulls w toward ``w_avg`` (the mapping's buffer, or the ``w_avg``
    given) on the layers below ``truncation_cutoff``; without any ``w_avg`` the mapping's own
    ``truncation_psi`` argument is used. ``output_range`` is the synthesis range, mapped to
    [0, 1] and clamped; ``noise_mode`` and ``synthesis_kwargs`` go to ``synthesis``. A
    class-conditional generator (``c_dim > 0``) needs ``classes`` at decode.
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
        res, ch = getattr(g, "img_resolution", None), getattr(g, "img_channels", None)
        self.image_shape = (int(ch), int(res), int(res)) if res and ch else None

    @property
    def layer_ranges(self) -> list[tuple[int, int]]:
        """The ``[start, stop)`` W+ layers each group owns, in group order."""
        return list(self.groups.ranges)

    def _current_w_avg(self) -> torch.Tensor | None:
        own = self._buffers.get("w_avg")
        return own if own is not None else getattr(self.generator.mapping, "w_avg", None)

    def w_plus(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None = None) -> torch.Tensor:
        """The mixed (and truncated) W+ ``[N, num_ws, w_dim]`` that ``decode`` synthesises."""
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
            raise ValueError(f"z_dim={z_dim} cannot be split into {chunks} equal chunks")
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


def _find_z_dim(generator: Any) -> int | None:
    for obj, attr in ((generator, "z_dim"), (generator, "dim_z"), (getattr(generator, "config", None), "z_dim")):
        v = getattr(obj, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


class BigGANAdapter(_WrapsCallable):
    """Wraps a BigGAN / BigBiGAN-style generator that takes one z split into named chunks.

    The wrapped module is called positionally as ``generator(z, [class_input], [truncation])``:
    ``z`` is the chunks concatenated in order; the class input is included when ``num_classes``
    is set (``class_input="onehot"`` floats ``[N, num_classes]`` or ``"index"`` int64 ``[N]``);
    ``truncation`` is included when not ``None``. That matches pytorch-pretrained-BigGAN
    (``G(z, one_hot, truncation)``) and BigBiGAN ports (``G(z)``).

    ``chunks``: a count (equal split of ``z_dim``, default 6 → ``c0 … c5``), a list of sizes,
    or a dict name → size. ``output_range`` is mapped to [0, 1] and clamped.
    """

    def __init__(
        self,
        generator: Callable[..., torch.Tensor],
        chunks: int | Sequence[int] | Mapping[str, int] = 6,
        z_dim: int | None = None,
        num_classes: int | None = None,
        class_input: str = "onehot",
        truncation: float | None = None,
        output_range: Sequence[float] | None = (-1.0, 1.0),
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self._hold(generator, "generator")
        layout = _chunk_layout(chunks, z_dim if z_dim is not None else _find_z_dim(getattr(self, "model", generator)))
        self.latent_spec = LatentSpec([LatentGroup(n, (s,)) for n, s in layout])
        if class_input not in ("onehot", "index"):
            raise ValueError(f"class_input must be 'onehot' or 'index', got {class_input!r}")
        self.num_classes = None if num_classes is None else _check_positive_int(num_classes, "num_classes")
        self.class_input = class_input
        if truncation is not None and (isinstance(truncation, bool) or not isinstance(truncation, (int, float))):
            raise ValueError(f"truncation must be a number or None, got {truncation!r}")
        self.truncation = None if truncation is None else float(truncation)
        self.output_range = _check_range(output_range)
        self.image_shape = _check_image_shape(image_shape)

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        z = self.latent_spec.join(latents)
        args: list[Any] = [z]
        c = _class_input(classes, self.num_classes, self.class_input, z, type(self).__name__)
        if c is not None:
            args.append(c)
        if self.truncation is not None:
            args.append(self.truncation)
        return to_unit_range(self._run(*args), self.output_range, "the wrapped generator")


# --- NVAE-style hierarchical ------------------------------------------------------------------


class HierarchicalAdapter(_WrapsCallable):
    """Wraps a top-down sampler of an NVAE-style hierarchical VAE.

    ``sampler(eps_list, t)`` gets one standard-normal tensor per latent group, ``[N, *shape]``
    in ``shapes`` order, and the temperature ``t``, and returns images. The user writes it
    around their model's own sampling loop (for NVAE: the loop of ``sample`` with
    ``Normal.sample_given_eps(eps)`` in place of ``sample()``, and ``eps`` of the first group
    scaled as NVAE scales z0). ``names`` default ``z0, z1, …``; ``output_range`` defaults to
    [0, 1] (NVAE's ``decoder_output(...).mean()``).
    """

    def __init__(
        self,
        sampler: Callable[[list[torch.Tensor], float], torch.Tensor],
        shapes: Sequence[Sequence[int]],
        temperature: float = 1.0,
        names: Sequence[str] | None = None,
        output_range: Sequence[float] | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self._hold(sampler, "sampler")
        shapes = [tuple(s) for s in shapes]
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
        self.image_shape = _check_image_shape(image_shape)

    def _decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None) -> torch.Tensor:
        eps = [latents[n] for n in self.latent_spec.names]
        return to_unit_range(self._run(eps, self.temperature), self.output_range, "the sampler")


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
