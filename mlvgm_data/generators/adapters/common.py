"""What every adapter shares: the MLVGM base for wrapped models, output-range mapping, argument
checks, and the cross-check of an argument against what the model says about itself."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..base import MLVGM


def check_range(output_range: Sequence[float] | None) -> tuple[float, float] | None:
    if output_range is None:
        return None
    try:
        lo, hi = (float(v) for v in output_range)
    except (TypeError, ValueError):
        raise ValueError(f"output_range must be a pair (low, high) or None, got {output_range!r}") from None
    if not lo < hi:
        raise ValueError(f"output_range must have low < high, got {output_range!r}")
    return lo, hi


def to_unit_range(
    images: torch.Tensor, output_range: tuple[float, float] | None, where: str = "the model"
) -> torch.Tensor:
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


def agree(field: str, given: Any, found: Any, source: str | None) -> Any:
    """``given`` when set, else what the model says (``found``); both set and different is an error."""
    if given is None:
        return found
    if found is not None and given != found:
        raise ValueError(f"{field}={given!r} contradicts the model's {source} ({found!r}); "
                         f"leave {field} unset to take it from the model")
    return given


def model_int(model: Any, paths: Sequence[str]) -> tuple[int | None, str | None]:
    """The first positive int among dotted attribute ``paths`` of ``model``, and its path."""
    for path in paths:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, int) and not isinstance(obj, bool) and obj > 0:
            return obj, path
    return None, None


def follow_mode(adapter: nn.Module, wrapped: nn.Module | None) -> None:
    """Gives the adapter's own modules the wrapped model's mode (eval when it wraps no module).

    A module starts in train mode: without this, an adapter around a model in eval mode would
    look like a generator left in train mode (and be warned about)."""
    inner = set(wrapped.modules()) if wrapped is not None else set()
    encoder = getattr(adapter, "encoder", None)
    if isinstance(encoder, nn.Module):  # a user's encoder keeps its own mode too
        inner |= set(encoder.modules())
    mode = wrapped.training if wrapped is not None else False
    for m in adapter.modules():
        if m not in inner:
            m.training = mode


def from_unit_range(images: torch.Tensor, output_range: tuple[float, float] | None) -> torch.Tensor:
    """Maps [0, 1] images to ``output_range`` (the inverse of :func:`to_unit_range`, unclamped)."""
    if output_range is None or output_range == (0.0, 1.0):
        return images
    lo, hi = output_range
    return images * (hi - lo) + lo


class Adapter(MLVGM):
    """What every adapter shares: ``decode`` given one tensor instead of the dict says so, and
    ``invert`` through a user's encoder (``encoder=``, a callable or module; a module is
    registered, so its weights are part of the generator's state and fingerprint).

    ``invert(images)`` passes ``images`` mapped from [0, 1] to the model's ``output_range`` to the
    encoder (``encoder(x, classes)`` for a class-conditional model) and turns its output into the
    noise ``decode`` takes (:meth:`_noise_of`, per adapter)."""

    output_range: tuple[float, float] | None = None

    def decode(self, latents: Mapping[str, torch.Tensor], classes: torch.Tensor | None = None) -> torch.Tensor:
        check_mapping(self, latents)
        return super().decode(latents, classes)

    def _hold_encoder(self, encoder: Callable[..., Any] | None) -> None:
        if encoder is not None and not callable(encoder):
            raise ValueError(f"encoder must be callable (images -> latents) or None, got {type(encoder).__name__}")
        self._encoder_fn = None if isinstance(encoder, nn.Module) else encoder
        if isinstance(encoder, nn.Module):
            self.encoder = encoder  # a submodule: .to(), .eval() and the state dict reach it
        self.invertible = encoder is not None

    def invert(self, images: torch.Tensor, classes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The noise ``decode`` takes to remake ``images`` ([N, C, H, W] in [0, 1]), from the encoder."""
        if not self.invertible:
            raise ValueError(f"{type(self).__name__} was built without encoder=: it cannot invert images")
        encoder = self._encoder_fn if self._encoder_fn is not None else self.encoder
        x = from_unit_range(images, self.output_range)
        out = encoder(x, classes) if self.num_classes else encoder(x)
        latents = self._noise_of(out)
        lead = self.latent_spec.check(latents)
        if tuple(lead) != (images.shape[0],):
            raise ValueError(f"the encoder gave latents for {list(lead)} samples, expected [{images.shape[0]}]")
        return latents

    def _noise_of(self, out: Any) -> dict[str, torch.Tensor]:
        """The encoder's output as ``{group: [N, *shape]}``: a dict as it is."""
        if not isinstance(out, Mapping):
            raise ValueError(f"the encoder must return a dict {{group: tensor}}, got {type(out).__name__}")
        return dict(out)


def check_mapping(generator: MLVGM, latents: object) -> None:
    if isinstance(latents, Mapping):
        return
    name, spec = type(generator).__name__, generator.latent_spec
    hint = (f"; for one flat tensor [N, {spec.numel}] pass {name}.latent_spec.split(z)"
            if isinstance(latents, torch.Tensor) else "")
    raise ValueError(f"{name}.decode takes a dict {{group: tensor [N, *shape]}} with groups {list(spec.names)}, "
                     f"got {type(latents).__name__}{hint}")


class WrapsCallable(Adapter):
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
        follow_mode(self, owner if isinstance(owner, nn.Module) else None)

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


def check_image_shape(image_shape: Sequence[int] | None) -> tuple[int, int, int] | None:
    if image_shape is None:
        return None
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (C, H, W) positive ints, got {image_shape!r}")
    return shape  # type: ignore[return-value]


def class_input(classes: torch.Tensor | None, num_classes: int | None, kind: str,
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
